"""The coordinator loop's settings, counters and state (what it keeps between ticks), shared by its parts:
:class:`~dsfleet.reconciler.coordinator.loop.Coordinator` (applying, publishing, the periodic work) and
:class:`~dsfleet.reconciler.coordinator.inbound.InboundMixin` (what it reads from the bus)."""

from __future__ import annotations

import logging
import threading
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
)
from dsfleet.reconciler.coordinator import handovers, resyncs, retirements
from dsfleet.reconciler.coordinator.enrollments import Enrollments
from dsfleet.reconciler.coordinator.logreplies import LogReplies
from dsfleet.reconciler.coordinator.publishing import OutboxPublisher
from dsfleet.reconciler.coordinator.rollouts import Rollouts
from dsfleet.reconciler.loading.yamlfiles import DEFAULT_LIMITS, Limits
from dsfleet.reconciler.ports import BusPort, Clock, StorePort, SystemClock
from dsfleet.reconciler.store import StoredNodeConfig
from dsfleet.schemas.signatures import SignedFields
from dsfleet.schemas.wire import (
    Rejection,
    Signer,
)

log = logging.getLogger("dsfleet.coordinator")

LISTEN_TIMEOUT_SECONDS = 10.0
"""After the broker is reached, how long the coordinator waits for a first inbound record before it counts
heartbeats as missed anyway (a fleet whose agents are all down sends none)."""
OUTBOX_BATCH = 1000
"""Outbox rows the publisher reads and sends per tick (a first apply of 10,000 nodes queues 10,000 configs)."""
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


class RateLimitedLog:
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


class LoopState:
    """The state of the coordinator's loop, and what its parts call on each other."""

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
            OutboxPublisher(
                store,
                bus,
                prefix=options.topic_prefix,
                clock=self.clock.now,
                fence=store.still_leader,
                batch=OUTBOX_BATCH,
            )
            if bus
            else None
        )
        self.view = resyncs.TopicView.empty()
        self._end_seen: dict[int, float] = {}
        """AgentConfig partition → when (monotonic) the read-back last reached its end."""
        self._sent: dict[str, float] = {}
        """Node → when (monotonic, to the second) its last AgentConfig record left the outbox."""
        self._was_pending: set[str] = set()
        self._known: tuple[int | None, dict[str, object]] = (-1, {})
        """The inventory's node names as of a revision id (read again when another revision is accepted)."""
        self._next_keys_read = 0.0
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
        self._drops = RateLimitedLog()
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
        self.rollouts = Rollouts(store)
        """The configs of the nodes a rollout has not released yet."""
        self.last_apply: ApplyResult | None = None
        self._pin_logged: int | None = None
        """The rollback revision whose pin was last logged as holding (one line per pin)."""

    def _sign(self, fields: SignedFields, key: str | None, payload: bytes | None) -> dict[str, str]:
        assert self.signing_key is not None
        return sign_record(self.signing_key, fields, key, payload)

    @property
    def _signer(self) -> Signer | None:
        """Signs the records this coordinator writes (None: it has no key)."""
        return self._sign if self.signing_key is not None else None

    def _refresh_configs(self, *, force: bool = False) -> None:
        rid = self.store.last_accepted_revision_id()
        if force or rid != self._configs_revision:
            self._configs = self.store.latest_node_configs()
            self._configs_revision = rid

    def sync_directory(self, *, force_apply: bool = False, source: str | None = None) -> ApplyResult | None:
        """Apply the manifests now (:meth:`dsfleet.reconciler.coordinator.loop.Coordinator.sync_directory`)."""
        raise NotImplementedError

    def _decide_handovers(self, now: datetime) -> None:
        """Decide the held configs (:meth:`dsfleet.reconciler.coordinator.loop.Coordinator._decide_handovers`)."""
        raise NotImplementedError
