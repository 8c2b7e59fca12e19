"""Ports: the Protocols the agent's loop talks to, so it is unit-tested with in-memory fakes and
integration-tested on the real things (``dsfleet.agent.runtime`` for Docker, ``dsfleet.agent.bus`` for Kafka).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, Protocol

from dsfleet.agent.containerrequests import ContainerRequest
from dsfleet.agent.containers import ObservedContainer, ObservedVolume
from dsfleet.schemas.wire import AgentInfo, AgentLogs, AgentResponse

__all__ = ["AgentBus", "BusBatch", "BusRecord", "Clock", "ContainerRuntime", "LogChunk", "RuntimeInfo"]


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float:
        """Seconds since the epoch (for ``sent_at`` and drift times)."""
        ...


@dataclass(frozen=True)
class RuntimeInfo:
    version: str | None
    nvidia: bool


@dataclass(frozen=True)
class LogChunk:
    lines: tuple[str, ...]
    until: float | None
    """Timestamp (epoch seconds) of the newest line read: the ``since`` of the next read."""
    times: tuple[float, ...] = ()
    """Each line's timestamp (epoch seconds), when the engine gives them."""


class ContainerRuntime(Protocol):
    """The container engine. Every method raises ``TemporaryError`` (engine unreachable, conflict) or
    ``PermanentError`` (bad request, image missing)."""

    def info(self) -> RuntimeInfo: ...

    def list_containers(
        self, label: str, *, also_names: Sequence[str] = (), refresh: bool = False
    ) -> list[ObservedContainer]:
        """Every container (running or not) carrying ``label`` (``key=value``), plus the containers named in
        ``also_names`` (known name clashes); one list call, details only for containers that changed (all when
        ``refresh``)."""
        ...

    def list_volumes(self, label: str) -> list[ObservedVolume]: ...

    def has_image(self, image: str) -> bool:
        """Whether ``image`` is present on the host."""
        ...

    def pull_image(self, image: str) -> None:
        """Pull ``image`` (blocking; the loop runs it in the background). Raises
        :class:`dsfleet.agent.errors.ImageNotFoundError` when the registry does not have it or cannot be
        reached."""
        ...

    def create(self, request: ContainerRequest) -> str:
        """Create (not start) the container; returns its id."""
        ...

    def rename(self, container_id: str, name: str) -> None: ...

    def start(self, container_id: str) -> None: ...

    def stop(self, container_id: str, timeout: float = 10.0) -> None: ...

    def restart(self, container_id: str, timeout: float = 10.0) -> None: ...

    def remove(self, container_id: str) -> None:
        """Stop and remove; a container already gone is not an error."""
        ...

    def ensure_volume(self, name: str, labels: Mapping[str, str], *, recreate: bool = False) -> None: ...

    def remove_volume(self, name: str) -> None: ...

    def logs(self, container_id: str, since: float | None, tail: int = 100) -> LogChunk:
        """Log lines (stdout and stderr) newer than ``since``; the last ``tail`` lines when ``since`` is None."""
        ...

    def read_logs(self, container_id: str, *, tail: int, since: float | None = None) -> LogChunk:
        """At most the last ``tail`` log lines (stdout and stderr), of those newer than ``since`` when given
        (``docker logs --tail N --since T``)."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block until an engine event about a managed container arrives, or ``timeout``; True on an event."""
        ...

    def close(self) -> None: ...


class BusRecord(NamedTuple):
    """One record as read: key, value (None: a tombstone) and headers as text (the signature travels there)."""

    key: bytes | None
    value: bytes | None
    headers: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class BusBatch:
    """What one poll of the bus brought: records of the agent's own AgentConfig key (raw, in order), commands,
    and whether the config partition was read to its end (caught up) in this poll. A record may be given as a
    ``(key, value)`` pair (no headers)."""

    configs: Sequence[BusRecord | tuple[bytes | None, bytes | None]] = ()
    commands: Sequence[BusRecord] = ()
    caught_up: bool = False
    reset: bool = False
    """The partitions are being read again from the beginning (broker back after a loss): catch up again."""


class AgentBus(Protocol):
    def follow(self, node_key: str, command_keys: Sequence[str]) -> None:
        """Read the AgentConfig partition of ``node_key`` from the beginning, and the AgentCommand partitions
        of ``command_keys`` (node name, machine id, ``*``); replaces what was followed before."""
        ...

    def poll(self, timeout: float) -> BusBatch: ...

    def publish_info(self, key: str, info: AgentInfo) -> None: ...

    def publish_response(self, key: str, response: AgentResponse) -> None: ...

    def publish_logs(self, key: str, logs: AgentLogs) -> None:
        """A reply to a ``logs`` command, on the AgentResponse topic."""
        ...

    def close(self) -> None: ...
