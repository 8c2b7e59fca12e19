"""Fixtures of the agent's integration tests: per-test names (containers cleaned up by the run label and name
prefix), an in-memory bus. The Docker engine and the stub image are ``tests/integration/conftest.py``'s."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from dsfleet.agent.loop import Agent, HostFacts, LoopSettings
from dsfleet.agent.ports import BusBatch
from dsfleet.agent.runtime import DockerRuntime
from dsfleet.agent.secrets import LocalSecretStore
from dsfleet.schemas.wire import AgentInfo, AgentResponse
from tests.support.dockerengine import RUN_ID, cleanup

_counter = itertools.count(1)


@dataclass
class Names:
    run_id: str
    prefix: str

    def instance(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    @property
    def node(self) -> str:
        return f"{self.prefix}-node"


@pytest.fixture
def names(docker_client: docker.DockerClient, stub_image: str) -> Iterator[Names]:
    prefix = f"t{RUN_ID}{next(_counter)}"
    yield Names(RUN_ID, prefix)
    cleanup(docker_client, RUN_ID, f"dsfleet-{prefix}")


@dataclass
class MemoryBus:
    """An in-memory AgentBus: tests append records; the agent's messages are collected."""

    configs: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)
    commands: list[bytes | None] = field(default_factory=list)
    infos: list[AgentInfo] = field(default_factory=list)
    responses: list[AgentResponse] = field(default_factory=list)
    followed: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    _cursor: int = 0
    _cmd_cursor: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _event: threading.Event = field(default_factory=threading.Event)

    def push(self, key: str, value: bytes | None) -> None:
        with self._lock:
            self.configs.append((key.encode(), value))
        self._event.set()

    def follow(self, node_key: str, command_keys: Sequence[str]) -> None:
        self.followed.append((node_key, tuple(command_keys)))
        self._cursor = 0

    def poll(self, timeout: float) -> BusBatch:
        self._event.wait(timeout)
        self._event.clear()
        with self._lock:
            configs = self.configs[self._cursor :]
            commands = self.commands[self._cmd_cursor :]
            self._cursor = len(self.configs)
            self._cmd_cursor = len(self.commands)
        return BusBatch(configs=configs, commands=commands, caught_up=True)

    def publish_info(self, key: str, info: AgentInfo) -> None:
        self.infos.append(info)

    def publish_response(self, key: str, response: AgentResponse) -> None:
        self.responses.append(response)

    def close(self) -> None:
        pass


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

    def status(self, instance: str):  # type: ignore[no-untyped-def]
        resp = self.agent.last_response
        if resp is None:
            return None
        for s in resp.instances:
            if s.name == instance:
                return s
        return None


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


@pytest.fixture
def agents() -> Iterator[list[RunningAgent]]:
    started: list[RunningAgent] = []
    yield started
    for a in started:
        a.halt()
