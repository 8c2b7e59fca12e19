"""``dsfleet-agent run`` as a subprocess against real Tansu + dockerd + the stub image: adoption after SIGKILL,
catching up after downtime, drift, name clash, crash loop, fail static, malformed configs, naming."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from dsfleet.schemas.labels import LABEL_INSTANCE, LABEL_MANAGED, LABEL_NODE, LABEL_SPEC_HASH
from dsfleet.schemas.wire import CommandKind, InstanceState
from tests.support.brokers import Tansu
from tests.support.dockerengine import APP_CONFIG, RUN_LABEL, agent_config_bytes, stub_instance
from tests.support.inprocessagents import Names
from tests.support.kafkafleet import AgentProcess, Coordinator, agent_args, wait_until


@pytest.fixture
def coordinator(kafka_broker: Tansu, topic_prefix: str) -> Iterator[Coordinator]:
    c = Coordinator(kafka_broker.bootstrap, topic_prefix)
    yield c
    c.close()


@pytest.fixture
def processes() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for p in started:
        p.terminate()


def _cid(client: docker.DockerClient, instance: str) -> str | None:
    try:
        return str(client.api.inspect_container(f"dsfleet-{instance}")["Id"])
    except docker.errors.NotFound:
        return None


def _running(coord: Coordinator, node: str, instance: str) -> bool:
    s = coord.status(node, instance)
    return bool(s and s.state is InstanceState.RUNNING and s.fps)


def _start(
    processes: list[AgentProcess],
    tmp_path: Path,
    bootstrap: str,
    prefix: str,
    node: str | None,
    log: str = "agent.log",
) -> AgentProcess:
    p = AgentProcess(agent_args(bootstrap, prefix, tmp_path / "state", node), tmp_path / log).start()
    processes.append(p)
    return p


def test_sigkill_restart_adopts_and_downtime_converges_to_latest(
    tmp_path: Path,
    names: Names,
    coordinator: Coordinator,
    kafka_broker: Tansu,
    docker_client: docker.DockerClient,
    processes: list[AgentProcess],
    topic_prefix: str,
) -> None:
    node, a, b = names.node, names.instance("a"), names.instance("b")
    coordinator.publish_config(
        node, agent_config_bytes(node, 1, [stub_instance(a, names.run_id), stub_instance(b, names.run_id)])
    )
    agent = _start(processes, tmp_path, kafka_broker.bootstrap, topic_prefix, node)
    wait_until(
        "a and b running",
        lambda: _running(coordinator, node, a) and _running(coordinator, node, b),
        log=agent,
    )
    ids = (_cid(docker_client, a), _cid(docker_client, b))
    info = wait_until(
        "AgentInfo", lambda: coordinator.read() or [i for i in coordinator.infos if i.node == node]
    )
    assert info[0].machineId and info[0].dockerVersion

    agent.kill()
    coordinator.responses.clear()
    # while the agent is down: two revisions; the agent must go straight to the last (b dropped, a's files v3)
    coordinator.publish_config(
        node,
        agent_config_bytes(
            node, 2, [stub_instance(a, names.run_id, version=2), stub_instance(b, names.run_id)]
        ),
    )
    coordinator.publish_config(node, agent_config_bytes(node, 3, [stub_instance(a, names.run_id, version=3)]))
    agent2 = _start(processes, tmp_path, kafka_broker.bootstrap, topic_prefix, node, log="agent2.log")
    wait_until(
        "generation 3 observed",
        lambda: (
            (r := coordinator.response(node)) and r.observedGeneration == 3 and _running(coordinator, node, a)
        ),
        log=agent2,
    )
    assert _cid(docker_client, a) == ids[0]  # adopted and restarted, never recreated
    assert _cid(docker_client, b) is None
    assert "# version 3" in (tmp_path / "state" / "instances" / a / APP_CONFIG).read_text()
    # caught up before acting: generation 2 was read while catching up but never became desired
    taken = re.findall(rf"desired config node={re.escape(node)} generation=(\d+)", agent2.log())
    assert taken == ["3"], agent2.log()[-3000:]
    assert agent2.terminate() == 0
    assert _cid(docker_client, a) == ids[0]  # SIGTERM: containers keep running
    assert docker_client.api.inspect_container(ids[0])["State"]["Running"]


def test_sigkill_restart_keeps_the_same_containers(
    tmp_path: Path,
    names: Names,
    coordinator: Coordinator,
    kafka_broker: Tansu,
    docker_client: docker.DockerClient,
    processes: list[AgentProcess],
    topic_prefix: str,
) -> None:
    node, a = names.node, names.instance("k")
    coordinator.publish_config(node, agent_config_bytes(node, 1, [stub_instance(a, names.run_id)]))
    agent = _start(processes, tmp_path, kafka_broker.bootstrap, topic_prefix, node)
    wait_until("running", lambda: _running(coordinator, node, a), log=agent)
    cid = _cid(docker_client, a)
    started = docker_client.api.inspect_container(cid)["State"]["StartedAt"]
    agent.kill()
    coordinator.responses.clear()
    agent2 = _start(processes, tmp_path, kafka_broker.bootstrap, topic_prefix, node)
    wait_until("reported again", lambda: _running(coordinator, node, a), log=agent2)
    state = docker_client.api.inspect_container(cid)["State"]
    assert _cid(docker_client, a) == cid and state["StartedAt"] == started  # adopted: not even restarted


def test_drift_is_healed_and_reported(
    tmp_path: Path,
    names: Names,
    coordinator: Coordinator,
    kafka_broker: Tansu,
    docker_client: docker.DockerClient,
    processes: list[AgentProcess],
    topic_prefix: str,
) -> None:
    node, a = names.node, names.instance("d")
    inst = stub_instance(a, names.run_id)
    coordinator.publish_config(node, agent_config_bytes(node, 1, [inst]))
    agent = _start(processes, tmp_path, kafka_broker.bootstrap, topic_prefix, node)
    wait_until("running", lambda: _running(coordinator, node, a), log=agent)
    api = docker_client.api

    def healed(kind: str) -> bool:
        s = coordinator.status(node, a)
        return bool(
            s and any(d.kind == kind and d.healed for d in s.drift) and s.state is InstanceState.RUNNING
        )

    # stopped by hand
    api.stop(_cid(docker_client, a), timeout=2)
    wait_until("stopped healed", lambda: healed("stopped"), log=agent)
    # killed (SIGKILL)
    cid = _cid(docker_client, a)
    api.kill(cid)
    wait_until(
        "killed container started again, reported as stopped drift",
        lambda: (
            (s := coordinator.status(node, a))
            and s.state is InstanceState.RUNNING
            and sum(1 for d in s.drift if d.kind == "stopped" and d.healed) >= 2
            and api.inspect_container(cid)["State"]["Running"]
        ),
        log=agent,
    )
    # removed
    api.remove_container(cid, force=True)
    wait_until(
        "removed healed", lambda: healed("removed") and _cid(docker_client, a) not in (None, cid), log=agent
    )
    # relabelled: someone replaces it with a container claiming another spec hash
    cid = _cid(docker_client, a)
    api.remove_container(cid, force=True)
    labels = {
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: a,
        LABEL_NODE: node,
        LABEL_SPEC_HASH: "0" * 64,
        RUN_LABEL: names.run_id,
    }
    fake = api.create_container(
        "dsfleet/deepstream-stub:latest",
        name=f"dsfleet-{a}",
        labels=labels,
        host_config=api.create_host_config(network_mode="none"),
    )
    api.start(fake["Id"])
    wait_until(
        "relabelled healed", lambda: healed("relabelled") and _cid(docker_client, a) != fake["Id"], log=agent
    )
    # a rendered file edited on disk
    cid = _cid(docker_client, a)
    path = tmp_path / "state" / "instances" / a / "pgie.txt"
    path.write_text("[property]\ngpu-id=7\n")
    wait_until(
        "file edit healed", lambda: healed("file-edited") and "gpu-id=0" in path.read_text(), log=agent
    )
    assert _cid(docker_client, a) == cid  # rewritten + restarted, not recreated


def test_unmanaged_container_with_a_managed_name_is_untouched(
    tmp_path: Path,
    names: Names,
    coordinator: Coordinator,
    kafka_broker: Tansu,
    docker_client: docker.DockerClient,
    processes: list[AgentProcess],
    topic_prefix: str,
) -> None:
    node, a, ok = names.node, names.instance("u"), names.instance("ok")
    api = docker_client.api
    other = api.create_container(
        "dsfleet/deepstream-stub:latest",
        name=f"dsfleet-{a}",
        labels={RUN_LABEL: names.run_id},
        entrypoint=["/bin/sleep", "3600"],
        host_config=api.create_host_config(network_mode="none"),
    )
    api.start(other["Id"])
    coordinator.publish_config(
        node, agent_config_bytes(node, 1, [stub_instance(a, names.run_id), stub_instance(ok, names.run_id)])
    )
    agent = _start(processes, tmp_path, kafka_broker.bootstrap, topic_prefix, node)
    s = wait_until(
        "clash reported",
        lambda: _running(coordinator, node, ok) and (s := coordinator.status(node, a)) and s.error and s,
        log=agent,
    )
    assert "not managed" in s.error or "does not manage" in s.error
    assert s.state is InstanceState.MISSING
    after = api.inspect_container(other["Id"])
    assert after["State"]["Running"] and after["RestartCount"] == 0
    assert after["State"]["StartedAt"] == api.inspect_container(other["Id"])["State"]["StartedAt"]
    assert LABEL_MANAGED not in after["Config"]["Labels"]


def test_crash_loop_is_reported_as_backoff(
    tmp_path: Path,
    names: Names,
    coordinator: Coordinator,
    kafka_broker: Tansu,
    docker_client: docker.DockerClient,
    processes: list[AgentProcess],
    topic_prefix: str,
) -> None:
    node, a = names.node, names.instance("crash")
    inst = stub_instance(a, names.run_id, env={"STUB_CRASH_AFTER": "1", "STUB_CRASH_CODE": "3"})
    coordinator.publish_config(node, agent_config_bytes(node, 1, [inst]))
    agent = _start(processes, tmp_path, kafka_broker.bootstrap, topic_prefix, node)
    s = wait_until(
        "backoff",
        lambda: (s := coordinator.status(node, a)) and s.state is InstanceState.BACKOFF and s,
        timeout=60,
        log=agent,
    )
    assert s.exitCode == 3
    assert s.lastLogLine and (
        "App run failed" in s.lastLogLine or "ERROR from src_bin_muxer" in s.lastLogLine
    )
    assert s.restarts >= 3
    cid = _cid(docker_client, a)
    assert cid == s.containerId  # Docker restarts it; the agent never recreated it


def test_fail_static_without_broker(
    tmp_path: Path,
    names: Names,
    docker_client: docker.DockerClient,
    processes: list[AgentProcess],
    topic_prefix: str,
) -> None:
    broker = Tansu().start()
    try:
        coord = Coordinator(broker.bootstrap, topic_prefix)
        node, a, b = names.node, names.instance("fs"), names.instance("fs2")
        coord.publish_config(node, agent_config_bytes(node, 1, [stub_instance(a, names.run_id)]))
        agent = _start(processes, tmp_path, broker.bootstrap, topic_prefix, node)
        wait_until("running", lambda: _running(coord, node, a), log=agent)
        cid = _cid(docker_client, a)
        coord.close()
        broker.kill()
        # broker gone: the container keeps running, the agent keeps going (three heartbeats)
        hold_for(
            3.5,
            "agent alive, container running without broker",
            lambda: (
                agent.proc is not None
                and agent.proc.poll() is None
                and _cid(docker_client, a) == cid
                and docker_client.api.inspect_container(cid)["State"]["Running"]
            ),
        )
        # the agent restarted without a broker converges from desired.json (here: heals a removed container)
        agent.kill()
        assert json.loads((tmp_path / "state" / "desired.json").read_text())["generation"] == 1
        docker_client.api.remove_container(cid, force=True)
        agent2 = _start(processes, tmp_path, broker.bootstrap, topic_prefix, node)
        wait_until(
            "recreated from desired.json",
            lambda: (
                (c := _cid(docker_client, a))
                and c != cid
                and docker_client.api.inspect_container(c)["State"]["Running"]
            ),
            log=agent2,
        )
        assert _cid(docker_client, b) is None
        # the broker comes back empty (memory storage): the coordinator publishes again; the agent catches up
        broker.start()
        coord2 = Coordinator(broker.bootstrap, topic_prefix)
        try:
            coord2.publish_config(
                node,
                agent_config_bytes(node, 2, [stub_instance(a, names.run_id), stub_instance(b, names.run_id)]),
            )
            wait_until(
                "caught up after the broker returned",
                lambda: _running(coord2, node, b),
                timeout=45,
                log=agent2,
            )
            assert coord2.response(node).observedGeneration == 2  # type: ignore[union-attr]
        finally:
            coord2.close()
        assert agent2.terminate() == 0
    finally:
        broker.close()


def hold_for(seconds: float, what: str, probe: Callable[[], bool]) -> None:
    """Assert that ``probe`` stays true for ``seconds`` (a stability check: nothing may go wrong meanwhile)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert probe(), f"{what} stopped being true"
        time.sleep(0.2)


def test_malformed_configs_are_counted_and_ignored(
    tmp_path: Path,
    names: Names,
    coordinator: Coordinator,
    kafka_broker: Tansu,
    docker_client: docker.DockerClient,
    processes: list[AgentProcess],
    topic_prefix: str,
) -> None:
    node, a = names.node, names.instance("m")
    agent = _start(processes, tmp_path, kafka_broker.bootstrap, topic_prefix, node)
    wait_until("first response", lambda: coordinator.response(node), log=agent)
    good = agent_config_bytes(node, 1, [stub_instance(a, names.run_id)])
    other_node = agent_config_bytes("someone-else", 1, [stub_instance(a, names.run_id)])
    bad = [
        b"garbage",
        b"{}",
        b'{"schema": "dsfleet.agent-config/v9"}',
        other_node,
        good.replace(b'"generation":1', b'"generation":-1'),
        b"[" * 5000,
        os.urandom(64),
    ]
    huge = b'{"schema": "dsfleet.agent-config/v1", "pad": "' + b"x" * 1_010_000 + b'"}'  # > 1 MB
    coordinator.publish_raw(node, [bad[i % len(bad)] for i in range(999)] + [huge, good])
    wait_until("converged on the good one", lambda: _running(coordinator, node, a), timeout=60, log=agent)
    assert "ignored AgentConfig record" in agent.log()
    wait_until("the count logged", lambda: "(total 1000)" in agent.log(), log=agent)
    assert agent.log().count("ignored AgentConfig record (") <= 20  # rate-limited
    assert agent.proc is not None and agent.proc.poll() is None


def test_named_by_the_coordinator(
    tmp_path: Path,
    names: Names,
    coordinator: Coordinator,
    kafka_broker: Tansu,
    processes: list[AgentProcess],
    topic_prefix: str,
) -> None:
    agent = _start(processes, tmp_path, kafka_broker.bootstrap, topic_prefix, None)
    info = wait_until(
        "anonymous AgentInfo",
        lambda: coordinator.read() or [i for i in coordinator.infos if i.node is None],
        log=agent,
    )
    machine = info[-1].machineId
    assert machine
    coordinator.command(machine, CommandKind.ASSIGN_NAME, node=names.node, machine_id=machine)
    wait_until(
        "named AgentInfo",
        lambda: coordinator.read() or [i for i in coordinator.infos if i.node == names.node],
        log=agent,
    )
    assert (tmp_path / "state" / "node-name").read_text().strip() == names.node
    wait_until("a response as the named node", lambda: coordinator.response(names.node), log=agent)
    # refresh: re-announce now (the heartbeat here is 1 s, so ask for a count rather than a time)
    seen = len([i for i in coordinator.infos if i.node == names.node])
    coordinator.command(names.node, CommandKind.REFRESH)
    wait_until(
        "re-announced",
        lambda: coordinator.read() or len([i for i in coordinator.infos if i.node == names.node]) > seen,
        log=agent,
    )
