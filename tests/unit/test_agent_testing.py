"""``dsfleet.agent.testing``: the shipped fakes behave like the ports they stand for, and the loop runs on them
(converges, then stays put; heals a container stopped by hand; reports FPS from log lines; leaves a foreign
container alone); the bus signs what it delivers with the coordinator key it plays. The module imports nothing but
the agent side, the shared signing module and the standard library (no test framework, Docker or Kafka client)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from dsfleet.agent import testing
from dsfleet.agent.containerrequests import container_request
from dsfleet.agent.containers import ObservedContainer, engine_volume_name
from dsfleet.agent.errors import NameConflictError, PermanentError
from dsfleet.agent.loop import Agent, HostFacts, LoopSettings
from dsfleet.agent.ports import BusBatch, BusRecord
from dsfleet.agent.testing import ManualClock, MemoryBus, MemoryRuntime, MemorySecretStore
from dsfleet.schemas.labels import LABEL_MANAGED, instance_labels
from dsfleet.schemas.nodeconfigs import (
    CONFIGS_DIR,
    ContainerSpec,
    InstanceConfig,
    MountSpec,
    RenderedFile,
    RestartPolicySpec,
    build_instance,
    build_node,
)
from dsfleet.schemas.signatures import HEADER_KEY
from dsfleet.schemas.wire import AgentConfig, InstanceState, encode

NODE = "gpu-01"
PERF = "**PERF:  30.00 (30.00)\t25.00 (25.00)\t"


def inst(name: str, files: str = "v1", paused: bool = False) -> InstanceConfig:
    spec = ContainerSpec(
        image="ds:7.0",
        mounts=(MountSpec(type="configs", target=CONFIGS_DIR),),
        engineVolume=f"{name}_engine",
        labels=instance_labels(name),
        restartPolicy=RestartPolicySpec(name="unless-stopped"),
    )
    return build_instance(
        name, "deepstream-app", paused, (), spec, (RenderedFile(path="a.txt", content=files),)
    )


def config(generation: int, *instances: InstanceConfig) -> bytes:
    nc = build_node(NODE, list(instances))
    return encode(
        AgentConfig(
            sent_at="2026-01-01T00:00:00+00:00",
            node=NODE,
            generation=generation,
            configHash=nc.configHash,
            instances=nc.instances,
        )
    )


def agent_on_fakes(
    tmp_path: Path, runtime: MemoryRuntime, bus: MemoryBus, clock: ManualClock | None = None
) -> Agent:
    agent = Agent(
        LoopSettings(state_dir=tmp_path, node=NODE, poll_seconds=0, trust=bus.trust()),
        runtime,
        bus,
        MemorySecretStore(),
        HostFacts("host-a", "a" * 32),
        clock or ManualClock(),
    )
    agent._follow()
    return agent


def settle(agent: Agent, runtime: MemoryRuntime) -> None:
    """Step until a step asks nothing of the runtime (at most 10 steps)."""
    for _ in range(10):
        before = len(runtime.calls)
        agent.step()
        if len(runtime.calls) == before:
            return
    raise AssertionError(f"the loop did not settle: {runtime.calls}")


def test_the_module_imports_only_the_agent_side_and_the_standard_library() -> None:
    tree = ast.parse(Path(testing.__file__).read_text())
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    outside = {
        m
        for m in imported
        if m.split(".")[0] not in sys.stdlib_module_names
        and m != "__future__"
        and not m.startswith(("dsfleet.agent.", "dsfleet.schemas."))
        and m != "dsfleet.plumbing.signing"  # the signing both sides share (Ed25519, ``cryptography``)
    }
    assert outside == set()
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, dsfleet.agent.testing; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    roots = {m.split(".")[0] for m in loaded}
    assert not roots & {"pytest", "_pytest", "hypothesis", "docker", "confluent_kafka", "sqlalchemy"}


def test_the_loop_converges_on_the_fakes_then_stays_put(tmp_path: Path) -> None:
    clock = ManualClock()
    runtime, bus = MemoryRuntime(log_lines=(PERF,), clock=clock), MemoryBus()
    agent = agent_on_fakes(tmp_path, runtime, bus, clock)
    bus.push_config(NODE, config(1, inst("a"), inst("b", paused=True)))
    settle(agent, runtime)
    a, b = runtime.named("dsfleet-a"), runtime.named("dsfleet-b")
    assert a is not None and a.state == "running"
    assert b is not None and b.state == "created"  # paused: created, never started
    assert sorted(runtime.volumes) == sorted(engine_volume_name(i) for i in (inst("a"), inst("b")))
    assert agent.observed_generation == 1
    calls = list(runtime.calls)
    for _ in range(3):
        agent.step()
    assert runtime.calls == calls  # planning again after applying asks nothing
    agent._next_heartbeat = 0.0  # a heartbeat: the logs are read
    agent.step()
    status = {s.name: s for s in agent.response().instances}
    assert status["a"].state is InstanceState.RUNNING and status["a"].fps == {"0": 30.0, "1": 25.0}
    assert status["b"].state is InstanceState.STOPPED
    assert bus.responses and bus.responses[-1].observedGeneration == 1
    assert bus.infos and bus.infos[-1].dockerVersion == "memory"


def test_a_container_stopped_by_hand_is_started_and_reported(tmp_path: Path) -> None:
    runtime, bus = MemoryRuntime(), MemoryBus()
    agent = agent_on_fakes(tmp_path, runtime, bus)
    bus.push_config(NODE, config(1, inst("a")))
    settle(agent, runtime)
    a = runtime.named("dsfleet-a")
    assert a is not None
    runtime.set_state(a.id, "exited", 137)  # docker kill
    assert runtime.wait(0) is True  # an engine event woke the loop
    runtime.wake()
    settle(agent, runtime)
    assert runtime.calls[-1] == f"start {a.id}"
    after = runtime.named("dsfleet-a")
    assert after is not None and after.id == a.id and after.state == "running"
    (status,) = agent.response().instances
    assert [(d.kind, d.healed) for d in status.drift] == [("stopped", True)]


def test_a_foreign_container_with_the_name_is_left_alone(tmp_path: Path) -> None:
    runtime, bus = MemoryRuntime(), MemoryBus()
    foreign = ObservedContainer("f00", "dsfleet-a", {"com.example.owner": "someone"}, "running")
    runtime.add_container(foreign)
    agent = agent_on_fakes(tmp_path, runtime, bus)
    bus.push_config(NODE, config(1, inst("a")))
    settle(agent, runtime)
    assert runtime.containers == {"f00": foreign}  # one create tried (name taken), nothing else touched
    assert [c for c in runtime.calls if not c.startswith("volume")] == ["create dsfleet-a"]
    (status,) = agent.response().instances
    assert status.state is InstanceState.MISSING and status.error and "does not manage" in status.error


def test_the_runtime_lists_filters_and_refuses_like_the_docker_adapter() -> None:
    runtime = MemoryRuntime()
    runtime.add_container(ObservedContainer("f00", "dsfleet-a", {}, "running"))
    assert runtime.list_containers(f"{LABEL_MANAGED}=true") == []
    assert [c.id for c in runtime.list_containers(f"{LABEL_MANAGED}=true", also_names=["dsfleet-a"])] == [
        "f00"
    ]
    with pytest.raises(NameConflictError):
        runtime.create(container_request(inst("a"), NODE, 1, "/configs", None, nvidia=False))
    with pytest.raises(PermanentError):
        runtime.start("nope")
    runtime.remove("nope")  # already gone: not an error
    cid = runtime.create(container_request(inst("b"), NODE, 1, "/configs", None, nvidia=False))
    assert (
        runtime.containers[cid].state == "created"
        and runtime.containers[cid].restart_policy == "unless-stopped"
    )
    runtime.start(cid)
    runtime.emit(cid, "hello")
    first = runtime.logs(cid, None)
    assert first.lines == ("hello",)
    runtime.emit(cid, "again")
    assert runtime.logs(cid, first.until).lines == ("again",)


def test_the_bus_replays_after_follow_and_delivers_scripted_batches_first() -> None:
    bus = MemoryBus()
    bus.push_config(NODE, b"one")
    assert [(r[0], r[1]) for r in bus.poll(0).configs] == [(NODE.encode(), b"one")]
    assert bus.poll(0) == BusBatch(caught_up=True)  # nothing new
    bus.enqueue(BusBatch(configs=[(b"k", b"held")]))
    bus.push_config(NODE, b"two")
    assert bus.poll(0) == BusBatch(configs=[(b"k", b"held")])
    assert [r[1] for r in bus.poll(0).configs] == [b"two"]
    bus.follow(NODE, [NODE])
    assert [r[1] for r in bus.poll(0).configs] == [b"one", b"two"]  # read again from the beginning


def test_the_bus_signs_what_is_pushed_with_the_coordinator_key_it_plays() -> None:
    bus, other = MemoryBus(), MemoryBus()
    value = config(3, inst("a"))
    bus.push_config(NODE, value)
    bus.push_command(b'{"target": "gpu-01", "sent_at": "2026-01-01T00:00:00+00:00"}')
    batch = bus.poll(0)
    (record,), (command,) = batch.configs, batch.commands
    assert bus.signer is not None and isinstance(record, BusRecord)
    assert record.headers[HEADER_KEY] == bus.signer.id and set(bus.trust().keyring.keys) == {bus.signer.id}
    fields, distrust = bus.trust().check(NODE, value, record.headers)
    assert distrust is None and fields is not None and fields.generation == 3
    assert bus.trust().check(NODE, command.value, command.headers)[1] is None
    assert command.key == NODE.encode()
    refused = other.trust().check(NODE, value, record.headers)[1]  # another coordinator's key
    assert refused is not None and refused.reason == "unknown-key"
    plain = MemoryBus(unsigned=True)
    plain.push_config(NODE, value)
    (unsigned,) = plain.poll(0).configs
    assert isinstance(unsigned, BusRecord) and dict(unsigned.headers) == {}
    assert not plain.trust().keyring


def test_the_clock_moves_only_when_told() -> None:
    clock = ManualClock(start=5.0, epoch=100.0)
    assert (clock.monotonic(), clock.time()) == (5.0, 105.0)
    clock.advance(2.5)
    assert (clock.monotonic(), clock.time()) == (7.5, 107.5)
