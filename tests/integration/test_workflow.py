"""The offline GitOps workflow through the real CLI and a real SQLite file: validate → diff → apply → history."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dsfleet.reconciler.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests"
DSFLEET = [sys.executable, "-m", "dsfleet.reconciler.cli"]


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [*DSFLEET, *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=full_env,
        timeout=120,
        check=False,
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    dest = tmp_path / "manifests"
    shutil.copytree(EXAMPLE, dest)
    return dest


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'state.db'}"


def test_help_explains_itself() -> None:
    top = run("--help")
    assert top.returncode == 0
    for word in (
        "validate",
        "diff",
        "apply",
        "render",
        "history",
        "schema",
        "import-nvinfer",
        "import-legacy",
    ):
        assert word in top.stdout
    sub = run("validate", "--help")
    assert sub.returncode == 0
    assert "--strict" in sub.stdout and "exit" in sub.stdout and "FILE:LINE:COL" in sub.stdout
    assert run("validate").returncode == 2  # usage error
    assert run("frobnicate").returncode == 2


def test_example_fleet_validates_strictly_and_as_json() -> None:
    proc = run("validate", "manifests", "--strict")
    assert proc.returncode == 0, proc.stderr
    assert "valid: 2 nodes, 10 cameras, 3 instances" in proc.stdout
    js = json.loads(run("validate", "manifests", "-o", "json").stdout)
    assert js["valid"] is True and js["findings"] == [] and js["counts"]["cameras"] == 10


def test_schema_is_json_schema_for_every_kind(tmp_path: Path) -> None:
    proc = run("schema")
    schema = json.loads(proc.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    kinds = json.dumps(schema)
    for kind in ("Node", "Camera", "DsInstance", "InferenceProfile", "Policy", "batch-size", "gie-unique-id"):
        assert kind in kinds
    assert run("schema", "Camera", "--out", str(tmp_path / "c.json")).returncode == 0
    assert json.loads((tmp_path / "c.json").read_text())["title"] == "dsfleet Camera"
    assert run("schema", "Nope").returncode == 2


def test_diff_never_creates_or_migrates_the_store(fleet: Path, tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "state.db"
    proc = run("diff", str(fleet), env={"DSFLEET_COORDINATOR_DB": f"sqlite:///{path}"})
    assert proc.returncode == 1, proc.stderr  # the configured store does not exist yet: compared with empty
    assert not path.exists() and not path.parent.exists()
    assert "Plan: 2 nodes to add, 0 to change, 0 to remove" in proc.stdout
    proc = run("diff", str(fleet), "--db", f"sqlite:///{path}")
    assert proc.returncode == 2 and "no store at" in proc.stderr  # an explicit --db must exist (typos)
    assert not path.exists() and not path.parent.exists()


def test_apply_then_diff_is_clean_and_history_lists_revisions(
    fleet: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "apply", str(fleet), "--db", db)
    assert code == 0
    assert "revision 1 applied: 2 node configs queued" in out
    code, out, _ = cli(capsys, "diff", str(fleet), "--db", db)
    assert code == 0 and "No changes" in out
    code, out, _ = cli(capsys, "apply", str(fleet), "--db", db, "-o", "json")
    assert code == 0
    assert json.loads(out)["outcome"] == "unchanged"  # the same manifests: nothing queued, nothing recorded
    code, out, _ = cli(capsys, "history", "--db", db, "-o", "json")
    revisions = json.loads(out)["revisions"]
    assert [(r["id"], r["accepted"], r["nodes_changed"]) for r in revisions] == [(1, True, 2)]


def test_invalid_manifests_store_a_rejected_revision_and_change_nothing(
    fleet: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    (fleet / "cameras" / "broken.yaml").write_text(
        "apiVersion: dsfleet/v1\nkind: Camera\nmetadata: {name: x}\n"
    )
    code, _, err = cli(capsys, "apply", str(fleet), "--db", db)
    assert code == 1
    assert "cameras/broken.yaml:1:1: error: spec: required field is missing [missing-field]" in err
    assert "rejected" in err
    code, _out, err = cli(capsys, "diff", str(fleet), "--db", db)
    assert code == 2 and "error" in err
    (fleet / "cameras" / "broken.yaml").unlink()
    assert cli(capsys, "diff", str(fleet), "--db", db)[0] == 0  # the good revision is still the stored one
    revisions = json.loads(cli(capsys, "history", "--db", db, "-o", "json")[1])["revisions"]
    assert [r["accepted"] for r in revisions] == [False, True]
    assert revisions[0]["errors"] and revisions[0]["errors"][0]["rule"] == "missing-field"


def test_pruning_everything_needs_an_explicit_flag(
    fleet: Path, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    for sub in ("instances", "profiles"):
        shutil.rmtree(fleet / sub)
    code, _, err = cli(capsys, "apply", str(fleet), "--db", db)
    assert code == 1 and "--allow-prune-all" in err
    code, out, _ = cli(capsys, "apply", str(fleet), "--db", db, "--allow-prune-all", "-o", "json")
    assert code == 0
    assert json.loads(out)["summary"]["instances_to_delete"] == 3


def test_diff_json_is_stable_and_names_the_change(
    fleet: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    lobby = fleet / "instances" / "ccm.yaml"
    lobby.write_text(lobby.read_text().replace("gpu: 1", "gpu: 0"))
    code, out, _ = cli(capsys, "diff", str(fleet), "--db", db, "-o", "json")
    assert code == 1
    plan = json.loads(out)
    assert plan["schema"] == "dsfleet.diff/v1" and plan["changed"] is True
    changed = [n for n in plan["nodes"] if n["action"] != "unchanged"]
    assert [(n["name"], [(i["name"], i["kind"]) for i in n["instances"]]) for n in changed] == [
        ("gpu-node-1", [("ccm-lobby", "recreate")])
    ]
    assert changed[0]["instances"][0]["fields"] == [
        {"path": "gpu", "action": "changed", "old": 1, "new": 0}  # manifest terms, not gpus[0]
    ]
    assert plan["summary"]["instances_to_recreate"] == 1


def test_render_writes_the_files_the_agent_will_write(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run("render", str(fleet), "--instance", "ccm-gate", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        ".dsfleet-render.json",  # what this render wrote (the next one removes files it no longer writes)
        "app_conf.json",
        "faceid_align_config.txt",
        "faceid_primary.txt",
        "faceid_secondary.txt",
        "mot_primary.txt",
        "mot_sgie.txt",
        "source_list.json",
    ]
    sources = json.loads((out / "source_list.json").read_text())["sources"]
    assert [s["camera_id"] for s in sources] == ["3", "1", "2", "4"]
    assert sources[0]["address"] == "rtsp://${secret:gate-1}@127.0.0.1:8554/gate-1/main"
    assert run("render", str(fleet), "--instance", "nope").returncode == 2


def _node_hashes(path: Path) -> dict[str, str]:
    code = (
        "import json,sys; from dsfleet.reconciler.compiling.desired import desired_state; "
        "d = desired_state([sys.argv[1]]); print(json.dumps({k: v.configHash for k, v in d.configs.items()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "random"},
        cwd=ROOT,
    )
    return dict(json.loads(out.stdout))


def test_config_hashes_are_stable_across_processes(fleet: Path) -> None:
    from dsfleet.reconciler.compiling.desired import desired_state

    here = {k: v.configHash for k, v in (desired_state([fleet]).configs or {}).items()}
    assert _node_hashes(fleet) == here == _node_hashes(fleet)


def test_ten_thousand_camera_fleet_one_camera_changes_one_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.fleetgen import generate

    fleet = generate(tmp_path / "big")
    db = f"sqlite:///{tmp_path / 'big.db'}"
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    cams = fleet / "sites" / "site-0123" / "cameras.yaml"
    cams.write_text(cams.read_text().replace("cam-04925/main", "cam-04925/sub", 1))
    code, out, _ = cli(capsys, "diff", str(fleet), "--db", db, "-o", "json")
    assert code == 1
    plan = json.loads(out)
    changed = [n for n in plan["nodes"] if n["action"] != "unchanged"]
    assert len(plan["nodes"]) == 250
    assert [(n["name"], [(i["name"], i["kind"]) for i in n["instances"]]) for n in changed] == [
        ("node-0123", [("node-0123-ds0", "restart")])
    ]
    code, out, _ = cli(capsys, "apply", str(fleet), "--db", db, "-o", "json")
    applied = json.loads(out)
    assert code == 0 and len(applied["outbox"]) == 1 and applied["generations"] == {"node-0123": 2}
    with sqlite3.connect(tmp_path / "big.db") as conn:
        rows = conn.execute("SELECT key FROM outbox WHERE id = ?", (applied["outbox"][0],)).fetchall()
    assert rows == [("node-0123",)]


CANARY = "canary-Pa55word-7f3e"


def _everything_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def test_an_inline_credential_is_rejected_and_never_echoed_or_stored(
    fleet: Path, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = fleet / "cameras" / "gate.yaml"
    gate.write_text(
        gate.read_text().replace(
            "rtsp://127.0.0.1:8554/gate-1", f"rtsp://admin:{CANARY}@127.0.0.1:8554/gate-1"
        )
    )
    outputs: list[str] = []
    for args in (
        ("validate", str(fleet)),
        ("validate", str(fleet), "-o", "json"),
        ("diff", str(fleet), "--db", db),
        ("diff", str(fleet), "--db", db, "-o", "json"),
        ("apply", str(fleet), "--db", db),
        ("history", "--db", db, "-o", "json"),
    ):
        code, out, err = cli(capsys, *args)
        outputs.append(out + err)
        if args[0] in ("validate", "apply"):
            assert code == 1
    assert "camera-url-credentials" in outputs[0]
    assert all(CANARY not in text for text in outputs)
    assert CANARY.encode() not in _everything_under(tmp_path / "state")


def test_a_secret_file_canary_reaches_no_manifest_file_store_or_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The password lives only in the agent-side secret store; nothing the coordinator writes carries it."""
    from dsfleet.reconciler.importers.legacy import import_legacy
    from tests.integration.test_legacy import make_db

    secrets = tmp_path / "secrets"
    out = tmp_path / "imported"
    db_path = make_db(tmp_path / "camera.db")
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE cameras SET password = ?", (CANARY,))
    import_legacy(db_path, out_dir=out, secrets_dir=secrets)
    assert CANARY.encode() in _everything_under(secrets)
    assert CANARY.encode() not in _everything_under(out)
    manifests = tmp_path / "manifests"
    shutil.copytree(EXAMPLE, manifests)
    (manifests / "imported").mkdir()
    shutil.copy(out / "cameras.yaml", manifests / "imported" / "cameras.yaml")
    db = f"sqlite:///{tmp_path / 'state.db'}"
    texts: list[str] = []
    for args in (
        ("validate", str(manifests)),
        ("diff", str(manifests), "--db", db),
        ("apply", str(manifests), "--db", db),
    ):
        _code, o, e = cli(capsys, *args)
        texts.append(o + e)
    render_out = tmp_path / "rendered"
    cli(capsys, "render", str(manifests), "--instance", "ccm-gate", "--out", str(render_out))
    assert all(CANARY not in t for t in texts)
    assert CANARY.encode() not in (tmp_path / "state.db").read_bytes()
    assert CANARY.encode() not in _everything_under(render_out)


def test_warm_applies_keep_the_inventory_exact(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The coordinator path writes only inventory rows that changed; the tables must still match a full sync,
    also when another writer applied in between (then the cached base is stale and ignored)."""
    from datetime import UTC, datetime

    from dsfleet.reconciler.applying import Caches, apply_manifests
    from dsfleet.reconciler.store import NewRevision, Store

    db = f"sqlite:///{tmp_path / 'warm.db'}"
    rev = NewRevision(source="watch", created_at=datetime.now(UTC), manifests_hash="")
    caches = Caches()
    gate = fleet / "cameras" / "gate.yaml"
    with Store.open(db) as store:
        apply_manifests([fleet], store, rev, caches=caches)
        gate.write_text(gate.read_text().replace("zone: gate\n", "zone: gate-west\n", 1))
        apply_manifests([fleet], store, rev, caches=caches)  # gate-1 leaves ccm-gate's selector
        warm = store.inventory()
    fresh_db = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert cli(capsys, "apply", str(fleet), "--db", fresh_db)[0] == 0
    with Store.open(fresh_db) as fresh:
        assert warm == fresh.inventory()
    assert next(c for c in warm.cameras if c.name == "gate-1").instance is None
    # another writer applies a change; the cached base is now stale and must not be trusted
    other = tmp_path / "other"
    shutil.copytree(EXAMPLE, other)
    lobby = other / "cameras" / "lobby.yaml"
    lobby.write_text(lobby.read_text().replace("zone: lobby\n", "zone: hall\n", 1))
    assert cli(capsys, "apply", str(other), "--db", db)[0] == 0
    gate.write_text(gate.read_text().replace("zone: gate-west\n", "zone: gate\n", 1))
    with Store.open(db) as store:
        apply_manifests([fleet], store, rev, caches=caches)
        again = store.inventory()
    with Store.open(f"sqlite:///{tmp_path / 'fresh2.db'}") as fresh2:
        apply_manifests([fleet], fresh2, rev)
        assert again == fresh2.inventory()


def test_diff_text_shows_unified_diffs_or_just_the_files_with_stat(
    fleet: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    gate = fleet / "cameras" / "gate.yaml"
    gate.write_text(gate.read_text().replace("gate-3/main", "gate-3/sub"))
    code, full, _ = cli(capsys, "diff", str(fleet), "--db", db)
    assert code == 1
    assert "  ~ instance ccm-gate: restart" in full and "      ~ file source_list.json" in full
    assert '-            "address": "rtsp://${secret:gate-3}@127.0.0.1:8554/gate-3/main",' in full
    assert full.rstrip().endswith(
        "Plan: 0 nodes to add, 1 to change, 0 to remove; 1 instance to restart, 0 to recreate."
    )
    code, stat, _ = cli(capsys, "diff", str(fleet), "--db", db, "--stat")
    assert (
        code == 1 and "      ~ file source_list.json" in stat and "@@" not in stat and "address" not in stat
    )


def test_usage_errors_exit_2_with_a_clear_message(fleet: Path, tmp_path: Path) -> None:
    proc = run("validate", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "no such file or directory" in proc.stderr
    proc = run("apply", str(fleet), "--db", "mysql://someone@127.0.0.1/fleet")
    assert proc.returncode == 2 and "unsupported database" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "junk.db").write_text("not a database")
    proc = run("diff", str(fleet), "--db", f"sqlite:///{tmp_path / 'junk.db'}")
    assert proc.returncode == 2 and "error" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("diff", str(tmp_path / "missing"))
    assert proc.returncode == 2


def test_get_lists_the_stored_inventory_and_the_older_systems_view(
    fleet: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    code, out, _ = cli(capsys, "get", "instances", "--db", db, "-o", "json")
    instances = {i["name"]: i for i in json.loads(out)}
    assert code == 0 and set(instances) == {"ccm-gate", "ccm-lobby", "traffic-parking"}
    assert instances["ccm-lobby"]["node"] == "gpu-node-1" and instances["ccm-lobby"]["camera_count"] == 4
    code, out, _ = cli(capsys, "get", "cameras", "--legacy", "--db", db, "-o", "json")
    gate1 = next(c for c in json.loads(out) if c["name"] == "gate-1")
    assert (gate1["camera_id"], gate1["ip_address"], gate1["instance_name"], gate1["agent_name"]) == (
        "3",
        "127.0.0.1",
        "ccm-gate",
        "gpu-node-1",
    )
    assert not any("password" in key or "username" in key for key in gate1)
    code, out, _ = cli(capsys, "get", "instances", "--legacy", "--db", db)
    assert code == 0 and out.splitlines()[0].split() == ["INSTANCE_NAME", "AGENT_NAME", "APP_TYPE", "CAMERAS"]


def test_loader_limits_come_from_settings(fleet: Path, tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("[coordinator]\nmax_file_bytes = 1024\nmax_depth = 8\n")
    proc = run("validate", str(fleet), cwd=tmp_path)
    assert proc.returncode == 1
    assert "file is larger than the 1 KiB limit [yaml-limits]" in proc.stderr
    (tmp_path / "settings.toml").write_text("[coordinator]\nmax_depth = 'deep'\n")
    proc = run("validate", str(fleet), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "settings.toml:2:1: error: [coordinator] max_depth: must be a positive integer\n"
    (tmp_path / "settings.toml").write_text("[coordinator\n")
    proc = run("validate", str(fleet), cwd=tmp_path)
    assert proc.returncode == 2 and "settings.toml" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("settings.toml:1:13: error: invalid TOML: ")
    assert proc.stderr.count("error:") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[coordinatr]\ndb = 'x'\n",
            "settings.toml:1:1: error: unknown section [coordinatr]; did you mean [coordinator]?",
        ),
        (
            "# the store\n[coordinator]\n  max_dept = 3\n",
            "settings.toml:3:3: error: [coordinator] unknown key 'max_dept'; did you mean max_depth?",
        ),
        (
            "[kafka]\nbootstrap_server = 'h:9092'\n",
            "settings.toml:2:1: error: [kafka] unknown key 'bootstrap_server'; did you mean bootstrap_servers?",
        ),
    ],
)
def test_an_unknown_settings_section_or_key_exits_2_naming_file_and_line(
    fleet: Path, tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "settings.toml").write_text(text)
    for command in (("validate", str(fleet)), ("history",)):
        proc = run(*command, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == message + "\n"


def test_settings_come_from_the_file_then_the_environment_then_flags(fleet: Path, tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("[coordinator]\ndb = 'sqlite:///from-file.db'\n")
    assert run("apply", str(fleet), cwd=tmp_path).returncode == 0
    assert (tmp_path / "from-file.db").is_file()
    env = {"DSFLEET_COORDINATOR_DB": "sqlite:///from-env.db"}
    assert run("apply", str(fleet), cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "from-env.db").is_file()
    assert run("apply", str(fleet), "--db", "sqlite:///from-flag.db", cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "from-flag.db").is_file()
    named = tmp_path / "elsewhere.toml"
    named.write_text("[coordinator]\ndb = 'sqlite:///named.db'\n")
    proc = run("history", cwd=tmp_path, env={"DSFLEET_CONFIG": str(named)})
    assert proc.returncode == 2 and "no store at named.db" in proc.stderr
    assert not (tmp_path / "named.db").exists()  # history never creates a store
    proc = run("history", cwd=tmp_path, env={"DSFLEET_CONFIG": str(tmp_path / "missing.toml")})
    assert proc.returncode == 2 and "missing.toml: error: no such settings file" in proc.stderr


def _plant_canaries(fleet: Path) -> None:
    """A credential in every place a manifest could carry one (each is a distinct canary)."""
    gate = fleet / "cameras" / "gate.yaml"
    text = gate.read_text()
    text = text.replace("rtsp://127.0.0.1:8554/gate-1", f"rtsp://admin:{CANARY}-1@127.0.0.1:8554/gate-1", 1)
    text = text.replace(
        "rtsp://127.0.0.1:8554/gate-2", f"rtsp://127.0.0.1:8554/gate-2?user=a&Password={CANARY}-2"
    )
    gate.write_text(text)
    ccm = fleet / "instances" / "ccm.yaml"
    text = ccm.read_text().replace(
        "kafkaConnectionStr: 127.0.0.1:9092", f"kafkaConnectionStr: u:{CANARY}-3@127.0.0.1:9092", 1
    )
    text = text.replace(
        "  restartPolicy: OnFailure\n",
        f"  restartPolicy: OnFailure\n  env:\n    DB_PASSWORD: {CANARY}-4\n"
        f"    UPSTREAM: https://127.0.0.1/x?token={CANARY}-5\n",
        1,
    )
    ccm.write_text(text)
    traffic = fleet / "instances" / "traffic.yaml"
    traffic.write_text(
        traffic.read_text().replace(
            "      - type: 1\n        sync: 0\n",
            "      - type: 1\n        sync: 0\n      - type: 6\n"
            f"        msg-broker-conn-str: 127.0.0.1;9092?api_key={CANARY}-6\n",
        )
    )


def test_canaries_in_every_manifest_field_reach_no_output_table_outbox_or_file(
    fleet: Path, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0  # a good revision first: tables are populated
    _plant_canaries(fleet)
    texts: list[str] = []
    for args in (
        ("validate", str(fleet)),
        ("validate", str(fleet), "-o", "json"),
        ("diff", str(fleet), "--db", db),
        ("diff", str(fleet), "--db", db, "-o", "json"),
        ("apply", str(fleet), "--db", db),
        ("apply", str(fleet), "--db", db, "-o", "json"),
        ("history", "--db", db),
        ("history", "--db", db, "-o", "json"),
        ("get", "cameras", "--db", db, "-o", "json"),
        ("get", "instances", "--db", db),
    ):
        _code, out, err = cli(capsys, *args)
        texts.append(out + err)
    planted = b"".join(p.read_bytes() for p in fleet.rglob("*.yaml")).decode()
    assert all(f"{CANARY}-{i}" in planted for i in range(1, 7))
    findings = texts[0]
    assert findings.count("(not shown)") >= 6, findings
    assert "[env-secret-literal]" in findings
    assert not [t for t in texts if CANARY in t]
    assert CANARY.encode() not in _everything_under(tmp_path / "state")
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert "outbox" in tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                assert CANARY not in repr(row), table


def test_warm_applies_plan_against_what_another_writer_stored(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warm apply (the coordinator's caches) plans against what the store holds, also after another writer
    accepted a revision in between (here: undo the other writer's change)."""
    from datetime import UTC, datetime

    from dsfleet.reconciler.applying import Caches, Outcome, apply_manifests
    from dsfleet.reconciler.store import NewRevision, Store

    db = f"sqlite:///{tmp_path / 'warm.db'}"
    rev = NewRevision(source="watch", created_at=datetime.now(UTC), manifests_hash="")
    caches = Caches()
    with Store.open(db) as store:
        first = apply_manifests([fleet], store, rev, caches=caches)
        assert first.outcome is Outcome.APPLIED
        mine = {n: s.config_hash for n, s in store.latest_node_configs().items()}
        again = apply_manifests([fleet], store, rev, caches=caches)  # nothing to change
        assert again.applied is not None and not again.applied.generations
    other = tmp_path / "other"
    shutil.copytree(fleet, other)
    gate = other / "cameras" / "gate.yaml"
    gate.write_text(gate.read_text().replace("gate-1/main", "gate-1/elsewhere", 1))
    assert cli(capsys, "apply", str(other), "--db", db)[0] == 0
    with Store.open(db) as store:
        theirs = {n: s.config_hash for n, s in store.latest_node_configs().items()}
        assert theirs != mine
        undo = apply_manifests([fleet], store, rev, caches=caches)
        assert undo.applied is not None and set(undo.applied.generations) == {
            n for n in mine if mine[n] != theirs[n]
        }
        assert {n: s.config_hash for n, s in store.latest_node_configs().items()} == mine
