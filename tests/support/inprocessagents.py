"""The real agent loop in a thread of the test process, on the real Docker engine and the in-memory bus of
:mod:`dsfleet.agent.testing`; per-test names so a test's containers never meet another's."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from dsfleet.agent.loop import Agent, HostFacts, LoopSettings
from dsfleet.agent.runtime import DockerRuntime
from dsfleet.agent.secrets import LocalSecretStore
from dsfleet.agent.testing import MemoryBus
from dsfleet.schemas.wire import InstanceStatus


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
    state_dir: Path, node: str, *, self_heal: bool = True, bus: MemoryBus | None = None
) -> RunningAgent:
    runtime = DockerRuntime()
    bus = bus or MemoryBus()
    agent = Agent(
        LoopSettings(
            state_dir=state_dir,
            node=node,
            heartbeat_seconds=1.0,
            resync_seconds=5.0,
            self_heal=self_heal,
            poll_seconds=0.05,
            stop_timeout=2.0,
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
