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
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from dsfleet.plumbing.signing import PublicKey, SigningKey, sign_record
from dsfleet.reconciler.applying import (
    ApplyResult,
    Caches,
    Outcome,
    agent_config_encoder,
    apply_manifests,
    plan_manifests,
)
from dsfleet.reconciler.coordinator import handovers, identities, liveness, resyncs, retirements, rotation
from dsfleet.reconciler.coordinator.enrollments import Enrollments
from dsfleet.reconciler.coordinator.ingest import Batch, Inbound, read_batch, sent_at
from dsfleet.reconciler.coordinator.logreplies import LogReplies
from dsfleet.reconciler.coordinator.publishing import OutboxPublisher
from dsfleet.reconciler.loading.gitinfo import git_info
from dsfleet.reconciler.loading.yamlfiles import DEFAULT_LIMITS, Limits
from dsfleet.reconciler.planning.reports import summary, summary_line
from dsfleet.reconciler.ports import BusPort, Clock, StorePort, SystemClock
from dsfleet.reconciler.store import CoordinatorBeat, NewRevision, StoredNodeConfig
from dsfleet.reconciler.store.snapshots import PENDING_PLAN
from dsfleet.schemas.errors import DsfleetError, TemporaryError
from dsfleet.schemas.findings import plural
from dsfleet.schemas.signatures import SignedFields, text_headers
from dsfleet.schemas.wire import (
    BROADCAST_KEY,
    AgentCommand,
    AgentConfig,
    CommandKind,
    Decoded,
    Refresh,
    Rejection,
    Signer,
    Topic,
    UpdateConfig,
    agent_config_record,
    decode,
    encode,
    partition_for,
    signed_fields_of,
)

log = logging.getLogger("dsfleet.coordinator")

LISTEN_TIMEOUT_SECONDS = 10.0
"""After the broker is reached, how long the coordinator waits for a first inbound record before it counts
heartbeats as missed anyway (a fleet whose agents are all down sends none)."""
PRUNE_BATCH = 20_000
"""Events deleted by one statement at most."""
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
    """A record without delivery report for this long (broker reachable) means a wedged producer: replace it."""
    directory_resync_seconds: float = 30.0
    """The manifests directory is read again this often even without a file event (like Flux's interval)."""
    heartbeat_seconds: float = 2.0
    """How often the coordinator writes its heartbeat to the store (``status`` calls it not running after five
    missed ones)."""
    retire_after: timedelta = retirements.DEFAULT_RETIRE_AFTER
    """A node removed from the manifests whose agent never reports its instances gone is retired after this."""
    broker: str | None = None
    """The bootstrap servers, as the heartbeat names them (None: no broker configured)."""
    handover_timeout: timedelta = timedelta(seconds=300)
    """A camera moved to another node leaves its old node once the new one runs it, or this long after the change
    (``[coordinator] handover_timeout_seconds``)."""
    events_max_age: timedelta = timedelta(days=7)
    """Events older than this are deleted (checked once a minute)."""
    events_max_rows: int = 100_000
    """At most this many events are kept (the newest)."""
    events_prune_seconds: float = 60.0


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
    foreign_configs: int = 0
    """AgentConfig records read back that this coordinator did not write."""
    retired: int = 0
    unauthenticated: Counter[str] = field(default_factory=Counter)
    """Inbound records dropped for their signature, by reason (``dsfleet_unauthenticated_reports_total``)."""


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
        signing_key: SigningKey | None = None,
        operator_keys: Sequence[PublicKey] | Callable[[], Sequence[PublicKey]] = (),
    ) -> None:
        self.options = options
        self.signing_key = signing_key
        """Signs every record this coordinator writes (None: unsigned, which agents refuse)."""
        self.enrollments = Enrollments(store, operator_keys, max_bytes=options.max_message_bytes)
        """Agents' keys: the gate every inbound record passes (:mod:`dsfleet.reconciler.coordinator.authentication`)."""
        self._requests_seen: dict[str, datetime] = {}
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
        self.fleet = store.fleet_id()
        """The fleet id every AgentConfig of this coordinator carries."""
        self._observed_hash: dict[str, str | None] = {}
        self._ahead: dict[str, int] = {}
        self._retiring: set[str] = set()
        self._heard_since = self._started_at
        """Since when nodes could be heard: the start, then the broker's last return (offline grace)."""
        self._listening = False
        """Inbound records arrive (again) since the broker was last reached: until then nobody is marked offline."""
        self._listen_deadline = 0.0
        self._broker_reachable: bool | None = None if bus is None else False
        self._broker_since: datetime | None = None
        self._broker_error: str | None = None
        self._next_beat = 0.0
        self._next_retire_check = 0.0
        self._next_prune = 0.0
        self._foreign_seen: set[tuple[str, int, str | None]] = set()
        self._foreign_logged: set[str | None] = set()
        self.last_foreign: str | None = None
        self.pending_plan: dict[str, object] | None = None
        self.apply_requested = threading.Event()
        self.apply_source = "api"
        """The revision source of a requested apply (the HTTP API sets ``api`` or ``webhook``)."""
        self._applied_at: dict[str, tuple[int, float]] = {}
        self.log_replies = LogReplies()
        """Who waits for which ``logs`` reply (the HTTP API of this process)."""
        self.handovers = handovers.Handovers(store)
        """The source configs held back until their cameras run on their new nodes."""
        self.last_apply: ApplyResult | None = None

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

    def _resign_after_rotation(self) -> None:
        """Every node's config again, signed by this coordinator's key, when it last signed with another."""
        assert self.signing_key is not None
        now = self.clock.now()
        encode = agent_config_encoder(now, self.options.topic_prefix, self.fleet, sign=self._signer)
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

    # ---------------------------------------------------------------------------------------------- signing

    def _sign(self, fields: SignedFields, key: str | None, payload: bytes | None) -> dict[str, str]:
        assert self.signing_key is not None
        return sign_record(self.signing_key, fields, key, payload)

    @property
    def _signer(self) -> Signer | None:
        """Signs the records this coordinator writes (None: it has no key)."""
        return self._sign if self.signing_key is not None else None

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
            sign=self._signer,
            handover_timeout=self.options.handover_timeout,
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
            self._maybe_every_second()
            return
        if self._bus_ready and self.publisher is not None:
            self.publisher.pump()
        records = self.bus.poll_inbound(500, poll_timeout) if self._reading else []
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

    def _ingest(self, records: Sequence[Inbound]) -> None:
        now = self.clock.now()
        known = self._known_names()
        batch = read_batch(
            records,
            prefix=self.options.topic_prefix,
            known_nodes=known,
            max_bytes=self.options.max_message_bytes,
            gate=self.enrollments.gate(now, known),
        )
        self.counters.consumed.update(batch.consumed)
        mono = self.clock.monotonic()
        if batch.unauthenticated or batch.sightings or batch.redemptions:
            self.counters.unauthenticated.update(batch.unauthenticated)
            self.enrollments.settle(batch.unauthenticated, batch.sightings, batch.redemptions, now, mono)
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
                    self._observed_hash[name] = info.configHash
                    self._note_generation(name, info.observedGeneration)
        if batch.responses:
            self.store.record_agent_responses(batch.responses, now)
            for name, resp in batch.responses.items():
                self._observed[name] = resp.observedGeneration
                self._observed_hash[name] = resp.configHash
                self._note_generation(name, resp.observedGeneration)
                applied_at = self._applied_at.get(name)
                if applied_at and (resp.observedGeneration or 0) >= applied_at[0]:
                    del self._applied_at[name]
                    self.counters.convergence_seconds.append(self.clock.monotonic() - applied_at[1])
                    del self.counters.convergence_seconds[:-1000]
            if self.handovers.held and not self.handovers.targets.isdisjoint(batch.responses):
                self._decide_handovers(now)  # a target reported: its handover may be done now
        for reply in batch.logs:
            self.log_replies.deliver(reply)
        if batch.unnamed:
            self._name_agents(batch, now)
        for request in batch.refreshes:
            if self._fresh_request(request, now):
                self._send_command(
                    CommandKind.REFRESH, request.node or BROADCAST_KEY, request_id=request.requestId
                )
        if [u for u in batch.updates if self._fresh_request(u, now)]:
            log.info("UpdateConfig received: applying the manifests now")
            try:
                self.sync_directory(force_apply=True, source="api")
            except DsfleetError as exc:
                log.error("apply failed error=%s", exc)

    def _fresh_request(self, request: UpdateConfig | Refresh, now: datetime) -> bool:
        """A signed request is obeyed once: recent, for this fleet (or none named), and its id not seen before (a
        replayed record is ignored)."""
        if not self._recent(sent_at(request), now):
            return False
        if request.fleet is not None and request.fleet != self.fleet:
            log.warning("request ignored requestId=%s: for fleet %s", request.requestId, request.fleet)
            return False
        if request.requestId in self._requests_seen:
            log.warning("request ignored requestId=%s: seen already (a replay)", request.requestId)
            return False
        horizon = now - 2 * self.options.request_max_age
        self._requests_seen = {r: t for r, t in self._requests_seen.items() if t >= horizon}
        self._requests_seen[request.requestId] = now
        return True

    def _note_generation(self, node: str, generation: int | None) -> None:
        """Remember a generation reported above the stored one (checked against the store's counter before
        anything is done: the configs read here may lag behind an apply of this very tick)."""
        stored = self._configs.get(node)
        if generation is not None and stored is not None and generation > stored.generation:
            self._ahead[node] = max(generation, self._ahead.get(node, 0))

    def _recent(self, when: datetime | None, now: datetime) -> bool:
        return (
            when is not None
            and now - when <= self.options.request_max_age
            and when >= self._started_at - self.options.request_max_age
        )

    def _known_names(self) -> dict[str, object]:
        """The nodes whose agents are listened to: those the manifests declare, and those being retired (their
        agents report their instances gone)."""
        known: dict[str, object] = {n.name: n for n in self.store.known_nodes()}
        for name in self._retiring:
            known.setdefault(name, name)
        return known

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
                key_id=_key_id(info.publicKey),
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
        key_id: str | None = None,
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
            keyId=key_id,
            fleet=self.fleet,
        )
        value = encode(command)
        headers = self._sign(signed_fields_of(command), target, value) if self.signing_key else None
        try:
            self.bus.send(Topic.AGENT_COMMAND, target, value, headers=headers)
            self.counters.commands[kind.value] += 1
        except TemporaryError as exc:
            log.warning("command not sent command=%s target=%s error=%s", kind, target, exc)

    def _read_back(self) -> None:
        assert self.bus is not None
        records, ends = self.bus.poll_observer()
        configs: list[AgentConfig] = []
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
            if isinstance(got, Decoded) and isinstance(got.message, AgentConfig):
                configs.append(got.message)
        if configs:
            self._check_writers(configs)
        for partition, end in ends.items():
            if self.view.end_of_partition(partition, end):
                log.warning("AgentConfig partition=%d was truncated (broker data lost); repairing", partition)

    def _check_writers(self, configs: Sequence[AgentConfig]) -> None:
        """Note AgentConfig records this coordinator did not write: another fleet's id, or (without an id) a
        generation and hash its store never handed out. Each is counted once; an error is logged once per writer."""
        unknown = [c for c in configs if c.fleet is None or c.fleet == self.fleet]
        held = self.store.config_hashes([(c.node, c.generation) for c in unknown]) if unknown else {}
        for c in configs:
            if c.fleet is not None and c.fleet != self.fleet:
                what = f"AgentConfig of node {c.node} generation {c.generation} written by another fleet ({c.fleet})"
            elif held.get((c.node, c.generation), "") != c.configHash:
                what = (
                    f"AgentConfig of node {c.node} generation {c.generation} that this store never wrote "
                    f"(config hash {c.configHash[:12]})"
                )
            else:
                continue
            key = (c.node, c.generation, c.fleet)
            if key in self._foreign_seen:
                continue
            self._foreign_seen.add(key)
            self.counters.foreign_configs += 1
            self.last_foreign = what
            self._next_beat = 0.0
            if c.fleet not in self._foreign_logged:
                self._foreign_logged.add(c.fleet)
                log.error(
                    "another writer on this broker: %s; another coordinator (another store) publishes to these "
                    "topics: stop it, or give it another --topic-prefix",
                    what,
                )
            if len(self._foreign_seen) > 100_000:
                self._foreign_seen.clear()

    def _every_second(self) -> None:
        now = self.clock.now()
        mono = self.clock.monotonic()
        self._refresh_configs()
        try:
            self.enrollments.read(now)  # an operator approves or revokes from another process
        except DsfleetError as exc:
            log.warning("reading agents' keys failed error=%s; the last ones read are used", exc)
        if self.handovers.held:
            self.handovers.read()
            self._decide_handovers(now)
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
        try:
            count = self.bus.partitions(Topic.AGENT_CONFIG)
        except TemporaryError:
            return
        states = []
        for node, gen in desired.items():
            caught_up, on_topic = self.view.holds(node, partition_for(node, count))
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
        decisions = resyncs.resync_decisions(states, now, timing=self.options.timing)
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
        encode = agent_config_encoder(now, self.options.topic_prefix, self.fleet, sign=self._signer)
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

    def run(self, stop: threading.Event, *, changed: Callable[[], bool] | None = None) -> None:
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


def _key_id(public_key: str | None) -> str | None:
    """The id of a public key announced as text (None: none, or not a key)."""
    if not public_key:
        return None
    try:
        return PublicKey.from_text(public_key).id
    except DsfleetError:
        return None
