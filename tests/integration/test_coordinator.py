"""The coordinator against a real Kafka-protocol broker (Tansu on loopback), as a subprocess, with deadlines."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsfleet.plumbing.kafka import Admin, Producer, Record, client_config
from dsfleet.plumbing.signing import generate_key
from dsfleet.reconciler.store import Store
from dsfleet.schemas.wire import (
    AgentCommand,
    AgentConfig,
    Topic,
    UpdateConfig,
    encode,
    partition_for,
    topic_name,
)
from tests.support.brokers import Tansu
from tests.support.keys import coordinator_env, sign_message
from tests.support.livefleet import (
    ROOT,
    CoordinatorProc,
    FakeAgent,
    TopicReader,
    copy_fleet,
    now_iso,
    wait_for,
)

NODES = {"gpu-node-1", "gpu-node-2"}


def _configs(records: list[Record]) -> list[tuple[str, int | None, int]]:
    """(node, generation or None for a tombstone, partition) of each AgentConfig record."""
    out = []
    for r in records:
        node = (r.key or b"").decode()
        gen = AgentConfig.model_validate_json(r.value).generation if r.value is not None else None
        out.append((node, gen, r.partition))
    return out


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    return copy_fleet(tmp_path / "manifests")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def _coordinator(
    fleet: Path, db: str, broker: Tansu | None, prefix: str, tmp_path: Path, **kw: object
) -> CoordinatorProc:
    return CoordinatorProc(
        fleet, db, broker.bootstrap if broker else None, prefix, tmp_path / "coordinator.log", **kw
    )  # type: ignore[arg-type]


def test_topics_create_is_idempotent(kafka_broker: Tansu, topic_prefix: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "dsfleet.reconciler.cli",
        "topics",
        "create",
        "--bootstrap-servers",
        kafka_broker.bootstrap,
        "--topic-prefix",
        topic_prefix,
        "--partitions",
        "3",
    ]
    first = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": created") == 6
    again = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert again.returncode == 0 and again.stdout.count(": exists") == 6
    counts = Admin(client_config(kafka_broker.bootstrap)).list_topics()
    assert counts[topic_name(Topic.AGENT_CONFIG, topic_prefix)] == 3


def test_publishes_changed_nodes_only_and_tombstones(
    kafka_broker: Tansu, topic_prefix: str, fleet: Path, db: str, tmp_path: Path
) -> None:
    extra = fleet / "nodes" / "spare.yaml"
    extra.write_text(
        "apiVersion: dsfleet/v1\nkind: Node\nmetadata:\n  name: gpu-node-3\nspec:\n  gpus: [0]\n"
    )
    coord = _coordinator(fleet, db, kafka_broker, topic_prefix, tmp_path).start()
    reader = TopicReader(kafka_broker.bootstrap, topic_prefix, Topic.AGENT_CONFIG)
    try:
        reader.wait(lambda rs: len(rs) >= 3, 30, "one AgentConfig per node")
        assert sorted(_configs(reader.records)) == sorted(
            (n, 1, partition_for(n, 3)) for n in [*NODES, "gpu-node-3"]
        )
        coord.wait_log(r"revision applied revision=1")

        # one camera edit → exactly one record, for the node that runs it, within 1 s of the write
        gate = fleet / "cameras" / "gate.yaml"
        written = time.monotonic()
        gate.write_text(gate.read_text().replace("gate-2/main", "gate-2/sub"))
        reader.wait(lambda rs: len(rs) >= 4, 10, "the edit's AgentConfig")
        took = time.monotonic() - written
        assert _configs(reader.records[3:]) == [("gpu-node-1", 2, partition_for("gpu-node-1", 3))]
        assert took < 1.0, f"edit published after {took:.2f} s"

        # a node removed from the manifests gets a tombstone; the others get nothing
        extra.unlink()
        reader.wait(lambda rs: len(rs) >= 5, 10, "the tombstone")
        assert _configs(reader.records[4:]) == [("gpu-node-3", None, partition_for("gpu-node-3", 3))]

        # a touch (same content) and a comment-free no-op publish nothing more
        gate.write_text(gate.read_text())
        coord.wait_log(r"manifests|revision", timeout=5)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            reader.poll()
        assert len(reader.records) == 5
        with Store.open(db, readonly=True) as store:
            assert store.pending_outbox(10) == []
    finally:
        reader.close()
        assert coord.stop() == 0
    assert "coordinator stopped" in coord.text()


def test_editor_temp_files_and_half_written_files_apply_nothing_broken(
    kafka_broker: Tansu, topic_prefix: str, fleet: Path, db: str, tmp_path: Path
) -> None:
    coord = _coordinator(fleet, db, kafka_broker, topic_prefix, tmp_path).start()
    reader = TopicReader(kafka_broker.bootstrap, topic_prefix, Topic.AGENT_CONFIG)
    try:
        reader.wait(lambda rs: len(rs) >= 2, 30, "first configs")
        coord.wait_log(r"revision applied revision=1")
        # editor droppings: swap files, backups, emacs locks, vim's 4913 probe, a dot-directory
        (fleet / "cameras" / ".gate.yaml.swp").write_bytes(b"\x00garbage")
        (fleet / "cameras" / "gate.yaml~").write_text("kind: [broken")
        (fleet / "cameras" / ".#gate.yaml").write_text("kind: [broken")
        (fleet / "cameras" / "4913").write_text("")
        (fleet / ".git").mkdir()
        (fleet / ".git" / "x.yaml").write_text("kind: [broken")
        # a half-written manifest: invalid when the debounce ends → a rejected revision, nothing published
        half = fleet / "cameras" / "new.yaml"
        half.write_text(
            'apiVersion: dsfleet/v1\nkind: Camera\nmetadata:\n  name: new-cam\nspec:\n  cameraId: "9'
        )
        coord.wait_log(r"revision rejected revision=2")
        # finished: the set is valid again and the camera (in no instance) changes no node config
        half.write_text(half.read_text() + '9"\n  url: file:///media/new.mp4\n')
        coord.wait_log(r"revision applied revision=3")
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            reader.poll()
        assert len(reader.records) == 2
        with Store.open(db, readonly=True) as store:
            revs = store.revisions()
            assert [(r.id, r.accepted) for r in reversed(revs)] == [(1, True), (2, False), (3, True)]
            assert any("new.yaml" in json.dumps(e) for e in revs[1].errors)
    finally:
        reader.close()
        coord.stop()


def test_manual_sync_waits_for_update_config(
    kafka_broker: Tansu, topic_prefix: str, fleet: Path, db: str, tmp_path: Path
) -> None:
    operator = generate_key()
    env = coordinator_env(tmp_path / "keys" / "coordinator.key", operators=[operator])
    coord = _coordinator(
        fleet, db, kafka_broker, topic_prefix, tmp_path, extra=["--sync", "manual"], env=env
    ).start()
    reader = TopicReader(kafka_broker.bootstrap, topic_prefix, Topic.AGENT_CONFIG)
    try:
        coord.wait_log(r"manual sync: plan stored, not applied")
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            reader.poll()
        assert reader.records == []
        with Store.open(db, readonly=True) as store:
            assert store.sync_state("pending_plan")["summary"]["nodes_to_add"] == 2
        producer = Producer(client_config(kafka_broker.bootstrap))
        update = UpdateConfig(sent_at=now_iso(), requestId="r1", requestedBy="test")
        producer.send(
            topic_name(Topic.UPDATE_CONFIG, topic_prefix),
            None,
            encode(update),
            headers=sign_message(operator, update, None),  # an operator's key the coordinator obeys
            partition=0,
        )
        assert producer.flush(5) == 0
        reader.wait(lambda rs: len(rs) >= 2, 20, "configs after UpdateConfig")
        with Store.open(db, readonly=True) as store:
            assert store.sync_state("pending_plan") is None
            assert store.revisions()[0].source == "api"
    finally:
        reader.close()
        coord.stop()


def test_crash_between_store_and_publish_loses_nothing(
    kafka_broker: Tansu, topic_prefix: str, fleet: Path, db: str, tmp_path: Path
) -> None:
    armed = _coordinator(
        fleet, db, kafka_broker, topic_prefix, tmp_path, env={"DSFLEET_FAULT_POINT": "after-store"}
    )
    armed.start()
    assert armed.wait_exit(30) == -9  # SIGKILL right after the revision was stored
    with Store.open(db, readonly=True) as store:
        assert len(store.pending_outbox(10)) == 2
    reader = TopicReader(kafka_broker.bootstrap, topic_prefix, Topic.AGENT_CONFIG)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        reader.poll()
    assert reader.records == []
    coord = _coordinator(fleet, db, kafka_broker, topic_prefix, tmp_path).start()
    try:
        reader.wait(lambda rs: len(rs) >= 2, 30, "the pending configs after restart")
        assert sorted(n for n, _, _ in _configs(reader.records)) == sorted(NODES)
        wait_for(lambda: not Store.open(db, readonly=True).pending_outbox(10), 10, "outbox drained")
    finally:
        reader.close()
        coord.stop()


def test_one_coordinator_per_store(
    kafka_broker: Tansu, topic_prefix: str, fleet: Path, db: str, tmp_path: Path
) -> None:
    first = _coordinator(fleet, db, kafka_broker, topic_prefix, tmp_path).start()
    try:
        first.wait_log(r"coordinator started")
        second = CoordinatorProc(
            fleet, db, kafka_broker.bootstrap, topic_prefix, tmp_path / "second.log"
        ).start()
        assert second.wait_exit(30) == 2
        assert "another coordinator is running on this store" in second.text()
    finally:
        assert first.stop() == 0


def test_agents_named_heartbeats_offline_and_resync(
    kafka_broker: Tansu, topic_prefix: str, fleet: Path, db: str, tmp_path: Path
) -> None:
    # gpu-node-2's key is enrolled before the coordinator starts (the unnamed agents' keys are not: an unnamed
    # agent's self-signed announce is answered all the same)
    agent = FakeAgent(kafka_broker.bootstrap, topic_prefix, "gpu-node-2", "gpu-node-2", heartbeat=0.5, db=db)
    coord = _coordinator(
        fleet, db, kafka_broker, topic_prefix, tmp_path, extra=["--resync-grace", "1"]
    ).start()
    commands = TopicReader(kafka_broker.bootstrap, topic_prefix, Topic.AGENT_COMMAND)
    configs = TopicReader(kafka_broker.bootstrap, topic_prefix, Topic.AGENT_CONFIG)
    unnamed = FakeAgent(kafka_broker.bootstrap, topic_prefix, None, "gpu-node-1")
    stranger = FakeAgent(kafka_broker.bootstrap, topic_prefix, None, "nobody-knows-me")
    try:
        configs.wait(lambda rs: len(rs) >= 2, 30, "first configs")
        # named by hostname; an unknown agent is told why
        unnamed.announce(machine_id="0123456789abcdef0123456789abcdef")
        stranger.announce()
        got = commands.wait(lambda rs: len(rs) >= 2, 20, "two AgentCommand answers")
        answers = {
            AgentCommand.model_validate_json(r.value).command.value: AgentCommand.model_validate_json(r.value)
            for r in got
        }
        assert answers["assign-name"].node == "gpu-node-1"
        assert answers["assign-name"].target == "0123456789abcdef0123456789abcdef"
        assert "unknown agent" in answers["reject"].reason
        # registers and heartbeats; online
        agent.announce(generation=1)
        coord.wait_log(r"node online node=gpu-node-2")
        with Store.open(db, readonly=True) as store:
            status = {s.node: s for s in store.node_statuses()}
            assert status["gpu-node-2"].online and status["gpu-node-2"].agent_version == "test"
        # 3 missed beats (0.5 s each) → offline, with an event; the next beat → online again
        coord.wait_log(r"node offline node=gpu-node-2", timeout=10)
        agent.announce(generation=1)
        coord.wait_log(r"node online node=gpu-node-2", timeout=10, count=2)
        # it reports generation 0 (lost its config): past the grace, its config is re-published
        before = len(configs.records)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(configs.records) == before:
            agent.announce(generation=0)
            configs.poll(0.2)
        assert [(n, g) for n, g, _ in _configs(configs.records[before:])][:1] == [("gpu-node-2", 1)]
        coord.wait_log(r"config re-published node=gpu-node-2 generation=1 reason=agent-behind")
        with Store.open(db, readonly=True) as store:
            kinds = [e.kind for e in store.events(100) if e.node == "gpu-node-2"]
            assert {"online", "offline", "resync"} <= set(kinds)
    finally:
        for c in (unnamed, stranger, agent):
            c.close()
        commands.close()
        configs.close()
        coord.stop()


def test_broker_replaced_by_an_empty_one(topic_prefix: str, fleet: Path, db: str, tmp_path: Path) -> None:
    broker = Tansu().start()
    coord = _coordinator(fleet, db, broker, topic_prefix, tmp_path).start()
    try:
        reader = TopicReader(broker.bootstrap, topic_prefix, Topic.AGENT_CONFIG)
        reader.wait(lambda rs: len(rs) >= 2, 30, "first configs")
        reader.close()
        broker.restart_empty()
        # meanwhile the coordinator keeps storing: an edit while the broker is coming back
        gate = fleet / "cameras" / "gate.yaml"
        gate.write_text(gate.read_text().replace("gate-2/main", "gate-2/sub"))
        coord.wait_log(r"revision applied revision=2")
        reader = TopicReader(broker.bootstrap, topic_prefix, Topic.AGENT_CONFIG)
        got = reader.wait(
            lambda rs: (
                {n for n, _, _ in _configs(rs)} >= NODES
                and ("gpu-node-1", 2) in {(n, g) for n, g, _ in _configs(rs)}
            ),
            45,
            "every node's current config on the new broker",
        )
        latest = {}
        for n, g, _ in _configs(got):
            latest[n] = g
        assert latest == {"gpu-node-1": 2, "gpu-node-2": 1}
        assert (
            topic_name(Topic.AGENT_CONFIG, topic_prefix)
            in Admin(client_config(broker.bootstrap)).list_topics()
        )
        reader.close()
        # the re-publish left through the outbox, like every record: gpu-node-2's generation 1 is queued twice
        # (its revision, then anti-entropy), and nothing is left pending once the delivery reports are in

        def settled() -> bool:
            with Store.open(db, readonly=True) as store:
                rows = store.outbox_rows(limit=100)
            node2 = [r for r in rows if r.key == "gpu-node-2"]
            return len(node2) >= 2 and all(r.published_at is not None for r in rows)

        wait_for(settled, 10, "every outbox row published")
    finally:
        coord.stop()
        broker.close()


def test_malformed_messages_on_every_topic_are_dropped(
    kafka_broker: Tansu, topic_prefix: str, fleet: Path, db: str, tmp_path: Path
) -> None:
    coord = _coordinator(fleet, db, kafka_broker, topic_prefix, tmp_path).start()
    reader = TopicReader(kafka_broker.bootstrap, topic_prefix, Topic.AGENT_CONFIG)
    try:
        reader.wait(lambda rs: len(rs) >= 2, 30, "first configs")
        producer = Producer(client_config(kafka_broker.bootstrap))
        bad = [
            b"\x00\xff",
            b"[" * 5000,
            b'{"schema": "dsfleet.other/v1"}',
            b"{}",
            b"null",
            b"x" * 1_050_000,
            json.dumps(
                {"schema": "dsfleet.agent-response/v1", "sent_at": now_iso(), "node": "victim"}
            ).encode(),
        ]
        inbound = [Topic.AGENT_INFO, Topic.AGENT_RESPONSE, Topic.UPDATE_CONFIG, Topic.REFRESH]
        for i in range(1000):
            topic = inbound[i % len(inbound)]
            key = None if i % 11 == 0 else ("forged" if i % 5 == 0 else "gpu-node-1")
            producer.send(topic_name(topic, topic_prefix), key, bad[i % len(bad)], partition=0)
        assert producer.flush(30) == 0
        coord.wait_log(r"message dropped topic=.*AgentInfo", timeout=30)
        # unsigned reports are dropped before they are parsed (an AgentInfo is read: it may be an announce)
        coord.wait_log(r"report dropped reason=unsigned", timeout=30)
        assert coord.proc is not None and coord.proc.poll() is None
        gate = fleet / "cameras" / "gate.yaml"
        gate.write_text(gate.read_text().replace("gate-2/main", "gate-2/sub"))
        reader.wait(lambda rs: len(rs) >= 3, 20, "the next edit's config")
        assert _configs(reader.records[2:])[0][:2] == ("gpu-node-1", 2)
        with Store.open(db, readonly=True) as store:
            assert {s.node for s in store.node_statuses()} <= NODES
    finally:
        reader.close()
        assert coord.stop() == 0


def test_topics_create_takes_settings_from_the_environment(kafka_broker: Tansu, topic_prefix: str) -> None:
    import os

    env = {
        **os.environ,
        "DSFLEET_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "DSFLEET_KAFKA_TOPIC_PREFIX": topic_prefix,
        "DSFLEET_KAFKA_PARTITIONS": "2",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", "topics", "create"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        Admin(client_config(kafka_broker.bootstrap)).list_topics()[topic_name(Topic.AGENT_INFO, topic_prefix)]
        == 2
    )
    bad = subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", "topics", "create"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**env, "DSFLEET_KAFKA_BOOTSTRAP_SERVERS": ""},
    )
    assert bad.returncode == 2 and "no broker" in bad.stderr


def test_apply_without_coordinator_publishes_itself(
    kafka_broker: Tansu, topic_prefix: str, fleet: Path, db: str, tmp_path: Path
) -> None:
    cmd = [
        sys.executable,
        "-m",
        "dsfleet.reconciler.cli",
        "apply",
        str(fleet),
        "--db",
        db,
        "--bootstrap-servers",
        kafka_broker.bootstrap,
        "--topic-prefix",
        topic_prefix,
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "published 2 node config(s)" in proc.stdout
    reader = TopicReader(kafka_broker.bootstrap, topic_prefix, Topic.AGENT_CONFIG)
    try:
        reader.wait(lambda rs: len(rs) >= 2, 20, "the applied configs")
        assert sorted(n for n, _, _ in _configs(reader.records)) == sorted(NODES)
    finally:
        reader.close()
    with Store.open(db, readonly=True) as store:
        assert store.pending_outbox(10) == []
