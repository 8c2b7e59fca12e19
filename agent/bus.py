"""Adapter: the agent's Kafka bus through :mod:`plumbing.kafka` (no consumer group).

- ``AgentConfig``: ``assign()`` to the one partition of the node's key (:func:`schemas.wire.partition_for`), from
  the beginning; the loop keeps the last value of its key and treats the partition's end as "caught up".
- ``AgentCommand``: the partitions of the node name, the machine id and ``*``, from the beginning (the loop
  ignores commands sent before the agent started: Tansu cannot seek to the end reliably, DESIGN §8).
- ``AgentInfo`` / ``AgentResponse``: produced to the partition of their key, named explicitly.

A broker that is down is a state: partition counts are asked again (with a short timeout) every few seconds,
records to send wait in the producer's queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from agent.ports import BusBatch
from plumbing.kafka import Consumer, Producer
from schemas.errors import TemporaryError
from schemas.wire import AgentInfo, AgentResponse, Topic, encode, partition_for, topic_name

__all__ = ["KafkaBus"]

log = logging.getLogger(__name__)
METADATA_TIMEOUT = 1.0
RETRY_SECONDS = 3.0
_CONSUMER_ONLY = frozenset(
    {"fetch.wait.max.ms", "fetch.min.bytes", "auto.offset.reset", "enable.partition.eof"}
)


class KafkaBus:
    def __init__(
        self, config: Mapping[str, str], *, prefix: str = "", client_id: str = "dsfleet-agent"
    ) -> None:
        """``config``: librdkafka settings (``bootstrap.servers``, security, …), e.g.
        ``KafkaSettings.client_config()``; consumer-only keys are dropped for the producer."""
        producer_config = {k: v for k, v in config.items() if k not in _CONSUMER_ONLY}
        self._producer = Producer(producer_config, client_id=client_id)
        self._consumer = Consumer(config, group_id=None, client_id=client_id)
        self._config_topic = topic_name(Topic.AGENT_CONFIG, prefix)
        self._command_topic = topic_name(Topic.AGENT_COMMAND, prefix)
        self._info_topic = topic_name(Topic.AGENT_INFO, prefix)
        self._response_topic = topic_name(Topic.AGENT_RESPONSE, prefix)
        self._partitions: dict[str, int] = {}
        self._last_try: dict[str, float] = {}
        self._node_key: str | None = None
        self._command_keys: tuple[str, ...] = ()
        self._config_partition: int | None = None
        self._assigned = False

    def _count(self, topic: str) -> int | None:
        known = self._partitions.get(topic)
        if known is not None:
            return known
        now = time.monotonic()
        if now - self._last_try.get(topic, -1e9) < RETRY_SECONDS:
            return None
        self._last_try[topic] = now
        try:
            count = self._producer.partitions(topic, timeout=METADATA_TIMEOUT)
        except TemporaryError:
            return None
        if count:
            self._partitions[topic] = count
        return count or None

    def follow(self, node_key: str, command_keys: Sequence[str]) -> None:
        self._node_key = node_key or None
        self._command_keys = tuple(command_keys)
        self._assigned = False
        self._assign()

    def _assign(self) -> None:
        if self._assigned:
            return
        configs = self._count(self._config_topic) if self._node_key else 0
        commands = self._count(self._command_topic)
        if configs is None or commands is None:
            return
        if self._node_key and configs:
            self._config_partition = partition_for(self._node_key, configs)
            self._consumer.assign(self._config_topic, [self._config_partition])
        else:
            self._config_partition = None
            self._consumer.assign(self._config_topic, [])
        parts = sorted({partition_for(k, commands) for k in self._command_keys})
        self._consumer.assign(self._command_topic, parts)
        self._assigned = True
        log.info(
            "following topic=%s partition=%s commands=%s",
            self._config_topic,
            self._config_partition,
            parts,
        )

    def _broker_back(self) -> bool:
        """After a disconnection: is the broker reachable again? Then the producer is renewed (its idempotence
        state is void against a broker that may have lost its data) and the partitions are read again from the
        beginning (the loop catches up once more)."""
        if not self._producer.saw_broker_down:
            return False
        now = time.monotonic()
        if now - self._last_try.get("", -1e9) < RETRY_SECONDS:
            return False
        self._last_try[""] = now
        try:
            count = self._producer.partitions(self._info_topic, timeout=METADATA_TIMEOUT)
        except TemporaryError:
            return False
        if not count:
            return False
        log.info("broker reachable again; producer renewed, partitions read again from the beginning")
        self._producer.renew()
        self._partitions.clear()
        self._last_try.clear()
        self._assigned = False
        return True

    def poll(self, timeout: float) -> BusBatch:
        self._producer.poll(0)
        reset = self._broker_back()
        self._assign()
        if not self._assigned:
            time.sleep(min(timeout, 0.05))
            return BusBatch(reset=reset)
        records, eof = self._consumer.poll_batch(500, timeout)
        configs = [(r.key, r.value) for r in records if r.topic == self._config_topic]
        commands = [r.value for r in records if r.topic == self._command_topic]
        caught_up = self._config_partition is not None and (self._config_topic, self._config_partition) in eof
        return BusBatch(configs=configs, commands=commands, caught_up=caught_up, reset=reset)

    def _send(self, topic: str, key: str, value: bytes) -> None:
        count = self._count(topic)
        if count is None:
            raise TemporaryError(f"{topic}: partition count unknown (broker unreachable?)")
        self._producer.send(topic, key, value, partition=partition_for(key, count))
        self._producer.poll(0)

    def publish_info(self, key: str, info: AgentInfo) -> None:
        self._send(self._info_topic, key, encode(info))

    def publish_response(self, key: str, response: AgentResponse) -> None:
        self._send(self._response_topic, key, encode(response))

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(2.0)
        self._producer.close(2.0)
