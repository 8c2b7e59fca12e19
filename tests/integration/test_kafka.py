"""dsfleet.plumbing.kafka against a real Kafka-protocol broker (Tansu on loopback)."""

from __future__ import annotations

import time

import pytest

from dsfleet.plumbing.kafka import Admin, Consumer, Delivery, Producer, Record, client_config, topic_specs
from dsfleet.schemas.errors import TemporaryError
from dsfleet.schemas.wire import Topic, partition_for, topic_name
from tests.support.brokers import Tansu


def _drain_until_eof(
    consumer: Consumer, partitions: set[tuple[str, int]], timeout: float = 15.0
) -> list[Record]:
    records: list[Record] = []
    pending = set(partitions)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        batch, eof = consumer.poll_batch(timeout=0.2)
        records += batch
        pending -= eof
    assert not pending, f"no end-of-partition for {pending} within {timeout} s"
    return records


def test_topics_created_once_then_exist(kafka_broker: Tansu, topic_prefix: str) -> None:
    admin = Admin(client_config(kafka_broker.bootstrap))
    created = admin.ensure_topics(prefix=topic_prefix, partitions=3)
    assert created == sorted(topic_name(t, topic_prefix) for t in Topic)
    assert admin.ensure_topics(prefix=topic_prefix, partitions=3) == []
    counts = admin.list_topics()
    assert counts[topic_name(Topic.AGENT_CONFIG, topic_prefix)] == 3
    assert counts[topic_name(Topic.REFRESH, topic_prefix)] == 1
    specs = {s.name: s for s in topic_specs(topic_prefix)}
    assert specs[topic_name(Topic.AGENT_CONFIG, topic_prefix)].config["cleanup.policy"] == "compact"


def test_keyed_produce_explicit_partition_and_assign_from_beginning(
    kafka_broker: Tansu, topic_prefix: str
) -> None:
    config = client_config(kafka_broker.bootstrap, {"fetch.wait.max.ms": "10"})
    Admin(config).ensure_topics(prefix=topic_prefix, partitions=4)
    topic = topic_name(Topic.AGENT_CONFIG, topic_prefix)
    producer = Producer(config)
    assert producer.partitions(topic) == 4
    reports: list[Delivery] = []
    for i, node in enumerate(["gpu-node-1", "gpu-node-2", "gpu-node-1"]):
        producer.send(
            topic,
            node,
            f"v{i}".encode(),
            headers={"generation": str(i)},
            partition=partition_for(node, 4),
            on_delivery=reports.append,
        )
    producer.send(
        topic, "gpu-node-2", None, partition=partition_for("gpu-node-2", 4), on_delivery=reports.append
    )
    assert producer.flush(10) == 0
    assert len(reports) == 4 and all(r.error is None and r.offset is not None for r in reports)

    part = partition_for("gpu-node-1", 4)
    consumer = Consumer(config, client_id="test-agent")
    consumer.assign(topic, [part])
    records = [r for r in _drain_until_eof(consumer, {(topic, part)}) if r.key == b"gpu-node-1"]
    assert [r.value for r in records] == [b"v0", b"v2"]
    assert records[0].headers["generation"] == b"0"
    consumer.close()

    other = partition_for("gpu-node-2", 4)
    consumer = Consumer(config, client_id="test-agent-2")
    consumer.assign(topic, [other])
    mine = [r for r in _drain_until_eof(consumer, {(topic, other)}) if r.key == b"gpu-node-2"]
    assert [r.value for r in mine] == [b"v1", None]  # the tombstone comes through as a null value
    consumer.close()


def test_group_consumer_reads_every_partition(kafka_broker: Tansu, topic_prefix: str) -> None:
    config = client_config(kafka_broker.bootstrap, {"fetch.wait.max.ms": "10"})
    Admin(config).ensure_topics(prefix=topic_prefix, partitions=2)
    topic = topic_name(Topic.AGENT_RESPONSE, topic_prefix)
    producer = Producer(config)
    for i in range(10):
        producer.send(topic, f"n{i}", b"x", partition=partition_for(f"n{i}", 2))
    assert producer.flush(10) == 0
    consumer = Consumer(config, group_id=f"{topic_prefix}coordinator")
    consumer.subscribe([topic])
    keys: set[bytes] = set()
    deadline = time.monotonic() + 20
    while len(keys) < 10 and time.monotonic() < deadline:
        batch, _ = consumer.poll_batch(timeout=0.2)
        keys |= {r.key for r in batch if r.key}
    consumer.close()
    assert len(keys) == 10


def test_broker_down_is_a_temporary_state() -> None:
    dead = Tansu()  # never started: nothing listens on its port
    config = client_config(dead.bootstrap, {"socket.connection.setup.timeout.ms": "1000"})
    consumer = Consumer(config)
    consumer.assign("AgentConfig", [0])
    records, eof = consumer.poll_batch(timeout=0.2)
    assert (records, eof) == ([], set())
    consumer.close()
    with pytest.raises(TemporaryError):
        Admin(config).list_topics(timeout=1.0)
    producer = Producer(config)
    producer.send("AgentConfig", "n", b"v", partition=0)  # queued; librdkafka retries when the broker returns
    assert producer.flush(0.2) == 1
