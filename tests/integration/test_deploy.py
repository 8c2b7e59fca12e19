"""The deployment files parse and name only files that exist (build contexts, Dockerfiles, the files a Dockerfile
copies, relative bind-mount sources); the agent's compose file mounts the state dir at the same path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILES = sorted(DEPLOY.glob("*/compose.yaml"))
_DEFAULT = re.compile(r"\$\{[A-Z_]+:-([^}]*)\}")


def _expand(value: str) -> str:
    """``${VAR:-default}`` → its default (what compose uses when the variable is not set)."""
    return _DEFAULT.sub(lambda m: m.group(1), value)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), path
    return data


def test_there_are_compose_files_for_both_sides() -> None:
    assert {p.parent.name for p in COMPOSE_FILES} == {"agent", "coordinator"}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.parent.name)
def test_compose_names_only_files_that_exist(path: Path) -> None:
    data = _load(path)
    declared_volumes = set(data.get("volumes") or {})
    for name, service in data["services"].items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build:
            context = (path.parent / build["context"]).resolve()
            assert context.is_dir(), f"{name}: build context {context}"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile}"
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY ") and "--from" not in line:
                    for src in line.split()[1:-1]:
                        assert (context / src).exists(), f"{dockerfile.name}: COPY {src}"
        for mount in service.get("volumes") or ():
            source = _expand(mount).split(":", 1)[0]
            if source.startswith((".", "/")):
                if source.startswith("."):
                    assert (path.parent / source).exists(), f"{name}: bind source {source}"
            else:
                assert source in declared_volumes, f"{name}: undeclared volume {source}"
        for dep in service.get("depends_on") or ():
            assert dep in data["services"], f"{name}: depends on unknown {dep}"


def test_agent_compose_mounts_the_docker_socket_and_the_state_dir_at_the_same_path() -> None:
    service = _load(DEPLOY / "agent" / "compose.yaml")["services"]["agent"]
    assert service["network_mode"] == "host"
    mounts = [_expand(m) for m in service["volumes"]]
    assert "/var/run/docker.sock:/var/run/docker.sock" in mounts
    state = _expand(service["environment"]["DSFLEET_AGENT_STATE_DIR"])
    assert f"{state}:{state}" in mounts


def test_coordinator_compose_runs_kafka_in_kraft_mode() -> None:
    services = _load(DEPLOY / "coordinator" / "compose.yaml")["services"]
    env = services["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert services["coordinator"]["environment"]["DSFLEET_KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka:")


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_run_installed_commands(unit: Path) -> None:
    text = unit.read_text()
    sections = set(re.findall(r"^\[(\w+)\]$", text, re.M))
    assert sections == {"Unit", "Service", "Install"}
    exec_start = re.search(r"^ExecStart=(\S+)", text, re.M)
    assert exec_start and Path(exec_start.group(1)).name in {"dsfleet", "dsfleet-agent"}
    env_file = re.search(r"^EnvironmentFile=(\S+)", text, re.M)
    if env_file:
        assert (DEPLOY / "systemd" / f"{unit.stem}.env").is_file()


@pytest.mark.parametrize("side", ["agent", "coordinator"])
def test_each_image_copies_the_whole_namespace_and_installs_its_side_from_its_lock(side: str) -> None:
    """A wheel of the namespace needs dsfleet/ and every folder it links; a host installs its side's pinned,
    hashed dependencies, then dsfleet without any."""
    text = (DEPLOY / side / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \1$", text, flags=re.MULTILINE))
    linked = {p.name for p in (ROOT / "dsfleet").iterdir() if p.is_symlink()}
    assert {"dsfleet", *linked, f"requirements/{side}.lock"} <= copied
    assert f"pip install --no-cache-dir --require-hashes -r requirements/{side}.lock" in text
    assert "pip install --no-cache-dir --no-deps ." in text
