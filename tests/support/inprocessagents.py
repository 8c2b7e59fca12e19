"""The real agent loop in the test process: in a thread on the real Docker engine and the in-memory bus of
:mod:`dsfleet.agent.testing` (:func:`start_agent`; per-test names so a test's containers never meet another's), or
stepped by the test on every fake of that module (:func:`fake_agent`, with :func:`fake_instance` and
:func:`config_record` to build what it is sent)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dsfleet.agent.credentials import Credential
from dsfleet.agent.loop import Agent, HostFacts, LoopSettings
from dsfleet.agent.runtime import DockerRuntime
from dsfleet.agent.secrets import LocalSecretStore
from dsfleet.agent.testing import ManualClock, MemoryBus, MemoryRuntime, MemorySecretStore
from dsfleet.agent.trust import Trust
from dsfleet.plumbing.settings import AdmissionSettings
from dsfleet.plumbing.signing import SigningKey
from dsfleet.schemas.labels import instance_labels
from dsfleet.schemas.nodeconfigs import (
    CONFIGS_DIR,
    ContainerSpec,
    HealthCheck,
    InstanceConfig,
    MountSpec,
    RenderedFile,
    RestartPolicySpec,
    UpdateStrategy,
    build_instance,
    build_node,
)
from dsfleet.schemas.wire import AgentConfig, InstanceStatus, encode

FAKE_NODE = "gpu-01"


@dataclass
class Names:
    """A test's names: instances ``<prefix>-<suffix>`` (containers ``dsfleet-<prefix>-…``), node ``<prefix>-node``."""

    run_id: str
    prefix: str

    def instance(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    @property
    def node(self) -> str:
        return f"{self.prefix}-node"


@dataclass
class RunningAgent:
    agent: Agent
    bus: MemoryBus
    runtime: DockerRuntime
    stop: threading.Event
    thread: threading.Thread

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.runtime.close()

    def status(self, instance: str) -> InstanceStatus | None:
        """The instance's status in the agent's last AgentResponse."""
        resp = self.agent.last_response
        if resp is None:
            return None
        return next((s for s in resp.instances if s.name == instance), None)


def start_agent(
    state_dir: Path,
    node: str,
    *,
    self_heal: bool = True,
    bus: MemoryBus | None = None,
    heartbeat_seconds: float = 1.0,
    fleet_id: str | None = None,
    admission: AdmissionSettings | None = None,
    trust: Trust | None = None,
) -> RunningAgent:
    """An agent on the real engine (it never pulls: only loopback is a network target in tests); ``admission``:
    its ``[agent.admission]`` settings (default: the defaults); ``trust``: the coordinator keys it believes
    (default: the key of ``bus``, which signs what the test pushes)."""
    runtime = DockerRuntime(pull=False)
    bus = bus or MemoryBus()
    agent = Agent(
        LoopSettings(
            state_dir=state_dir,
            node=node,
            heartbeat_seconds=heartbeat_seconds,
            resync_seconds=5.0,
            self_heal=self_heal,
            poll_seconds=0.05,
            stop_timeout=2.0,
            fleet_id=fleet_id,
            admission=admission or AdmissionSettings(),
            trust=trust if trust is not None else bus.trust(),
        ),
        runtime,
        bus,
        LocalSecretStore(state_dir),
        HostFacts(hostname="test-host", machine_id="0" * 32),
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    return RunningAgent(agent, bus, runtime, stop, thread)


# -- on the fakes, stepped by the test --------------------------------------------------------------------------


def fake_instance(
    name: str = "a",
    *,
    image: str = "ds:7.0",
    env: str = "1",
    files: str = "v1",
    paused: bool = False,
    self_heal: bool = True,
    strategy: UpdateStrategy = "CreateBeforeStop",
    health: bool = False,
    camera_secrets: Mapping[str, str] | None = None,
    privileged: bool = False,
    binds: Sequence[MountSpec] = (),
) -> InstanceConfig:
    """An instance for the fakes (its hashes made for its content, as the coordinator makes them); with
    ``camera_secrets`` its file carries a placeholder per secret ref; ``binds``: mounts besides its own."""
    spec = ContainerSpec(
        image=image,
        env={"LEVEL": env},
        mounts=(
            MountSpec(type="configs", target=CONFIGS_DIR),
            MountSpec(type="volume", source=f"{name}_engine", target="/workspace/build", readOnly=False),
            *binds,
        ),
        engineVolume=f"{name}_engine",
        labels=instance_labels(name),
        restartPolicy=RestartPolicySpec(name="unless-stopped"),
        healthCheck=HealthCheck(test=("CMD", "true")) if health else None,
        privileged=privileged,
    )
    refs = tuple(sorted(set((camera_secrets or {}).values())))
    content = files + "".join(f"\nuri=rtsp://${{secret:{ref}}}@10.0.0.1/{ref}" for ref in refs)
    rendered = (RenderedFile(path="a.txt", content=content, secrets=refs),)
    return build_instance(
        name,
        "deepstream-app",
        paused,
        tuple(sorted(camera_secrets or {})),
        spec,
        rendered,
        self_heal=self_heal,
        strategy=strategy,
        camera_secrets=dict(camera_secrets or {}),
    )


def config_record(
    generation: int, *instances: InstanceConfig, fleet: str | None = None, node: str = FAKE_NODE
) -> bytes:
    """The AgentConfig record of ``instances`` at ``generation`` (written by ``fleet``)."""
    nc = build_node(node, list(instances))
    return encode(
        AgentConfig(
            sent_at="2026-01-01T00:00:00+00:00",
            node=node,
            generation=generation,
            configHash=nc.configHash,
            instances=nc.instances,
            fleet=fleet,
        )
    )


@dataclass
class FakeAgent:
    """An agent on the fakes, stepped by the test."""

    agent: Agent
    runtime: MemoryRuntime
    bus: MemoryBus
    clock: ManualClock
    secrets: MemorySecretStore

    def settle(self, steps: int = 10) -> None:
        """Step until a step asks nothing of the runtime."""
        for _ in range(steps):
            before = len(self.runtime.calls)
            self.agent.step()
            if len(self.runtime.calls) == before:
                return
        raise AssertionError(f"the loop did not settle: {self.runtime.calls}")

    def finish_pulls(self) -> None:
        """Wait for the image pulls under way (background threads), then step once."""
        for pull in list(self.agent._pulls.values()):
            assert pull.done.wait(5)
        self.agent.step()

    def status(self, name: str = "a") -> InstanceStatus:
        return next(s for s in self.agent.response().instances if s.name == name)

    def calls_since(self, mark: int) -> list[str]:
        return self.runtime.calls[mark:]

    def running_one(self, name: str = "a") -> str:
        """The id of the instance's one container, ``dsfleet-<name>``, running."""
        c = self.runtime.named(f"dsfleet-{name}")
        assert c is not None and c.state == "running", self.runtime.containers
        assert [x.name for x in self.runtime.containers.values() if x.instance == name] == [f"dsfleet-{name}"]
        return c.id


def fake_agent(
    state_dir: Path,
    runtime: MemoryRuntime | None = None,
    clock: ManualClock | None = None,
    *,
    secrets: Mapping[str, Credential] | None = None,
    fleet_id: str | None = None,
    heartbeat_seconds: float = 5.0,
    log_lines: Sequence[str] = (),
    admission: AdmissionSettings | None = None,
    coordinator: SigningKey | None = None,
    trust: Trust | None = None,
    node: str | None = FAKE_NODE,
) -> FakeAgent:
    """A followed agent of ``node`` (None: unnamed, it waits for ``assign-name``) on the fakes (one clock for the
    runtime and the agent).

    What the test pushes is signed by ``coordinator`` (default: a key made for this agent's bus), and the agent
    believes ``trust`` (default: that key alone), as an agent installed with the coordinator's public key does."""
    clock = clock or ManualClock()
    runtime = runtime or MemoryRuntime(clock=clock, log_lines=log_lines)
    runtime.clock = clock
    bus = MemoryBus(coordinator)
    store = MemorySecretStore(dict(secrets or {}))
    agent = Agent(
        LoopSettings(
            state_dir=state_dir,
            node=node,
            poll_seconds=0,
            heartbeat_seconds=heartbeat_seconds,
            fleet_id=fleet_id,
            admission=admission or AdmissionSettings(),
            trust=trust if trust is not None else bus.trust(),
        ),
        runtime,
        bus,
        store,
        HostFacts("host-a", "a" * 32),
        clock,
    )
    agent._follow()
    return FakeAgent(agent, runtime, bus, clock, store)
