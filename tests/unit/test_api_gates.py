"""The HTTP gate: what is decided from a request's head (pure), and the ASGI middleware driven in memory — a
refused request is answered before its body is read, a body past the limit is cut at the limit, a slow one
times out, every answer carries the security headers."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import MutableMapping
from typing import Any

import pytest

from dsfleet.reconciler.api.app import create_app
from dsfleet.reconciler.api.connections import accept_backlog, connection_cap
from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.gates import (
    CONTENT_SECURITY_POLICY,
    Access,
    Gate,
    access_of,
    allowed_hosts,
    body_limit,
    host_allowed,
    host_name,
    reads_need_token,
    refusal,
    security_headers,
)
from dsfleet.reconciler.api.middleware import HttpGuard
from dsfleet.reconciler.api.webhooks import delivery_keys

Message = MutableMapping[str, Any]


@pytest.mark.parametrize(
    ("method", "path", "access"),
    [
        ("GET", "/api/v1/status", Access.READ),
        ("HEAD", "/api/v1/nodes/x", Access.READ),
        ("GET", "/api/v1", Access.READ),
        ("GET", "/metrics", Access.READ),
        ("GET", "/", Access.OPEN),
        ("GET", "/healthz", Access.OPEN),
        ("GET", "/docs", Access.OPEN),
        ("GET", "/static/dashboard.js", Access.OPEN),
        ("GET", "/api/v10/status", Access.OPEN),
        ("POST", "/api/v1/apply", Access.WRITE),
        ("post", "/api/v1/refresh", Access.WRITE),
        ("PUT", "/api/v1/status", Access.WRITE),
        ("DELETE", "/", Access.WRITE),
        ("POST", "/api/v1/webhooks/git", Access.WEBHOOK),
        ("PUT", "/api/v1/webhooks/git", Access.WRITE),
        ("POST", "/api/v1/webhooks/git/", Access.WRITE),
    ],
)
def test_access_of(method: str, path: str, access: Access) -> None:
    assert access_of(method, path) is access


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("LocalHost", "localhost"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("fleet.example.com.", "fleet.example.com"),
        ("fleet.example.com:443", "fleet.example.com"),
        ("::1", "::1"),
    ],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_allowed_hosts_default_to_loopback_names_on_loopback_and_any_beyond() -> None:
    loop = allowed_hosts(None, "127.0.0.1", loopback=True)
    assert loop == frozenset({"localhost", "127.0.0.1", "::1"})
    assert host_allowed("localhost:8080", loop) and host_allowed("[::1]:1", loop)
    assert not host_allowed("attacker.example", loop)  # DNS rebinding onto 127.0.0.1
    assert not host_allowed(None, loop) and not host_allowed("", loop)
    assert allowed_hosts(None, "10.0.0.5", loopback=False) is None
    assert host_allowed("anything", None)


def test_allowed_hosts_listed_add_the_bound_address_and_loopback() -> None:
    listed = allowed_hosts(("Fleet.Example.com",), "10.0.0.5", loopback=False)
    assert listed == frozenset({"fleet.example.com", "10.0.0.5", "localhost", "127.0.0.1", "::1"})
    assert not host_allowed("other.example", listed)
    wildcard = allowed_hosts(("fleet.example.com",), "0.0.0.0", loopback=False)
    assert wildcard is not None and "0.0.0.0" not in wildcard
    assert allowed_hosts(("*",), "127.0.0.1", loopback=True) is None


@pytest.mark.parametrize(
    ("access", "kwargs", "status"),
    [
        (Access.OPEN, {}, None),
        (Access.READ, {}, None),
        (Access.READ, {"read_requires_token": True}, 401),
        (Access.READ, {"read_requires_token": True, "authorization": "Bearer t"}, None),
        (Access.READ, {"read_requires_token": True, "authorization": "Bearer T"}, 401),
        (Access.WRITE, {}, 401),
        (Access.WRITE, {"authorization": "Bearer t"}, None),
        (Access.WRITE, {"authorization": "Basic t"}, 401),
        (Access.WRITE, {"token": None, "authorization": "Bearer t"}, 401),
        (Access.WEBHOOK, {}, 401),
        (Access.WEBHOOK, {"webhook_secret": "s"}, 401),
        (Access.WEBHOOK, {"webhook_secret": "s", "signed": True}, None),
        (Access.WEBHOOK, {"webhook_secret": None, "signed": True}, 401),
    ],
)
def test_refusal(access: Access, kwargs: dict[str, Any], status: int | None) -> None:
    given: dict[str, Any] = {"token": "t", "read_requires_token": False, "authorization": None, **kwargs}
    got = refusal(access, **given)
    assert (got[0] if got else None) == status


def test_refusal_says_why_writes_are_refused() -> None:
    disabled = refusal(Access.WRITE, token=None, read_requires_token=False, authorization="Bearer x")
    assert disabled is not None and "no API token configured" in disabled[1]


@pytest.mark.parametrize(
    ("setting", "loopback", "needed"),
    [("auto", True, False), ("auto", False, True), (True, True, True), (False, False, False)],
)
def test_reads_need_the_token_beyond_loopback_unless_told(
    setting: bool | str, loopback: bool, needed: bool
) -> None:
    assert reads_need_token(setting, loopback=loopback) is needed


def test_body_limits_by_access() -> None:
    gate = Gate(max_body_bytes=10, webhook_max_body_bytes=20)
    assert [body_limit(gate, a) for a in Access] == [0, 0, 10, 20]


def test_security_headers() -> None:
    api = dict(security_headers("/api/v1/status"))
    assert api[b"x-frame-options"] == b"DENY" and api[b"cache-control"] == b"no-store"
    assert api[b"x-content-type-options"] == b"nosniff" and api[b"referrer-policy"] == b"no-referrer"
    assert dict(security_headers("/static/dashboard.js"))[b"cache-control"] == b"no-cache"
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    ("configured", "descriptors", "cap", "backlog"),
    [(1000, 65536, 1000, 1000), (1000, 1024, 512, 256), (1000, 10, 8, 8), (50, 20000, 50, 50)],
)
def test_connection_cap_and_backlog_stay_under_the_descriptor_limit(
    configured: int, descriptors: int, cap: int, backlog: int
) -> None:
    assert connection_cap(configured, descriptors) == cap
    assert accept_backlog(configured, descriptors) == backlog


def test_delivery_keys_name_the_delivery_and_its_body() -> None:
    body = b'{"ref": "refs/heads/main"}'
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert delivery_keys({"x-github-delivery": "72d3162e"}, body) == ["delivery:72d3162e", digest]
    assert delivery_keys({"idempotency-key": "k-1"}, body) == ["delivery:k-1", digest]
    assert delivery_keys({}, body) == [digest]
    assert delivery_keys({"x-gitea-delivery": " "}, body) == [digest]
    assert delivery_keys({}, body + b" ") != [digest]


# --- the middleware, in memory ------------------------------------------------------------------------------


class Client:
    """Drives an ASGI app with one request; records what the app asked of the body and what it answered."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        chunks: list[bytes] | None = None,
        *,
        delay: float = 0.0,
    ) -> tuple[int, dict[str, str], bytes, int]:
        """``(status, headers, body, body chunks the app took)``; ``delay`` before each chunk."""
        heads = {"host": "127.0.0.1:8080", **(headers or {})}
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in heads.items()],
            "scheme": "http",
            "server": ("127.0.0.1", 8080),
            "client": ("127.0.0.1", 5000),
            "http_version": "1.1",
            "root_path": "",
        }
        pending = list(chunks or [])
        taken = 0
        sent: list[Message] = []

        async def receive() -> Message:
            nonlocal taken
            if not pending:
                await asyncio.sleep(3600)
            await asyncio.sleep(delay)
            taken += 1
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

        async def send(message: Message) -> None:
            sent.append(message)

        asyncio.run(self.app(scope, receive, send))
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        answer = {k.decode(): v.decode() for k, v in start["headers"]}
        return int(start["status"]), answer, body, taken


def _client(**ctx: Any) -> Client:
    return Client(create_app(ApiContext(db="sqlite://", **ctx)))


MEGA = b"x" * (256 * 1024)


def test_a_write_without_the_token_is_refused_before_its_body_is_read() -> None:
    client = _client(token="t")
    status, headers, body, taken = client.request(
        "POST", "/api/v1/apply", {"content-length": str(100 << 20)}, [MEGA] * 400
    )
    assert (status, taken) == (401, 0)
    assert headers["connection"] == "close" and headers["www-authenticate"] == "Bearer"
    assert b"bearer token" in body
    status, headers, _, taken = client.request(
        "POST", "/api/v1/apply", {"transfer-encoding": "chunked"}, [MEGA] * 400
    )
    assert (status, taken) == (401, 0)


def test_a_declared_body_past_the_limit_is_413_before_it_is_read() -> None:
    client = _client(token="t")
    status, headers, body, taken = client.request(
        "POST",
        "/api/v1/apply",
        {"authorization": "Bearer t", "content-length": str(100 << 20)},
        [MEGA] * 400,
    )
    assert (status, taken) == (413, 0)
    assert headers["connection"] == "close" and b"at most 1048576 bytes" in body


def test_a_streamed_body_is_cut_at_the_limit() -> None:
    client = _client(token="t")
    status, _, _, taken = client.request(
        "POST", "/api/v1/apply", {"authorization": "Bearer t", "transfer-encoding": "chunked"}, [MEGA] * 400
    )
    assert status == 413 and taken == 5  # 1 MiB + one chunk, of 100 MiB


def test_a_body_under_the_limit_reaches_the_route() -> None:
    client = _client(token="t")
    status, _, body, taken = client.request(
        "POST",
        "/api/v1/refresh",
        {"authorization": "Bearer t", "transfer-encoding": "chunked", "content-type": "application/json"},
        [b'{"node":', b" 5}"],
    )
    assert (status, taken) == (422, 2) and b"body" in body  # parsed by the route: a number is no node name


def test_a_slow_body_is_408() -> None:
    client = Client(
        HttpGuard(_never_called, ApiContext(db="sqlite://", token="t", gate=Gate(body_timeout=0.2)))
    )
    status, headers, _, taken = client.request(
        "POST",
        "/api/v1/apply",
        {"authorization": "Bearer t", "content-length": "10"},
        [b"x"] * 10,
        delay=0.05,
    )
    assert status == 408 and headers["connection"] == "close" and 2 <= taken < 10


def test_a_webhook_needs_a_secret_and_a_signature_header_before_its_body_is_read() -> None:
    hook = "/api/v1/webhooks/git"
    length = {"content-length": str(30 << 20)}
    assert _client(token="t").request("POST", hook, length, [MEGA])[0::3] == (401, 0)
    client = _client(token="t", webhook_secret="s")
    assert client.request("POST", hook, length, [MEGA])[0::3] == (401, 0)
    signed = {**length, "x-hub-signature-256": "sha256=00"}
    assert client.request("POST", hook, signed, [MEGA])[0::3] == (413, 0)  # past 25 MiB: not read either


def test_reads_take_no_body_and_may_need_the_token() -> None:
    open_reads = _client(token="t")
    assert open_reads.request("GET", "/healthz", {"content-length": "5"}, [b"12345"])[0::3] == (413, 0)
    closed = _client(token="t", read_requires_token=True)
    assert closed.request("GET", "/api/v1/status")[0] == 401
    assert closed.request("GET", "/metrics")[0] == 401
    assert closed.request("GET", "/healthz")[0] == 200


def test_a_host_not_allowed_is_400_and_every_answer_has_the_security_headers() -> None:
    client = _client(token="t", gate=Gate(allowed_hosts=frozenset({"127.0.0.1"})))
    status, headers, _, _ = client.request("GET", "/healthz", {"host": "rebound.example:8080"})
    assert status == 400 and headers["x-frame-options"] == "DENY"
    status, headers, _, _ = client.request("GET", "/healthz")
    assert status == 200
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"
    status, headers, body, _ = client.request("GET", "/")
    assert status == 200 and b"<script>" not in body and b"<style>" not in body
    assert b'<script src="/static/dashboard.js">' in body
    status, headers, body, _ = client.request("GET", "/static/dashboard.js")
    assert status == 200 and headers["cache-control"] == "no-cache" and b"fetch(" in body
    status, _, body, _ = client.request("GET", "/docs")
    assert status == 200 and b"/static/swagger-ui/swagger-ui-bundle.js" in body and b"https://" not in body
    assert client.request("GET", "/static/swagger-ui/swagger-ui-bundle.js")[0] == 200
    assert client.request("GET", "/static/../app.py")[0] == 404
    assert client.request("GET", "/redoc")[0] == 404


def test_requests_past_the_limit_in_hand_are_503() -> None:
    gate = Gate(max_requests=1)
    guard = HttpGuard(_never_called, ApiContext(db="sqlite://", token="t", gate=gate))
    guard.in_hand = 1  # one request being handled
    status, headers, _, _ = Client(guard).request("GET", "/healthz")
    assert status == 503 and headers["retry-after"] == "1"
    hook = Client(HttpGuard(_never_called, ApiContext(db="sqlite://", webhook_secret="s", gate=gate)))
    hook.app.webhooks_in_hand = gate.max_webhook_reads
    signed = {"content-length": "2", "x-gitea-signature": "00"}
    assert hook.request("POST", "/api/v1/webhooks/git", signed, [b"{}"])[0] == 503


async def _never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the app was called")
