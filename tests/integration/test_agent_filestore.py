"""The agent's file writer on a real state directory, fed by configs the real coordinator compiles."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from dsfleet.agent.errors import SecretError
from dsfleet.agent.filestore import (
    DESIRED_FILE,
    atomic_write,
    instance_dir,
    load_desired,
    save_desired,
    write_instance_files,
    write_node_files,
)
from dsfleet.agent.secrets import Credential, LocalSecretStore, MemorySecretStore
from dsfleet.reconciler.compiling.desired import desired_state
from dsfleet.schemas.nodeconfigs import InstanceConfig, NodeConfig, RenderedFile, build_instance
from dsfleet.schemas.wire import AgentConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests"
CANARY = "canary-Wr1ter-0e4f"
GATE_REFS = ("gate-1", "gate-2", "gate-3", "gate-4")


def compile_nodes(manifests: Path = EXAMPLE) -> dict[str, NodeConfig]:
    state = desired_state([manifests])
    assert state.configs is not None, [str(f) for f in state.loaded.findings]
    return state.configs


@pytest.fixture(scope="module")
def nodes() -> dict[str, NodeConfig]:
    return compile_nodes()


@pytest.fixture(scope="module")
def gate(nodes: dict[str, NodeConfig]) -> InstanceConfig:
    inst = nodes["gpu-node-1"].instance("ccm-gate")
    assert inst is not None
    return inst


def memory_store(password: str = CANARY) -> MemorySecretStore:
    refs = [*GATE_REFS, "lobby-1", "lobby-2", "lobby-3", "lobby-4", "parking-1"]
    return MemorySecretStore({ref: Credential(f"user-{ref}", password) for ref in refs})


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_files_are_written_with_secrets_filled_and_the_right_modes(
    tmp_path: Path, gate: InstanceConfig
) -> None:
    result = write_instance_files(tmp_path, gate, memory_store())
    directory = tmp_path / "instances" / "ccm-gate"
    assert listing(directory) == sorted(f.path for f in gate.files)
    assert result.changed == tuple(sorted(f.path for f in gate.files))
    assert result.removed == ()
    assert mode_of(directory) == 0o755
    for file in gate.files:
        path = directory / file.path
        assert stat.S_ISREG(os.lstat(path).st_mode)
        assert mode_of(path) == (0o600 if file.secrets else 0o644), file.path
        text = path.read_text()
        assert "${secret:" not in text
        assert (CANARY in text) == bool(file.secrets), file.path
    sources = (directory / "source_list.json").read_text()
    assert f"rtsp://user-gate-1:{CANARY}@127.0.0.1:8554/gate-1/main" in sources


def test_a_second_run_writes_nothing_and_touches_no_file(tmp_path: Path, gate: InstanceConfig) -> None:
    write_instance_files(tmp_path, gate, memory_store())
    directory = tmp_path / "instances" / "ccm-gate"
    before = {name: os.stat(directory / name).st_ino for name in listing(directory)}
    mtimes = {name: os.stat(directory / name).st_mtime_ns for name in listing(directory)}
    result = write_instance_files(tmp_path, gate, memory_store())
    assert (result.changed, result.removed) == ((), ())
    assert {name: os.stat(directory / name).st_ino for name in listing(directory)} == before
    assert {name: os.stat(directory / name).st_mtime_ns for name in listing(directory)} == mtimes


def test_a_rotated_password_rewrites_only_the_secret_file_atomically(
    tmp_path: Path, gate: InstanceConfig
) -> None:
    write_instance_files(tmp_path, gate, memory_store())
    target = tmp_path / "instances" / "ccm-gate" / "source_list.json"
    with open(target, "rb") as reader:  # a reader that opened the old file keeps reading the old file
        result = write_instance_files(tmp_path, gate, memory_store("rotated-pass"))
        assert CANARY.encode() in reader.read()
    assert result.changed == ("source_list.json",)
    assert "rotated-pass" in target.read_text() and CANARY not in target.read_text()
    assert mode_of(target) == 0o600
    assert not [n for n in listing(target.parent) if n.startswith(".")]  # no temp file left behind


def test_stale_files_temp_leftovers_and_symlinks_are_removed(tmp_path: Path, gate: InstanceConfig) -> None:
    directory = tmp_path / "instances" / "ccm-gate"
    directory.mkdir(parents=True, mode=0o700)
    outside = tmp_path / "outside.txt"
    outside.write_text("not mine")
    (directory / "old_primary.txt").write_text("stale")
    (directory / ".source_list.json.abc123.tmp").write_text("crash leftover")
    (directory / "mot_primary.txt").symlink_to(outside)
    (directory / "keep-subdir").mkdir()
    result = write_instance_files(tmp_path, gate, memory_store())
    assert result.removed == (".source_list.json.abc123.tmp", "old_primary.txt")
    assert "mot_primary.txt" in result.changed
    assert listing(directory) == sorted([*(f.path for f in gate.files), "keep-subdir"])
    assert not (directory / "mot_primary.txt").is_symlink()
    assert outside.read_text() == "not mine"  # the link was replaced, its target untouched
    assert mode_of(directory) == 0o755  # re-moded from 0700


def test_a_secret_file_loosened_by_hand_is_rewritten_0600(tmp_path: Path, gate: InstanceConfig) -> None:
    write_instance_files(tmp_path, gate, memory_store())
    target = tmp_path / "instances" / "ccm-gate" / "source_list.json"
    os.chmod(target, 0o644)
    result = write_instance_files(tmp_path, gate, memory_store())
    assert result.changed == ("source_list.json",)
    assert mode_of(target) == 0o600


def test_a_missing_secret_writes_nothing(tmp_path: Path, gate: InstanceConfig) -> None:
    store = MemorySecretStore({"gate-1": Credential("u", CANARY)})
    with pytest.raises(SecretError) as info:
        write_instance_files(tmp_path, gate, store)
    assert info.value.refs == ("gate-2", "gate-3", "gate-4")
    assert CANARY not in str(info.value)
    assert not (tmp_path / "instances").exists()


def test_secrets_from_files_and_env_reach_the_rendered_file(tmp_path: Path, gate: InstanceConfig) -> None:
    for ref in GATE_REFS:
        directory = tmp_path / "secrets" / ref
        directory.mkdir(parents=True)
        for key, value in (("username", f"file-{ref}\n"), ("password", "file-pass\n")):
            (directory / key).write_text(value)
            os.chmod(directory / key, 0o600)
    store = LocalSecretStore(tmp_path, {"DSFLEET_SECRET_GATE_2_PASSWORD": "p@ss:w/rd%!"})
    write_instance_files(tmp_path, gate, store)
    text = (tmp_path / "instances" / "ccm-gate" / "source_list.json").read_text()
    assert "rtsp://file-gate-1:file-pass@127.0.0.1:8554/gate-1/main" in text
    assert "rtsp://file-gate-2:p%40ss%3Aw%2Frd%25%21@127.0.0.1:8554/gate-2/main" in text


def test_a_world_readable_secret_file_is_refused_and_nothing_written(
    tmp_path: Path, gate: InstanceConfig
) -> None:
    for ref in GATE_REFS:
        (tmp_path / "secrets" / ref).mkdir(parents=True)
        (tmp_path / "secrets" / ref / "username").write_text("admin")
        os.chmod(tmp_path / "secrets" / ref / "username", 0o600)
    loose = tmp_path / "secrets" / "gate-3" / "password"
    loose.write_text(CANARY)
    os.chmod(loose, 0o644)
    with pytest.raises(SecretError) as info:
        write_instance_files(tmp_path, gate, LocalSecretStore(tmp_path, {}))
    assert f"chmod 600 {loose}" in str(info.value)
    assert CANARY not in str(info.value)
    assert not (tmp_path / "instances").exists()


def test_node_files_resolve_every_secret_before_writing_any(
    tmp_path: Path, nodes: dict[str, NodeConfig]
) -> None:
    node = nodes["gpu-node-1"]
    partial = MemorySecretStore({ref: Credential("u", "p") for ref in GATE_REFS})  # no lobby-* secrets
    with pytest.raises(SecretError) as info:
        write_node_files(tmp_path, node.instances, partial)
    assert info.value.refs == ("lobby-1", "lobby-2", "lobby-3", "lobby-4")
    assert not (tmp_path / "instances").exists()
    results = write_node_files(tmp_path, node.instances, memory_store())
    assert [name for name, _ in results] == ["ccm-gate", "ccm-lobby"]
    assert listing(tmp_path / "instances") == ["ccm-gate", "ccm-lobby"]


def test_atomic_write_sets_the_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    old_umask = os.umask(0o077)
    try:
        atomic_write(target, b"one", 0o644)
    finally:
        os.umask(old_umask)
    assert mode_of(target) == 0o644  # not narrowed by the umask
    atomic_write(target, b"two", 0o600)
    assert target.read_bytes() == b"two" and mode_of(target) == 0o600
    assert listing(tmp_path) == ["f.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write(target, b"old", 0o644)
    (tmp_path / "dir-target").mkdir()
    (tmp_path / "dir-target" / "x").write_text("x")
    with pytest.raises(OSError):
        atomic_write(tmp_path / "dir-target", b"new", 0o644)  # cannot replace a non-empty directory
    assert listing(tmp_path) == ["dir-target", "f.txt"]
    assert target.read_bytes() == b"old"


def test_instance_dir_refuses_names_that_would_escape(tmp_path: Path) -> None:
    from dsfleet.agent.errors import ConfigError

    assert instance_dir(tmp_path, "ccm-gate") == tmp_path / "instances" / "ccm-gate"
    for bad in ("../x", "a/b", "X", ""):
        with pytest.raises(ConfigError):
            instance_dir(tmp_path, bad)


def test_desired_json_round_trips_0600_atomically(tmp_path: Path, nodes: dict[str, NodeConfig]) -> None:
    assert load_desired(tmp_path) is None
    node = nodes["gpu-node-1"]
    path = save_desired(tmp_path, node)
    assert path == tmp_path / DESIRED_FILE and mode_of(path) == 0o600
    assert load_desired(tmp_path) == node
    message = AgentConfig(
        sent_at="2024-11-24T21:00:00Z",
        node=node.node,
        generation=3,
        configHash=node.configHash,
        instances=node.instances,
    )
    save_desired(tmp_path, message)
    assert load_desired(tmp_path) == message
    assert listing(tmp_path) == [DESIRED_FILE]
    assert "${secret:gate-1}" in path.read_text()  # placeholders, never values


def _with_rtsp_parking_camera(tmp_path: Path) -> Path:
    manifests = tmp_path / "manifests"
    shutil.copytree(EXAMPLE, manifests)
    parking = manifests / "cameras" / "parking.yaml"
    text = parking.read_text()
    old = "  url: file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4\n"
    assert old in text
    new = "  url: rtsp://127.0.0.1:8554/parking-1/main\n  credentials:\n    secretRef: parking-1\n"
    parking.write_text(text.replace(old, new, 1))
    return manifests


def test_a_filled_deepstream_app_config_is_still_a_glib_key_file(tmp_path: Path, glib: Any) -> None:
    nodes = compile_nodes(_with_rtsp_parking_camera(tmp_path))
    inst = nodes["gpu-node-2"].instance("traffic-parking")
    assert inst is not None
    app = next(f for f in inst.files if f.path == "deepstream_app_config.txt")
    assert app.secrets == ("parking-1",)
    password = 'p@ss:w/rd%!;#\\ "x"\t\n'
    store = MemorySecretStore({"parking-1": Credential("adm in", password)})
    write_instance_files(tmp_path / "state", inst, store)
    path = tmp_path / "state" / "instances" / "traffic-parking" / "deepstream_app_config.txt"
    assert mode_of(path) == 0o600
    result = glib.read_one(path.read_text(), {"source0": {"uri": "string", "camera-id": "integer"}})
    assert result.load_error is None
    uri = result.value("source0", "uri")
    assert (
        uri == "rtsp://adm%20in:p%40ss%3Aw%2Frd%25%21%3B%23%5C%20%22x%22%09%0A@127.0.0.1:8554/parking-1/main"
    )
    assert result.value("source0", "camera-id") == 9
    others = [f.path for f in inst.files if not f.secrets]
    assert others and all(mode_of(path.parent / p) == 0o644 for p in others)


def test_a_hand_made_instance_with_a_text_file(tmp_path: Path, gate: InstanceConfig) -> None:
    files = (
        RenderedFile(path="notes.yml", content="url: rtsp://${secret:gate-1}@h/x\n", secrets=("gate-1",)),
    )
    inst = build_instance("notes", "ccm", False, (), gate.container, files)
    write_instance_files(tmp_path, inst, MemorySecretStore({"gate-1": Credential("u", "a b")}))
    assert (tmp_path / "instances" / "notes" / "notes.yml").read_text() == "url: rtsp://u:a%20b@h/x\n"
