"""The agent loop's reports: instance statuses, ``AgentResponse`` and ``AgentInfo``, log digests, drift notes,
host-side file conditions and the replies to ``logs`` commands (mixed into :class:`dsfleet.agent.loop.Agent`).

- ``AgentInfo`` at start and every heartbeat; ``AgentResponse`` every heartbeat and whenever its content changes.
- Log lines are read ``since`` the newest line read, per container, on each heartbeat and when a container changed
  (:func:`dsfleet.agent.observations.digest_log`); ``logs`` commands are answered with an ``AgentLogs``
  (:mod:`dsfleet.agent.logreplies`).
- Drift found by the plan is kept per instance (the last :data:`DRIFT_KEPT`), logged once when it appears and marked
  healed when an action heals it or it goes by itself.
- Texts that may carry a credential (last log line, errors, condition messages, log replies) go through
  :func:`dsfleet.schemas.redaction.redact` with the values of the secrets the instances use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from dsfleet.agent.conditions import files_condition, instance_conditions
from dsfleet.agent.configfiles import instance_refs
from dsfleet.agent.containers import (
    FileState,
    ObservedContainer,
    container_name,
    instance_containers,
    is_ours,
    next_name,
)
from dsfleet.agent.drift import DriftFinding
from dsfleet.agent.logreplies import DEFAULT_TAIL, logs_reply, parse_since
from dsfleet.agent.loopstate import MANAGED_FILTER, ContainerLog, LoopState, first_line
from dsfleet.agent.observations import (
    LogDigest,
    RestartHistory,
    applied_config_hash,
    digest_log,
    in_backoff,
    instance_status,
    observe_restarts,
)
from dsfleet.plumbing.signing import enrollment_proof
from dsfleet.schemas.errors import DsfleetError
from dsfleet.schemas.nodeconfigs import InstanceConfig
from dsfleet.schemas.redaction import redact
from dsfleet.schemas.wire import (
    BROADCAST_KEY,
    AgentCommand,
    AgentInfo,
    AgentLogs,
    AgentResponse,
    CameraStatus,
    Drift,
    InstanceCondition,
    InstanceStatus,
)

__all__ = ["DRIFT_KEPT", "ReportingMixin"]

log = logging.getLogger("dsfleet.agent")
DRIFT_KEPT = 10


class ReportingMixin(LoopState):
    def _camera_statuses(self, name: str) -> tuple[CameraStatus, ...]:
        """Per-camera status of a REST instance (:class:`dsfleet.agent.streamsync.HotCamerasMixin`)."""
        return ()

    # -- drift bookkeeping ----------------------------------------------------------------------------------

    def _note_drift(self, findings: Sequence[DriftFinding]) -> None:
        current = {(f.instance, str(f.kind)) for f in findings}
        for key in list(self._active_drift):
            if key not in current:
                self._mark_healed(*key)  # gone by itself, or healed by someone else: no longer active
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

    # -- conditions and secrets -----------------------------------------------------------------------------

    def _note_file_conditions(self, desired: Sequence[InstanceConfig], files: dict[str, FileState]) -> None:
        """Host-side problems with instances' files: kept as conditions, logged at WARNING once per change."""
        current: dict[str, InstanceCondition] = {}
        for inst in desired:
            state = files.get(inst.name)
            if state is None or state.error is None:
                continue
            before = self._file_conditions.get(inst.name)
            since = before.since if before is not None and before.reason == state.reason else self._now_iso()
            cond = files_condition(inst, state.reason, state.error, state.refs, since or self._now_iso())
            current[inst.name] = cond
            if before is None or (before.reason, before.message) != (cond.reason, cond.message):
                log.warning(
                    "instance=%s condition=%s cameras=%s %s",
                    inst.name,
                    cond.reason,
                    ",".join(cond.cameras) or "-",
                    redact(cond.message, self._secret_values),
                )
        for name in set(self._file_conditions) - set(current):
            log.info("instance=%s condition=%s cleared", name, self._file_conditions[name].reason)
        self._file_conditions = current

    def _collect_secret_values(self, desired: Sequence[InstanceConfig]) -> tuple[str, ...]:
        refs: set[str] = set()
        for inst in desired:
            refs.update(instance_refs(inst))
            refs.update(e.secretRef for e in inst.container.envSecrets.values())
            refs.update(inst.cameraSecrets.values())
        values: set[str] = set()
        for ref in sorted(refs):
            try:
                cred = self.secrets.get(ref)
            except DsfleetError:
                continue
            if cred.password:
                values.add(cred.password)
        return tuple(sorted(values))

    def _conditions(self, inst: InstanceConfig) -> list[InstanceCondition]:
        found = instance_conditions(
            inst.configHash,
            files=self._file_conditions.get(inst.name),
            failure=self._failures.get(inst.name),
            pulling=self._pulling.get(inst.name),
        )
        return [c.model_copy(update={"message": redact(c.message, self._secret_values)}) for c in found]

    # -- logs and status ------------------------------------------------------------------------------------

    def _read_logs(self, observed: Sequence[ObservedContainer], read_all: bool) -> None:
        assert self.node is not None
        ours = [c for c in observed if is_ours(c, self.node)]
        now = self.clock.monotonic()
        wall = self.clock.time()
        for c in ours:
            self._restarts[c.id] = observe_restarts(
                self._restarts.get(c.id, RestartHistory()), c.restart_count, now
            )
            entry = self._logs.setdefault(c.id, ContainerLog())
            seen = (c.state, c.restart_count, c.started_at or "")
            if not read_all and entry.seen == seen:
                continue
            entry.seen = seen
            try:
                chunk = self.runtime.logs(c.id, entry.since)
            except DsfleetError:
                continue
            entry.digest = digest_log(entry.digest, chunk.lines, chunk.times, read_at=wall)
            entry.since = chunk.until if chunk.until is not None else entry.since
        alive = {c.id for c in ours}
        for gone in set(self._logs) - alive:
            del self._logs[gone]
        for gone in set(self._restarts) - alive:
            del self._restarts[gone]

    def statuses(self) -> tuple[InstanceStatus, ...]:
        assert self.node is not None
        desired = self.desired.instances if self.desired is not None else ()
        findings = {f.instance: f.detail for f in self._findings}
        now = self.clock.monotonic()
        wall = self.clock.time()
        secrets = self._secret_values
        result = []
        for inst in sorted(desired, key=lambda i: i.name):
            current, nxt = instance_containers(inst, self._observed, self.node)
            shown = current or nxt
            entry = self._logs.get(shown.id) if shown else None
            history = self._restarts.get(shown.id) if shown else None
            applied = self.applied.get(inst.name)
            if applied is not None and shown is not None and applied.container_id != shown.id:
                applied = None
            digest = entry.digest if entry else LogDigest()
            digest = LogDigest(
                digest.fps,
                redact(digest.last_line, secrets),
                redact(digest.last_error, secrets),
                digest.fps_at,
                digest.perf_interval,
            )
            files_hash = applied.files_hash if applied and applied.files_hash else None
            error = findings.get(inst.name) or self._errors.get(inst.name)
            result.append(
                instance_status(
                    inst.name,
                    shown,
                    paused=inst.paused,
                    backoff=bool(history and in_backoff(history, now)),
                    log=digest,
                    drift=self._drift.get(inst.name, ()),
                    generation=applied.generation if applied else None,
                    spec_hash=shown.spec_hash if shown else None,
                    files_hash=files_hash,
                    config_hash=applied_config_hash(inst, shown, files_hash),
                    error=redact(error, secrets),
                    conditions=self._conditions(inst),
                    now=wall,
                    read_period=self.settings.heartbeat_seconds,
                    cameras=self._camera_statuses(inst.name),
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
            error=redact(self._node_error, self._secret_values),
            fleet=self.bound_fleet,
            rejections=tuple(self.rejections),
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

    def _answer_logs(self, cmd: AgentCommand) -> None:
        """Reply to a ``logs`` command with the instance's recent log (redacted, capped), or why not."""
        if self.node is None or self.bus is None or not cmd.requestId or not cmd.instance:
            return
        sent_at = self._now_iso()
        container: ObservedContainer | None = None
        error: str | None = None
        lines: tuple[str, ...] = ()
        times: tuple[float, ...] = ()
        try:
            observed = self.runtime.list_containers(MANAGED_FILTER)
        except DsfleetError as exc:
            observed = []
            error = f"container runtime: {first_line(exc)}"
        mine = [c for c in observed if is_ours(c, self.node) and c.instance == cmd.instance]
        if mine:
            named = {c.name: c for c in mine}
            container = (
                named.get(container_name(cmd.instance)) or named.get(next_name(cmd.instance)) or mine[0]
            )
        elif error is None:
            if cmd.target == BROADCAST_KEY:
                return  # asked of every node: the one that runs it answers
            error = f"instance {cmd.instance} has no container on node {self.node}"
        if container is not None:
            try:
                since = parse_since(cmd.since, self.clock.time())
                chunk = self.runtime.read_logs(container.id, tail=cmd.tail or DEFAULT_TAIL, since=since)
                lines, times = chunk.lines, chunk.times
            except ValueError as exc:
                error = str(exc)
            except DsfleetError as exc:
                error = f"cannot read the log of {container.name}: {first_line(exc)}"
        reply: AgentLogs = logs_reply(
            self.node,
            cmd,
            sent_at=sent_at,
            lines=lines,
            times=times,
            error=error,
            secrets=self._secret_values,
        )
        try:
            self.bus.publish_logs(self.node, reply)
            self.logs_sent += 1
        except DsfleetError as exc:
            log.warning("logs reply not sent request=%s: %s", cmd.requestId, exc)
            return
        log.info(
            "logs sent instance=%s request=%s lines=%d bytes=%d truncated=%s error=%s",
            cmd.instance,
            cmd.requestId,
            len(lines),
            len(reply.text.encode("utf-8")),
            reply.truncated,
            reply.error or "-",
        )

    # -- the agent itself -----------------------------------------------------------------------------------

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
            fleet=self.bound_fleet,
            publicKey=self.identity.public.text(),
            enrollProof=self._enroll_proof(),
        )

    def _enroll_proof(self) -> str | None:
        token = self.settings.enroll_token
        if not token:
            return None
        return enrollment_proof(token, self.identity.public.text())

    def _announce(self) -> None:
        if self.bus is None:
            return
        key = self.node or self.host.machine_id or self.host.hostname
        try:
            self.bus.publish_info(key, self.info())
        except DsfleetError as exc:
            log.debug("info not sent: %s", exc)
