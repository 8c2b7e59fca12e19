"""uvicorn in a thread of the serving process (the coordinator, or ``dsfleet serve``), with its own event loop,
and the rules of where it may listen: anything but loopback needs a token.

The server holds its connections to :class:`~dsfleet.reconciler.api.connections.ConnectionLimits` (a cap, a
deadline for request heads, keep-alive, backlog, header size) and every request to the gate of
:mod:`dsfleet.reconciler.api.middleware`; the routes run on a few worker threads. It raises the process's soft
file-descriptor limit to the hard one (at most 65,536) so the cap and the rest of the process have room."""

from __future__ import annotations

import ipaddress
import logging
import resource
import threading
import time
from dataclasses import dataclass

import uvicorn

from dsfleet.reconciler.api.app import create_app
from dsfleet.reconciler.api.connections import (
    ConnectionLimits,
    accept_backlog,
    connection_cap,
    guarded_protocol,
)
from dsfleet.reconciler.api.context import ApiContext
from dsfleet.schemas.errors import PermanentError

log = logging.getLogger("dsfleet.api")

__all__ = ["ApiServer", "Listen", "descriptor_limit", "parse_listen"]

DESCRIPTORS_WANTED = 65_536


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


def parse_listen(text: str) -> Listen:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6); raises PermanentError with what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise PermanentError(f"--http {text!r}: expected HOST:PORT (e.g. 127.0.0.1:8080)")
    return Listen(host.strip("[]"), int(port))


def descriptor_limit(wanted: int = DESCRIPTORS_WANTED) -> int:
    """The process's soft file-descriptor limit, first raised towards ``wanted`` (never above the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return wanted if soft == resource.RLIM_INFINITY else int(soft)


class ApiServer:
    """``start()`` returns once the socket listens; ``stop()`` ends the server and its thread."""

    def __init__(self, ctx: ApiContext, listen: Listen, limits: ConnectionLimits | None = None) -> None:
        if not listen.loopback and not ctx.token:
            raise PermanentError(
                f"--http {listen.host}:{listen.port}: refusing to listen beyond loopback without an API token "
                "(set [api] token, DSFLEET_API_TOKEN or --token-file)"
            )
        self.ctx = ctx
        self.listen = listen
        self.limits = limits or ConnectionLimits()
        descriptors = descriptor_limit()
        self.cap = connection_cap(self.limits.max_connections, descriptors)
        config = uvicorn.Config(
            create_app(ctx),
            host=listen.host,
            port=listen.port,
            log_level="warning",
            access_log=False,
            server_header=False,
            lifespan="off",
            loop="asyncio",
            http=guarded_protocol(self.limits, self.cap, ctx.http),
            ws="none",
            timeout_keep_alive=self.limits.keep_alive,
            timeout_graceful_shutdown=5,
            backlog=accept_backlog(self.limits.backlog, descriptors),
            h11_max_incomplete_event_size=self.limits.max_header_bytes,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="dsfleet-api", daemon=True)

    @property
    def port(self) -> int:
        servers = getattr(self._server, "servers", None) or []
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.listen.port

    def start(self, timeout: float = 10.0) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise PermanentError(f"--http {self.listen.host}:{self.listen.port}: cannot listen there")
            if time.monotonic() > deadline:
                raise PermanentError(f"--http {self.listen.host}:{self.listen.port}: server did not start")
            time.sleep(0.02)
        gate = self.ctx.gate
        log.info(
            "http api listening on http://%s:%d/ anonymous_reads=%s hosts=%s max_connections=%d "
            "header_timeout_s=%g max_body_bytes=%d webhook_max_body_bytes=%d",
            self.listen.host,
            self.port,
            "no" if self.ctx.read_requires_token else "yes",
            ",".join(sorted(gate.allowed_hosts)) if gate.allowed_hosts is not None else "any",
            self.cap,
            self.limits.header_timeout,
            gate.max_body_bytes,
            gate.webhook_max_body_bytes,
        )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self.ctx.close()
