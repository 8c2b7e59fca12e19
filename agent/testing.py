"""In-memory fakes of the agent's ports, for tests and benchmarks of code that drives :class:`dsfleet.agent.loop.Agent`.

One set, shipped with the product (as ``kopf.testing`` ships its helpers), so the unit tests, the integration
helpers and the hollow-agent benchmark all fake the ports the same way:

- :class:`MemoryRuntime` (:class:`dsfleet.agent.ports.ContainerRuntime`): containers, volumes and images in dicts and
  sets; a started container runs at once; every call is recorded in ``calls``; :meth:`MemoryRuntime.set_state`,
  :meth:`MemoryRuntime.set_health`, :meth:`MemoryRuntime.add_container` and :meth:`MemoryRuntime.emit` change the
  host "behind the agent's back" (a ``docker stop`` by hand, a health check turning, a foreign container, log
  lines) and wake the loop as an engine event would. Faults are set up front: ``images`` (what is on the host),
  ``pullable`` (what a pull brings), ``fail_create`` and ``fail_start`` (images whose containers cannot be
  created or started). Given the agent's clock, start times and log lines carry its time.
- :class:`MemoryBus` (:class:`dsfleet.agent.ports.AgentBus`): config records and commands pushed by the test are
  signed by the coordinator key the bus plays (:meth:`MemoryBus.trust` is what the agent must believe) and
  delivered by the next poll, at the partition's end (caught up); batches can also be scripted one poll at a
  time; the agent's AgentInfo, AgentResponse and AgentLogs messages are collected.
- :class:`ManualClock` (:class:`dsfleet.agent.ports.Clock`): time moves only when the test moves it.
- :class:`dsfleet.agent.credentials.MemorySecretStore` (the secret-store port), re-exported here.

Every fake is safe to use from the agent's apply threads and from a test's thread at once. Nothing here touches
Docker, Kafka, files or the real clock, and nothing imports a test framework.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dsfleet.agent.containerrequests import ContainerRequest
from dsfleet.agent.containers import ObservedContainer, ObservedVolume
from dsfleet.agent.credentials import Credential, MemorySecretStore
from dsfleet.agent.errors import ImageNotFoundError, NameConflictError, PermanentError
from dsfleet.agent.ports import BusBatch, BusRecord, LogChunk, RuntimeInfo
from dsfleet.agent.trust import Trust
from dsfleet.plumbing.signing import Keyring, SigningKey, generate_key, sign_record
from dsfleet.schemas.signatures import SignedFields
from dsfleet.schemas.wire import AgentInfo, AgentLogs, AgentResponse

if TYPE_CHECKING:
    from dsfleet.agent.credentials import SecretStore
    from dsfleet.agent.ports import AgentBus, Clock, ContainerRuntime

__all__ = [
    "Credential",
    "ManualClock",
    "MemoryBus",
    "MemoryRuntime",
    "MemorySecretStore",
    "signed_record",
]

_RUNNING = frozenset({"running", "restarting"})


# -- runtime -------------------------------------------------------------------------------------------------


@dataclass
class _Log:
    lines: list[tuple[float, str]] = field(default_factory=list)


class MemoryRuntime:
    """A container engine held in memory.

    ``create`` makes a ``created`` container (ids ``000000000001``, ``000000000002``, …); ``start`` and ``restart``
    make it ``running`` (a new ``started_at`` each time; ``health`` ``starting`` when it has a health check) and
    print ``log_lines`` to its log; ``stop`` leaves it ``exited`` with code 0; ``remove`` forgets it (a missing one
    is not an error); ``rename`` renames it. ``list_containers`` honours the ``key=value`` label filter and
    ``also_names``, as the Docker adapter does. A name already taken raises
    :class:`dsfleet.agent.errors.NameConflictError`; an unknown container id raises ``PermanentError``.

    Images: ``images`` is what is on the host (None: every image); ``create`` of another one raises
    :class:`dsfleet.agent.errors.ImageNotFoundError`, ``pull_image`` adds it when it is in ``pullable``, else raises
    that error. ``fail_create``/``fail_start``: images whose containers cannot be created/started
    (``PermanentError``).

    ``calls`` records every action as text: ``create <name>``, ``start <id>``, ``stop <id>``, ``restart <id>``,
    ``remove <id>``, ``rename <id> <name>``, ``volume <name>``, ``remove-volume <name>``, ``pull <image>``. The
    agent's own calls do not wake :meth:`wait` (the loop looks again after acting anyway); the helpers that change
    the host behind the agent's back do. Times (``started_at``, log lines) come from ``clock`` when given (pass the
    agent's), else from a counter.
    """

    def __init__(
        self,
        *,
        version: str = "memory",
        nvidia: bool = False,
        log_lines: Sequence[str] = (),
        clock: Clock | None = None,
        images: Collection[str] | None = None,
        pullable: Collection[str] = (),
        fail_create: Collection[str] = (),
        fail_start: Collection[str] = (),
    ) -> None:
        self.version = version
        self.nvidia = nvidia
        self.log_lines = tuple(log_lines)
        """Printed by every container each time it starts (e.g. ``**PERF:`` lines, to report FPS)."""
        self.clock = clock
        self.images: set[str] | None = set(images) if images is not None else None
        self.pullable = set(pullable)
        self.fail_create = set(fail_create)
        self.fail_start = set(fail_start)
        self.containers: dict[str, ObservedContainer] = {}
        self.volumes: dict[str, ObservedVolume] = {}
        self.requests: dict[str, ContainerRequest] = {}
        """The request each container was created from, by id (``env`` holds secret values: keep it out of logs)."""
        self.calls: list[str] = []
        self._logs: dict[str, _Log] = {}
        self._serial = 0
        self._ticks = 0
        self._last_stamp = 0.0
        self._lock = threading.RLock()
        self._wake = threading.Event()

    # -- the port

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(self.version, self.nvidia)

    def list_containers(
        self, label: str, *, also_names: Sequence[str] = (), refresh: bool = False
    ) -> list[ObservedContainer]:
        key, _, value = label.partition("=")
        with self._lock:
            return [c for c in self.containers.values() if c.labels.get(key) == value or c.name in also_names]

    def list_volumes(self, label: str) -> list[ObservedVolume]:
        key, _, value = label.partition("=")
        with self._lock:
            return [v for v in self.volumes.values() if v.labels.get(key) == value]

    def has_image(self, image: str) -> bool:
        with self._lock:
            return self.images is None or image in self.images

    def pull_image(self, image: str) -> None:
        with self._lock:
            self.calls.append(f"pull {image}")
            if image not in self.pullable:
                raise ImageNotFoundError(image, "not present on this host, and its registry does not have it")
            if self.images is not None:
                self.images.add(image)

    def create(self, request: ContainerRequest) -> str:
        with self._lock:
            self.calls.append(f"create {request.name}")
            if any(c.name == request.name for c in self.containers.values()):
                raise NameConflictError(request.name)
            if self.images is not None and request.image not in self.images:
                raise ImageNotFoundError(request.image, "not present on this host")
            if request.image in self.fail_create:
                raise PermanentError(f"create {request.name}: 400 invalid container spec (injected)")
            self._serial += 1
            cid = f"{self._serial:012x}"
            self.containers[cid] = ObservedContainer(
                cid,
                request.name,
                dict(request.labels),
                "created",
                request.image,
                restart_policy=str(request.restart_policy.get("Name", "")),
            )
            self.requests[cid] = request
            self._logs[cid] = _Log()
            return cid

    def rename(self, container_id: str, name: str) -> None:
        with self._lock:
            self.calls.append(f"rename {container_id} {name}")
            c = self._get(container_id)
            if any(o.name == name and o.id != container_id for o in self.containers.values()):
                raise NameConflictError(name)
            self.containers[container_id] = replace(c, name=name)

    def start(self, container_id: str) -> None:
        with self._lock:
            self.calls.append(f"start {container_id}")
            c = self._get(container_id)
            if c.image in self.fail_start:
                self.containers[container_id] = replace(c, exit_code=128)
                raise PermanentError(f"start {container_id[:12]}: 400 failed to create task (injected)")
            self._run(container_id)

    def stop(self, container_id: str, timeout: float = 10.0) -> None:
        with self._lock:
            self.calls.append(f"stop {container_id}")
            self._set(container_id, "exited", 0)

    def restart(self, container_id: str, timeout: float = 10.0) -> None:
        with self._lock:
            self.calls.append(f"restart {container_id}")
            self._run(container_id)

    def remove(self, container_id: str) -> None:
        with self._lock:
            self.calls.append(f"remove {container_id}")
            self.containers.pop(container_id, None)
            self.requests.pop(container_id, None)
            self._logs.pop(container_id, None)

    def ensure_volume(self, name: str, labels: Mapping[str, str], *, recreate: bool = False) -> None:
        with self._lock:
            self.calls.append(f"volume {name}" + (" recreate" if recreate else ""))
            if recreate or name not in self.volumes:
                self.volumes[name] = ObservedVolume(name, dict(labels))

    def remove_volume(self, name: str) -> None:
        with self._lock:
            self.calls.append(f"remove-volume {name}")
            self.volumes.pop(name, None)

    def logs(self, container_id: str, since: float | None, tail: int = 100) -> LogChunk:
        with self._lock:
            entry = self._logs.get(container_id)
            if entry is None:
                return LogChunk((), since)
            lines = [(t, text) for t, text in entry.lines if since is None or t > since]
            if since is None:
                lines = lines[-tail:] if tail > 0 else []
            newest = max((t for t, _ in lines), default=since)
            return LogChunk(tuple(text for _, text in lines), newest, tuple(t for t, _ in lines))

    def read_logs(self, container_id: str, *, tail: int, since: float | None = None) -> LogChunk:
        with self._lock:
            self._get(container_id)
            entry = self._logs.get(container_id) or _Log()
            lines = [(t, text) for t, text in entry.lines if since is None or t > since][-tail:]
            newest = max((t for t, _ in lines), default=since)
            return LogChunk(tuple(text for _, text in lines), newest, tuple(t for t, _ in lines))

    def wait(self, timeout: float) -> bool:
        woke = self._wake.wait(timeout) if timeout > 0 else self._wake.is_set()
        self._wake.clear()
        return woke

    def close(self) -> None:
        pass

    # -- changes behind the agent's back (each wakes the loop, as an engine event would)

    def set_state(self, container_id: str, state: str, exit_code: int | None = None) -> None:
        """Put a container in ``state`` (``exited`` with 137 is a ``docker kill``; ``restarting`` a crash loop)."""
        with self._lock:
            if state in _RUNNING:
                self._run(container_id, restarted=True)
                self._set(container_id, state, exit_code)
            else:
                self._set(container_id, state, exit_code)
        self._wake.set()

    def set_health(self, container_id: str, health: str | None) -> None:
        """The container's health check turned ``health`` (``healthy``, ``unhealthy``)."""
        with self._lock:
            self.containers[container_id] = replace(self._get(container_id), health=health)
        self._wake.set()

    def add_container(self, container: ObservedContainer) -> None:
        """A container made by someone else (another tool, a user): listed only by its labels or its name."""
        with self._lock:
            self.containers[container.id] = container
            self._logs.setdefault(container.id, _Log())
        self._wake.set()

    def drop_container(self, container_id: str) -> None:
        """A ``docker rm -f`` by hand."""
        with self._lock:
            self.containers.pop(container_id, None)
            self.requests.pop(container_id, None)
            self._logs.pop(container_id, None)
        self._wake.set()

    def emit(self, container_id: str, *lines: str) -> None:
        """Lines the container prints (stdout and stderr alike)."""
        with self._lock:
            entry = self._logs.setdefault(container_id, _Log())
            for text in lines:
                entry.lines.append((self._stamp(), text))
        self._wake.set()

    def wake(self) -> None:
        """An engine event with no change behind it (the loop looks again)."""
        self._wake.set()

    def named(self, name: str) -> ObservedContainer | None:
        """The container called ``name`` (e.g. ``dsfleet-<instance>``), if any."""
        with self._lock:
            return next((c for c in self.containers.values() if c.name == name), None)

    # -- internals (called with the lock held)

    def _stamp(self) -> float:
        """A time after every earlier one: the clock's when there is one (ties broken by a microsecond)."""
        self._ticks += 1
        base = self.clock.time() if self.clock is not None else float(self._ticks)
        self._last_stamp = max(base, self._last_stamp + 1e-6)
        return self._last_stamp

    def _get(self, container_id: str) -> ObservedContainer:
        try:
            return self.containers[container_id]
        except KeyError:
            raise PermanentError(f"no such container: {container_id[:12]}") from None

    def _set(self, container_id: str, state: str, exit_code: int | None) -> None:
        c = self._get(container_id)
        self.containers[container_id] = replace(c, state=state, exit_code=exit_code)

    def _run(self, container_id: str, *, restarted: bool = False) -> None:
        c = self._get(container_id)
        started = self._stamp()
        request = self.requests.get(container_id)
        self.containers[container_id] = replace(
            c,
            state="running",
            exit_code=None,
            started_at=datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            restart_count=c.restart_count + (1 if restarted else 0),
            health="starting" if request is not None and request.healthcheck else None,
        )
        entry = self._logs.setdefault(container_id, _Log())
        for text in self.log_lines:
            entry.lines.append((self._stamp(), text))


# -- bus -----------------------------------------------------------------------------------------------------


class MemoryBus:
    """The agent's bus held in memory.

    :meth:`push_config` and :meth:`push_command` append records; the next :meth:`poll` delivers what is new, with
    ``caught_up`` (the partition's end is reached at once). :meth:`follow` reads everything again from the
    beginning, as the Kafka bus does. :meth:`enqueue` scripts whole batches instead (e.g. records delivered
    before the partition's end, or a ``reset``): they come first, one per poll, exactly as given. A poll with
    nothing to deliver waits up to its timeout for a push. The agent's messages land in ``infos`` and
    ``responses`` (replies to ``logs`` commands in ``logs``); ``followed`` records each :meth:`follow`.

    ``signer``: the coordinator's key the test plays (by default a key made for this bus; ``unsigned=True``:
    none). What is pushed is signed by it (:func:`signed_record`), as the coordinator signs what it writes; give
    the agent :meth:`trust` (its public key) to believe it. :meth:`config_record` and :meth:`command_record` sign
    records the same way for scripted batches (a bare ``(key, value)`` pair is unsigned).
    """

    def __init__(self, signer: SigningKey | None = None, *, unsigned: bool = False) -> None:
        self.signer: SigningKey | None = None if unsigned else (signer or generate_key())
        self.configs: list[BusRecord] = []
        self.commands: list[BusRecord] = []
        self.infos: list[AgentInfo] = []
        self.responses: list[AgentResponse] = []
        self.logs: list[AgentLogs] = []
        self.followed: list[tuple[str, tuple[str, ...]]] = []
        self.closed = False
        self._scripted: list[BusBatch] = []
        self._config_cursor = 0
        self._command_cursor = 0
        self._lock = threading.Lock()
        self._pushed = threading.Event()

    # -- what a test does

    def trust(self) -> Trust:
        """What an agent believes when it trusts this bus's coordinator key (nobody, for an unsigned bus)."""
        return Trust(Keyring.of([self.signer.public] if self.signer is not None else []))

    def config_record(
        self, key: str, value: bytes | None, *, generation: int | None = None, epoch: int = 0
    ) -> BusRecord:
        """An AgentConfig record of ``key`` signed by :attr:`signer` (``None``: a tombstone, of ``generation``),
        stored by the coordinator of leadership ``epoch`` (0: none)."""
        return signed_record(self.signer, key, value, generation=generation, epoch=epoch)

    def command_record(self, value: bytes | None) -> BusRecord:
        """An AgentCommand record signed by :attr:`signer`, keyed by its ``target``."""
        target = _json_field(value, "target")
        return signed_record(self.signer, target if isinstance(target, str) else None, value)

    def push_config(
        self, key: str, value: bytes | None, *, generation: int | None = None, epoch: int = 0
    ) -> None:
        """An AgentConfig record of ``key`` (``None``: a tombstone, of ``generation``) of leadership ``epoch``."""
        self.push_record(self.config_record(key, value, generation=generation, epoch=epoch))

    def push_command(self, value: bytes | None) -> None:
        """An AgentCommand record (keyed by its ``target``)."""
        self.push_record(self.command_record(value), command=True)

    def push_record(self, record: BusRecord, *, command: bool = False) -> None:
        """A record exactly as given (e.g. forged, replayed or signed by another key): an AgentConfig record, or
        an AgentCommand one with ``command``."""
        with self._lock:
            (self.commands if command else self.configs).append(record)
        self._pushed.set()

    def enqueue(self, *batches: BusBatch) -> None:
        with self._lock:
            self._scripted.extend(batches)
        self._pushed.set()

    # -- the port

    def follow(self, node_key: str, command_keys: Sequence[str]) -> None:
        with self._lock:
            self.followed.append((node_key, tuple(command_keys)))
            self._config_cursor = 0
            self._command_cursor = 0

    def poll(self, timeout: float) -> BusBatch:
        batch = self._take()
        if batch is None and timeout > 0:
            self._pushed.wait(timeout)
            batch = self._take()
        return batch if batch is not None else BusBatch(caught_up=True)

    def publish_info(self, key: str, info: AgentInfo) -> None:
        with self._lock:
            self.infos.append(info)

    def publish_response(self, key: str, response: AgentResponse) -> None:
        with self._lock:
            self.responses.append(response)

    def publish_logs(self, key: str, logs: AgentLogs) -> None:
        with self._lock:
            self.logs.append(logs)

    def close(self) -> None:
        self.closed = True

    def _take(self) -> BusBatch | None:
        with self._lock:
            self._pushed.clear()
            if self._scripted:
                return self._scripted.pop(0)
            configs = self.configs[self._config_cursor :]
            commands = self.commands[self._command_cursor :]
            if not configs and not commands:
                return None
            self._config_cursor = len(self.configs)
            self._command_cursor = len(self.commands)
            return BusBatch(configs=configs, commands=commands, caught_up=True)


def _json_field(value: bytes | None, name: str) -> object:
    try:
        data = json.loads(value) if value is not None else None
    except ValueError:
        return None
    return data.get(name) if isinstance(data, dict) else None


def signed_record(
    signer: SigningKey | None,
    key: str | None,
    value: bytes | None,
    *,
    generation: int | None = None,
    epoch: int = 0,
) -> BusRecord:
    """A record as the coordinator writes it: signed by ``signer`` (None: unsigned, no headers) over the signed fields its JSON value carries (schema, issue time, fleet, generation; a tombstone:
    ``generation``) and the leadership ``epoch`` (0: none)."""
    raw_key = key.encode() if key is not None else None
    if signer is None:
        return BusRecord(raw_key, value)
    schema = _json_field(value, "schema")
    sent_at = _json_field(value, "sent_at")
    fleet = _json_field(value, "fleet")
    gen = _json_field(value, "generation")
    fields = SignedFields(
        schema=schema if isinstance(schema, str) else "dsfleet.agent-config/v1",
        issued=sent_at if isinstance(sent_at, str) else "2026-01-01T00:00:00+00:00",
        fleet=fleet if isinstance(fleet, str) else None,
        generation=gen if isinstance(gen, int) and not isinstance(gen, bool) else generation,
        epoch=epoch or None,
    )
    return BusRecord(raw_key, value, sign_record(signer, fields, key, value))


# -- clock ---------------------------------------------------------------------------------------------------


class ManualClock:
    """A clock that stands still until :meth:`advance`; ``time()`` is ``epoch + monotonic()``."""

    def __init__(self, start: float = 1_000.0, epoch: float = 1_767_225_600.0) -> None:
        self.now = start
        self.epoch = epoch
        """2026-01-01T00:00:00Z by default."""
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def time(self) -> float:
        with self._lock:
            return self.epoch + self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


if TYPE_CHECKING:

    def _each_fake_is_its_port(
        runtime: MemoryRuntime, bus: MemoryBus, clock: ManualClock, secrets: MemorySecretStore
    ) -> tuple[ContainerRuntime, AgentBus, Clock, SecretStore]:
        return runtime, bus, clock, secrets  # mypy --strict checks each fake against its Protocol
