"""The agent's loop: wires the ports (runtime, bus, clock, secret store, state dir) and holds no decisions.

Every tick re-reads desired and actual state, plans with the pure :func:`dsfleet.agent.containers.compute_plan`, applies
the plan, then reports (level-triggered; Docker events and bus records only wake it, and a full resync every
``resync_seconds`` heals a missed event).

- **Desired state**: the last good ``AgentConfig`` of the agent's own key. At start it is ``<state-dir>/desired.json``
  (fail static: without a broker the agent converges from it). Records read while catching up on the partition
  are only remembered; at the partition's end the last one becomes desired (an agent that was down converges to
  the latest config, not through every old one); after that each good record applies at once. A rejected record
  (:func:`dsfleet.agent.desiredconfigs.accept_record`) is logged (rate-limited), counted and ignored.
- **Identity**: ``--node-name``, else the name kept in ``<state-dir>/node-name``, else the agent announces itself
  keyed by its machine id (``node`` = None) and waits for the coordinator's ``assign-name`` command, then keeps it.
  Commands sent before the agent started are ignored.
- **Reports**: ``AgentInfo`` at start and every heartbeat; ``AgentResponse`` every heartbeat and whenever its
  content changes. Log lines are read ``since`` the newest line read, per container, on each heartbeat and when a
  container changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dsfleet.agent import filestore
from dsfleet.agent.configfiles import FilePlan
from dsfleet.agent.containers import (
    ActionKind,
    ContainerAction,
    FileState,
    Finding,
    ObservedContainer,
    ObservedVolume,
    Plan,
    compute_plan,
    container_request,
    is_ours,
    pick_container,
    record_applied,
    volume_labels,
)
from dsfleet.agent.credentials import SecretStore
from dsfleet.agent.desiredconfigs import Accepted, DesiredConfig, accept_record, empty_config
from dsfleet.agent.drift import Applied, DriftFinding
from dsfleet.agent.errors import NameConflictError, SecretError
from dsfleet.agent.observations import (
    LogDigest,
    RestartHistory,
    digest_log,
    in_backoff,
    instance_status,
    observe_restarts,
)
from dsfleet.agent.ports import AgentBus, Clock, ContainerRuntime, RuntimeInfo
from dsfleet.schemas.errors import DsfleetError
from dsfleet.schemas.labels import LABEL_INSTANCE, LABEL_MANAGED, LABEL_NODE
from dsfleet.schemas.nodeconfigs import InstanceConfig
from dsfleet.schemas.wire import (
    BROADCAST_KEY,
    AgentCommand,
    AgentInfo,
    AgentResponse,
    CommandKind,
    Decoded,
    Drift,
    Gpu,
    InstanceStatus,
    Rejection,
    Topic,
    decode,
)

__all__ = ["Agent", "HostFacts", "LoopSettings", "SystemClock"]

log = logging.getLogger("dsfleet.agent")
MANAGED_FILTER = f"{LABEL_MANAGED}=true"
DRIFT_KEPT = 10
APPLY_WORKERS = 4


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    machine_id: str | None
    addresses: tuple[str, ...] = ()
    gpus: tuple[Gpu, ...] = ()
    agent_version: str = ""


@dataclass(frozen=True)
class LoopSettings:
    state_dir: Path
    node: str | None = None
    heartbeat_seconds: float = 5.0
    resync_seconds: float = 30.0
    self_heal: bool = True
    poll_seconds: float = 0.5
    """Longest wait for the bus or an engine event in one tick."""
    stop_timeout: float = 10.0


@dataclass
class _ContainerLog:
    digest: LogDigest = field(default_factory=LogDigest)
    since: float | None = None
    seen: tuple[str, int, str] | None = None


class Agent:
    def __init__(
        self,
        settings: LoopSettings,
        runtime: ContainerRuntime,
        bus: AgentBus | None,
        secrets: SecretStore,
        host: HostFacts,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir.resolve()
        self.runtime = runtime
        self.bus = bus
        self.secrets = secrets
        self.host = host
        self.clock: Clock = clock or SystemClock()
        self.started_at = self.clock.time()
        self.node: str | None = settings.node or filestore.load_node_name(self.state_dir)
        self.desired: DesiredConfig | None = None
        self.pending: Accepted | None = None
        self.caught_up = False
        self.applied: dict[str, Applied] = filestore.load_applied(self.state_dir)
        self._saved_applied = dict(self.applied)
        self.observed_generation: int | None = None
        self.rejected = 0
        """AgentConfig records of this node that were rejected (logged rate-limited, never applied)."""
        self._rejected_reported = 0
        self.runtime_info: RuntimeInfo | None = None
        self.responses_sent = 0
        self.last_response: AgentResponse | None = None
        self._logs: dict[str, _ContainerLog] = {}
        self._restarts: dict[str, RestartHistory] = {}
        self._drift: dict[str, list[Drift]] = {}
        self._active_drift: dict[tuple[str, str], int] = {}
        self._errors: dict[str, str] = {}
        self._clashes: set[str] = set()
        self._file_plans: dict[str, FilePlan] = {}
        """This tick's file plans by instance (placeholders filled), carried out by the actions that write files."""
        self._node_error: str | None = None
        self._dirty = True
        self._status_dirty = True
        self._next_resync = 0.0
        self._next_heartbeat = 0.0
        self._last_reject_log = -1e9
        self._observed: list[ObservedContainer] = []
        self._volumes: list[ObservedVolume] = []
        self._findings: tuple[Finding, ...] = ()
        self._load_desired()

    # -- desired state ----------------------------------------------------------------------------------------

    def _load_desired(self) -> None:
        try:
            kept = filestore.load_desired(self.state_dir)
        except DsfleetError as exc:
            log.warning("desired.json unreadable, ignored: %s", exc)
            return
        if kept is not None and (self.node is None or kept.node == self.node):
            self.desired = kept
            log.info("desired config from desired.json node=%s instances=%d", kept.node, len(kept.instances))

    def _generation(self) -> int | None:
        return getattr(self.desired, "generation", None)

    def _set_desired(self, accepted: Accepted) -> None:
        assert self.node is not None
        config: DesiredConfig = accepted.config if accepted.config is not None else empty_config(self.node)
        if self.desired is not None and self.desired == config:
            return
        self.desired = config
        self._dirty = True
        log.info(
            "desired config node=%s generation=%s instances=%d",
            self.node,
            getattr(config, "generation", None),
            len(config.instances),
        )
        try:
            filestore.save_desired(self.state_dir, config)
        except DsfleetError as exc:
            log.error("cannot keep desired.json: %s", exc)

    def _on_config(self, key: bytes | None, value: bytes | None) -> None:
        if self.node is None:
            return
        verdict = accept_record(self.node, key, value)
        if verdict is None:
            return
        if isinstance(verdict, Rejection):
            self.rejected += 1
            now = self.clock.monotonic()
            if now - self._last_reject_log >= 10.0 or self.rejected <= 3:
                self._last_reject_log = now
                log.warning("ignored AgentConfig record (%d so far): %s", self.rejected, verdict)
            return
        if self.caught_up:
            self._set_desired(verdict)
        else:
            self.pending = verdict

    def _on_command(self, value: bytes | None) -> None:
        decoded = decode(Topic.AGENT_COMMAND, None, value)
        if not isinstance(decoded, Decoded):
            return
        cmd = decoded.message
        assert isinstance(cmd, AgentCommand)
        try:
            sent = datetime.fromisoformat(cmd.sent_at).timestamp()
        except ValueError:
            return
        if sent < self.started_at - 1.0:
            return  # older than this agent: a replay of the topic
        mine = {BROADCAST_KEY, self.node, self.host.machine_id, self.host.hostname} - {None}
        if cmd.target not in mine:
            return
        if cmd.command is CommandKind.REFRESH:
            self._next_heartbeat = 0.0
        elif cmd.command is CommandKind.ASSIGN_NAME and cmd.node and self.node is None:
            if cmd.machineId not in (None, self.host.machine_id):
                return
            log.info("named by the coordinator node=%s", cmd.node)
            self.node = cmd.node
            try:
                filestore.save_node_name(self.state_dir, cmd.node)
            except DsfleetError as exc:
                log.error("cannot keep the node name: %s", exc)
            self._follow()
            self._next_heartbeat = 0.0
        elif cmd.command is CommandKind.REJECT:
            log.error("the coordinator cannot name this agent: %s", cmd.reason)

    def _follow(self) -> None:
        if self.bus is None:
            return
        keys = [k for k in (self.node, self.host.machine_id, self.host.hostname, BROADCAST_KEY) if k]
        self.caught_up = False
        self.pending = None
        self.bus.follow(self.node or "", keys)

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        log.info("agent starting node=%s state_dir=%s", self.node, self.state_dir)
        self._follow()
        while not stop.is_set():
            self.step()
        log.info("agent stopping (containers keep running)")

    def step(self) -> None:
        """One tick: read the bus (or wait for an engine event), reconcile when needed, report when due."""
        if self.bus is not None:
            try:
                batch = self.bus.poll(self.settings.poll_seconds)
            except DsfleetError as exc:
                log.warning("bus: %s", exc)
                batch = None
            if batch is not None:
                if batch.reset:
                    self.caught_up = False
                    self.pending = None
                for key, value in batch.configs:
                    self._on_config(key, value)
                for value in batch.commands:
                    self._on_command(value)
                if batch.caught_up and not self.caught_up:
                    self.caught_up = True
                    log.info("caught up on AgentConfig node=%s", self.node)
                    if self.pending is not None:
                        self._set_desired(self.pending)
                        self.pending = None
            woke = self.runtime.wait(0)
        else:
            woke = self.runtime.wait(self.settings.poll_seconds)
        now = self.clock.monotonic()
        resync = now >= self._next_resync
        heartbeat = now >= self._next_heartbeat
        if self.node is not None and (woke or resync or heartbeat or self._dirty):
            self._dirty = False
            self.reconcile(refresh=resync, read_all_logs=heartbeat)
            if resync:
                self._next_resync = now + self.settings.resync_seconds
        if heartbeat:
            self._next_heartbeat = now + self.settings.heartbeat_seconds
            if self.rejected != self._rejected_reported:
                log.warning(
                    "ignored %d AgentConfig records since the last heartbeat (total %d)",
                    self.rejected - self._rejected_reported,
                    self.rejected,
                )
                self._rejected_reported = self.rejected
            self._announce()
        self._report(force=heartbeat)

    # -- reconcile ------------------------------------------------------------------------------------------

    def _file_state(self, inst: InstanceConfig) -> FileState:
        """Compare the instance's files on disk with the desired ones; the file plan (secrets filled in once per
        tick) is kept for :meth:`_write_files` to carry out."""
        try:
            plan, existing = filestore.instance_file_plan(self.state_dir, inst, self.secrets)
        except DsfleetError as exc:
            self._file_plans.pop(inst.name, None)
            return FileState(error=str(exc).splitlines()[0])
        self._file_plans[inst.name] = plan
        return FileState(writes=tuple(w.path for w in plan.writes), removals=plan.removals, existing=existing)

    def _write_files(self, inst: InstanceConfig) -> None:
        """Write the instance's files as this tick planned them (planned again only if it was not)."""
        plan = self._file_plans.pop(inst.name, None)
        if plan is None:
            filestore.write_instance_files(self.state_dir, inst, self.secrets)
        elif not plan.empty:
            filestore.apply_file_plan(self.state_dir, inst.name, plan)

    def reconcile(self, *, refresh: bool = False, read_all_logs: bool = False) -> Plan | None:
        assert self.node is not None
        try:
            if self.runtime_info is None:
                self.runtime_info = self.runtime.info()
            observed = self.runtime.list_containers(
                MANAGED_FILTER, also_names=sorted(self._clashes), refresh=refresh
            )
            volumes = self.runtime.list_volumes(MANAGED_FILTER)
        except DsfleetError as exc:
            if self._node_error != str(exc):
                log.warning("container runtime: %s", exc)
                self._status_dirty = True
            self._node_error = str(exc)
            return None
        self._node_error = None
        self._status_dirty = True
        self._observed = observed
        self._volumes = volumes
        desired = self.desired.instances if self.desired is not None else ()
        self._file_plans = {}
        files = {inst.name: self._file_state(inst) for inst in desired}
        generation = self._generation()
        self.applied = record_applied(self.applied, desired, observed, files, self.node, generation)
        plan = compute_plan(
            self.node,
            desired,
            observed,
            files,
            self.applied,
            volumes,
            self_heal=self.settings.self_heal,
            prune=getattr(self.desired, "prune", True),
        )
        self._findings = plan.findings
        self._note_drift(plan.drift)
        by_name = {inst.name: inst for inst in desired}
        removals = [a for a in plan.actions if a.kind is ActionKind.REMOVE]
        others = [a for a in plan.actions if a.kind is not ActionKind.REMOVE]
        # removals first (they free names and volumes); the other actions touch one instance each: in parallel
        results = [self._apply(a, by_name.get(a.instance), generation) for a in removals]
        if len(others) > 1:
            with ThreadPoolExecutor(max_workers=APPLY_WORKERS, thread_name_prefix="apply") as pool:
                results += pool.map(lambda a: self._apply(a, by_name.get(a.instance), generation), others)
        else:
            results += [self._apply(a, by_name.get(a.instance), generation) for a in others]
        failures = results.count(False)
        self._status_dirty = True
        if plan.actions:
            self._dirty = True  # look again at once: the status shows the result
        if self.applied != self._saved_applied:
            try:
                filestore.save_applied(self.state_dir, self.applied)
                self._saved_applied = dict(self.applied)
            except DsfleetError as exc:
                log.error("cannot keep applied.json: %s", exc)
        if failures == 0 and not plan.findings:
            self.observed_generation = generation
        self._read_logs(observed, read_all_logs)
        return plan

    def _apply(self, action: ContainerAction, inst: InstanceConfig | None, generation: int | None) -> bool:
        name = action.instance
        log.info(
            "%s instance=%s container=%s reason=%s",
            action.kind,
            name,
            (action.container_id or "")[:12],
            action.reason,
        )
        try:
            if action.kind is ActionKind.REMOVE:
                assert action.container_id is not None
                self.runtime.remove(action.container_id)
                if inst is None and name:
                    for vol in self._volumes:
                        if vol.labels.get(LABEL_INSTANCE) == name and vol.labels.get(LABEL_NODE) == self.node:
                            self.runtime.remove_volume(vol.name)
                    filestore.remove_instance_dir(self.state_dir, name)
                    self.applied.pop(name, None)
                    self._drift.pop(name, None)
            elif inst is None:
                return True
            elif action.kind in (ActionKind.CREATE, ActionKind.RECREATE):
                if action.container_id is not None:
                    self.runtime.remove(action.container_id)
                self._create(inst, action, generation)
            elif action.kind is ActionKind.RESTART:
                assert action.container_id is not None
                self._write_files(inst)
                self.runtime.restart(action.container_id, self.settings.stop_timeout)
                self.applied[name] = Applied(action.container_id, inst.specHash, inst.filesHash, generation)
            elif action.kind is ActionKind.WRITE_FILES:
                assert action.container_id is not None
                self._write_files(inst)
                self.applied[name] = Applied(action.container_id, inst.specHash, inst.filesHash, generation)
            elif action.kind is ActionKind.START:
                assert action.container_id is not None
                self.runtime.start(action.container_id)
            elif action.kind is ActionKind.STOP:
                assert action.container_id is not None
                self.runtime.stop(action.container_id, self.settings.stop_timeout)
        except NameConflictError as exc:
            self._clashes.add(exc.name)
            self._errors[name] = str(exc)
            log.warning("instance=%s %s", name, exc)
            return False
        except DsfleetError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._errors[name] = first
            log.warning("%s failed instance=%s error=%s", action.kind, name, first)
            return False
        self._errors.pop(name, None)
        for kind in action.heals:
            self._mark_healed(name, kind)
        return True

    def _create(self, inst: InstanceConfig, action: ContainerAction, generation: int | None) -> None:
        assert self.node is not None
        self._write_files(inst)
        spec = inst.container
        self.runtime.ensure_volume(
            spec.engineVolume, volume_labels(inst, self.node), recreate=action.recreate_volume
        )
        secret_env: dict[str, str] = {}
        problems: list[SecretError] = []
        for var, ref in sorted(spec.envSecrets.items()):
            try:
                cred = self.secrets.get(ref.secretRef)
            except SecretError as exc:
                problems.append(exc)
                continue
            value = cred.username if ref.key == "username" else cred.password
            secret_env[var] = value or ""
        if problems:
            raise SecretError.combine(problems)
        nvidia = bool(self.runtime_info and self.runtime_info.nvidia)
        request = container_request(
            inst,
            self.node,
            generation,
            str(filestore.instance_dir(self.state_dir, inst.name)),
            secret_env,
            nvidia=nvidia,
        )
        cid = self.runtime.create(request)
        self.applied[inst.name] = Applied(cid, inst.specHash, inst.filesHash, generation)
        if action.start:
            self.runtime.start(cid)

    # -- drift bookkeeping ----------------------------------------------------------------------------------

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self.clock.time(), UTC).isoformat()

    def _note_drift(self, findings: Sequence[DriftFinding]) -> None:
        current = {(f.instance, str(f.kind)) for f in findings}
        for key in list(self._active_drift):
            if key not in current:
                del self._active_drift[key]  # gone by itself (or healed by someone else)
        for f in findings:
            key = (f.instance, str(f.kind))
            if key in self._active_drift:
                continue
            entries = self._drift.setdefault(f.instance, [])
            entries.append(Drift(kind=str(f.kind), detail=f.detail[:1000], at=self._now_iso(), healed=False))
            del entries[:-DRIFT_KEPT]
            self._active_drift[key] = len(entries) - 1
            log.warning("drift instance=%s kind=%s detail=%s", f.instance, f.kind, f.detail)

    def _mark_healed(self, instance: str, kind: str) -> None:
        index = self._active_drift.pop((instance, str(kind)), None)
        entries = self._drift.get(instance, [])
        if index is not None and index < len(entries):
            entries[index] = entries[index].model_copy(update={"healed": True})
            log.info("healed instance=%s kind=%s", instance, kind)

    # -- logs and status ------------------------------------------------------------------------------------

    def _read_logs(self, observed: Sequence[ObservedContainer], read_all: bool) -> None:
        assert self.node is not None
        ours = [c for c in observed if is_ours(c, self.node)]
        now = self.clock.monotonic()
        for c in ours:
            self._restarts[c.id] = observe_restarts(
                self._restarts.get(c.id, RestartHistory()), c.restart_count, now
            )
            entry = self._logs.setdefault(c.id, _ContainerLog())
            seen = (c.state, c.restart_count, c.started_at or "")
            if not read_all and entry.seen == seen:
                continue
            entry.seen = seen
            try:
                chunk = self.runtime.logs(c.id, entry.since)
            except DsfleetError:
                continue
            entry.digest = digest_log(entry.digest, chunk.lines)
            entry.since = chunk.until if chunk.until is not None else entry.since
        alive = {c.id for c in ours}
        for gone in set(self._logs) - alive:
            del self._logs[gone]
        for gone in set(self._restarts) - alive:
            del self._restarts[gone]

    def statuses(self) -> tuple[InstanceStatus, ...]:
        assert self.node is not None
        desired = self.desired.instances if self.desired is not None else ()
        ours = [c for c in self._observed if is_ours(c, self.node)]
        findings = {f.instance: f.detail for f in self._findings}
        now = self.clock.monotonic()
        result = []
        for inst in sorted(desired, key=lambda i: i.name):
            candidates = [c for c in ours if c.instance == inst.name]
            current = pick_container(candidates, inst) if candidates else None
            entry = self._logs.get(current.id) if current else None
            history = self._restarts.get(current.id) if current else None
            applied = self.applied.get(inst.name)
            result.append(
                instance_status(
                    inst.name,
                    current,
                    paused=inst.paused,
                    backoff=bool(history and in_backoff(history, now)),
                    log=entry.digest if entry else LogDigest(),
                    drift=self._drift.get(inst.name, ()),
                    generation=applied.generation if applied else None,
                    spec_hash=current.spec_hash if current else None,
                    files_hash=applied.files_hash if applied and applied.files_hash else None,
                    config_hash=inst.configHash,
                    error=findings.get(inst.name) or self._errors.get(inst.name),
                )
            )
        return tuple(result)

    def response(self) -> AgentResponse:
        assert self.node is not None
        return AgentResponse(
            sent_at=self._now_iso(),
            node=self.node,
            observedGeneration=self.observed_generation,
            configHash=self.desired.configHash if self.desired is not None else None,
            instances=self.statuses(),
            error=self._node_error,
        )

    def _report(self, *, force: bool) -> None:
        if self.node is None or not (force or self._status_dirty):
            return
        self._status_dirty = False
        response = self.response()
        previous = self.last_response
        changed = previous is None or previous.model_copy(update={"sent_at": ""}) != response.model_copy(
            update={"sent_at": ""}
        )
        if not (force or changed):
            return
        self.last_response = response
        if self.bus is None:
            return
        try:
            self.bus.publish_response(self.node, response)
            self.responses_sent += 1
        except DsfleetError as exc:
            log.debug("response not sent: %s", exc)

    def info(self) -> AgentInfo:
        rt = self.runtime_info
        return AgentInfo(
            sent_at=self._now_iso(),
            node=self.node,
            hostname=self.host.hostname[:255],
            machineId=self.host.machine_id,
            addresses=self.host.addresses,
            gpus=self.host.gpus,
            agentVersion=self.host.agent_version,
            dockerVersion=rt.version if rt else None,
            nvidiaRuntime=bool(rt and rt.nvidia),
            startedAt=datetime.fromtimestamp(self.started_at, UTC).isoformat(),
            heartbeatSeconds=self.settings.heartbeat_seconds,
            observedGeneration=self.observed_generation,
            configHash=self.desired.configHash if self.desired is not None else None,
        )

    def _announce(self) -> None:
        if self.bus is None:
            return
        key = self.node or self.host.machine_id or self.host.hostname
        try:
            self.bus.publish_info(key, self.info())
        except DsfleetError as exc:
            log.debug("info not sent: %s", exc)
