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
    assert {p.parent.name for p in COMPOSE_FILES} == {"agent", "coordinator", "ha"}


def test_the_ha_compose_runs_two_standby_coordinators_on_one_postgresql_store() -> None:
    services = _load(DEPLOY / "ha" / "compose.yaml")["services"]
    coordinators = [s for name, s in services.items() if name.startswith("coordinator-")]
    assert len(coordinators) == 2
    for service in coordinators:
        env = service["environment"]
        assert env["DSFLEET_COORDINATOR_STANDBY"] == "true"
        assert (
            env["DSFLEET_COORDINATOR_DB"].startswith("postgresql+psycopg://")
            and "@postgres/" in env["DSFLEET_COORDINATOR_DB"]
        )
        assert env["DSFLEET_COORDINATOR_SIGNING_KEY"] == "/var/lib/dsfleet/keys/coordinator.key"
        assert "dsfleet-keys:/var/lib/dsfleet" in service["volumes"]  # one key, shared
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert coordinators[0] == coordinators[1], "the two are the same service twice"


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


def test_the_compose_kafka_speaks_only_sasl_ssl_beyond_its_own_loopback() -> None:
    env = _load(DEPLOY / "coordinator" / "compose.yaml")["services"]["kafka"]["environment"]
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for listener in env["KAFKA_LISTENERS"].split(","):
        name, _, address = listener.partition("://")
        if protocols[name] != "SASL_SSL":
            assert address.startswith("127.0.0.1:"), listener  # PLAINTEXT only on the container's loopback
    assert (
        env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        and "Authorizer" in env["KAFKA_AUTHORIZER_CLASS_NAME"]
    )
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    ports = _load(DEPLOY / "coordinator" / "compose.yaml")["services"]["kafka"]["ports"]
    assert ports == ["9093:9093"]


def test_only_the_coordinator_may_write_configs_and_commands() -> None:
    script = (DEPLOY / "kafka" / "acls.sh").read_text()
    roles = dict(re.findall(r"^    (coordinator|api|agent)\)\n(.*?);;", script, flags=re.M | re.S))
    assert set(roles) == {"coordinator", "api", "agent"}
    assert re.search(r"allow AgentConfig [^\n]*Write", roles["coordinator"])
    assert "AgentConfig" not in roles["api"] and not re.search(
        r"allow AgentConfig [^\n]*Write", roles["agent"]
    )
    assert not re.search(r"allow AgentCommand [^\n]*Write", roles["agent"])


def test_make_certs_gives_a_broker_certificate_its_clients_verify(tmp_path: Path) -> None:
    import socket
    import ssl
    import subprocess
    import threading

    done = subprocess.run(
        ["bash", str(DEPLOY / "kafka" / "make-certs.sh"), str(tmp_path / "s"), "kafka.example.org"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "s" / "broker.pem")  # key and chain in one file, as the broker reads it
    client = ssl.create_default_context(cafile=tmp_path / "s" / "ca.pem")
    a, b = socket.socketpair()
    with a, b:
        accepted = threading.Thread(target=lambda: server.wrap_socket(a, server_side=True).close())
        accepted.start()
        with client.wrap_socket(b, server_hostname="kafka.example.org") as tls:  # verified: CA and host name
            assert tls.getpeercert()["subjectAltName"][0] == ("DNS", "kafka.example.org")
        accepted.join(10)
    assert oct((tmp_path / "s" / "broker.pem").stat().st_mode & 0o777) == "0o600"
