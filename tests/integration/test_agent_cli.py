"""``dsfleet-agent`` through a real subprocess, on node configs compiled by the real coordinator code."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dsfleet.reconciler.compiling.desired import desired_state
from dsfleet.schemas.nodeconfigs import NodeConfig
from dsfleet.schemas.wire import AgentConfig
from tests.support.prereqs import require

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests"
AGENT = [sys.executable, "-m", "dsfleet.agent.cli"]
CANARY = "canary-Ag3nt-p@ss:w/rd%!-b71"
CANARY_USER = "canary-user-3d9a"
NODE1_REFS = ("gate-1", "gate-2", "gate-3", "gate-4", "lobby-1", "lobby-2", "lobby-3", "lobby-4")


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DSFLEET_SECRET_")}
    return subprocess.run(
        [*AGENT, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def nodes() -> dict[str, NodeConfig]:
    state = desired_state([EXAMPLE])
    assert state.configs is not None
    return state.configs


@pytest.fixture
def node_file(tmp_path: Path, nodes: dict[str, NodeConfig]) -> Path:
    path = tmp_path / "gpu-node-1.json"
    path.write_text(nodes["gpu-node-1"].model_dump_json(indent=2))
    return path


def add_secrets(state: Path, refs: tuple[str, ...] = NODE1_REFS, mode: int = 0o600) -> None:
    for ref in refs:
        directory = state / "secrets" / ref
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for key, value in (("username", CANARY_USER + "\n"), ("password", CANARY + "\n")):
            (directory / key).write_text(value)
            os.chmod(directory / key, mode)


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def assert_no_secret(proc: subprocess.CompletedProcess[str]) -> None:
    for stream in (proc.stdout, proc.stderr):
        assert CANARY not in stream and CANARY_USER not in stream
        assert "p%40ss" not in stream
        assert "Traceback" not in stream


def test_help_says_what_this_version_does() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "materialize" in text
    assert "run" in text and "AgentConfig" in text and "Docker" in text
    assert "DSFLEET_SECRET_<REF>_USERNAME" in text
    sub = run("materialize", "--help")
    assert sub.returncode == 0
    for flag in ("--config", "--state-dir", "--instance"):
        assert flag in sub.stdout


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("dsfleet-agent ")


@pytest.mark.parametrize("args", [(), ("materialize",), ("materialize", "--config", "x.json"), ("bogus",)])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "error:" in proc.stderr


def test_materialize_a_node_config_from_the_coordinator(tmp_path: Path, node_file: Path) -> None:
    state = tmp_path / "state"
    add_secrets(state)
    proc = run("materialize", "--config", node_file, "--state-dir", state)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "instance ccm-gate: 7 files written, 0 removed",
        "instance ccm-lobby: 7 files written, 0 removed",
    ]
    assert proc.stderr == ""
    assert_no_secret(proc)

    sources = json.loads((state / "instances" / "ccm-gate" / "source_list.json").read_text())
    address = sources["sources"][0]["address"]
    assert (
        address == f"rtsp://{CANARY_USER}:canary-Ag3nt-p%40ss%3Aw%2Frd%25%21-b71@127.0.0.1:8554/gate-1/main"
    )

    # the canary is only in 0600 files: the secret store and the instance files that carry credentials
    holders = [p for p in files_under(state) if CANARY_USER.encode() in p.read_bytes()]
    assert {p.relative_to(state).as_posix() for p in holders if "instances" in p.parts} == {
        "instances/ccm-gate/source_list.json",
        "instances/ccm-lobby/source_list.json",
    }
    for path in holders:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in files_under(state / "instances"):
        expected = 0o600 if path.name == "source_list.json" else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    desired = state / "desired.json"
    assert stat.S_IMODE(desired.stat().st_mode) == 0o600
    assert CANARY_USER not in desired.read_text()
    assert NodeConfig.model_validate_json(desired.read_text()) == NodeConfig.model_validate_json(
        node_file.read_text()
    )

    again = run("materialize", "--config", node_file, "--state-dir", state)
    assert again.returncode == 0
    assert again.stdout.splitlines() == [
        "instance ccm-gate: 0 files written, 0 removed",
        "instance ccm-lobby: 0 files written, 0 removed",
    ]


def test_one_instance_and_stale_files(tmp_path: Path, node_file: Path) -> None:
    state = tmp_path / "state"
    add_secrets(state)
    proc = run("materialize", "--config", node_file, "--state-dir", state, "--instance", "ccm-gate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["instance ccm-gate: 7 files written, 0 removed"]
    assert sorted(os.listdir(state / "instances")) == ["ccm-gate"]
    (state / "instances" / "ccm-gate" / "leftover.txt").write_text("old")
    (state / "instances" / "ccm-gate" / "mot_primary.txt").write_text("edited by hand")
    proc = run("materialize", "--config", node_file, "--state-dir", state, "--instance", "ccm-gate")
    assert proc.stdout.splitlines() == ["instance ccm-gate: 1 file written, 1 removed"]
    assert not (state / "instances" / "ccm-gate" / "leftover.txt").exists()


def test_an_agent_config_message_is_accepted(tmp_path: Path, nodes: dict[str, NodeConfig]) -> None:
    node = nodes["gpu-node-2"]
    message = AgentConfig(
        sent_at="2024-11-24T21:00:00Z",
        node=node.node,
        generation=4,
        configHash=node.configHash,
        instances=node.instances,
    )
    path = tmp_path / "msg.json"
    path.write_text(message.model_dump_json(by_alias=True))
    proc = run("materialize", "--config", path, "--state-dir", tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["instance traffic-parking: 3 files written, 0 removed"]
    saved = json.loads((tmp_path / "state" / "desired.json").read_text())
    assert saved["schema"] == "dsfleet.agent-config/v1" and saved["generation"] == 4


def test_env_secrets_override_files(tmp_path: Path, node_file: Path) -> None:
    state = tmp_path / "state"
    add_secrets(state)
    env = {"DSFLEET_SECRET_GATE_1_PASSWORD": "from-env", "DSFLEET_SECRET_GATE_2_USERNAME": "env-user"}
    proc = run("materialize", "--config", node_file, "--state-dir", state, "--instance", "ccm-gate", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "from-env" not in proc.stdout + proc.stderr
    addresses = [
        s["address"]
        for s in json.loads((state / "instances" / "ccm-gate" / "source_list.json").read_text())["sources"]
    ]
    assert addresses[0] == f"rtsp://{CANARY_USER}:from-env@127.0.0.1:8554/gate-1/main"
    assert addresses[1].startswith("rtsp://env-user:canary-Ag3nt-p%40ss")


def test_missing_secrets_exit_1_name_the_refs_and_write_no_instance_file(
    tmp_path: Path, node_file: Path
) -> None:
    state = tmp_path / "state"
    add_secrets(state, ("gate-1", "gate-2", "gate-4", "lobby-1", "lobby-2", "lobby-3", "lobby-4"))
    proc = run("materialize", "--config", node_file, "--state-dir", state)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "secret 'gate-3' not found" in proc.stderr
    assert str(state / "secrets" / "gate-3" / "username") in proc.stderr
    assert "DSFLEET_SECRET_GATE_3_PASSWORD" in proc.stderr
    assert "1 secret unavailable; no instance file was written" in proc.stderr
    assert_no_secret(proc)
    assert not (state / "instances").exists()
    assert (state / "desired.json").is_file()  # the config itself was valid: kept for the next attempt


def test_a_world_readable_secret_file_is_refused(tmp_path: Path, node_file: Path) -> None:
    state = tmp_path / "state"
    add_secrets(state)
    loose = state / "secrets" / "lobby-2" / "password"
    os.chmod(loose, 0o644)
    proc = run("materialize", "--config", node_file, "--state-dir", state)
    assert proc.returncode == 1
    assert f"{loose} has mode 0644" in proc.stderr and f"chmod 600 {loose}" in proc.stderr
    assert_no_secret(proc)
    assert not (state / "instances").exists()


def test_malformed_json_names_file_line_and_column_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "node.json"
    bad.write_text('{\n  "node": "gpu-node-1",\n  "instances": [,]\n}\n')
    proc = run("materialize", "--config", bad, "--state-dir", tmp_path / "state")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{bad}:3:17: error: malformed JSON: Expecting value"
    assert not (tmp_path / "state").exists()


def test_an_invalid_config_exits_1_naming_the_field(tmp_path: Path, nodes: dict[str, NodeConfig]) -> None:
    data = json.loads(nodes["gpu-node-1"].model_dump_json())
    data["instances"][0]["container"]["image"] = 42
    data["instances"][1]["files"][0]["content"] += CANARY
    path = tmp_path / "node.json"
    path.write_text(json.dumps(data))
    proc = run("materialize", "--config", path, "--state-dir", tmp_path / "state")
    assert proc.returncode == 1
    assert f"{path}: error: instances.0.container.image: Input should be a valid string" in proc.stderr
    assert_no_secret(proc)
    data["instances"][0]["container"]["image"] = "nvcr.io/nvidia/deepstream:7.0-triton-multiarch"
    path.write_text(json.dumps(data))
    proc = run("materialize", "--config", path, "--state-dir", tmp_path / "state")
    assert proc.returncode == 1
    assert "instances.1 (ccm-lobby).filesHash: does not match the files" in proc.stderr
    assert_no_secret(proc)


def test_unknown_instance_and_unreadable_inputs_exit_2(tmp_path: Path, node_file: Path) -> None:
    proc = run("materialize", "--config", node_file, "--state-dir", tmp_path / "s", "--instance", "nope")
    assert proc.returncode == 2
    assert "no instance named 'nope'" in proc.stderr and "ccm-gate, ccm-lobby" in proc.stderr
    proc = run("materialize", "--config", tmp_path / "missing.json", "--state-dir", tmp_path / "s")
    assert proc.returncode == 2
    assert "missing.json: cannot read: No such file or directory" in proc.stderr
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("")
    proc = run("materialize", "--config", node_file, "--state-dir", not_a_dir)
    assert proc.returncode == 2
    assert "cannot write" in proc.stderr and "Traceback" not in proc.stderr


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "dsfleet-agent"
    require(script.exists(), f"{script} not installed (running outside the project venv)")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("dsfleet-agent ")
