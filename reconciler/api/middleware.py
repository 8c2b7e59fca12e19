"""The gate in front of the app (pure ASGI, so nothing is buffered behind the server's back): every request is
checked on its head first (:mod:`dsfleet.reconciler.api.gates`: ``Host``, the token or the webhook's secret, the
declared body size, how many requests are in hand), then its body is read here — counted, up to the route's
limit, within :attr:`~dsfleet.reconciler.api.gates.Gate.body_timeout` — and handed to the app in one piece.
A refused request is answered at once (400, 401, 413, 408 or 503, the API's error body) with ``Connection:
close`` when it has a body nobody read, so the server stops reading it. Every answer gets the security headers.

Refusals are logged once per reason and ten seconds, with how many there were since (a flood writes a few lines,
not one per request), and counted in :class:`~dsfleet.reconciler.api.context.HttpStats` for ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import anyio
import anyio.to_thread

from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.errors import error_body
from dsfleet.reconciler.api.gates import (
    SIGNATURE_HEADERS,
    Access,
    access_of,
    body_limit,
    host_allowed,
    refusal,
    security_headers,
)
from dsfleet.reconciler.api.roles import required_role

log = logging.getLogger("dsfleet.api")

__all__ = ["THREADS", "HttpGuard", "RateLimitedLog"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

THREADS: Final = 8
"""Worker threads of the routes (reads of the store, applies): few, so a flood of requests in the coordinator's
process leaves its loop thread its share of the interpreter."""


class RateLimitedLog:
    """One warning per reason per ``interval`` seconds, with how many happened since the last line."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._since: Counter[str] = Counter()

    def note(self, reason: str, detail: str) -> None:
        self._since[reason] += 1
        now = time.monotonic()
        if now - self._last.get(reason, -1e9) >= self.interval:
            log.warning("http %s count=%d %s", reason, self._since[reason], detail)
            self._last[reason] = now
            self._since[reason] = 0


class _TooLarge(Exception):
    pass


class HttpGuard:
    """Wraps the app; see the module's docstring."""

    def __init__(self, app: App, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx
        self.in_hand = 0
        self.webhooks_in_hand = 0
        self.refusals = RateLimitedLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        extra = security_headers(str(scope.get("path", "")))

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((name, value) for name, value in extra if name not in present),
                ]
            await send(message)

        await self._guarded(scope, receive, send_secured)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx, gate = self.ctx, self.ctx.gate
        headers = _headers(scope)
        method, path = str(scope["method"]), str(scope["path"])
        length, chunked = _declared_length(headers)
        has_body = chunked or bool(length)
        if not host_allowed(headers.get("host"), gate.allowed_hosts):
            await self._refuse(scope, send, "host", 400, "Host header not allowed here", close=has_body)
            return
        access = access_of(method, path)
        refused = refusal(
            access,
            token=ctx.token,
            read_requires_token=ctx.read_requires_token,
            authorization=headers.get("authorization"),
            webhook_secret=ctx.webhook_secret,
            signed=any(name in headers for name in SIGNATURE_HEADERS),
            tokens=ctx.tokens,
            needed=required_role(method, path),
        )
        if refused is not None:
            await self._refuse(scope, send, "token", refused[0], refused[1], close=has_body)
            return
        limit = body_limit(gate, access)
        if length is not None and length < 0:
            await self._refuse(scope, send, "bad-length", 400, "invalid Content-Length", close=True)
            return
        if (length or 0) > limit:
            await self._refuse(scope, send, "too-large", 413, _too_large(limit), close=True)
            return
        webhook = access is Access.WEBHOOK and has_body
        if self.in_hand >= gate.max_requests or (webhook and self.webhooks_in_hand >= gate.max_webhook_reads):
            await self._refuse(
                scope, send, "busy", 503, "too many requests at once; try again", close=has_body, retry=True
            )
            return
        self.in_hand += 1
        self.webhooks_in_hand += webhook
        try:
            if has_body:
                body = await self._read_body(scope, receive, send, limit)
                if body is None:
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send)
        finally:
            self.in_hand -= 1
            self.webhooks_in_hand -= webhook

    async def _read_body(self, scope: Scope, receive: Receive, send: Send, limit: int) -> bytes | None:
        """The whole body, or None once the request has been answered (too large, too slow) or the client left."""
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(self.ctx.gate.body_timeout) as deadline:
            try:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = bytes(message.get("body", b""))
                    size += len(chunk)
                    if size > limit:
                        raise _TooLarge
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
            except _TooLarge:
                chunks.clear()
                await self._refuse(scope, send, "too-large", 413, _too_large(limit), close=True)
                return None
        assert deadline.cancelled_caught
        chunks.clear()
        await self._refuse(
            scope, send, "body-timeout", 408, "the request body did not arrive in time", close=True
        )
        return None

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        reason: str,
        status: int,
        message: str,
        *,
        close: bool,
        retry: bool = False,
    ) -> None:
        self.ctx.http.refused[reason] += 1
        self.refusals.note(
            f"refused reason={reason}", f"status={status} method={scope['method']} path={_path(scope)}"
        )
        response = error_body(status, message)
        if close:
            response.headers["connection"] = "close"
        if retry:
            response.headers["retry-after"] = "1"

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, nothing, send)


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the first of a repeated one; latin-1 as HTTP has it)."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        out.setdefault(bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1"))
    return out


def _declared_length(headers: dict[str, str]) -> tuple[int | None, bool]:
    """``Content-Length`` (-1 when it is not a number) and whether the body is chunked."""
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    text = headers.get("content-length")
    if text is None:
        return None, chunked
    text = text.strip()
    return (int(text) if text.isdigit() else -1), chunked


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read once, then whatever the server says (a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _too_large(limit: int) -> str:
    return f"request body too large (at most {limit} bytes here)" if limit else "this request takes no body"


def _path(scope: Scope) -> str:
    return str(scope.get("path", ""))[:100]
