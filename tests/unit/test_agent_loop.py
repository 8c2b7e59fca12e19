"""The loop on the in-memory fakes of ``dsfleet.agent.testing`` (runtime, bus, clock): catch-up keeps only the last config, rejected records are
counted, old commands are ignored, naming is kept, and the loop acts only through the plan."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dsfleet.agent.loop import Agent, HostFacts, LoopSettings
from dsfleet.agent.ports import BusBatch
from dsfleet.agent.testing import ManualClock, MemoryBus, MemoryRuntime, MemorySecretStore
from dsfleet.schemas.labels import instance_labels
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
from dsfleet.schemas.wire import AgentCommand, AgentConfig, CommandKind, encode

NODE = "gpu-01"


def inst(name: str, version: int = 1) -> InstanceConfig:
    spec = ContainerSpec(
        image="ds:7.0",
        mounts=(MountSpec(type="configs", target=CONFIGS_DIR),),
        engineVolume=f"{name}_engine",
        labels=instance_labels(name),
        restartPolicy=RestartPolicySpec(name="unless-stopped"),
    )
    return build_instance(
        name, "deepstream-app", False, (), spec, (RenderedFile(path="a.txt", content=f"v{version}"),)
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


def make(tmp_path: Path, node: str | None = NODE) -> tuple[Agent, MemoryRuntime, MemoryBus, ManualClock]:
    rt, bus, clock = MemoryRuntime(), MemoryBus(), ManualClock()
    agent = Agent(
        LoopSettings(
            state_dir=tmp_path,
            node=node,
            heartbeat_seconds=5,
            resync_seconds=30,
            poll_seconds=0,
            trust=bus.trust(),
        ),
        rt,
        bus,
        MemorySecretStore(),
        HostFacts("host-a", "a" * 32),
        clock,
    )
    agent._follow()
    return agent, rt, bus, clock


def test_catching_up_applies_only_the_last_config(tmp_path: Path) -> None:
    agent, rt, bus, _ = make(tmp_path)
    bus.enqueue(
        BusBatch(
            configs=[
                bus.config_record(NODE, config(1, inst("a"))),
                bus.config_record(NODE, config(2, inst("b"))),
            ]
        ),
        BusBatch(configs=[bus.config_record(NODE, config(3, inst("c")))], caught_up=True),
    )
    agent.step()
    assert rt.calls == []  # not caught up yet: nothing desired (no desired.json)
    agent.step()
    assert [c for c in rt.calls if c.startswith("create")] == ["create dsfleet-c"]
    assert (tmp_path / "desired.json").exists()
    assert bus.responses and bus.responses[-1].instances[0].name == "c"


def test_rejected_records_are_counted_and_ignored(tmp_path: Path) -> None:
    agent, rt, bus, _ = make(tmp_path)
    good = config(1, inst("a"))
    bus.enqueue(
        BusBatch(
            configs=[bus.config_record(NODE, b"garbage")] * 50
            + [bus.config_record("other-node", good), bus.config_record(NODE, good)],
            caught_up=True,
        )
    )
    agent.step()
    assert agent.rejected == 50
    assert "create dsfleet-a" in rt.calls


def test_desired_json_is_the_fail_static_start(tmp_path: Path) -> None:
    agent, rt, bus, _ = make(tmp_path)
    bus.push_config(NODE, config(7, inst("a")))
    agent.step()
    again, rt2, _, _ = make(tmp_path)  # a restart, no broker: nothing ever comes from the bus
    rt2.containers = dict(rt.containers)
    again.step()
    assert again.desired is not None and getattr(again.desired, "generation", None) == 7
    assert rt2.calls == []  # adopted: the container runs the desired spec


def test_naming_commands_and_old_commands(tmp_path: Path) -> None:
    agent, _, bus, clock = make(tmp_path, node=None)
    agent.step()
    assert bus.infos and bus.infos[-1].node is None and bus.followed[-1][0] == ""
    old = AgentCommand(
        sent_at="2020-01-01T00:00:00+00:00", command=CommandKind.ASSIGN_NAME, target="a" * 32, node="old"
    )
    now = datetime.fromtimestamp(clock.time(), UTC).isoformat()
    new = AgentCommand(
        sent_at=now,
        command=CommandKind.ASSIGN_NAME,
        target="a" * 32,
        node="gpu-09",
        machineId="a" * 32,
        keyId=agent.identity.id,  # the key of the agent that asked to be named
    )
    bus.enqueue(
        BusBatch(commands=[bus.command_record(encode(old))]),
        BusBatch(commands=[bus.command_record(encode(new))]),
    )
    agent.step()
    assert agent.node is None
    agent.step()
    assert agent.node == "gpu-09"
    assert (tmp_path / "node-name").read_text().strip() == "gpu-09"
    assert bus.followed[-1][0] == "gpu-09"
    assert bus.infos[-1].node == "gpu-09"
    again, _, _, _ = make(tmp_path, node=None)
    assert again.node == "gpu-09"
