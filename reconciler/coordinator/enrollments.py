"""The coordinator's side of agent identity: the keys the store holds for every node, read into a
:class:`~dsfleet.reconciler.coordinator.authentication.KeyBook` (at start, every second, and after each change),
the :class:`~dsfleet.reconciler.coordinator.authentication.Gate` each batch is admitted through, and what a batch
teaches: keys waiting for approval (kept as pending, at most once a minute per key), enrollment tokens to redeem
(one transaction each; the enrollment is an event), and reports dropped, counted by reason (one log line per
reason every :data:`LOG_SECONDS`; the totals are kept in the store's sync state for ``dsfleet status``).
Decisions live in :mod:`~dsfleet.reconciler.coordinator.authentication`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from dsfleet.plumbing.signing import PublicKey
from dsfleet.reconciler.coordinator.authentication import REASONS, Gate, KeyBook, Redemption
from dsfleet.reconciler.store.nodekeys import EnrollmentTokenRow, KeySighting, NodeKeyRow
from dsfleet.reconciler.store.snapshots import UNAUTHENTICATED_REPORTS
from dsfleet.schemas.errors import DsfleetError

__all__ = ["LOG_SECONDS", "UNAUTHENTICATED_STATE", "Enrollments", "KeyStore"]

log = logging.getLogger("dsfleet.coordinator")

LOG_SECONDS: Final = 10.0
UNAUTHENTICATED_STATE: Final = UNAUTHENTICATED_REPORTS
"""The sync-state key under which the coordinator keeps the count of dropped reports by reason."""
SIGHTING_SECONDS: Final = 60.0


class KeyStore(Protocol):
    def node_keys(self, node: str | None = None) -> list[NodeKeyRow]: ...

    def enrollment_tokens(self, *, at: datetime | None = None) -> list[EnrollmentTokenRow]: ...

    def note_key_sightings(self, sightings: Sequence[KeySighting], at: datetime) -> int: ...

    def redeem_enrollment_token(self, token_id: int, sighting: KeySighting, at: datetime) -> bool: ...

    def record_event(
        self, at: datetime, kind: str, message: str, *, node: str | None = None, instance: str | None = None
    ) -> int: ...

    def set_sync_state(self, key: str, value: Any, at: datetime) -> None: ...


class Enrollments:
    def __init__(
        self,
        store: KeyStore,
        operators: Iterable[PublicKey] | Callable[[], Iterable[PublicKey]] = (),
        *,
        max_bytes: int = 1_000_000,
    ) -> None:
        """``operators``: the operator keys, or a function reading them again (settings and key files: a
        ``dsfleet serve`` started after the coordinator is trusted at the next read)."""
        self.store = store
        self._operator_source = operators if callable(operators) else None
        self.operators = () if callable(operators) else tuple(operators)
        self._operators_error: str | None = None
        self._read_operators()
        self.max_bytes = max_bytes
        self.book = KeyBook.of((), (), self.operators)
        self.dropped: Counter[str] = Counter()
        """Reports and requests dropped by the gate since start, by reason."""
        self.enrolled_by_token = 0
        self._seen: dict[tuple[str, str], datetime] = {}
        self._logged: dict[str, float] = {}
        self._since_log: Counter[str] = Counter()
        self._written: dict[str, int] | None = None

    def _read_operators(self) -> None:
        """Read the operator keys again; on an error (a key file half written, a bad line), keep the last ones
        read and say so once."""
        if self._operator_source is None:
            return
        try:
            keys = tuple(self._operator_source())
        except DsfleetError as exc:
            if str(exc) != self._operators_error:
                self._operators_error = str(exc)
                log.warning("operator keys not read error=%s; the last ones read are used", exc)
            return
        self._operators_error = None
        if {k.id for k in keys} != {k.id for k in self.operators}:
            if self.operators or keys:
                log.info("operator keys=%s", ",".join(sorted(k.id for k in keys)) or "-")
            self.operators = keys

    def read(self, now: datetime) -> None:
        """Read the keys, usable tokens and operator keys again."""
        self._read_operators()
        self.book = KeyBook.of(self.store.node_keys(), self.store.enrollment_tokens(at=now), self.operators)

    def gate(self, now: datetime, known: Iterable[str] | None = None) -> Gate:
        return Gate(self.book, now, frozenset(known) if known is not None else None, max_bytes=self.max_bytes)

    def settle(
        self,
        dropped: Mapping[str, int],
        sightings: Sequence[KeySighting],
        redemptions: Sequence[Redemption],
        now: datetime,
        mono: float,
    ) -> None:
        """What one batch taught: count and log the drops, keep the pending keys, redeem the tokens."""
        for reason, n in dropped.items():
            self.dropped[reason] += n
            self._since_log[reason] += n
            if mono - self._logged.get(reason, -1e9) >= LOG_SECONDS:
                self._logged[reason] = mono
                log.warning(
                    "report dropped reason=%s count=%d total=%d (not signed by the node's enrolled key, or by an "
                    "operator key; `dsfleet nodes list` shows keys waiting for approval)",
                    reason,
                    self._since_log[reason],
                    self.dropped[reason],
                )
                self._since_log[reason] = 0
        fresh = [s for s in sightings if self._due(s, now)]
        if fresh:
            added = self.store.note_key_sightings(fresh, now)
            for s in fresh[:added] if added else ():
                log.warning(
                    "key waiting for approval node=%s key=%s hostname=%s: `dsfleet nodes approve %s --key %s`",
                    s.node,
                    s.key_id,
                    s.hostname,
                    s.node,
                    s.key_id,
                )
        changed = False
        for r in {(x.token_row, x.sighting.key_id): x for x in redemptions}.values():
            if self.store.redeem_enrollment_token(r.token_row, r.sighting, now):
                changed = True
                self.enrolled_by_token += 1
                log.info(
                    "key enrolled node=%s key=%s by enrollment token %d",
                    r.sighting.node,
                    r.sighting.key_id,
                    r.token_row,
                )
                self.store.record_event(
                    now,
                    "key-enrolled",
                    f"key {r.sighting.key_id} enrolled by enrollment token {r.token_row}",
                    node=r.sighting.node,
                )
            else:
                log.warning(
                    "enrollment token %d not used for node=%s key=%s (used, expired, bound to another node, or the "
                    "node has a key already)",
                    r.token_row,
                    r.sighting.node,
                    r.sighting.key_id,
                )
        if changed:
            self.read(now)

    def _due(self, s: KeySighting, now: datetime) -> bool:
        key = (s.node, s.key_id)
        last = self._seen.get(key)
        if last is not None and now - last < timedelta(seconds=SIGHTING_SECONDS):
            return False
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[key] = now
        return True

    def write_counts(self, now: datetime, since: datetime) -> None:
        """Keep the drop counts (since ``since``, the coordinator's start) in the store for ``dsfleet status``,
        when they changed."""
        counts = {reason: self.dropped[reason] for reason in REASONS if self.dropped[reason]}
        if self._written is not None and counts == self._written:
            return
        self.store.set_sync_state(UNAUTHENTICATED_STATE, {"since": since.isoformat(), "counts": counts}, now)
        self._written = counts
