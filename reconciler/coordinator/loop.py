"""The coordinator's loop: wires the watcher, the apply path, the store and the bus; holds no decisions.

Every tick (tens of milliseconds) it: applies the manifests when the watcher saw a change (or plans only, in
manual sync); publishes pending outbox rows; reads a batch of inbound records and ingests it in one transaction
per kind; answers unnamed agents and refresh requests; reads the AgentConfig topic back; and once a second marks
silent nodes offline and re-publishes the configs of nodes that need it (decisions in ``liveness``, ``identities``
and ``resyncs``). A broker that is down is a state: watching, validating and storing go on, the outbox grows, and
everything is sent when the broker is back (topics are re-created when missing).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from dsfleet.reconciler.applying import ApplyResult, Caches, Outcome, apply_manifests, plan_manifests
from dsfleet.reconciler.coordinator import identities, liveness, resyncs
from dsfleet.reconciler.coordinator.ingest import Batch, Inbound, read_batch, sent_at
from dsfleet.reconciler.coordinator.publishing import OutboxPublisher
from dsfleet.reconciler.loading.gitinfo import git_info
from dsfleet.reconciler.loading.yamlfiles import DEFAULT_LIMITS, Limits
from dsfleet.reconciler.planning.reports import summary, summary_line
from dsfleet.reconciler.ports import BusPort, Clock, StorePort, SystemClock
from dsfleet.reconciler.store import NewRevision, StoredNodeConfig
from dsfleet.reconciler.store.snapshots import PENDING_PLAN
from dsfleet.schemas.errors import DsfleetError, TemporaryError
from dsfleet.schemas.wire import (
    BROADCAST_KEY,
    AgentCommand,
    CommandKind,
    Rejection,
    Topic,
    agent_config_record,
    decode,
    encode,
    partition_for,
)

log = logging.getLogger("dsfleet.coordinator")

FAULT_AFTER_STORE = "after-store"
"""``DSFLEET_FAULT_POINT=after-store``: the process kills itself (SIGKILL) right after a revision is stored and
before anything is published — for crash tests."""


@dataclass(frozen=True)
class CoordinatorOptions:
    manifests: Path
    sync: Literal["auto", "manual"] | None = None
    """None: the fleet's ``Policy.spec.sync.mode`` decides (default auto); a flag or setting overrides it."""
    topic_prefix: str = ""
    limits: Limits = DEFAULT_LIMITS
    heartbeat_misses: int = 3
    timing: resyncs.Timing = field(default_factory=resyncs.Timing)
    max_message_bytes: int = 1_000_000
    watch_step_ms: int = 50
    watch_debounce_ms: int = 300
    topics_check_seconds: float = 2.0
    request_max_age: timedelta = timedelta(minutes=2)
    """UpdateConfig/Refresh/unnamed AgentInfo records older than this (read back after a restart) are ignored."""
    fault_point: str | None = None
    stuck_after_seconds: float = 15.0
    directory_resync_seconds: float = 30.0
    """The manifests directory is read again this often even without a file event (like Flux's interval)."""
    """A record without delivery report for this long (broker reachable) means a wedged producer: replace it."""


@dataclass
class Counters:
    consumed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    applies: Counter[str] = field(default_factory=Counter)
    resyncs: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    apply_seconds: float = 0.0
    """Total time spent applying (with ``applies``: the mean apply duration)."""
    convergence_seconds: list[float] = field(default_factory=list)
    """Revision stored → the node's agent reports its generation, per node (newest last, bounded)."""


class _RateLimitedLog:
    """One log line per (topic, reason) per interval, with how many were dropped since the last line."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._since: Counter[tuple[str, str]] = Counter()

    def rejected(self, rej: Rejection, now: float) -> None:
        key = (rej.topic, rej.reason.value)
        self._since[key] += 1
        if now - self._last.get(key, -1e9) >= self.interval:
            log.warning(
                "message dropped topic=%s reason=%s count=%d detail=%s",
                rej.topic,
                rej.reason,
                self._since[key],
                rej.detail,
            )
            self._last[key] = now
            self._since[key] = 0


class Coordinator:
    def __init__(
        self,
        options: CoordinatorOptions,
        store: StorePort,
        bus: BusPort | None,
        *,
        clock: Clock | None = None,
        source: str = "watch",
    ) -> None:
        self.options = options
        self.store = store
        self.bus = bus
        self.clock = clock or SystemClock()
        self.source = source
        self.caches = Caches()
        self.counters = Counters()
        self.publisher = (
            OutboxPublisher(store, bus, prefix=options.topic_prefix, clock=self.clock.now) if bus else None
        )
        self.view = resyncs.TopicView.empty()
        self._configs: dict[str, StoredNodeConfig] = {}
        self._configs_revision: int | None = -1
        self._behind: dict[str, datetime] = {}
        self._last_published: dict[str, datetime] = {}
        self._attempts: dict[str, int] = {}
        self._observed: dict[str, int | None] = {}
        self._online: dict[str, bool] = {}
        self._heartbeat: dict[str, float] = {}
        self._last_seen: dict[str, datetime] = {}
        self._last_second = 0.0
        self._next_directory_sync = float("inf")
        self._last_topics_check = -1e9
        self._bus_ready = False
        self._reading = False
        self._drops = _RateLimitedLog()
        self._started_at = self.clock.now()
        self.pending_plan: dict[str, object] | None = None
        self.apply_requested = threading.Event()
        self.apply_source = "api"
        """The revision source of a requested apply (the HTTP API sets ``api`` or ``webhook``)."""
        self._applied_at: dict[str, tuple[int, float]] = {}
        self.last_apply: ApplyResult | None = None

    # ---------------------------------------------------------------------------------------------- start/stop

    def load_state(self) -> None:
        for name, live in self.store.node_liveness().items():
            self._online[name] = live.online
            self._observed[name] = live.observed_generation
            self._heartbeat[name] = live.heartbeat_seconds
            if live.last_seen is not None:
                self._last_seen[name] = live.last_seen
        self._refresh_configs(force=True)

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
                    self.clock.now(), "topics-recreated", f"recreated {len(created)} topics"
                )
                self.view.reset()
                self.bus.assign_observer()
            elif self.bus.broker_was_down:
                log.info("broker back after a disconnection; producer renewed (pending rows are sent again)")
                self._renew_producer()
            if not self._bus_ready:
                log.info("broker reachable; topics ready created=%d", len(created))
            self._bus_ready = True
        except TemporaryError as exc:
            if self._bus_ready:
                log.warning("broker unreachable error=%s; the outbox keeps what is stored", exc)
            self._bus_ready = False

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

    def sync_directory(self, *, force_apply: bool = False, source: str | None = None) -> ApplyResult | None:
        """Apply the watched directory (auto sync, or on request), or store only its plan (manual sync)."""
        started = time.perf_counter()
        paths = [self.options.manifests]
        planned = None
        if not force_apply and self.options.sync != "auto":
            planned = plan_manifests(paths, self.store, caches=self.caches, limits=self.options.limits)
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
            self._revision(source or self.source),
            caches=self.caches,
            topic_prefix=self.options.topic_prefix,
            limits=self.options.limits,
            skip_unchanged=True,
            desired=planned.desired if planned is not None else None,  # read and compiled once
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
        return result

    def _refresh_configs(self, *, force: bool = False) -> None:
        rid = self.store.last_accepted_revision_id()
        if force or rid != self._configs_revision:
            self._configs = self.store.latest_node_configs()
            self._configs_revision = rid

    # ---------------------------------------------------------------------------------------------- one tick

    def tick(self, *, changed: bool = False, poll_timeout: float = 0.05) -> None:
        now_m = self.clock.monotonic()
        # level-triggered: a change seen by the watcher, a request, a failed apply's retry, or the periodic
        # re-read of the directory (a missed file event is healed by it; unchanged content records nothing)
        due = now_m >= self._next_directory_sync
        if changed or due or self.apply_requested.is_set():
            force = self.apply_requested.is_set()
            self.apply_requested.clear()
            self._next_directory_sync = now_m + self.options.directory_resync_seconds
            try:
                self.sync_directory(force_apply=force, source=self.apply_source if force else None)
            except DsfleetError as exc:
                self._next_directory_sync = now_m + 1.0
                log.error("apply failed error=%s; retrying in 1 s", exc)
        self._connect()
        if self.bus is None:
            return
        if self._bus_ready and self.publisher is not None:
            self.publisher.pump()
        records = self.bus.poll_inbound(500, poll_timeout) if self._reading else []
        if records:
            self._ingest([Inbound(r.topic, r.key, r.value) for r in records])
        if self._reading:
            self._read_back()
        now_m = self.clock.monotonic()
        if now_m - self._last_second >= 1.0:
            self._last_second = now_m
            self._every_second()

    def _ingest(self, records: Sequence[Inbound]) -> None:
        now = self.clock.now()
        batch = read_batch(
            records,
            prefix=self.options.topic_prefix,
            known_nodes=self._known_names(),
            max_bytes=self.options.max_message_bytes,
        )
        self.counters.consumed.update(batch.consumed)
        mono = self.clock.monotonic()
        for rej in batch.rejected:
            self.counters.rejected[(rej.topic, rej.reason.value)] += 1
            self._drops.rejected(rej, mono)
        if batch.infos:
            fresh = {
                n: liveness.is_fresh(
                    sent_at(i) or now, now, i.heartbeatSeconds, self.options.heartbeat_misses
                )
                for n, i in batch.infos.items()
            }
            transitions = self.store.record_agent_infos(batch.infos, fresh, now)
            for t in transitions:
                log.info("node %s node=%s reason=%s", "online" if t.online else "offline", t.node, t.reason)
            for name, info in batch.infos.items():
                if fresh[name]:
                    self._online[name] = True
                    self._last_seen[name] = now
                    self._heartbeat[name] = info.heartbeatSeconds
                if info.observedGeneration is not None or fresh[name]:
                    self._observed[name] = info.observedGeneration
        if batch.responses:
            self.store.record_agent_responses(batch.responses, now)
            for name, resp in batch.responses.items():
                self._observed[name] = resp.observedGeneration
                applied_at = self._applied_at.get(name)
                if applied_at and (resp.observedGeneration or 0) >= applied_at[0]:
                    del self._applied_at[name]
                    self.counters.convergence_seconds.append(self.clock.monotonic() - applied_at[1])
                    del self.counters.convergence_seconds[:-1000]
        if batch.unnamed:
            self._name_agents(batch, now)
        for request in batch.refreshes:
            if self._recent(sent_at(request), now):
                self._send_command(
                    CommandKind.REFRESH, request.node or BROADCAST_KEY, request_id=request.requestId
                )
        if any(self._recent(sent_at(u), now) for u in batch.updates):
            log.info("UpdateConfig received: applying the manifests now")
            try:
                self.sync_directory(force_apply=True, source="api")
            except DsfleetError as exc:
                log.error("apply failed error=%s", exc)

    def _recent(self, when: datetime | None, now: datetime) -> bool:
        return (
            when is not None
            and now - when <= self.options.request_max_age
            and when >= self._started_at - self.options.request_max_age
        )

    def _known_names(self) -> dict[str, object]:
        return {n.name: n for n in self.store.known_nodes()}

    def _name_agents(self, batch: Batch, now: datetime) -> None:
        known = [identities.KnownNode(n.name, n.hostname, n.node_id) for n in self.store.known_nodes()]
        for ident, info in batch.unnamed.items():
            if not self._recent(sent_at(info), now):
                continue
            naming = identities.name_agent(info.machineId, info.hostname, known)
            kind = CommandKind.ASSIGN_NAME if naming.node else CommandKind.REJECT
            log.info(
                "agent naming hostname=%s node=%s reason=%s", info.hostname, naming.node or "-", naming.reason
            )
            self._send_command(
                kind,
                ident,
                node=naming.node,
                machine_id=info.machineId,
                hostname=info.hostname,
                reason=naming.reason,
            )

    def _send_command(
        self,
        kind: CommandKind,
        target: str,
        *,
        node: str | None = None,
        machine_id: str | None = None,
        hostname: str | None = None,
        reason: str = "",
        request_id: str | None = None,
    ) -> None:
        assert self.bus is not None
        command = AgentCommand(
            sent_at=self.clock.now().isoformat(),
            command=kind,
            target=target,
            node=node,
            machineId=machine_id,
            hostname=hostname,
            reason=reason,
            requestId=request_id or uuid.uuid4().hex,
        )
        try:
            self.bus.send(Topic.AGENT_COMMAND, target, encode(command))
            self.counters.commands[kind.value] += 1
        except TemporaryError as exc:
            log.warning("command not sent command=%s target=%s error=%s", kind, target, exc)

    def _read_back(self) -> None:
        assert self.bus is not None
        records, ends = self.bus.poll_observer()
        for r in records:
            key = r.key.decode("utf-8", "replace") if r.key else None
            if key is None:
                continue
            got = decode(Topic.AGENT_CONFIG, key, r.value, max_bytes=self.options.max_message_bytes * 4)
            generation = getattr(getattr(got, "message", None), "generation", None)
            if self.view.record(r.partition, r.offset, key, generation):
                log.warning(
                    "AgentConfig partition=%d was truncated (broker data lost); repairing", r.partition
                )
        for partition, end in ends.items():
            if self.view.end_of_partition(partition, end):
                log.warning("AgentConfig partition=%d was truncated (broker data lost); repairing", partition)

    def _every_second(self) -> None:
        now = self.clock.now()
        self._refresh_configs()
        lives = [
            liveness.Liveness(
                n, self._online.get(n, False), self._last_seen.get(n), self._heartbeat.get(n, 5.0)
            )
            for n in set(self._online) | set(self._last_seen)
        ]
        offline = liveness.offline_transitions(lives, now, self.options.heartbeat_misses)
        if offline:
            self.store.record_transitions(offline)
            for t in offline:
                self._online[t.node] = False
                log.info("node offline node=%s reason=%s", t.node, t.reason)
        if not self._bus_ready or self.bus is None:
            return
        if self.publisher is not None and (
            self.bus.producer_failed
            or self.publisher.oldest_in_flight(now) > self.options.stuck_after_seconds
        ):
            log.warning("producer stuck or failed; replacing it (pending rows are sent again)")
            self._renew_producer()
        desired = {n: c.generation for n, c in self._configs.items()}
        self._behind = resyncs.track_behind(self._behind, self._observed, desired, self._online, now)
        pending = self.publisher.pending_keys if self.publisher else set()
        try:
            count = self.bus.partitions(Topic.AGENT_CONFIG)
        except TemporaryError:
            return
        states = []
        for node, gen in desired.items():
            caught_up, on_topic = self.view.holds(node, partition_for(node, count))
            if (self._observed.get(node) or 0) >= gen and (on_topic or 0) >= gen:
                self._attempts.pop(node, None)
            states.append(
                resyncs.NodeSync(
                    node=node,
                    desired_generation=gen,
                    online=self._online.get(node, False),
                    observed_generation=self._observed.get(node),
                    behind_since=self._behind.get(node),
                    topic_generation=on_topic,
                    topic_caught_up=caught_up,
                    outbox_pending=node in pending,
                    last_published=self._last_published.get(node),
                    attempts=self._attempts.get(node, 0),
                )
            )
        decisions = resyncs.resync_decisions(states, now, timing=self.options.timing)
        records, events = [], []
        for decision in decisions:
            stored = self._configs.get(decision.node)
            if stored is None:
                continue
            records.append(
                agent_config_record(
                    decision.node,
                    stored.generation,
                    stored.payload,
                    now.isoformat(),
                    self.options.topic_prefix,
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
            self.store.record_events(now, "resync", events)
            if self.publisher is not None:
                self.publisher.pump()

    # ---------------------------------------------------------------------------------------------- run

    def run(self, stop: threading.Event, *, changed: Callable[[], bool] | None = None) -> None:
        self.load_state()
        self._connect()
        self._next_directory_sync = self.clock.monotonic() + self.options.directory_resync_seconds
        try:
            self.sync_directory()
        except DsfleetError as exc:
            self._next_directory_sync = self.clock.monotonic() + 1.0
            log.error("initial apply failed error=%s; retrying in 1 s", exc)
        while not stop.is_set():
            self.tick(changed=changed() if changed else False)
            if self.bus is None:
                stop.wait(0.05)

    def close(self, timeout: float = 10.0) -> None:
        if self.bus is None:
            return
        if self.publisher is not None and self._bus_ready:
            self.publisher.pump()
        left = self.bus.close(timeout)
        if self.publisher is not None:
            self.publisher.pump()
        if left:
            log.warning("stopped with %d records undelivered; they stay pending in the outbox", left)
