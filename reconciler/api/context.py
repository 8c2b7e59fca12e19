"""What the API needs from the process that serves it: the store to read, the manifests directory, the token,
and how to ask for an apply or a refresh (the coordinator in the same process, or messages on the bus)."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dsfleet.reconciler.loading.yamlfiles import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from dsfleet.reconciler.coordinator.loop import Coordinator
    from dsfleet.reconciler.store import Store
    from dsfleet.schemas.wire import AgentLogs

__all__ = ["ApiContext", "LogSource", "Sender", "token_matches"]

Sender = Callable[[str, str | None, bytes], None]
"""``send(topic, key, value)``: ``topic`` is ``"update-config"``, ``"refresh"`` or ``"agent-command"``; raises
TemporaryError when the broker cannot take it."""


class LogSource(Protocol):
    """Asks a node for an instance's log (:class:`dsfleet.reconciler.coordinator.logreplies.LogFetcher`)."""

    def fetch(
        self, node: str, instance: str, *, tail: int | None, since: str | None, timeout: float
    ) -> AgentLogs | None: ...

    def close(self) -> None: ...


def token_matches(expected: str | None, header: str | None) -> bool:
    """``Authorization: Bearer <token>`` against the configured token, in constant time."""
    if not expected or not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))


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
    _store: Store | None = field(default=None, repr=False)
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

    def close(self) -> None:
        if self.logs is not None:
            self.logs.close()
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
