"""`dsfleet import-legacy` against a database with the older system's real schema (bqm1111/CCM models.py)."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ruamel.yaml import YAML

from dsfleet.reconciler.cli import legacy as cli_legacy
from dsfleet.reconciler.importers.legacy import (
    LegacyImportError,
    check_url_template,
    convert,
    dns_label,
    import_legacy,
    read_legacy_db,
)

REPO = Path(__file__).resolve().parents[2]
CANARY = "canary-Pa55word!%40"
CANARY_PARTS = (CANARY, "canary-Pa55word!@", "Pa55word")
DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# The DDL SQLAlchemy's create_all emits for CCM's coordinator/models.py (Camera, Agent, DsInstance).
CCM_SCHEMA = """
CREATE TABLE agents (
    id INTEGER NOT NULL,
    agent_name VARCHAR NOT NULL,
    ip_address VARCHAR NOT NULL,
    hostname VARCHAR,
    node_id VARCHAR,
    connected BOOLEAN,
    PRIMARY KEY (id)
);
CREATE TABLE "dsInstance" (
    id INTEGER NOT NULL,
    agent_id INTEGER,
    instance_name VARCHAR,
    app_type VARCHAR NOT NULL,
    face_raw_meta_topic VARCHAR,
    mot_raw_meta_topic VARCHAR,
    visual_topic VARCHAR,
    kafka_connection_str VARCHAR,
    streammux_output_width INTEGER,
    streammux_output_height INTEGER,
    streammux_batch_size INTEGER,
    streammux_buffer_pool INTEGER,
    streammux_nvbuf_memory_type INTEGER,
    face_confidence_threshold FLOAT,
    mot_confidence_threshold FLOAT,
    status VARCHAR,
    PRIMARY KEY (id),
    FOREIGN KEY(agent_id) REFERENCES agents (id)
);
CREATE TABLE cameras (
    id INTEGER NOT NULL,
    agent_id INTEGER,
    "dsInstance_id" INTEGER,
    camera_id VARCHAR NOT NULL,
    ip_address VARCHAR NOT NULL,
    username VARCHAR,
    password VARCHAR,
    "encodeType" VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    width INTEGER,
    height INTEGER,
    PRIMARY KEY (id),
    FOREIGN KEY(agent_id) REFERENCES agents (id),
    FOREIGN KEY("dsInstance_id") REFERENCES "dsInstance" (id)
);
"""

AGENTS = [
    (1, "GPU-Node-1", "172.21.100.167", "gpu-node-1", "3f2b8c1e-6a4d-4e1f-9b7a-2c5d8e9f0a1b", 1),
    (2, "gpu_node_1", "172.21.100.168", "gpu-node-1b", "not-a-machine-id", 0),
]
INSTANCES = [
    (
        1,
        1,
        "CCM_A",
        "NORMAL",
        "RawFaceMeta",
        "RawMotMeta",
        "RawImage",
        "127.0.0.1:9092",
        3840,
        2160,
        2,
        40,
        3,
        0.7,
        0.6,
        "running",
    ),
    (2, None, "ccm-a", "VISUAL", None, None, None, None, None, None, None, None, None, None, None, None),
    (3, 2, "Face Lobby", "NORMAL", "F", "M", "V", "kafka:9092", 1920, 1080, 1, 8, 0, 0.5, 0.4, None),
]
CAMERAS = [
    (1, 1, 1, "3", "172.21.111.101", "admin", CANARY, "h265", "rtsp", 1920, 1080),
    (2, 1, 1, "1", "172.21.111.104", "admin", "123456a@", "h265", "rtsp", None, None),
    (3, None, 3, "Gate-1", "10.1.1.1", "operator", "s3cret:with@chars", "H264", "rtsp", 2560, 1440),
    (4, None, 3, "gate_1", "10.1.1.2", None, None, "hevc", "rtsp", None, None),
    (5, None, None, "7", "10.1.1.7", "", "", "h264", "rtsp", None, None),
]
APP_CONF = {
    "app_type": "NORMAL",
    "face_raw_meta_topic": "RawFaceMeta",
    "mot_raw_meta_topic": "RawMotMeta",
    "visual_topic": "RawImage",
    "kafka_connection_str": "127.0.0.1:9092",
    "streammux_output_width": 3840,
    "streammux_output_height": 2160,
    "streammux_batch_size": 4,
    "streammux_buffer_pool": 40,
    "streammux_nvbuf_memory_type": 3,
    "face_confidence_threshold": 0.70,
    "mot_confidence_threshold": 0.6,
}

NODE_SPEC = {"hostname", "nodeId", "capacity", "gpus", "image"}
CAMERA_SPEC = {"cameraId", "url", "credentials", "encoding", "type", "width", "height"}
INSTANCE_SPEC = {"node", "gpu", "image", "layout", "cameras", "profile", "app", "restartPolicy"}
APP_KEYS = {
    "appType",
    "faceRawMetaTopic",
    "motRawMetaTopic",
    "visualTopic",
    "kafkaConnectionStr",
    "faceConfidenceThreshold",
    "motConfidenceThreshold",
    "streammux",
}
STREAMMUX_KEYS = {"width", "height", "batch-size", "buffer-pool-size", "nvbuf-memory-type"}


def make_db(path: Path, cameras: list[tuple[Any, ...]] = CAMERAS) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript(CCM_SCHEMA)
        conn.executemany("INSERT INTO agents VALUES (?, ?, ?, ?, ?, ?)", AGENTS)
        conn.executemany(f'INSERT INTO "dsInstance" VALUES ({", ".join("?" * 16)})', INSTANCES)
        conn.executemany(f"INSERT INTO cameras VALUES ({', '.join('?' * 11)})", cameras)
    conn.close()
    return path


@pytest.fixture
def legacy(tmp_path: Path) -> dict[str, Path]:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "app_conf.json").write_text(json.dumps(APP_CONF, indent=4))
    return {
        "db": make_db(tmp_path / "camera.db"),
        "configs": configs,
        "out": tmp_path / "manifests",
        "secrets": tmp_path / "secrets",
    }


def load(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    docs = [d for d in YAML(typ="safe").load_all(text) if d is not None]
    assert docs == [d for d in yaml.safe_load_all(text) if d is not None]  # YAML 1.1 and 1.2 readers agree
    return docs


def by_name(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli.legacy", "import-legacy", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def all_text_under(path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(path.rglob("*")) if p.is_file())


# ------------------------------------------------------------------------------------------------ shapes


def test_import_writes_the_documented_manifest_shapes(legacy: dict[str, Path]) -> None:
    result = import_legacy(
        legacy["db"], out_dir=legacy["out"], secrets_dir=legacy["secrets"], configs_dir=legacy["configs"]
    )
    assert [p.name for p in result.files] == ["nodes.yaml", "cameras.yaml", "instances.yaml"]
    kinds = {"nodes.yaml": ("Node", NODE_SPEC), "cameras.yaml": ("Camera", CAMERA_SPEC)}
    kinds["instances.yaml"] = ("DsInstance", INSTANCE_SPEC)
    for filename, (kind, spec_keys) in kinds.items():
        docs = load(legacy["out"] / filename)
        assert docs
        for doc in docs:
            assert list(doc) == ["apiVersion", "kind", "metadata", "spec"]
            assert (doc["apiVersion"], doc["kind"]) == ("dsfleet/v1", kind)
            assert set(doc["metadata"]) <= {"name", "labels"}
            assert DNS.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63
            assert set(doc["spec"]) <= spec_keys, set(doc["spec"]) - spec_keys

    nodes = by_name(load(legacy["out"] / "nodes.yaml"))
    assert nodes["gpu-node-1"]["spec"] == {
        "hostname": "gpu-node-1",
        "nodeId": "3f2b8c1e-6a4d-4e1f-9b7a-2c5d8e9f0a1b",
        "gpus": [0],
    }
    assert nodes["gpu-node-1-2"]["spec"] == {"hostname": "gpu-node-1b", "gpus": [0]}

    cameras = by_name(load(legacy["out"] / "cameras.yaml"))
    assert set(cameras) == {"cam-3", "cam-1", "gate-1", "gate-1-2", "cam-7"}
    assert cameras["cam-3"]["spec"] == {
        "cameraId": "3",
        "url": "rtsp://172.21.111.101/main",
        "credentials": {"secretRef": "cam-3"},
        "encoding": "h265",
        "type": "rtsp",
        "width": 1920,
        "height": 1080,
    }
    assert cameras["gate-1"]["spec"]["encoding"] == "h264"
    assert cameras["gate-1-2"]["spec"] == {
        "cameraId": "gate_1",
        "url": "rtsp://10.1.1.2/main",
        "encoding": "h265",
        "type": "rtsp",
    }
    assert "credentials" not in cameras["cam-7"]["spec"]  # empty strings are no credentials

    instances = by_name(load(legacy["out"] / "instances.yaml"))
    assert set(instances) == {"ccm-a", "ccm-a-2", "face-lobby"}
    assert instances["ccm-a"]["spec"] == {
        "node": "gpu-node-1",
        "gpu": 0,
        "layout": "ccm",
        "cameras": ["cam-3", "cam-1"],
        "app": {
            "appType": "NORMAL",
            "faceRawMetaTopic": "RawFaceMeta",
            "motRawMetaTopic": "RawMotMeta",
            "visualTopic": "RawImage",
            "kafkaConnectionStr": "127.0.0.1:9092",
            "faceConfidenceThreshold": 0.7,
            "motConfidenceThreshold": 0.6,
            "streammux": {
                "width": 3840,
                "height": 2160,
                "batch-size": "auto",
                "buffer-pool-size": 40,
                "nvbuf-memory-type": 3,
            },
        },
        "restartPolicy": "OnFailure",
    }
    for doc in instances.values():
        assert set(doc["spec"]["app"]) == APP_KEYS
        assert set(doc["spec"]["app"]["streammux"]) == STREAMMUX_KEYS
    face = instances["face-lobby"]["spec"]
    assert (face["node"], face["cameras"]) == ("gpu-node-1-2", ["gate-1", "gate-1-2"])
    assert face["app"]["kafkaConnectionStr"] == "kafka:9092"
    assert face["app"]["streammux"]["nvbuf-memory-type"] == 0


def test_unplaced_instances_and_cameras_import_cleanly(legacy: dict[str, Path]) -> None:
    result = import_legacy(
        legacy["db"], out_dir=legacy["out"], secrets_dir=legacy["secrets"], configs_dir=legacy["configs"]
    )
    instances = by_name(load(legacy["out"] / "instances.yaml"))
    unassigned = instances["ccm-a-2"]["spec"]
    assert "node" not in unassigned and unassigned["cameras"] == []
    assert unassigned["app"]["appType"] == "VISUAL"  # the row's own value
    assert unassigned["app"]["kafkaConnectionStr"] == "127.0.0.1:9092"  # app_conf.json fills the gaps
    assert unassigned["app"]["streammux"]["width"] == 3840
    members = {c for doc in instances.values() for c in doc["spec"]["cameras"]}
    assert "cam-7" not in members
    assert (result.unassigned_instances, result.cameras_without_instance) == (1, 1)
    assert (result.nodes, result.cameras, result.instances) == (2, 5, 3)


def test_names_are_lowered_and_collisions_suffixed_with_warnings(legacy: dict[str, Path]) -> None:
    result = import_legacy(legacy["db"], out_dir=legacy["out"], secrets_dir=legacy["secrets"])
    db = str(legacy["db"])
    assert f"{db}: warning: agent id=2: name 'gpu-node-1' is already used by id=1; using 'gpu-node-1-2'" in (
        result.warnings
    )
    assert (
        f"{db}: warning: camera id=4: name 'gate-1' is already used by id=3; using 'gate-1-2'"
        in result.warnings
    )
    assert f"{db}: warning: dsInstance id=2: name 'ccm-a' is already used by id=1; using 'ccm-a-2'" in (
        result.warnings
    )
    assert any("agent id=2: node_id is not" in w for w in result.warnings)
    assert dns_label("  Face_Lobby #2 ") == "face-lobby-2"
    assert dns_label("x" * 80) == "x" * 63
    assert dns_label("---") == ""


# ------------------------------------------------------------------------------------------------ secrets


def test_secrets_are_written_private_with_the_right_values(legacy: dict[str, Path]) -> None:
    result = import_legacy(legacy["db"], out_dir=legacy["out"], secrets_dir=legacy["secrets"])
    root = legacy["secrets"]
    assert result.secret_refs == ("cam-1", "cam-3", "gate-1")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    expected = {
        "cam-3": ("admin", CANARY),
        "cam-1": ("admin", "123456a@"),
        "gate-1": ("operator", "s3cret:with@chars"),
    }
    assert sorted(p.name for p in root.iterdir()) == sorted(expected)
    for ref, (username, password) in expected.items():
        assert stat.S_IMODE((root / ref).stat().st_mode) == 0o700
        for name, value in (("username", username), ("password", password)):
            path = root / ref / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert path.read_text() == value
    cameras = by_name(load(legacy["out"] / "cameras.yaml"))
    for ref in expected:
        assert cameras[ref]["spec"]["credentials"] == {"secretRef": ref}


def test_the_canary_password_reaches_no_manifest_and_no_output(legacy: dict[str, Path]) -> None:
    db_before = hashlib.sha256(legacy["db"].read_bytes()).hexdigest()
    proc = cli(
        "--db",
        str(legacy["db"]),
        "--configs",
        str(legacy["configs"]),
        "--out",
        str(legacy["out"]),
        "--secrets-out",
        str(legacy["secrets"]),
    )
    assert proc.returncode == 0, proc.stderr
    manifests = all_text_under(legacy["out"])
    for part in CANARY_PARTS:
        assert part not in proc.stdout
        assert part not in proc.stderr
        assert part not in manifests
    assert "123456a@" not in manifests and "s3cret" not in manifests
    assert "imported" in proc.stdout and "3 instances" in proc.stdout
    for line in proc.stderr.splitlines():
        assert re.match(r"^[^:]+: warning: ", line), line
    assert (legacy["secrets"] / "cam-3" / "password").read_text() == CANARY
    assert hashlib.sha256(legacy["db"].read_bytes()).hexdigest() == db_before  # read-only


def test_credentials_inside_an_address_move_to_the_secret(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "camera.db",
        cameras=[(1, None, None, "9", f"viewer:{CANARY}@10.9.9.9", None, None, "h264", "rtsp", None, None)],
    )
    result = import_legacy(db, out_dir=tmp_path / "out", secrets_dir=tmp_path / "secrets")
    camera = load(tmp_path / "out" / "cameras.yaml")[0]
    assert camera["spec"]["url"] == "rtsp://10.9.9.9/main"
    assert camera["spec"]["credentials"] == {"secretRef": "cam-9"}
    assert (tmp_path / "secrets" / "cam-9" / "username").read_text() == "viewer"
    assert (tmp_path / "secrets" / "cam-9" / "password").read_text() == "canary-Pa55word!@"  # percent-decoded
    assert any("carried credentials" in w for w in result.warnings)
    for part in CANARY_PARTS:
        assert part not in "\n".join(result.warnings) + result.summary()
        assert part not in all_text_under(tmp_path / "out")


# ------------------------------------------------------------------------------------------------ CLI, errors


def test_url_template_fields_are_camera_columns(legacy: dict[str, Path]) -> None:
    proc = cli(
        "--db",
        str(legacy["db"]),
        "--url-template",
        "rtsp://{ip_address}:554/Streaming/Channels/{camera_id}01",
        "--out",
        str(legacy["out"]),
        "--secrets-out",
        str(legacy["secrets"]),
    )
    assert proc.returncode == 0, proc.stderr
    cameras = by_name(load(legacy["out"] / "cameras.yaml"))
    assert cameras["cam-3"]["spec"]["url"] == "rtsp://172.21.111.101:554/Streaming/Channels/301"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("rtsp://{username}:{password}@{ip_address}/main", "must not use {username}"),
        ("rtsp://{ip_address}/{password}", "must not use {password}"),
        ("rtsp://admin:admin@{ip_address}/main", "must not carry credentials"),
        ("rtsp://{ip_address}/{no_such_column}", "unknown field {no_such_column}"),
        ("rtsp://{ip_address.__class__}/", "plain column names"),
        ("rtsp://{0}/", "plain column names"),
        ("rtsp://{ip_address", "not a valid format string"),
        ("{ip_address}/main", "with a scheme"),
    ],
)
def test_a_bad_url_template_exits_2_and_writes_nothing(
    legacy: dict[str, Path], template: str, message: str
) -> None:
    proc = cli(
        "--db",
        str(legacy["db"]),
        "--url-template",
        template,
        "--out",
        str(legacy["out"]),
        "--secrets-out",
        str(legacy["secrets"]),
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("--url-template: error: ")
    assert message in proc.stderr
    assert proc.stdout == ""
    assert not legacy["out"].exists() and not legacy["secrets"].exists()


def test_an_unreadable_database_exits_2(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a sqlite database at all" * 100)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (id INTEGER)")
    conn.close()
    for db, message in (
        (tmp_path / "missing.db", "no such file"),
        (garbage, "cannot"),
        (other, "no 'cameras' table"),
    ):
        proc = cli("--db", str(db), "--out", str(tmp_path / "out"), "--secrets-out", str(tmp_path / "s"))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"{db}: error: ")
        assert message in proc.stderr
        assert not (tmp_path / "out").exists()


def test_a_broken_app_conf_exits_2(legacy: dict[str, Path]) -> None:
    (legacy["configs"] / "app_conf.json").write_text("{not json")
    with pytest.raises(LegacyImportError, match=r"cannot read app_conf\.json"):
        import_legacy(
            legacy["db"], out_dir=legacy["out"], secrets_dir=legacy["secrets"], configs_dir=legacy["configs"]
        )
    proc = cli(
        "--db",
        str(legacy["db"]),
        "--configs",
        str(legacy["configs"]),
        "--out",
        str(legacy["out"]),
        "--secrets-out",
        str(legacy["secrets"]),
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{legacy['configs'] / 'app_conf.json'}: error: ")
    assert not legacy["out"].exists()


def test_the_subcommand_handler_and_reruns_are_stable(
    legacy: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="dsfleet")
    cli_legacy.add_parser(parser.add_subparsers(dest="command", required=True))
    argv = ["import-legacy", "--db", str(legacy["db"]), "--out", str(legacy["out"])]
    argv += [
        "--secrets-out",
        str(legacy["secrets"]),
        "--image",
        "nvcr.io/nvidia/deepstream:7.0-triton-multiarch",
    ]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    first = {p.name: p.read_bytes() for p in legacy["out"].iterdir()}
    assert args.func(args) == 2  # a non-empty --out is refused ...
    assert "pass --force" in capsys.readouterr().err
    args = parser.parse_args([*argv, "--force"])  # ... unless forced; the rerun writes the same bytes
    assert args.func(args) == 0
    assert {p.name: p.read_bytes() for p in legacy["out"].iterdir()} == first
    out, err = capsys.readouterr()
    assert "wrote" in out and CANARY not in out + err
    instances = load(legacy["out"] / "instances.yaml")
    assert {d["spec"]["image"] for d in instances} == {"nvcr.io/nvidia/deepstream:7.0-triton-multiarch"}


def test_convert_is_pure_and_quotes_ambiguous_strings(tmp_path: Path) -> None:
    db = read_legacy_db(
        make_db(
            tmp_path / "camera.db",
            cameras=[(1, None, None, "1:30", "10.0.0.1", None, None, "h264", "rtsp", None, None)],
        )
    )
    conversion = convert(db, source="camera.db")
    assert conversion.cameras[0]["spec"]["cameraId"] == "1:30"
    assert conversion.secrets == ()
    from dsfleet.reconciler.importers.legacy import render_yaml

    text = render_yaml(conversion.cameras)
    assert yaml.safe_load(text)["spec"]["cameraId"] == "1:30"  # not sexagesimal 90 for a YAML 1.1 reader
    assert check_url_template("file:///media/{camera_id}.mp4") == ("camera_id",)


def test_the_older_sample_app_conf_fills_the_app_settings(samples_dir: Path, tmp_path: Path) -> None:
    """--configs pointed at the shared samples (CCM__coordinator__sample_configs__app_conf.json)."""
    db = make_db(tmp_path / "camera.db")
    import_legacy(db, out_dir=tmp_path / "out", secrets_dir=tmp_path / "secrets", configs_dir=samples_dir)
    sample = json.loads((samples_dir / "CCM__coordinator__sample_configs__app_conf.json").read_text())
    unassigned = by_name(load(tmp_path / "out" / "instances.yaml"))["ccm-a-2"]["spec"]["app"]
    assert unassigned["kafkaConnectionStr"] == sample["kafka_connection_str"]
    assert unassigned["faceConfidenceThreshold"] == sample["face_confidence_threshold"]
    assert unassigned["streammux"] == {
        "width": sample["streammux_output_width"],
        "height": sample["streammux_output_height"],
        "batch-size": "auto",
        "buffer-pool-size": sample["streammux_buffer_pool"],
        "nvbuf-memory-type": sample["streammux_nvbuf_memory_type"],
    }


def test_the_cli_default_url_template_is_the_importers() -> None:
    from dsfleet.reconciler.cli import legacy as cli_legacy
    from dsfleet.reconciler.importers import legacy

    assert cli_legacy.DEFAULT_URL_TEMPLATE == legacy.DEFAULT_URL_TEMPLATE


def test_with_the_older_gie_files_the_import_validates(samples_dir: Path, tmp_path: Path) -> None:
    """--configs with the older sample configs: a `ccm` InferenceProfile from its five GIE files, referenced
    by every instance, and the imported set validates with no errors (unplaced is a warning)."""
    from dsfleet.reconciler.loading.manifestsets import load_manifests

    db = make_db(tmp_path / "camera.db")
    out, secrets = tmp_path / "out", tmp_path / "secrets"
    result = import_legacy(
        db,
        out_dir=out,
        secrets_dir=secrets,
        configs_dir=samples_dir,
        image="nvcr.io/nvidia/deepstream:7.0-triton-multiarch",
    )
    assert result.profile and (out / "profiles.yaml").is_file()
    assert "InferenceProfile 'ccm'" in result.summary()
    profile = load(out / "profiles.yaml")[0]
    assert [g["file"] for g in profile["spec"]["gies"]] == [
        "mot_primary.txt",
        "faceid_primary.txt",
        "mot_sgie.txt",
        "faceid_secondary.txt",
        "faceid_align_config.txt",
    ]
    align = profile["spec"]["gies"][4]
    assert align["format"] == "ccm-align" and "network-input-shape" not in align["properties"]
    assert all(d["spec"]["profile"] == "ccm" for d in load(out / "instances.yaml"))
    # the older files' inline comments are reported, with their location
    assert any("faceid_primary.txt:" in w and "keyfile-inline-comment" in w for w in result.warnings)
    loaded = load_manifests([out])
    assert loaded.errors == [], [f.message for f in loaded.errors]
    assert {f.rule for f in loaded.warnings} <= {
        "instance-no-cameras",
        "instance-unplaced",
        "streammux-batch",
        "host-network",  # the older app publishes to its broker on the host's loopback, as it ran there
    }


# ------------------------------------------------------------------------------------------------ nothing lost
def make_db_with_gpus(path: Path) -> Path:
    """The older schema plus the dsInstance.gpu_id and cameras.stream columns later CCM databases carry."""
    make_db(path)
    with sqlite3.connect(path) as conn:
        conn.execute('ALTER TABLE "dsInstance" ADD COLUMN gpu_id INTEGER')
        conn.execute("ALTER TABLE cameras ADD COLUMN stream BOOLEAN")
        conn.execute('UPDATE "dsInstance" SET gpu_id = 2 WHERE id = 1')
        conn.execute('UPDATE "dsInstance" SET gpu_id = 1 WHERE id = 3')
        conn.execute("UPDATE cameras SET stream = 1 WHERE id = 1")
    conn.close()
    return path


def test_gpus_and_stream_flags_survive_and_render(tmp_path: Path) -> None:
    from dsfleet.reconciler.compiling.desired import desired_state

    db = make_db_with_gpus(tmp_path / "camera.db")
    out = tmp_path / "out"
    settings = tmp_path / "settings.toml"
    settings.write_text(
        "IMAGE_NAME = 'deepstream-app'\nIMAGE_TAG = 'latest'\nBOOTSTRAP_SERVER = '127.0.0.1:9092'\n"
    )
    import_legacy(db, out_dir=out, secrets_dir=tmp_path / "secrets", legacy_settings=settings)
    instances = by_name(load(out / "instances.yaml"))
    nodes = by_name(load(out / "nodes.yaml"))
    placed = {n: d["spec"]["gpu"] for n, d in instances.items() if "node" in d["spec"]}
    assert sorted(placed.values()) == [1, 2]
    for node, doc in nodes.items():
        used = {instances[i]["spec"]["gpu"] for i in placed if instances[i]["spec"]["node"] == node}
        assert doc["spec"]["gpus"] == sorted(used or {0})
        assert doc["spec"]["image"] == "deepstream-app:latest"
    cams = load(out / "cameras.yaml")
    assert [c["metadata"]["name"] for c in cams if c["spec"].get("stream")] == ["cam-3"]
    desired = desired_state([out])
    assert desired.loaded.errors == [], [f.message for f in desired.loaded.errors]
    assert desired.configs is not None
    streams = {}
    for config in desired.configs.values():
        for inst in config.instances:
            for f in inst.files:
                if f.path == "source_list.json":
                    for src in json.loads(f.content)["sources"]:
                        streams[src["camera_id"]] = src["stream"]
    assert streams and {cid for cid, on in streams.items() if on} == {
        c["spec"]["cameraId"] for c in cams if c["spec"].get("stream")
    }


def test_without_configs_the_older_sample_gie_files_are_the_profile(
    samples_dir: Path, tmp_path: Path
) -> None:
    """No --configs: the imported set validates, and renders the older sample GIE files key for key (values
    compared as typed by dsfleet's GLib-rules reader; derived keys follow the instance)."""
    from dsfleet.reconciler.compiling.desired import desired_state
    from dsfleet.reconciler.importers.legacyrows import CCM_DERIVED, CCM_GIES
    from dsfleet.reconciler.importers.nvinfer import import_keyfile

    out = tmp_path / "out"
    result = import_legacy(
        make_db(tmp_path / "camera.db"),
        out_dir=out,
        secrets_dir=tmp_path / "secrets",
        image="nvcr.io/nvidia/deepstream:7.0-triton-multiarch",
    )
    assert result.profile and (out / "profiles.yaml").is_file()
    desired = desired_state([out])
    assert desired.loaded.errors == [], [f.message for f in desired.loaded.errors]
    assert desired.configs is not None
    inst = next(i for c in desired.configs.values() for i in c.instances)
    rendered = {f.path: f.content for f in inst.files}
    for file, _name, _role, _fmt in CCM_GIES:
        sample = (samples_dir / f"CCM__coordinator__sample_configs__{file}").read_text()
        original = import_keyfile(sample, file).gie
        mine = import_keyfile(rendered[file], file).gie
        assert original is not None and mine is not None
        derived = set(CCM_DERIVED.get(file, ()))
        for key, value in original.get("properties", {}).items():
            if key not in derived:
                assert mine["properties"].get(key) == value, (file, key)
        assert mine.get("classAttrs", {}) == original.get("classAttrs", {}), file


def test_doubled_braces_in_the_url_template_are_refused(legacy: dict[str, Path]) -> None:
    proc = cli("--db", str(legacy["db"]), "--url-template", "rtsp://{{ip_address}}/main",
               "--out", str(legacy["out"]), "--secrets-out", str(legacy["secrets"]))  # fmt: skip
    assert proc.returncode == 2 and "doubled braces" in proc.stderr
    assert not legacy["out"].exists()
    help_text = cli("--help").stdout
    assert "{{" not in help_text and "rtsp://{ip_address}" in help_text


def test_the_hints_name_what_validate_reports(
    legacy: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """No image and no GIE files: each hint of the summary names a rule and a field that `dsfleet validate` of
    the written set reports, as many times as it reports it."""
    from dsfleet.reconciler.cli.main import main

    result = import_legacy(
        legacy["db"], out_dir=legacy["out"], secrets_dir=legacy["secrets"], configs_dir=legacy["configs"]
    )
    summary = result.summary()
    assert main(["validate", str(legacy["out"])]) == 1
    reported = capsys.readouterr().err
    hints = re.findall(r"^  (\d+) (error|warning)s? \[([a-z0-9-]+)\](?: (\S+))?: ", summary, re.M)
    assert {rule for _n, _sev, rule, _field in hints} >= {"instance-image-missing", "instance-profile-exists"}
    for count, severity, rule, field in hints:
        lines = [line for line in reported.splitlines() if line.endswith(f"[{rule}]")]
        assert len(lines) == int(count), rule
        assert all(f" {severity}: " in line for line in lines)
        assert all(field in line for line in lines), (rule, field)
    errors = sum(int(n) for n, sev, _r, _f in hints if sev == "error")
    assert f"; {errors} errors," in reported and f"reports {errors} errors" in summary
