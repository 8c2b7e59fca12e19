"""The HTTP API of a real coordinator process (``dsfleet coordinator --http`` on loopback, a real broker, a SQLite
store, manual sync), attacked the way the audit did:

- a 100 MB POST without a token is answered 401 at once and the coordinator's memory hardly moves (its VmRSS and
  VmHWM read from ``/proc``); with the token it is 413, declared or chunked; a webhook past its limit too;
- a ``Host`` header the server does not answer to is 400;
- every answer carries the security headers; ``/docs`` (Swagger UI) in headless Chromium loads nothing but the
  server's own files and renders under its Content-Security-Policy;
- a signed webhook delivery replayed (same delivery id, or the same body under a new id) is applied once;
- a flood of idle and half-sent connections does not keep a fresh client from ``/api/v1/status`` and the
  coordinator's heartbeat keeps advancing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dsfleet.reconciler.store import Store
from tests.support.apiserver import TOKEN, WEBHOOK_SECRET, ServerProc
from tests.support.brokers import Tansu
from tests.support.livefleet import ROOT, wait_for

MB = 1024 * 1024
FLOOD = int(os.environ.get("DSFLEET_TEST_HTTP_FLOOD", "2000"))
"""Idle connections the flood test opens (in batches); CI keeps it bounded."""

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Alice Operator",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice Operator",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **GIT_ENV},
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@dataclass
class Coordinator:
    server: ServerProc
    db: str
    work: Path
    """A developer's clone of the repository the coordinator's manifests directory follows."""
    manifests: Path

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) of the coordinator process, in bytes."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024
        return out

    def heartbeat(self) -> datetime | None:
        with Store.open(self.db, readonly=True) as store:
            beat = store.coordinator_heartbeat()
        return beat.seen_at if beat is not None else None

    def revisions(self) -> list[dict[str, Any]]:
        with self.server.client(TOKEN) as api:
            resp = api.get("/api/v1/revisions")
            assert resp.status_code == 200, resp.text
            return list(resp.json())


@pytest.fixture(scope="module")
def coordinator(kafka_broker: Tansu, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    import uuid

    tmp = tmp_path_factory.mktemp("http")
    bare, work, manifests = tmp / "fleet.git", tmp / "work", tmp / "manifests"
    git("init", "--quiet", "--bare", str(bare))
    git("clone", "--quiet", str(bare), str(work))
    shutil.copytree(ROOT / "manifests", work, dirs_exist_ok=True)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "the example fleet", cwd=work)
    git("branch", "-M", "main", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    git("clone", "--quiet", str(bare), str(manifests))
    db = f"sqlite:///{tmp / 'state' / 'state.db'}"
    server = ServerProc(
        [
            "coordinator",
            "--manifests",
            str(manifests),
            "--db",
            db,
            "--sync",
            "manual",
            "--bootstrap-servers",
            kafka_broker.bootstrap,
            "-X",
            "fetch.wait.max.ms=10",
            "--topic-prefix",
            f"h{uuid.uuid4().hex[:10]}.",
            "--partitions",
            "3",
        ],
        tmp / "coordinator.log",
    ).start()
    found = Coordinator(server, db, work, manifests)
    wait_for(found.heartbeat, 30, "the coordinator's first heartbeat")
    try:
        yield found
    finally:
        assert server.stop() == 0
        text = server.text()
        assert TOKEN not in text and WEBHOOK_SECRET not in text
        assert "Traceback" not in text, text[-3000:]


# --------------------------------------------------------------------------------------------- raw HTTP helpers


@dataclass(frozen=True)
class Answer:
    status: int
    head: str
    sent: int
    """Body bytes the client got to send before the answer came (or the server closed)."""
    seconds: float


def _post_big(
    port: int,
    path: str,
    size: int,
    headers: dict[str, str],
    *,
    chunked: bool = False,
    timeout: float = 30.0,
) -> Answer:
    """POST ``size`` bytes to ``path`` on a raw socket, a megabyte at a time, until the server answers (or closes);
    the server's status line and headers, and how much of the body went out."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(size)}
        lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
        lines += [f"{k}: {v}" for k, v in {**framing, **headers}.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sock.setblocking(False)
        piece = b"x" * MB
        sent = 0  # body bytes handed to the kernel
        pending = b""  # the framed bytes of the current megabyte not sent yet
        closed = False
        received = b""
        deadline = started + timeout
        while time.monotonic() < deadline:
            more = not closed and (pending or sent < size)
            readable, writable, _ = select.select([sock], [sock] if more else [], [], 0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                received += data
                if b"\r\n\r\n" in received or not data:
                    break
            elif writable:
                if not pending:
                    chunk = piece[: size - sent]
                    pending = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
                    if chunked and sent + len(chunk) >= size:
                        pending += b"0\r\n\r\n"
                    sent += len(chunk)
                try:
                    pending = pending[sock.send(pending) :]
                except (BrokenPipeError, ConnectionResetError):
                    closed = True  # the server closed its side: its answer may still be readable
        head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        assert head.startswith("HTTP/1.1 "), f"no answer after {sent} body bytes: {received[:200]!r}"
        return Answer(int(head.split()[1]), head, sent, time.monotonic() - started)
    finally:
        sock.close()


def _sign(body: bytes) -> str:
    return hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


# -------------------------------------------------------------------------------------------------------- tests


def test_a_100_mb_post_is_refused_before_it_is_read(coordinator: Coordinator) -> None:
    port = coordinator.server.port
    before = coordinator.memory()
    anonymous = _post_big(port, "/api/v1/apply", 100 * MB, {})
    assert anonymous.status in (401, 413), anonymous.head
    assert anonymous.seconds < 5 and anonymous.sent < 100 * MB
    assert "connection: close" in anonymous.head.lower()

    authed = {"Authorization": f"Bearer {TOKEN}"}
    declared = _post_big(port, "/api/v1/apply", 100 * MB, authed)
    assert declared.status == 413, declared.head
    assert declared.seconds < 5 and declared.sent < 100 * MB
    streamed = _post_big(port, "/api/v1/apply", 100 * MB, authed, chunked=True)
    assert streamed.status == 413, streamed.head  # cut at 1 MB, counted as it came
    assert streamed.sent < 100 * MB
    signed = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    hook = _post_big(port, "/api/v1/webhooks/git", 100 * MB, signed)
    assert hook.status == 413, hook.head  # over the webhooks' 25 MB
    unsigned = _post_big(port, "/api/v1/webhooks/git", 100 * MB, {})
    assert unsigned.status == 401, unsigned.head

    after = coordinator.memory()
    grown = after["VmRSS"] - before["VmRSS"]
    peak = after["VmHWM"] - before["VmRSS"]
    print(
        f"coordinator VmRSS before={before['VmRSS'] / MB:.1f} MB after={after['VmRSS'] / MB:.1f} MB "
        f"peak={after['VmHWM'] / MB:.1f} MB; answers in {anonymous.seconds:.3f} s (anonymous), "
        f"{declared.seconds:.3f} s (declared), {streamed.seconds:.3f} s (chunked)"
    )
    assert grown < 50 * MB and peak < 50 * MB, (before, after)
    with coordinator.server.client() as api:
        assert api.get("/api/v1/status").status_code == 200  # still serving


def test_a_host_the_server_does_not_answer_to_is_400(coordinator: Coordinator) -> None:
    with coordinator.server.client() as api:
        for host in ("evil.example", "evil.example:80", "127.0.0.2", "[::2]"):
            resp = api.get("/api/v1/status", headers={"Host": host})
            assert resp.status_code == 400, (host, resp.text)
            assert resp.json()["error"]["status"] == 400
        port = coordinator.server.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert api.get("/api/v1/status", headers={"Host": host}).status_code == 200, host


def test_every_answer_carries_the_security_headers(coordinator: Coordinator) -> None:
    with coordinator.server.client() as api:
        answers = {
            "/api/v1/status": api.get("/api/v1/status"),
            "/": api.get("/"),
            "/docs": api.get("/docs"),
            "/static/dashboard.js": api.get("/static/dashboard.js"),
            "/no/such": api.get("/no/such"),
            "401": api.post("/api/v1/apply"),
            "400": api.get("/", headers={"Host": "evil.example"}),
        }
    for name, resp in answers.items():
        headers = resp.headers
        policy = headers.get("content-security-policy", "")
        assert "default-src 'none'" in policy and "script-src 'self'" in policy, name
        assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy, name
        assert headers.get("x-frame-options") == "DENY", name
        assert headers.get("x-content-type-options") == "nosniff", name
        assert headers.get("referrer-policy") == "no-referrer", name
        assert "server" not in headers, name
    assert answers["/api/v1/status"].headers["cache-control"] == "no-store"
    assert "<script>" not in answers["/"].text and "<style>" not in answers["/"].text
    assert "cdn" not in answers["/docs"].text.lower() and "https://" not in answers["/docs"].text


def test_the_docs_page_loads_only_the_servers_own_files(coordinator: Coordinator) -> None:
    from tests.support.browsers import chromium

    requests: list[str] = []
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{coordinator.server.url}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)  # Swagger UI rendered the operations
        assert page.locator(".opblock-summary-path", has_text="/api/v1/status").count() >= 1
    origin = coordinator.server.url + "/"
    assert requests and all(url.startswith(origin) or url.startswith("data:") for url in requests), requests
    assert f"{origin}static/swagger-ui/swagger-ui-bundle.js" in requests
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems


def test_a_replayed_webhook_delivery_is_applied_once(coordinator: Coordinator) -> None:
    work, manifests = coordinator.work, coordinator.manifests
    gate = work / "cameras" / "gate.yaml"
    gate.write_text(gate.read_text().replace("gate-2/main", "gate-2/sub"))
    git("commit", "--quiet", "-am", "gate-2 on its sub stream", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    pushed = git("rev-parse", "HEAD", cwd=work)
    body = json.dumps({"ref": "refs/heads/main", "after": pushed}).encode()
    delivery = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": "sha256=" + _sign(body),
        "Content-Type": "application/json",
    }
    hook = "/api/v1/webhooks/git"
    with coordinator.server.client() as api:
        first = api.post(hook, content=body, headers=delivery)
        assert first.status_code == 202, first.text
        assert git("rev-parse", "HEAD", cwd=manifests) == pushed
        applied = wait_for(
            lambda: [r for r in coordinator.revisions() if r["commit"] == pushed], 20, "the pushed revision"
        )
        assert applied[0]["source"] == "webhook"
        count = len(coordinator.revisions())

        # another commit reaches the repository, but nobody tells the coordinator: a replay must not pull it
        gate.write_text(gate.read_text().replace("gate-2/sub", "gate-2/main"))
        git("commit", "--quiet", "-am", "back to main", cwd=work)
        git("push", "--quiet", "origin", "main", cwd=work)
        for headers in (
            delivery,  # the very same delivery (a forge's redelivery, or an attacker's replay)
            {**delivery, "X-GitHub-Delivery": "00000000-0000-0000-0000-000000000001"},  # a new id, same body
            {k: v for k, v in delivery.items() if k != "X-GitHub-Delivery"},  # no id
        ):
            again = api.post(hook, content=body, headers=headers)
            assert again.status_code == 200, again.text
            assert again.json()["detail"] == "duplicate delivery, ignored"
        assert git("rev-parse", "HEAD", cwd=manifests) == pushed  # nothing pulled
        assert len(coordinator.revisions()) == count  # nothing applied


def test_a_flood_of_idle_connections_does_not_stop_the_api_or_the_loop(coordinator: Coordinator) -> None:
    port = coordinator.server.port
    beat_before = wait_for(coordinator.heartbeat, 10, "a heartbeat")
    flood: list[socket.socket] = []
    try:
        started = time.monotonic()
        for n in range(FLOOD):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                continue  # the backlog is full for a moment: the server is shedding; go on
            if n % 2:
                sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a head never finished
            flood.append(sock)
        opened = time.monotonic() - started

        asked = time.monotonic()
        with httpx.Client(base_url=coordinator.server.url, timeout=10.0) as fresh:
            resp = fresh.get("/api/v1/status")
        answered = time.monotonic() - asked
        assert resp.status_code == 200, resp.text
        assert answered < 5.0

        descriptors = len(os.listdir(f"/proc/{coordinator.pid}/fd"))
        assert descriptors < 1500  # the cap (1,000 connections) and the rest of the process, not the flood

        beat_after = wait_for(
            lambda: (b := coordinator.heartbeat()) and b > beat_before and b, 15, "the heartbeat to advance"
        )
        with coordinator.server.client() as api:
            metrics = api.get("/metrics").text
        print(
            f"flood: {len(flood)} connections opened in {opened:.2f} s; a fresh client's /api/v1/status "
            f"answered in {answered:.3f} s; coordinator descriptors {descriptors}; heartbeat {beat_before.isoformat()} -> {beat_after.isoformat()}"
        )
        evicted = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('dsfleet_http_connections_closed_total{reason="evicted"}')
        ]
        assert evicted and evicted[0] >= len(flood) - 1000  # the cap held: the oldest idle ones went
    finally:
        for sock in flood:
            sock.close()
    with coordinator.server.client() as api:
        assert api.get("/healthz").status_code == 200
