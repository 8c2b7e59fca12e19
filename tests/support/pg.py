"""A throw-away PostgreSQL server for the integration tests (pytest plugin: ``pytest_plugins = ("pg",)``).

Started once per test session from Debian's ``/usr/lib/postgresql/<v>/bin``: ``initdb`` and ``pg_ctl`` run
under ``runuser -u postgres`` when the tests run as root (PostgreSQL refuses root), the data directory and the
Unix socket directory live in one temp dir, ``fsync=off`` and ``listen_addresses=''`` (no TCP at all).
Stopped with ``pg_ctl stop`` (falling back to a signal to the postmaster's own PID) and removed at the end.

Fixtures: ``pg_server`` (session) and ``pg_url`` (a fresh database per test, dropped afterwards).
Without PostgreSQL installed the tests are skipped, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT_S = 60


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` and ``pg_ctl``."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in path.parent.name.split(".") if p.isdigit())

    candidates = [p for p in PG_ROOT.glob("*/bin") if (p / "initdb").is_file() and (p / "pg_ctl").is_file()]
    return max(candidates, key=version) if candidates else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _run(cmd: list[str], *, log: Path | None = None) -> None:
    proc = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
        raise RuntimeError(
            f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip()}\n"
            f"{proc.stdout.strip()}\n{tail}"
        )


@dataclass
class PgServer:
    bin_dir: Path
    base: Path
    data: Path
    socket_dir: Path
    pid: int

    def url(self, database: str = "dsfleet") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def _execute(self, statement: str, name: str) -> None:
        import psycopg
        from psycopg import sql

        query = sql.SQL(statement).format(sql.Identifier(name))
        with psycopg.connect(
            host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(query)

    def create_database(self, name: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        self._execute("CREATE DATABASE {}", name)
        return name

    def drop_database(self, name: str) -> None:
        self._execute("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


def _chown_to_postgres(*paths: Path) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam("postgres")
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def running_postgres(bin_dir: Path) -> Iterator[PgServer]:
    """Start a private PostgreSQL server; stop it and delete its files on exit."""
    base = Path(tempfile.mkdtemp(prefix="dsfleet-pg-"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    data.mkdir(mode=0o700)
    _chown_to_postgres(base, sock, data)
    server: PgServer | None = None
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        options = (
            f"-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c listen_addresses='' -k {sock}"
        )
        _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "-o",
                options,
                "start",
            ],
            log=log,
        )
        pid = int((data / "postmaster.pid").read_text().split()[0])
        server = PgServer(bin_dir=bin_dir, base=base, data=data, socket_dir=sock, pid=pid)
        server.create_database("dsfleet")
        yield server
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(base, ignore_errors=True)


def _stop(server: PgServer) -> None:
    with contextlib.suppress(Exception):
        _run([str(server.bin_dir / "pg_ctl"), "-D", str(server.data), "-m", "fast", "-w", "-t", "30", "stop"])
    if _pid_alive(server.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while _pid_alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        message = f"PostgreSQL is not installed ({PG_ROOT}/*/bin/initdb); apt-get install postgresql"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.fail("running as root needs runuser(1) to start PostgreSQL as the postgres user")
    with running_postgres(bin_dir) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's server (dropped after the test)."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on each supported database: a fresh SQLite file, then a fresh PostgreSQL database (the same
    code against another URL, as dsfleet supports both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_url"))
