"""The coordinator's loop: wires the watcher, the apply path, the store and the bus; holds no decisions.

Every tick (tens of milliseconds) it: applies the manifests when the watcher saw a change (or plans only, in
manual sync); publishes pending outbox rows; reads a batch of inbound records and ingests it in one transaction
per kind; answers unnamed agents and refresh requests; reads the AgentConfig topic back (noting records it did
not write); and once a second marks silent nodes offline, re-publishes the configs of nodes that need it, retires
nodes the manifests no longer declare, decides the camera handovers whose source configs the outbox holds back
and writes its heartbeat to the store (decisions in ``liveness``, ``identities``, ``resyncs``, ``retirements`` and
``planning.handovers``). A broker that is down is a state: watching, validating and
storing go on, the outbox grows, nobody is marked offline, the heartbeat says since when the broker is unreachable,
and everything is sent when the broker is back (topics are re-created when missing).

Its state lives in :mod:`~dsfleet.reconciler.coordinator.loopstate`, what it reads from the bus in
:mod:`~dsfleet.reconciler.coordinator.inbound`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

from dsfleet.reconciler.applying import (
    ApplyResult,
    Outcome,
    agent_config_encoder,
    apply_manifests,
    plan_manifests,
)
from dsfleet.reconciler.compiling.desired import DesiredState, desired_state
from dsfleet.reconciler.coordinator import liveness, resyncs, retirements, rotation
from dsfleet.reconciler.coordinator.inbound import InboundMixin
from dsfleet.reconciler.coordinator.ingest import Inbound
from dsfleet.reconciler.coordinator.loopstate import (
    FAULT_AFTER_STORE,
    LISTEN_TIMEOUT_SECONDS,
    PRUNE_BATCH,
    CoordinatorOptions,
    Counters,
)
from dsfleet.reconciler.loading.gitinfo import git_info
from dsfleet.reconciler.planning.pins import Pin, SourceState, pin_holds, unpin_condition
from dsfleet.reconciler.planning.reports import summary, summary_line
from dsfleet.reconciler.store import CoordinatorBeat, NewRevision, StoredNodeConfig
from dsfleet.reconciler.store.snapshots import PENDING_PLAN, ROLLBACK_PIN
from dsfleet.schemas.errors import DsfleetError, TemporaryError
from dsfleet.schemas.findings import plural
from dsfleet.schemas.signatures import text_headers
from dsfleet.schemas.wire import (
    Topic,
    agent_config_record,
    partition_for,
)

__all__ = ["Coordinator", "CoordinatorOptions", "Counters"]

log = logging.getLogger("dsfleet.coordinator")

INBOUND_BATCH = 2000
"""The most inbound records one tick ingests: 10,000 agents send 4,000 records a second (AgentInfo and
AgentResponse every 5 s); coalesced per node, a batch becomes one store transaction per kind."""
RESYNC_BUDGET = 50
RESYNC_SPREAD_SECONDS = 20
"""Configs re-published per second (anti-entropy): 50, or the whole fleet over 20 s when that is more (after a
broker loss every node's config goes out again: 10,000 at 50 a second would take over 3 minutes)."""
KEYS_READ_SHARE = 10.0
"""Agents' keys are read again every second, or every ``KEYS_READ_SHARE`` times the last read's duration when
that is longer (reading 10,000 keys takes a noticeable part of a second)."""


class Coordinator(InboundMixin):
    """The coordinator's loop: applies the manifests, publishes the outbox, reads the bus
    (:class:`~dsfleet.reconciler.coordinator.inbound.InboundMixin`), and once a second does the periodic work; its
    state is :class:`~dsfleet.reconciler.coordinator.loopstate.LoopState`'s."""

    # ---------------------------------------------------------------------------------------------- start/stop

    def load_state(self) -> None:
        for name, live in self.store.node_liveness().items():
            self._online[name] = live.online
            self._observed[name] = live.observed_generation
            self._observed_hash[name] = live.observed_config_hash
            self._heartbeat[name] = live.heartbeat_seconds
            if live.last_seen is not None:
                self._last_seen[name] = live.last_seen
        self._refresh_configs(force=True)
        self.handovers.read()
        self.enrollments.read(self.clock.now())
        if self.signing_key is not None:
            self._resign_after_rotation()

    def _encoder(
        self, now: datetime
    ) -> Callable[[str, int, dict[str, Any] | None], tuple[str, str, bytes | None, dict[str, str]]]:
        """Encodes the AgentConfig rows this coordinator stores: its fleet, its leadership epoch, its key."""
        return agent_config_encoder(
            now, self.options.topic_prefix, self.fleet, sign=self._signer, epoch=self.store.writer_epoch()
        )

    def _resign_after_rotation(self) -> None:
        """Every node's config again, signed by this coordinator's key, when it last signed with another."""
        assert self.signing_key is not None
        now = self.clock.now()
        encode = self._encoder(now)
        try:
            nodes = rotation.resign_configs(
                self.store,
                self.signing_key.id,
                self._configs,
                lambda c: encode(c.node, c.generation, c.payload),
                now,
            )
        except DsfleetError as exc:
            log.warning(
                "configs not re-signed after a key change error=%s; tried again at the next start", exc
            )
            return
        if nodes:
            log.info(
                "signing key=%s is new: %d node configs re-published signed by it",
                self.signing_key.id,
                len(nodes),
            )

    def _connect(self) -> None:
        """Create missing topics and start reading; a broker that is down is retried at the next check."""
        if self.bus is None:
            return
        now = self.clock.monotonic()
        if self._bus_ready and now - self._last_topics_check < self.options.topics_check_seconds:
            return
        self._last_topics_check = now
        try:
            created = self.bus.ensure_topics(timeout=5.0)
            if not self._reading:
                self.bus.start_reading()
                self._reading = True
            elif created or self.bus.partition_count_changed(Topic.AGENT_CONFIG):
                # topics came back empty (a broker that lost its data, a deleted topic): read back from the start
                log.warning(
                    "topics recreated topics=%s; AgentConfig read back from the beginning",
                    ",".join(created) or "-",
                )
                self.store.record_event(
                    self.clock.now(), "topics-recreated", f"recreated {plural(len(created), 'topic')}"
                )
                self.view.reset()
                self.bus.assign_observer()
            elif self.bus.broker_was_down:
                log.info("broker back after a disconnection; producer renewed (pending rows are sent again)")
                self._renew_producer()
            if not self._bus_ready:
                log.info("broker reachable; topics ready created=%d", len(created))
                self._broker_state(True, None)
            self._bus_ready = True
        except TemporaryError as exc:
            if self._bus_ready or self._broker_reachable is not False or self._broker_since is None:
                log.warning("broker unreachable error=%s; the outbox keeps what is stored", exc)
            self._bus_ready = False
            self._broker_state(False, str(exc))

    def _broker_state(self, reachable: bool, error: str | None) -> None:
        """Note a change of the broker's reachability (since when), for the heartbeat; a broker back gives every
        node a grace period before it counts as offline (its heartbeats could not be heard meanwhile)."""
        self._broker_error = error
        if self._broker_reachable is reachable and self._broker_since is not None:
            return
        now = self.clock.now()
        self._broker_reachable = reachable
        self._broker_since = now
        # a consumer takes a moment to join its group again: nodes count as heard from the first record read
        self._listening = False
        self._listen_deadline = self.clock.monotonic() + LISTEN_TIMEOUT_SECONDS
        self._next_beat = 0.0  # say it at once

    def _heard(self, records: bool) -> None:
        """The inbound consumer reads again (a record came, or the wait for one is over): heartbeats missed from
        now on count, and the broker counts as reachable since now."""
        if self._listening or self._broker_reachable is not True:
            return
        if records or self.clock.monotonic() >= self._listen_deadline:
            now = self.clock.now()
            self._listening = True
            self._heard_since = max(self._heard_since, now)
            self._broker_since = now
            self._next_beat = 0.0

    def _broker_lost(self) -> None:
        """The broker lost data: a new producer (the old one's idempotence state is void), the outbox's in-flight
        rows pending again, and the AgentConfig topic read back from the start (what is missing is re-published)."""
        assert self.bus is not None
        self._renew_producer()
        self.view.reset()
        self.bus.assign_observer()

    def _renew_producer(self) -> None:
        """A new producer; outbox rows it held are pending again, and re-publications it held may go out again
        at once (they were not tracked)."""
        assert self.bus is not None
        self.bus.reset_producer()
        if self.publisher is not None:
            self.publisher.forget_in_flight()
        self._last_published.clear()

    # ---------------------------------------------------------------------------------------------- applying

    def _revision(self, source: str) -> NewRevision:
        git = git_info(self.options.manifests)
        return NewRevision(
            source=source,
            created_at=self.clock.now(),
            manifests_hash="",
            git_commit=(git.commit + ("-dirty" if git.dirty else "")) if git else None,
            git_author=git.author if git else None,
            git_message=git.message if git else None,
        )

    def sync_directory(
        self, *, force_apply: bool = False, source: str | None = None, hint: AbstractSet[str] | None = None
    ) -> ApplyResult | None:
        """Apply the watched directory (auto sync, or on request), or store only its plan (manual sync); held
        while a rollback's pin holds (the source still points at what was rolled back from). ``hint``: the real
        paths the watcher saw change since the last read (None: read the whole directory)."""
        started = time.perf_counter()
        paths = [self.options.manifests]
        planned = None
        revision = self._revision(source or self.source)
        held = self._held_by_pin(revision)
        if held is False:
            return None
        desired = held if isinstance(held, DesiredState) else None
        if not force_apply and self.options.sync != "auto":
            planned = plan_manifests(
                paths,
                self.store,
                caches=self.caches,
                limits=self.options.limits,
                desired=desired,
                hint=hint,
                warnings=False,  # the coordinator shows errors only (stored with a rejected revision)
            )
            mode = self.options.sync or (planned.desired.sync.mode if planned.plan else "auto")
            if mode == "manual" and planned.plan is not None:
                self.pending_plan = (
                    None
                    if planned.plan.empty
                    else {"valid": True, "summary": summary(planned.plan), "text": summary_line(planned.plan)}
                )
                self.store.set_sync_state(PENDING_PLAN, self.pending_plan, self.clock.now())
                log.info(
                    "manual sync: plan stored, not applied plan=%s",
                    (self.pending_plan or {}).get("text", "in sync"),
                )
                return None
        result = apply_manifests(
            paths,
            self.store,
            revision,
            caches=self.caches,
            topic_prefix=self.options.topic_prefix,
            limits=self.options.limits,
            skip_unchanged=True,
            desired=planned.desired if planned is not None else desired,  # read and compiled once
            sign=self._signer,
            handover_timeout=self.options.handover_timeout,
            rollouts=True,
            hint=hint,
            warnings=False,
        )
        self.last_apply = result
        self.counters.applies[result.outcome.value] += 1
        took = (time.perf_counter() - started) * 1000
        self.counters.apply_seconds += took / 1000
        if result.outcome is Outcome.APPLIED and result.applied is not None:
            applied = result.applied
            if self.options.fault_point == FAULT_AFTER_STORE and applied.outbox_ids:
                log.warning("fault point %s reached: killing the coordinator", FAULT_AFTER_STORE)
                os.kill(os.getpid(), signal.SIGKILL)
            log.info(
                "revision applied revision=%d nodes_changed=%d ms=%.0f",
                applied.revision_id,
                len(applied.generations),
                took,
            )
            self.pending_plan = None
            self.store.set_sync_state(PENDING_PLAN, None, self.clock.now())
            mono = self.clock.monotonic()
            self._applied_at.update({n: (g, mono) for n, g in applied.generations.items()})
            for node in result.unordered:
                log.warning(
                    "camera moves wait on each other in a cycle; node=%s config not held (cameras swapped)",
                    node,
                )
            if result.rollout is not None:
                waiting = sum(1 for p in result.rollout.nodes if p.released_at is None)
                message = (
                    f"revision {applied.revision_id}: rollout started over {len(result.rollout.waves)} waves "
                    f"({len(result.rollout.nodes)} nodes, {waiting} held until their wave)"
                )
                log.info("rollout %s", message)
                self.store.record_event(self.clock.now(), "rollout", message)
            if result.holds or self.handovers.held:
                self.handovers.read()
            # the configs the anti-entropy compares with are read again in the next second's pass (their revision
            # changed), after this tick has published the outbox: reading them here would delay the publish
        elif result.outcome is Outcome.REJECTED:
            log.warning(
                "revision rejected revision=%s errors=%d; the last good revision keeps running",
                result.rejected_revision,
                len(result.desired.loaded.errors),
            )
            for finding in result.desired.loaded.errors[:20]:
                where = (
                    str(finding.location)
                    if finding.location
                    else (finding.source.file if finding.source else "")
                )
                log.warning("  %s: %s: %s [%s]", where, finding.severity.value, finding.message, finding.rule)
        elif result.outcome is Outcome.REFUSED_PRUNE_ALL:
            log.error("apply refused: it would remove every instance of the fleet (see --allow-prune-all)")
        elif result.outcome is Outcome.HELD_BY_PIN and result.pin is not None:
            log.warning(
                "apply held by the rollback pin of revision %d (stored meanwhile); nothing stored "
                "rollback_revision=%d",
                result.pin.revision,
                result.pin.rollback_revision,
            )
            self._next_directory_sync = self.clock.monotonic()  # plan again now, with the pin read anew
        return result

    def _held_by_pin(self, revision: NewRevision) -> DesiredState | bool:
        """False when a rollback's pin holds automatic sync (the source still points at what was rolled back
        from); otherwise the desired state read to decide it (True: no pin, nothing read). A pin the source
        has moved past is lifted here (an ``unpinned`` event)."""
        pin = Pin.from_json(self.store.sync_state(ROLLBACK_PIN))
        if pin is None:
            self._pin_logged = None
            return True
        desired = desired_state(
            [self.options.manifests],
            self.caches.manifests,
            self.caches.compiled,
            limits=self.options.limits,
            warnings=False,
        )
        where = SourceState(revision.git_commit, desired.loaded.digest)
        if pin_holds(pin, where):
            if self._pin_logged != pin.rollback_revision:
                self._pin_logged = pin.rollback_revision
                log.warning(
                    "auto sync held by a rollback pin revision=%d pinned_commit=%s pinned_hash=%s; lifted by %s",
                    pin.revision,
                    pin.source.commit or "-",
                    pin.source.manifests_hash[:12],
                    unpin_condition(pin),
                )
            else:
                log.info("auto sync still held by a rollback pin revision=%d", pin.revision)
            return False
        moved = f"commit {where.commit}" if where.commit else f"manifests hash {where.manifests_hash[:12]}"
        self.store.clear_pin(
            self.clock.now(), f"the manifests source moved past the pin of revision {pin.revision} ({moved})"
        )
        self._pin_logged = None
        log.info("rollback pin lifted revision=%d source=%s; auto sync resumes", pin.revision, moved)
        return desired

    # ---------------------------------------------------------------------------------------------- one tick

    def tick(self, *, changed: bool | AbstractSet[str] = False, poll_timeout: float = 0.05) -> None:
        """One pass of the loop. ``changed``: what the watcher saw change (its paths, or True when it cannot
        say which): only those files are looked at again, unless the periodic re-read is due."""
        now_m = self.clock.monotonic()
        # level-triggered: a change seen by the watcher, a request, a failed apply's retry, or the periodic
        # re-read of the directory (a missed file event is healed by it; unchanged content records nothing)
        due = now_m >= self._next_directory_sync
        if changed or due or self.apply_requested.is_set():
            force = self.apply_requested.is_set()
            self.apply_requested.clear()
            hint = changed if isinstance(changed, AbstractSet) and not due and not force else None
            if hint is None:  # a whole re-read; one of the watcher's files keeps the re-read's schedule
                self._next_directory_sync = now_m + self.options.directory_resync_seconds
            try:
                self.sync_directory(force_apply=force, source=self.apply_source if force else None, hint=hint)
            except DsfleetError as exc:
                self._next_directory_sync = now_m + 1.0
                log.error("apply failed error=%s; retrying in 1 s", exc)
        self._connect()
        if self.bus is None:
            self._maybe_every_second()
            return
        if self._bus_ready and self.publisher is not None:
            self.publisher.pump()
        records = self.bus.poll_inbound(INBOUND_BATCH, poll_timeout) if self._reading else []
        self._heard(bool(records))
        if records:
            self._ingest([Inbound(r.topic, r.key, r.value, text_headers(r.headers)) for r in records])
        if self._reading:
            self._read_back()
        self._maybe_every_second()

    def _maybe_every_second(self) -> None:
        now_m = self.clock.monotonic()
        if now_m - self._last_second >= 1.0:
            self._last_second = now_m
            self._every_second()

    def _every_second(self) -> None:
        now = self.clock.now()
        mono = self.clock.monotonic()
        self._refresh_configs()
        if mono >= self._next_keys_read:
            started = time.perf_counter()
            try:
                self.enrollments.read(now)  # an operator approves or revokes from another process
            except DsfleetError as exc:
                log.warning("reading agents' keys failed error=%s; the last ones read are used", exc)
            # every second, unless reading them takes long (10,000 nodes: ~0.3 s): then at most a tenth of the time
            self._next_keys_read = mono + KEYS_READ_SHARE * (time.perf_counter() - started)
        if self.handovers.held:
            self.handovers.read()
            self._decide_handovers(now)
        self._decide_rollouts(now)
        if mono >= self._next_retire_check:
            self._next_retire_check = mono + 5.0
            self._retire(now)
        if mono >= self._next_prune:
            self._prune_events(now, mono)
        if self._bus_ready and self.bus is not None and self.bus.broker_was_down:
            # the client lost every broker: check now, before silent nodes are taken for offline ones
            self._last_topics_check = -1e9
            self._connect()
            now = self.clock.now()
        if self._listening or self.bus is None:  # heartbeats that cannot be heard are not missed
            lives = [
                liveness.Liveness(
                    n, self._online.get(n, False), self._last_seen.get(n), self._heartbeat.get(n, 5.0)
                )
                for n in set(self._online) | set(self._last_seen)
            ]
            offline = liveness.offline_transitions(
                lives, now, self.options.heartbeat_misses, heard_since=self._heard_since
            )
            if offline:
                self.store.record_transitions(offline)
                for t in offline:
                    self._online[t.node] = False
                    log.info("node offline node=%s reason=%s", t.node, t.reason)
        if mono >= self._next_beat:
            self._beat(now)
        if not self._bus_ready or self.bus is None:
            return
        if self.publisher is not None and (
            self.bus.producer_failed
            or self.publisher.oldest_in_flight(now) > self.options.stuck_after_seconds
        ):
            log.warning("producer stuck or failed; replacing it (pending rows are sent again)")
            self._renew_producer()
        desired = {n: c.generation for n, c in self._configs.items()}
        hashes = {n: c.config_hash for n, c in self._configs.items()}
        self._behind = resyncs.track_behind(self._behind, self._observed_hash, hashes, self._online, now)
        self._ahead = {n: g for n, g in self._ahead.items() if n in desired and g > desired[n]}
        pending = self.publisher.pending_keys if self.publisher else set()
        for node in self._was_pending - pending:
            self._sent[node] = mono
        self._was_pending = set(pending)
        # the publisher's pending keys cover the rows it reads at once (a few hundred): while the outbox holds more
        # (a first apply of 10,000 nodes), a node missing from the topic may still be waiting there
        draining = bool(pending) and self.store.outbox_depth() > len(pending)
        try:
            count = self.bus.partitions(Topic.AGENT_CONFIG)
        except TemporaryError:
            return
        states = []
        for node, gen in desired.items():
            partition = partition_for(node, count)
            caught_up, on_topic = self.view.holds(node, partition)
            if caught_up and (
                draining or self._end_seen.get(partition, -1e18) <= self._sent.get(node, -1e18)
            ):
                caught_up = False  # queued, or sent since the read-back last reached the partition's end
            if self._observed_hash.get(node) == hashes[node] and (on_topic or 0) >= gen:
                self._attempts.pop(node, None)
            states.append(
                resyncs.NodeSync(
                    node=node,
                    desired_generation=gen,
                    online=self._online.get(node, False),
                    observed_generation=self._observed.get(node),
                    behind_since=self._behind.get(node),
                    desired_hash=hashes[node],
                    observed_hash=self._observed_hash.get(node),
                    reported_ahead=self._ahead.get(node),
                    topic_generation=on_topic,
                    topic_caught_up=caught_up,
                    outbox_pending=node in pending,
                    last_published=self._last_published.get(node),
                    attempts=self._attempts.get(node, 0),
                )
            )
        budget = max(RESYNC_BUDGET, len(states) // RESYNC_SPREAD_SECONDS)
        decisions = resyncs.resync_decisions(states, now, timing=self.options.timing, budget=budget)
        records: list[tuple[str, str, bytes | None, dict[str, str]]] = []
        events: list[tuple[str, str]] = []
        for decision in decisions:
            stored = self._configs.get(decision.node)
            if stored is None:
                continue
            if decision.reason is resyncs.Reason.GENERATION_AHEAD:
                self._reissue(decision.node, stored, now, events)
                continue
            records.append(
                agent_config_record(
                    decision.node,
                    stored.generation,
                    stored.payload,
                    now.isoformat(),
                    self.options.topic_prefix,
                    fleet=self.fleet,
                    sign=self._signer,
                    epoch=self.store.writer_epoch(),
                )
            )
            self._last_published[decision.node] = now
            self._attempts[decision.node] = self._attempts.get(decision.node, 0) + 1
            self.counters.resyncs[decision.reason.value] += 1
            log.info(
                "config re-published node=%s generation=%d reason=%s",
                decision.node,
                stored.generation,
                decision.reason,
            )
            events.append((decision.node, f"generation {stored.generation} re-published ({decision.reason})"))
        if records:
            # through the outbox like every other record (the publisher sends only the newest row of a key, and
            # retries with backoff): one transaction for all (1,000 after a broker loss)
            self.store.enqueue(records, now)
        if events:
            self.store.record_events(now, "resync", events)
        if (records or events) and self.publisher is not None:
            self.publisher.pump()

    def _decide_handovers(self, now: datetime) -> None:
        """Decide the held source configs from their targets' latest reports; send the ones released."""
        self._refresh_configs()
        try:
            released = self.handovers.decide(now, self._configs, self._connection)
        except DsfleetError as exc:
            log.warning("handover decisions failed error=%s; tried again in 1 s", exc)
            return
        if released and self.publisher is not None and self._bus_ready:
            self.publisher.pump()

    def _decide_rollouts(self, now: datetime) -> None:
        """Read the running rollout's gates; release the next nodes, or abort and roll back."""
        encode = self._encoder(now)
        try:
            released = self.rollouts.tick(now, self._configs, lambda n: self._connection(n)[0], encode)
        except DsfleetError as exc:
            log.warning("rollout decisions failed error=%s; tried again in 1 s", exc)
            return
        if released and self.publisher is not None and self._bus_ready:
            self.publisher.pump()

    def _connection(self, node: str) -> tuple[bool, str]:
        """Whether a node is heard, and the words for it when not."""
        if self.bus is not None and not self._listening:
            return False, "unknown: not heard since the broker was reached"
        if self._online.get(node, False):
            return True, "online"
        return False, "offline" if node in self._last_seen else "never heard"

    def _reissue(
        self, node: str, stored: StoredNodeConfig, now: datetime, events: list[tuple[str, str]]
    ) -> None:
        """A node reported a generation above the stored one: its config again, above that generation."""
        reported = self._ahead.pop(node)
        encode = self._encoder(now)
        again = self.store.reissue_config(node, reported, encode, now)
        if again is None:
            log.warning(
                "node reported generation %d above the stored %d; not followed (the store's counter is there, or "
                "the generation is out of range) node=%s",
                reported,
                stored.generation,
                node,
            )
            return
        self._configs[node] = again
        self._last_published[node] = now
        self._attempts[node] = self._attempts.get(node, 0) + 1
        self.counters.resyncs[resyncs.Reason.GENERATION_AHEAD.value] += 1
        log.warning(
            "node reported generation %d, above the stored %d (a restored store, or a forged report): its config "
            "stored again as generation %d and published node=%s",
            reported,
            stored.generation,
            again.generation,
            node,
        )
        events.append(
            (
                node,
                f"reported generation {reported} > stored {stored.generation}: re-issued as {again.generation}",
            )
        )

    def _retire(self, now: datetime) -> None:
        """Forget nodes the manifests no longer declare once their agents removed what they ran (or after the
        timeout); drop what this loop kept of nodes it no longer hears for."""
        try:
            candidates = self.store.retiring_nodes()
            self._retiring = {c.node for c in candidates}
            for r in retirements.retirements(candidates, now, timeout=self.options.retire_after):
                if self.store.retire_node(r.node, now, r.reason):
                    self.counters.retired += 1
                    log.info("node retired node=%s reason=%s", r.node, r.reason)
                self._retiring.discard(r.node)
            keep = {n.name for n in self.store.known_nodes()} | self._retiring
        except DsfleetError as exc:
            log.warning("retiring nodes failed error=%s; tried again in 5 s", exc)
            return
        for table in (self._online, self._last_seen, self._heartbeat, self._observed, self._observed_hash):
            for name in [n for n in table if n not in keep]:
                del table[name]

    def _prune_events(self, now: datetime, mono: float) -> None:
        """One bounded DELETE of the events past their age or count; again within a second while a full batch
        went (a flood is caught up with), else in a minute."""
        try:
            deleted = self.store.prune_events(
                now - self.options.events_max_age, self.options.events_max_rows, batch=PRUNE_BATCH
            )
        except DsfleetError as exc:
            log.warning("events not pruned error=%s", exc)
            deleted = 0
        full = deleted >= PRUNE_BATCH
        self._next_prune = mono + (1.0 if full else self.options.events_prune_seconds)
        if deleted:
            log.info("events pruned deleted=%d more_due=%s", deleted, full)

    def _beat(self, now: datetime) -> None:
        """Write the heartbeat (who runs, the broker's reachability, foreign configs seen) to the store."""
        self._next_beat = self.clock.monotonic() + self.options.heartbeat_seconds
        try:
            self.enrollments.write_counts(now, self._started_at)
            self.store.write_heartbeat(self._heartbeat_of(now))
        except DsfleetError as exc:
            log.warning("heartbeat not written error=%s", exc)

    def _heartbeat_of(self, now: datetime, *, stopped: bool = False) -> CoordinatorBeat:
        from dsfleet import __version__

        return CoordinatorBeat(
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            manifests=str(self.options.manifests.resolve()),
            sync=self.options.sync,
            started_at=self._started_at,
            seen_at=now,
            stopped_at=now if stopped else None,
            interval_seconds=self.options.heartbeat_seconds,
            broker=self.options.broker if self.bus is not None else None,
            broker_reachable=self._broker_reachable,
            broker_since=self._broker_since,
            broker_error=self._broker_error,
            foreign_configs=self.counters.foreign_configs,
            last_foreign=self.last_foreign,
        )

    # ---------------------------------------------------------------------------------------------- run

    def run(
        self, stop: threading.Event, *, changed: Callable[[], bool | AbstractSet[str]] | None = None
    ) -> None:
        self.load_state()
        self._connect()
        self._next_directory_sync = self.clock.monotonic() + self.options.directory_resync_seconds
        try:
            self.sync_directory()
        except DsfleetError as exc:
            self._next_directory_sync = self.clock.monotonic() + 1.0
            log.error("initial apply failed error=%s; retrying in 1 s", exc)
        self._beat(self.clock.now())  # after the first apply: a heartbeat says that one is done
        while not stop.is_set():
            self.tick(changed=changed() if changed else False)
            if self.store.deposed is not None:
                log.error(
                    "deposed: %s; this coordinator stops (it writes and publishes nothing more)",
                    self.store.deposed,
                )
                return
            if self.bus is None:
                stop.wait(0.05)

    def close(self, timeout: float = 10.0) -> None:
        try:
            self.store.write_heartbeat(self._heartbeat_of(self.clock.now(), stopped=True))
        except DsfleetError as exc:
            log.warning("last heartbeat not written error=%s", exc)
        if self.bus is None:
            return
        if self.publisher is not None and self._bus_ready:
            self.publisher.pump()
        left = self.bus.close(timeout)
        if self.publisher is not None:
            self.publisher.pump()
        if left:
            log.warning("stopped with %d records undelivered; they stay pending in the outbox", left)
