"""The HTTP server's connections: uvicorn's h11 protocol with a cap on open connections and a deadline for a
request's headers, so idle or slow clients cannot hold the process's file descriptors or its event loop.

- **Cap**: at most :attr:`ConnectionLimits.max_connections` open (and never more than half the process's file
  descriptor limit: the rest stay for the store, the broker and the coordinator, :func:`connection_cap`). A
  connection past the cap closes the oldest one that is waiting for a request (just opened, or idle between
  keep-alive requests); when every open connection is in the middle of a request, the new one is answered 503
  and closed. So a flood of idle connections costs at most the cap in descriptors, and a fresh client still
  gets in (it sends its request at once, the flood's connections do not).
- **Headers deadline**: a connection that has not sent a whole request head within
  :attr:`ConnectionLimits.header_timeout` seconds after it opened (or after its last answer) is closed (a
  slowloris that sends a byte now and then included). Header size is h11's limit
  (:attr:`ConnectionLimits.max_header_bytes`, answered 400 past it); a body's pace is the gate's
  (:mod:`dsfleet.reconciler.api.middleware`).

Closings are counted in :class:`~dsfleet.reconciler.api.context.HttpStats` and logged once per reason and ten
seconds with their count.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from uvicorn.protocols.http.h11_impl import H11Protocol

from dsfleet.reconciler.api.context import HttpStats
from dsfleet.reconciler.api.middleware import RateLimitedLog

__all__ = ["ConnectionLimits", "accept_backlog", "connection_cap", "guarded_protocol"]

_BUSY_BODY: Final = b'{"error":{"status":503,"message":"too many connections; try again soon"}}'
BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"retry-after: 1\r\ncontent-length: %d\r\n\r\n" % len(_BUSY_BODY)
) + _BUSY_BODY


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    header_timeout: float = 10.0
    keep_alive: int = 5
    """Seconds an idle keep-alive connection stays open (uvicorn's ``timeout_keep_alive``)."""
    backlog: int = 1024
    """Connections the kernel queues before the server accepts them."""
    max_header_bytes: int = 16 * 1024


def connection_cap(configured: int, descriptors: int) -> int:
    """The connections the server keeps open at most: ``configured``, and at most half of the process's
    file-descriptor limit ``descriptors`` (at least 8)."""
    return max(8, min(configured, descriptors // 2))


def accept_backlog(configured: int, descriptors: int) -> int:
    """The listen backlog: ``configured``, and at most a quarter of ``descriptors`` — the event loop accepts up
    to a backlog's worth of connections before the cap sees them, so cap and backlog together stay under the
    limit (at least 8)."""
    return max(8, min(configured, descriptors // 4))


class _Waiting:
    """The connections waiting for a request, oldest first, and the counters (one per server)."""

    def __init__(self, cap: int, header_timeout: float, stats: HttpStats) -> None:
        self.cap = cap
        self.header_timeout = header_timeout
        self.stats = stats
        self.queue: dict[GuardedH11Protocol, None] = {}
        self.log = RateLimitedLog()

    def closed(self, reason: str) -> None:
        self.stats.connections[reason] += 1
        self.log.note(f"connection closed reason={reason}", f"cap={self.cap}")


class GuardedH11Protocol(H11Protocol):
    """h11 with the cap and the headers deadline; :func:`guarded_protocol` makes one class per server."""

    waiting: _Waiting

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        waiting = self.waiting
        if len(self.connections) > waiting.cap:
            oldest = next(iter(waiting.queue), None)
            if oldest is None:
                waiting.closed("full")
                transport.write(BUSY)
                transport.close()
                return
            waiting.closed("evicted")
            oldest._close()
        self._wait_for_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head arrived
            self._stop_waiting()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._wait_for_request()
        super().on_response_complete()

    def _wait_for_request(self) -> None:
        self._stop_waiting()
        self.waiting.queue[self] = None
        self._headers_timer = self.loop.call_later(self.waiting.header_timeout, self._headers_too_slow)

    def _stop_waiting(self) -> None:
        self.waiting.queue.pop(self, None)
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_too_slow(self) -> None:
        self._headers_timer = None
        self.waiting.closed("header-timeout")
        self._close()

    def _close(self) -> None:
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits, cap: int, stats: HttpStats) -> type[GuardedH11Protocol]:
    """A protocol class for one server (``uvicorn.Config(http=...)``), sharing its queue of waiting
    connections."""
    waiting = _Waiting(cap, limits.header_timeout, stats)
    return type("ServerH11Protocol", (GuardedH11Protocol,), {"waiting": waiting})
