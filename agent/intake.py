"""The agent loop's intake: the desired config and the commands read from the bus, the fleet and generation
binding, refusals, and the agent's name (mixed into :class:`dsfleet.agent.loop.Agent`).

- **Desired state**: the last good ``AgentConfig`` of the agent's own key. At start it is ``<state-dir>/desired.json``
  (fail static: without a broker the agent converges from it). Records read while catching up on the partition
  are history: only the newest good one is remembered; at the partition's end it is judged
  (:func:`dsfleet.agent.desiredconfigs.judge_config`: fleet, leadership epoch, generation and config hash against
  ``<state-dir>/binding.json``) and becomes desired unless refused; after that each record is judged and applied at
  once. Invalid records (:func:`dsfleet.agent.desiredconfigs.accept_record`) and refusals are logged (rate-limited)
  and counted; the live ones (and the newest at the partition's end) go into ``AgentResponse.rejections`` (the last
  :data:`REJECTIONS_KEPT`, cleared when a config is accepted).
- **Trust**: a record is believed only when signed by a coordinator key of the agent's keyring
  (:mod:`dsfleet.agent.trust`); a config record that is not is refused like an invalid one (reason ``unsigned``,
  ``unknown-key``, ``bad-signature``, ``no-trusted-key``, ``other-node``), a command is ignored and counted (logged
  rate-limited).
- **Identity**: ``--node-name``, else the name kept in ``<state-dir>/node-name``, else the agent announces itself
  keyed by its machine id (``node`` = None) and waits for the coordinator's ``assign-name`` command, then keeps it;
  an ``assign-name`` is obeyed only when it names this agent's own key (``keyId``: the key that asked).
  Commands sent before the agent started are ignored. ``logs`` commands are answered by
  :meth:`dsfleet.agent.reporting.ReportingMixin._answer_logs`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from dsfleet.agent import filestore
from dsfleet.agent.desiredconfigs import (
    Accepted,
    AppliedMark,
    DesiredConfig,
    Refusal,
    Verdict,
    accept_record,
    empty_config,
    judge_config,
    judge_tombstone,
    mark_after,
)
from dsfleet.agent.ports import BusBatch, BusRecord
from dsfleet.agent.reporting import ReportingMixin
from dsfleet.schemas.errors import DsfleetError
from dsfleet.schemas.wire import (
    BROADCAST_KEY,
    AgentCommand,
    AgentConfig,
    CommandKind,
    ConfigRejection,
    Decoded,
    Rejection,
    Topic,
    decode,
)

__all__ = ["REJECTIONS_KEPT", "REJECT_LOG_SECONDS", "IntakeMixin"]

log = logging.getLogger("dsfleet.agent")
REJECTIONS_KEPT = 10
REJECT_LOG_SECONDS = 10.0


class IntakeMixin(ReportingMixin):
    # -- the desired config kept on disk ----------------------------------------------------------------------

    def _load_desired(self) -> None:
        try:
            kept = filestore.load_desired(self.state_dir)
        except DsfleetError as exc:
            log.warning("desired.json unreadable, ignored: %s", exc)
            return
        if kept is not None and (self.node is None or kept.node == self.node):
            self.desired = kept
            log.info("desired config from desired.json node=%s instances=%d", kept.node, len(kept.instances))

    def _load_mark(self) -> AppliedMark:
        mark = filestore.load_binding(self.state_dir)
        if mark is None:
            # an agent of an earlier release kept only desired.json: what it accepted is there
            kept = self.desired if isinstance(self.desired, AgentConfig) else None
            mark = AppliedMark(
                fleet=kept.fleet if kept else None,
                generation=kept.generation if kept else None,
                config_hash=kept.configHash if kept else None,
            )
        wanted = self.settings.fleet_id
        if wanted is not None and mark.fleet not in (None, wanted):
            log.warning(
                "bound to fleet %s by the settings (was %s): its generations start anew", wanted, mark.fleet
            )
            mark = AppliedMark(fleet=wanted)
        elif wanted is not None:
            mark = replace(mark, fleet=wanted)
        return mark

    # -- accepting and refusing records -----------------------------------------------------------------------

    def _set_desired(self, accepted: Accepted) -> None:
        assert self.node is not None
        config: DesiredConfig = accepted.config if accepted.config is not None else empty_config(self.node)
        self.mark = mark_after(
            accepted.config,
            self.mark,
            self.bound_fleet,
            generation=accepted.generation,
            epoch=accepted.epoch,
        )
        self.rejections.clear()
        self._keep_mark()
        if self.desired is not None and self.desired == config:
            return
        self.desired = config
        self._dirty = True
        log.info(
            "desired config node=%s generation=%s instances=%d fleet=%s",
            self.node,
            getattr(config, "generation", None),
            len(config.instances),
            self.bound_fleet,
        )
        try:
            filestore.save_desired(self.state_dir, config)
        except DsfleetError as exc:
            log.error("cannot keep desired.json: %s", exc)

    def _keep_mark(self) -> None:
        try:
            filestore.save_binding(self.state_dir, self.mark)
        except DsfleetError as exc:
            log.error("cannot keep binding.json: %s", exc)

    def _take(self, accepted: Accepted, *, at_catch_up: bool) -> None:
        """Judge a good record (the newest at the partition's end, or a live one) and make it desired."""
        config = accepted.config
        if config is None:
            removal = judge_tombstone(accepted, self.mark, bound=self.bound_fleet, at_catch_up=at_catch_up)
            if isinstance(removal, Refusal):
                self._refuse(removal.reason, removal.generation, removal.detail)
            else:
                self._set_desired(accepted)
            return
        verdict = judge_config(
            config, self.mark, bound=self.bound_fleet, at_catch_up=at_catch_up, epoch=accepted.epoch
        )
        if isinstance(verdict, Refusal):
            self._refuse(verdict.reason, verdict.generation, verdict.detail)
            return
        if verdict is Verdict.SAME:
            if self.desired is None or self.desired.configHash != config.configHash:
                self._set_desired(accepted)
            elif accepted.epoch > self.mark.epoch:  # the same config from a newer leader: remember its epoch
                self.mark = replace(self.mark, epoch=accepted.epoch)
                self._keep_mark()
                log.info("leadership epoch=%d node=%s", accepted.epoch, self.node)
            return
        self._set_desired(accepted)

    def _refuse(self, reason: str, generation: int | None, detail: str, *, verb: str = "refused") -> None:
        self.rejected += 1
        self.rejections.append(
            ConfigRejection(reason=reason, generation=generation, detail=detail[:1000], at=self._now_iso())
        )
        del self.rejections[:-REJECTIONS_KEPT]
        self._status_dirty = True
        self._log_rejection(verb, f"reason={reason} generation={generation}: {detail}")

    def _log_rejection(self, verb: str, text: str) -> None:
        now = self.clock.monotonic()
        if now - self._last_reject_log >= REJECT_LOG_SECONDS or self.rejected <= 3:
            self._last_reject_log = now
            log.warning("%s AgentConfig record (%d so far): %s", verb, self.rejected, text)

    def _note_rejected_since_heartbeat(self) -> None:
        if self.rejected != self._rejected_reported:
            log.warning(
                "ignored %d AgentConfig records since the last heartbeat (total %d)",
                self.rejected - self._rejected_reported,
                self.rejected,
            )
            self._rejected_reported = self.rejected

    # -- the bus ----------------------------------------------------------------------------------------------

    def _on_batch(self, batch: BusBatch) -> None:
        """What one poll of the bus brought: config records, commands, and the end of the partition."""
        if batch.reset:
            self.caught_up = False
            self.pending = None
            self._pending_invalid = None
        for record in batch.configs:
            self._on_config(BusRecord(*record))
        for command in batch.commands:
            self._on_command(command)
        if batch.caught_up and not self.caught_up:
            self.caught_up = True
            log.info("caught up on AgentConfig node=%s", self.node)
            if self.pending is not None:
                self._take(self.pending, at_catch_up=True)
                self.pending = None
            if self._pending_invalid is not None:
                rejection, self._pending_invalid = self._pending_invalid, None
                self.rejected -= 1  # counted when read
                if isinstance(rejection, Refusal):
                    self._refuse(rejection.reason, rejection.generation, rejection.detail)
                else:
                    self._refuse(str(rejection.reason), None, str(rejection), verb="ignored")

    def _on_config(self, record: BusRecord) -> None:
        if self.node is None:
            return
        verdict = accept_record(
            self.node, record.key, record.value, headers=record.headers, trust=self.settings.trust
        )
        if verdict is None:
            return
        if isinstance(verdict, Refusal):
            if self.caught_up:
                self._refuse(verdict.reason, verdict.generation, verdict.detail)
            else:  # history, unless no good record follows it before the partition's end
                self.rejected += 1
                self._pending_invalid = verdict
                self._log_rejection("refused", f"reason={verdict.reason}: {verdict.detail}")
            return
        if isinstance(verdict, Rejection):
            if self.caught_up:
                self._refuse(str(verdict.reason), None, str(verdict), verb="ignored")
            else:
                self.rejected += 1
                self._pending_invalid = verdict
                self._log_rejection("ignored", str(verdict))
            return
        if self.caught_up:
            self._take(verdict, at_catch_up=False)
        else:
            self.pending = verdict
            self._pending_invalid = None

    def _on_command(self, record: BusRecord) -> None:
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        mine = {BROADCAST_KEY, self.node, self.host.machine_id, self.host.hostname} - {None}
        if key not in mine:
            return  # another agent's (the partitions are shared)
        _fields, distrust = self.settings.trust.check(key, record.value, record.headers)
        decoded = decode(Topic.AGENT_COMMAND, record.key, record.value)
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
        if cmd.target not in mine or cmd.target != key:
            return
        if distrust is not None and cmd.command is CommandKind.LOGS and self.settings.trust.log_requests:
            distrust = self.settings.trust.check_log_request(key, record.value, record.headers)
        if distrust is not None:
            self._ignore_command(cmd.command.value, f"reason={distrust.reason}: {distrust.detail}")
            return
        if cmd.command is CommandKind.REFRESH:
            self._next_heartbeat = 0.0
        elif cmd.command is CommandKind.ASSIGN_NAME and cmd.node and self.node is None:
            if cmd.machineId not in (None, self.host.machine_id):
                return
            if cmd.keyId != self.identity.id and not (
                cmd.keyId is None and self.settings.trust.accept_unsigned
            ):
                self._ignore_command(
                    cmd.command.value, f"it names key {cmd.keyId}, not this agent's key {self.identity.id}"
                )
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
        elif cmd.command is CommandKind.LOGS:
            self._answer_logs(cmd)

    def _ignore_command(self, kind: str, why: str) -> None:
        self.commands_refused += 1
        now = self.clock.monotonic()
        if now - self._last_command_log >= REJECT_LOG_SECONDS or self.commands_refused <= 3:
            self._last_command_log = now
            log.warning("ignored AgentCommand %s (%d so far): %s", kind, self.commands_refused, why)

    def _log_trust(self) -> None:
        """Say at start whom the agent believes (key ids only); loudly when nobody."""
        trust = self.settings.trust
        if trust.accept_unsigned:
            log.warning(
                "INSECURE: accepting unsigned configs and commands (--insecure-accept-unsigned): anyone who can "
                "write to the broker controls this host"
            )
        elif not trust.keyring:
            log.error(
                "no trusted coordinator key: every config is refused until one is given (--trust-key KEY, "
                "[agent] trusted_keys; `dsfleet keys show` prints the coordinator's)"
            )
        else:
            log.info("trusting coordinator keys=%s", ",".join(sorted(trust.keyring.keys)))
        log.info("agent key=%s public=%s", self.identity.id, self.identity.public.text())

    def _follow(self) -> None:
        if self.bus is None:
            return
        keys = [k for k in (self.node, self.host.machine_id, self.host.hostname, BROADCAST_KEY) if k]
        self.caught_up = False
        self.pending = None
        self._pending_invalid = None
        self.bus.follow(self.node or "", keys)
