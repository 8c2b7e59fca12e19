"""uvicorn in a thread of the serving process (the coordinator, or ``dsfleet serve``), and the rules of where it
may listen: anything but loopback needs a token."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass

import uvicorn

from dsfleet.reconciler.api.app import create_app
from dsfleet.reconciler.api.context import ApiContext
from dsfleet.schemas.errors import PermanentError

log = logging.getLogger("dsfleet.api")

__all__ = ["ApiServer", "Listen", "parse_listen"]


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


class ApiServer:
    """``start()`` returns once the socket listens; ``stop()`` ends the server and its thread."""

    def __init__(self, ctx: ApiContext, listen: Listen) -> None:
        if not listen.loopback and not ctx.token:
            raise PermanentError(
                f"--http {listen.host}:{listen.port}: refusing to listen beyond loopback without an API token "
                "(set [api] token, DSFLEET_API_TOKEN or --token-file)"
            )
        self.ctx = ctx
        self.listen = listen
        config = uvicorn.Config(
            create_app(ctx),
            host=listen.host,
            port=listen.port,
            log_level="warning",
            access_log=False,
            server_header=False,
            lifespan="off",
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
        log.info("http api listening on http://%s:%d/", self.listen.host, self.port)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self.ctx.close()
