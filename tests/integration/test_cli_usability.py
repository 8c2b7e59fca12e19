"""The CLI's edges (issue 12): several paths, ignore files, non-manifest documents, empty sets, missing stores,
no-op applies, history, JSON on rejection, render from the store and for the agent, help on every argument."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dsfleet.reconciler.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests"
CANARY = "canary-Agent-9d1c"


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


def _revision_count(capsys: pytest.CaptureFixture[str], db: str) -> int:
    code, out, _ = cli(capsys, "history", "--db", db, "-n", "0", "-o", "json")
    assert code == 0
    return len(json.loads(out)["revisions"])


def test_diff_and_apply_take_several_paths(
    fleet: Path, db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = [str(fleet / d) for d in ("nodes", "cameras", "instances", "profiles", "policies")]
    monkeypatch.setenv(
        "DSFLEET_COORDINATOR_DB", db
    )  # not --db: a store that does not exist yet counts as empty
    code, out, err = cli(capsys, "diff", *parts, "--stat")
    assert code == 1 and "Plan: 2 nodes to add" in out and "comparing with an empty fleet" in err
    assert cli(capsys, "apply", *parts, "--db", db)[0] == 0
    code, out, _ = cli(capsys, "diff", str(fleet), "--db", db)
    assert code == 0 and "No changes" in out


def test_ignore_files_exclude_patterns_and_non_manifest_documents(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (fleet / "docker-compose.yml").write_text("services:\n  kafka:\n    image: apache/kafka:3.7.0\n")
    code, _, err = cli(capsys, "validate", str(fleet))
    assert code == 0 and "not a dsfleet manifest" in err and "[not-a-manifest]" in err
    assert cli(capsys, "validate", str(fleet), "--strict")[0] == 1
    (fleet / ".dsfleetignore").write_text("# compose files live beside the manifests\ndocker-compose*.yml\n")
    code, _, err = cli(capsys, "validate", str(fleet), "--strict")
    assert code == 0 and "not-a-manifest" not in err, err
    # a document with any of apiVersion/kind/metadata/spec is still validated: a typo never hides an instance
    broken = fleet / "extra" / "broken.yaml"
    broken.parent.mkdir()
    broken.write_text("apiVersion: dsfleet/v1\nkind: DsInstanse\nmetadata: {name: lost}\n")
    code, _, err = cli(capsys, "validate", str(fleet))
    assert code == 1 and "did you mean DsInstance?" in err
    assert cli(capsys, "validate", str(fleet), "--exclude", "extra/")[0] == 0
    assert cli(capsys, "validate", str(fleet), "--exclude", "broken.yaml")[0] == 0
    (fleet / ".dsfleetignore").write_text("docker-compose*.yml\nextra/*\n!extra/broken.yaml\n")
    assert cli(capsys, "validate", str(fleet))[0] == 1  # re-included by the negation


def test_no_manifests_is_a_warning_in_validate_and_an_error_in_apply(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(capsys, "validate", str(empty))
    assert code == 0 and "warning: no manifests found" in err
    assert cli(capsys, "validate", str(empty), "--strict")[0] == 1
    code, _, err = cli(capsys, "apply", str(empty), "--db", db)
    assert code == 2 and "error: no manifests found" in err and "--allow-empty" in err
    code, _, err = cli(capsys, "apply", str(empty), "--db", db, "--allow-empty")
    assert code == 0, err


def test_read_commands_on_a_missing_store_exit_2_and_apply_says_it_creates_one(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = f"sqlite:///{tmp_path / 'stat.db'}"
    for args in (("history",), ("get", "nodes"), ("render", "--db", typo, "--node", "gpu-node-1")):
        code, out, err = cli(capsys, *args, *(() if "--db" in args else ("--db", typo)))
        assert code == 2 and "no store at" in err and "no revisions yet" not in out, (args, err)
    assert not (tmp_path / "stat.db").exists()
    code, _, err = cli(capsys, "diff", str(fleet), "--db", typo)
    assert code == 2 and "no store at" in err
    code, _, err = cli(capsys, "history", "--db", "./state.db")
    assert code == 2 and "did you mean sqlite:///./state.db?" in err
    code, _, err = cli(capsys, "apply", str(fleet), "--db", typo)
    assert code == 0 and "created a new store at" in err
    code, _, err = cli(capsys, "apply", str(fleet), "--db", typo)
    assert "created a new store" not in err


def test_a_no_op_apply_records_nothing_and_says_no_changes(
    fleet: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    code, out, _ = cli(capsys, "apply", str(fleet), "--db", db)
    assert code == 0 and out.startswith("no changes: the manifests are those of revision 1")
    assert _revision_count(capsys, db) == 1
    code, out, _ = cli(capsys, "apply", str(fleet), "--db", db, "-o", "json")
    assert json.loads(out)["outcome"] == "unchanged"
    (fleet / "cameras" / "gate.yaml").write_text("kind: Camera\n")  # broken: rejected once, then unchanged
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 1
    code, out, err = cli(capsys, "apply", str(fleet), "--db", db)
    assert code == 1 and "rejected" in out and "error:" in err
    assert _revision_count(capsys, db) == 2


def test_apply_json_on_rejection_and_history_json_schema_and_limit(
    fleet: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    (fleet / "cameras" / "gate.yaml").write_text(
        "apiVersion: dsfleet/v1\nkind: Camera\nmetadata: {name: x}\n"
    )
    code, out, _ = cli(capsys, "apply", str(fleet), "--db", db, "-o", "json")
    result = json.loads(out)
    assert code == 1 and result["schema"] == "dsfleet.apply/v1" and result["outcome"] == "rejected"
    assert result["revision"] == 2 and result["findings"] and result["findings"][0]["severity"] == "error"
    code, out, _ = cli(capsys, "history", "--db", db, "-o", "json", "-n", "0")
    history = json.loads(out)
    assert history["schema"] == "dsfleet.history/v1" and [r["id"] for r in history["revisions"]] == [2, 1]
    code, out, _ = cli(capsys, "history", "--db", db, "-n", "0")
    assert "no revisions yet" not in out and len(out.splitlines()) == 3


def test_history_text_keeps_the_dirty_mark(fleet: Path, db: str, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("git") is None:
        pytest.fail("git is required")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    for args in (("init", "-q"), ("add", "."), ("commit", "-q", "-m", "fleet")):
        subprocess.run(["git", *args], cwd=fleet, check=True, env=env, capture_output=True)
    (fleet / "nodes" / "nodes.yaml").write_text((fleet / "nodes" / "nodes.yaml").read_text() + "\n")
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    _, out, _ = cli(capsys, "history", "--db", db)
    assert re.search(r"\b[0-9a-f]{12}-dirty\b", out), out


def test_render_out_replaces_its_own_previous_render_and_refuses_other_directories(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "render"
    assert cli(capsys, "render", str(fleet), "--instance", "ccm-gate", "--out", str(out))[0] == 0
    marker = json.loads((out / ".dsfleet-render.json").read_text())
    assert marker["instance"] == "ccm-gate" and "app_conf.json" in marker["files"]
    (out / "stale.txt").write_text("old")
    marker["files"].append("stale.txt")
    (out / ".dsfleet-render.json").write_text(json.dumps(marker))
    code, text, _ = cli(capsys, "render", str(fleet), "--instance", "ccm-gate", "--out", str(out))
    assert code == 0 and "removed 1 stale file" in text and not (out / "stale.txt").exists()
    code, _, err = cli(capsys, "render", str(fleet), "--instance", "ccm-lobby", "--out", str(out))
    assert code == 2 and "not written by a render of 'ccm-lobby'" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert cli(capsys, "render", str(fleet), "--instance", "ccm-gate", "--out", str(foreign))[0] == 2
    assert (foreign / "notes.txt").read_text() == "mine"
    code, _, err = cli(capsys, "render", str(fleet), "--instance", "ccm-gaet")
    assert code == 2 and "did you mean 'ccm-gate'?" in err


def test_render_from_the_store_at_a_revision(
    fleet: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    ccm = fleet / "instances" / "ccm.yaml"
    ccm.write_text(ccm.read_text().replace("faceConfidenceThreshold: 0.70", "faceConfidenceThreshold: 0.75"))
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    _, now, _ = cli(capsys, "render", "--db", db, "--instance", "ccm-gate")
    _, then, _ = cli(capsys, "render", "--db", db, "--revision", "1", "--instance", "ccm-gate")
    assert "0.75" in now and "0.75" not in then and "0.7" in then
    code, _, err = cli(capsys, "render", "--db", db, "--revision", "9", "--instance", "ccm-gate")
    assert code == 2 and "no revision 9" in err


def test_render_node_json_is_what_the_agent_materializes(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "render", str(fleet), "--node", "gpu-node-1", "-o", "json")
    assert code == 0
    config = tmp_path / "node.json"
    config.write_text(out)
    refs = set(re.findall(r"\$\{secret:([a-z0-9-]+)\}", out))
    assert refs
    env = {**os.environ}
    for ref in refs:
        key = ref.upper().replace("-", "_")
        env[f"DSFLEET_SECRET_{key}_USERNAME"] = "operator"
        env[f"DSFLEET_SECRET_{key}_PASSWORD"] = CANARY
    state = tmp_path / "state"
    proc = subprocess.run(
        [sys.executable, "-m", "dsfleet.agent.cli", "materialize", "--config", str(config), "--state-dir", str(state)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert CANARY not in proc.stdout + proc.stderr
    holders = [p for p in state.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert holders, "the agent fills in the secrets"
    for path in holders:  # the canary is only in the agent's 0600 files
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert CANARY not in out


def _arguments(parser: argparse.ArgumentParser, prog: str = "dsfleet") -> list[tuple[str, argparse.Action]]:
    found: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_arguments(sub, f"{prog} {name}"))
        elif not isinstance(action, argparse._HelpAction):
            found.append((prog, action))
    return found


def test_every_argument_has_help_text() -> None:
    missing = [f"{prog}: {a.dest}" for prog, a in _arguments(build_parser()) if not a.help]
    assert not missing, missing
