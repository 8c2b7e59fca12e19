"""What the agent reports, on the real engine with the stand-in image: an instance's log on request (both
streams, redacted, capped by ``tail``), a missing host secret naming the camera it leaves out while the last good
files keep running, no FPS from a crash-looping container."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import docker

from dsfleet.schemas.wire import AgentCommand, CommandKind, InstanceState, InstanceStatus, encode
from tests.support.dockerengine import APP_CONFIG, agent_config_bytes, stub_instance, wait_for
from tests.support.inprocessagents import Names, RunningAgent, start_agent

PASSWORD = "Kq7-canary-Pw!"


def _secret(state: Path, ref: str, user: str = "admin", password: str = PASSWORD) -> None:
    d = state / "secrets" / ref
    d.mkdir(parents=True, exist_ok=True)
    for key, value in (("username", user), ("password", password)):
        p = d / key
        p.write_text(value + "\n")
        os.chmod(p, 0o600)


def _logs_command(node: str, instance: str, request: str, **kw: object) -> bytes:
    now = datetime.now(UTC).isoformat()
    return encode(
        AgentCommand(
            sent_at=now,
            command=CommandKind.LOGS,
            target=node,
            requestId=request,
            instance=instance,
            **kw,  # type: ignore[arg-type]
        )
    )


def _running(agent: RunningAgent, name: str) -> InstanceStatus | None:
    s = agent.status(name)
    return s if s and s.state is InstanceState.RUNNING and s.fps else None


def test_logs_on_request_are_both_streams_redacted_and_capped(
    tmp_path: Path, names: Names, docker_client: docker.DockerClient, agents: list[RunningAgent]
) -> None:
    a = names.instance("log")
    _secret(tmp_path, "gate")
    inst = stub_instance(a, names.run_id, env_secrets={"STUB_SAY": "gate"}, secret_ref="gate")
    agent = start_agent(tmp_path, names.node)
    agents.append(agent)
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 1, [inst]))
    wait_for("running", lambda: _running(agent, a))
    agent.bus.push_command(_logs_command(names.node, a, "r-all", tail=50))
    reply = wait_for("the reply", lambda: next((x for x in agent.bus.logs if x.requestId == "r-all"), None))
    assert reply.node == names.node and reply.instance == a and reply.error is None and not reply.truncated
    lines = [line.split(" ", 1)[1] for line in reply.text.split("\n")]  # each led by its time
    assert "***" in lines  # the stub printed the password (stderr): masked as a value the host knows
    assert "** INFO: <bus_callback:287>: Pipeline running" in lines  # stdout
    assert any(line.startswith("**PERF:") for line in lines)
    assert PASSWORD not in reply.text
    # the rendered file holds the credential, the log reply and the status never do
    assert quote(PASSWORD, safe="") in (tmp_path / "instances" / a / APP_CONFIG).read_text()
    assert PASSWORD not in (agent.agent.last_response.model_dump_json() if agent.agent.last_response else "")
    agent.bus.push_command(_logs_command(names.node, a, "r-tail", tail=2))
    agent.bus.push_command(_logs_command(names.node, a, "r-future", since="2099-01-01T00:00:00Z"))
    agent.bus.push_command(_logs_command(names.node, names.instance("none"), "r-none"))
    replies = wait_for("three replies", lambda: len(agent.bus.logs) >= 4 and agent.bus.logs[1:])
    by_id = {x.requestId: x for x in replies}
    assert len(by_id["r-tail"].text.split("\n")) == 2
    assert by_id["r-future"].text == "" and by_id["r-future"].error is None
    assert by_id["r-none"].error and "no container" in by_id["r-none"].error


def test_a_missing_secret_names_the_camera_and_the_last_good_files_keep_running(
    tmp_path: Path, names: Names, docker_client: docker.DockerClient, agents: list[RunningAgent]
) -> None:
    a = names.instance("sec")
    _secret(tmp_path, "gate")
    v1 = stub_instance(a, names.run_id, secret_ref="gate")
    agent = start_agent(tmp_path, names.node)
    agents.append(agent)
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 1, [v1]))
    wait_for("v1 running", lambda: _running(agent, a))
    started = docker_client.api.inspect_container(f"dsfleet-{a}")["State"]["StartedAt"]
    for f in (tmp_path / "secrets" / "gate").iterdir():
        f.unlink()
    v2 = stub_instance(a, names.run_id, secret_ref="gate", version=2)
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 2, [v2]))
    s = wait_for(
        "SecretMissing reported",
        lambda: (x := agent.status(a)) and any(c.reason == "SecretMissing" for c in x.conditions) and x,
    )
    (cond,) = s.conditions
    assert cond.cameras == ("cam0",) and "cam0 cannot be added" in cond.message and "'gate'" in cond.message
    assert (
        s.state is InstanceState.RUNNING and s.configHash == v1.configHash
    )  # what runs: the last good config
    assert "# version 1" in (tmp_path / "instances" / a / APP_CONFIG).read_text()
    assert docker_client.api.inspect_container(f"dsfleet-{a}")["State"]["StartedAt"] == started
    _secret(tmp_path, "gate")
    s = wait_for("v2 applied", lambda: (x := _running(agent, a)) and x.configHash == v2.configHash and x)
    assert s.conditions == () and "# version 2" in (tmp_path / "instances" / a / APP_CONFIG).read_text()


def test_a_crash_looping_container_reports_no_fps(
    tmp_path: Path, names: Names, docker_client: docker.DockerClient, agents: list[RunningAgent]
) -> None:
    a = names.instance("loop")
    inst = stub_instance(a, names.run_id, env={"STUB_CRASH_AFTER": "1", "STUB_CRASH_CODE": "3"})
    agent = start_agent(tmp_path, names.node)
    agents.append(agent)
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 1, [inst]))
    wait_for("backoff", lambda: (s := agent.status(a)) and s.state is InstanceState.BACKOFF, timeout=60)
    seen = [s for r in agent.bus.responses for s in r.instances if s.name == a]
    with_fps = [s for s in seen if s.fps]
    assert all(s.state is InstanceState.RUNNING and s.fpsAt and s.startedAt for s in with_fps), with_fps
    assert all(s.fps == {} for s in seen if s.state is not InstanceState.RUNNING)
    later = wait_for(
        "a later report in backoff", lambda: (s := agent.status(a)) and s.state is InstanceState.BACKOFF and s
    )
    assert later.fps == {} and later.fpsAt is None
