"""What the API needs from the process that serves it: the store to read, the manifests directory, the token,
the limits of its requests (:class:`~dsfleet.reconciler.api.gates.Gate`), and how to ask for an apply or a refresh
(the coordinator in the same process, or messages on the bus)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dsfleet.reconciler.api.gates import Gate, token_matches
from dsfleet.reconciler.api.roles import TokenEntry
from dsfleet.reconciler.loading.yamlfiles import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from dsfleet.reconciler.coordinator.loop import Coordinator
    from dsfleet.reconciler.store import Store
    from dsfleet.schemas.wire import AgentLogs

__all__ = ["DELIVERY_RETENTION", "ApiContext", "HttpStats", "LogSource", "Sender", "token_matches"]

DELIVERY_RETENTION = timedelta(days=7)
"""Webhook deliveries are remembered this long (a forge redelivers for three days at most)."""

Sender = Callable[[str, str | None, bytes], None]
"""``send(topic, key, value)``: ``topic`` is ``"update-config"``, ``"refresh"`` or ``"agent-command"``; raises
TemporaryError when the broker cannot take it."""


class LogSource(Protocol):
    """Asks a node for an instance's log (:class:`dsfleet.reconciler.coordinator.logreplies.LogFetcher`)."""

    def fetch(
        self, node: str, instance: str, *, tail: int | None, since: str | None, timeout: float
    ) -> AgentLogs | None: ...

    def close(self) -> None: ...


@dataclass
class HttpStats:
    """What the server refused or closed, by reason (``/metrics``); written by the server's event loop only."""

    refused: Counter[str] = field(default_factory=Counter)
    """Requests answered before the app saw them: ``host``, ``token``, ``too-large``, ``body-timeout``, ``busy``."""
    connections: Counter[str] = field(default_factory=Counter)
    """Connections closed by the server: ``evicted`` (the cap), ``full`` (every one busy), ``header-timeout``."""


@dataclass
class ApiContext:
    db: str
    manifests: Path | None = None
    token: str | None = None
    read_requires_token: bool = False
    webhook_secret: str | None = None
    limits: Limits = DEFAULT_LIMITS
    coordinator: Coordinator | None = None
    """The coordinator of this process (``dsfleet coordinator --http``); None for ``dsfleet serve``."""
    send: Sender | None = None
    """Sends UpdateConfig/Refresh; None: no broker configured (writes that need one answer 503)."""
    stats: Callable[[], dict[str, Any]] | None = None
    logs: LogSource | None = None
    """Fetches instance logs from their nodes; None: no broker configured (the logs route answers 503)."""
    gate: Gate = field(default_factory=Gate)
    http: HttpStats = field(default_factory=HttpStats)
    camera_metrics: bool = True
    """``/metrics`` has one series per camera (``[api] camera-metrics``)."""
    tokens: tuple[TokenEntry, ...] = ()
    """More tokens, each with a name and role (``[api] tokens_file``); the ``token`` above is an admin."""
    edits_push: tuple[str, str] | None = None
    """``(remote, branch)`` each edit's commit is pushed to (``[api] edits_push_remote`` / ``_branch``)."""
    edits_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Held by an edit from reading the manifests to committing them: edits are applied one at a time."""
    _store: Store | None = field(default=None, repr=False)
    _writer: Store | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def store(self) -> Store:
        """A read-only store, opened once (again while the database file does not exist yet)."""
        from dsfleet.reconciler.store import Store

        with self._lock:
            if self._store is None or self._store.empty_fallback:
                if self._store is not None:
                    self._store.close()
                self._store = Store.open(self.db, readonly=True)
            return self._store

    def record_delivery(self, keys: Sequence[str], source: str, now: datetime) -> bool:
        """Remember a webhook delivery by its keys (the forge's delivery id, the digest of its body); False when
        one of them was seen within :data:`DELIVERY_RETENTION`. The only write of the API: a store opened for it,
        never migrated here (the coordinator does that)."""
        from dsfleet.reconciler.store import Store

        with self._lock:
            if self._writer is None:
                self._writer = Store.open(self.db, migrate=False)
            writer = self._writer
        return writer.record_delivery(keys, source, now, keep=DELIVERY_RETENTION)

    def record_event(self, at: datetime, kind: str, message: str) -> None:
        """Append an event (who changed what, from the API) through the store opened for writes."""
        from dsfleet.reconciler.store import Store

        with self._lock:
            if self._writer is None:
                self._writer = Store.open(self.db, migrate=False)
            writer = self._writer
        writer.record_event(at, kind, message)

    def request_rollout(self, request: dict[str, Any], at: datetime) -> None:
        """Leave an operator's rollout command for the coordinator (it reads it within a second)."""
        from dsfleet.reconciler.store import Store
        from dsfleet.reconciler.store.values import ROLLOUT_REQUEST

        with self._lock:
            if self._writer is None:
                self._writer = Store.open(self.db, migrate=False)
            writer = self._writer
        writer.set_sync_state(ROLLOUT_REQUEST, request, at)

    def forget_delivery(self, keys: Sequence[str]) -> None:
        """Forget a delivery :meth:`record_delivery` remembered (it failed: the forge's retry should apply)."""
        with self._lock:
            writer = self._writer
        if writer is not None:
            writer.forget_delivery(keys)

    def close(self) -> None:
        if self.logs is not None:
            self.logs.close()
        with self._lock:
            for store in (self._store, self._writer):
                if store is not None:
                    store.close()
            self._store = None
            self._writer = None
