"""A standby coordinator (``dsfleet coordinator --standby``), live: a second coordinator on the same store waits
for the store's coordinator lock instead of failing; when the leader is SIGKILLed, the lock goes with it (the
kernel drops SQLite's ``flock``, PostgreSQL ends the session and its advisory lock) and the standby takes over:
it applies the edit made meanwhile as one revision and publishes it — on SQLite and on PostgreSQL, against the
real broker. On PostgreSQL a hung leader (SIGSTOP) is taken over too, and fenced when it resumes."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsfleet.plumbing.kafka import Record
from dsfleet.reconciler.store import Store
from dsfleet.schemas.wire import AgentConfig, Topic, decode
from tests.support.brokers import Tansu
from tests.support.keys import coordinator_env
from tests.support.livefleet import CoordinatorProc, TopicReader, copy_fleet

TAKEOVER_BOUND = 10.0


@pytest.fixture
def db(store_url: str) -> str:
    return store_url


@pytest.fixture
def pair(
    db: str, kafka_broker: Tansu, tmp_path: Path
) -> Iterator[tuple[CoordinatorProc, CoordinatorProc, str]]:
    manifests = copy_fleet(tmp_path / "manifests")
    prefix = f"sb{uuid.uuid4().hex[:8]}."
    env = {**coordinator_env(tmp_path / "coordinator.key"), "PYTHONUNBUFFERED": "1"}
    leader = CoordinatorProc(
        manifests, db, kafka_broker.bootstrap, prefix, tmp_path / "a.log", env=env
    ).start()
    standby = CoordinatorProc(
        manifests, db, kafka_broker.bootstrap, prefix, tmp_path / "b.log", extra=["--standby"], env=env
    )
    try:
        leader.wait_log(r"coordinator started", 30)
        standby.start()
        yield leader, standby, prefix
    finally:
        for proc in (standby, leader):
            if proc.proc is not None and proc.proc.poll() is None:
                assert proc.stop() == 0, proc.text()[-2000:]


def _generations(records: list[Record]) -> dict[str, int]:
    """Node → the highest generation of its AgentConfig records read."""
    out: dict[str, int] = {}
    for r in records:
        decoded = decode(Topic.AGENT_CONFIG, r.key, r.value)
        msg = getattr(decoded, "message", None)
        if isinstance(msg, AgentConfig):
            out[msg.node] = max(out.get(msg.node, 0), msg.generation)
    return out


def test_the_standby_takes_over_when_the_leader_dies(
    pair: tuple[CoordinatorProc, CoordinatorProc, str], db: str, kafka_broker: Tansu, tmp_path: Path
) -> None:
    leader, standby, prefix = pair
    standby.wait_log(r"standby: .* holds the store", 30)
    assert "coordinator started" not in standby.text()
    reader = TopicReader(kafka_broker.bootstrap, prefix, Topic.AGENT_CONFIG)
    try:
        reader.wait(
            lambda rs: _generations(rs) == {"gpu-node-1": 1, "gpu-node-2": 1}, 30, "revision 1 published"
        )
        leader.kill()
        killed = time.monotonic()
        traffic = tmp_path / "manifests" / "instances" / "traffic.yaml"
        traffic.write_text(
            traffic.read_text().replace(
                "perf-measurement-interval-sec: 5", "perf-measurement-interval-sec: 3"
            )
        )
        standby.wait_log(r"standby: the store's lock is ours after", TAKEOVER_BOUND)
        reader.wait(lambda rs: _generations(rs).get("gpu-node-2") == 2, TAKEOVER_BOUND, "the edit published")
        took = time.monotonic() - killed
        assert took < TAKEOVER_BOUND, took
    finally:
        reader.close()
    with Store.open(db, readonly=True) as store:
        revisions = store.revisions(limit=10)
    assert [(r.id, r.accepted) for r in reversed(revisions)] == [(1, True), (2, True)], revisions
    assert _generations(reader.records) == {"gpu-node-1": 1, "gpu-node-2": 2}


def test_a_standby_stopped_before_taking_over_exits_cleanly(
    pair: tuple[CoordinatorProc, CoordinatorProc, str],
) -> None:
    leader, standby, _prefix = pair
    standby.wait_log(r"standby: .* holds the store", 30)
    assert standby.stop() == 0
    assert "stopped on standby (never took over)" in standby.text()
    assert leader.proc is not None and leader.proc.poll() is None, "the leader runs on"


def test_a_hung_leader_is_replaced_and_cannot_write_or_publish_after(
    pg_url: str, kafka_broker: Tansu, tmp_path: Path
) -> None:
    """PostgreSQL: the leader SIGSTOPped (its lock and sessions alive) is taken over once its heartbeat is older
    than ``takeover_after_seconds``: the standby ends its sessions, claims the next leadership epoch, applies and
    publishes the edit made meanwhile within 10 s; the old leader, resumed, finds its writes refused, publishes
    nothing and exits with an error."""
    manifests = copy_fleet(tmp_path / "manifests")
    prefix = f"sb{uuid.uuid4().hex[:8]}."
    env = {
        **coordinator_env(tmp_path / "coordinator.key"),
        "PYTHONUNBUFFERED": "1",
        "DSFLEET_COORDINATOR__TAKEOVER_AFTER_SECONDS": "3",
    }
    leader = CoordinatorProc(manifests, pg_url, kafka_broker.bootstrap, prefix, tmp_path / "a.log", env=env)
    standby = CoordinatorProc(
        manifests, pg_url, kafka_broker.bootstrap, prefix, tmp_path / "b.log", extra=["--standby"], env=env
    )
    reader = TopicReader(kafka_broker.bootstrap, prefix, Topic.AGENT_CONFIG)
    leader.start()
    try:
        leader.wait_log(r"leadership epoch=1:", 30)
        standby.start()
        standby.wait_log(r"standby: .* holds the store", 30)
        reader.wait(
            lambda rs: _generations(rs) == {"gpu-node-1": 1, "gpu-node-2": 1}, 30, "revision 1 published"
        )
        assert leader.proc is not None
        os.kill(leader.proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        traffic = tmp_path / "manifests" / "instances" / "traffic.yaml"
        traffic.write_text(
            traffic.read_text().replace(
                "perf-measurement-interval-sec: 5", "perf-measurement-interval-sec: 3"
            )
        )
        standby.wait_log(
            r"standby: taking over: the coordinator pid \d+ .* wrote no heartbeat", TAKEOVER_BOUND
        )
        standby.wait_log(r"leadership epoch=2:", TAKEOVER_BOUND)
        reader.wait(lambda rs: _generations(rs).get("gpu-node-2") == 2, TAKEOVER_BOUND, "the edit published")
        assert time.monotonic() - stopped < TAKEOVER_BOUND
        os.kill(leader.proc.pid, signal.SIGCONT)
        assert leader.wait_exit(30) == 2, leader.text()[-3000:]
        assert "not the leader any more: epoch 2" in leader.text(), leader.text()[-3000:]
        reader.poll(1.0)
    finally:
        if leader.proc is not None and leader.proc.poll() is None:
            os.kill(leader.proc.pid, signal.SIGCONT)
            leader.stop()
        if standby.proc is not None and standby.proc.poll() is None:
            assert standby.stop() == 0, standby.text()[-2000:]
        reader.close()
    with Store.open(pg_url, readonly=True) as store:
        revisions = store.revisions(limit=10)
        claim = store.leadership()
    assert [(r.id, r.accepted) for r in reversed(revisions)] == [(1, True), (2, True)], revisions
    assert claim is not None and claim["epoch"] == 2
    sent = [(r.key, decode(Topic.AGENT_CONFIG, r.key, r.value)) for r in reader.records]
    pairs = [(k, getattr(d, "message", None) and d.message.generation) for k, d in sent]  # type: ignore[union-attr]
    assert sorted(pairs) == [(b"gpu-node-1", 1), (b"gpu-node-2", 1), (b"gpu-node-2", 2)], pairs
