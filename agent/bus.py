"""Adapter: the agent's Kafka bus through :mod:`dsfleet.plumbing.kafka` (no consumer group).

- ``AgentConfig``: ``assign()`` to the one partition of the node's key (:func:`dsfleet.schemas.wire.partition_for`), from
  the beginning; the loop keeps the last value of its key and treats the partition's end as "caught up".
- ``AgentCommand``: the partitions of the node name, the machine id and ``*``, from the beginning (the loop
  ignores commands sent before the agent started: Tansu cannot seek to the end reliably).
- ``AgentInfo`` / ``AgentResponse`` (and ``AgentLogs``, the replies to ``logs`` commands, on the AgentResponse
  topic): produced to the partition of their key, named explicitly, signed by the agent's own key (``identity``:
  the coordinator takes a node's reports only from the key enrolled for it). Records read keep their headers
  (where the coordinator's signature travels); the loop checks them (:mod:`dsfleet.agent.trust`).

A broker that is down is a state: partition counts are asked again (with a short timeout) every few seconds,
records to send wait in the producer's queue. A broker that came back empty (Tansu's memory storage; a deleted
topic) is healed every ``RECHECK_SECONDS``: the partition counts are read again and the partitions re-assigned when
a count changed (an auto-created topic has the broker's default count, and the coordinator re-publishes to
``partition_for(node, new_count)``); after the brokers went down and answer again, the producer is renewed (an
idempotent producer's sequence state is void against a broker that lost its data, and librdkafka stalls; what it
held was heartbeats and status reports, which the loop sends again) and the partitions are read again from the
beginning (a fetch position past the end of an emptied partition is not reset by Tansu: the consumer would wait
until the partition grew back to it). While such a re-read catches up, config records are held back and only the
last one is delivered at the partition's end, so the loop never steps back through older configs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from dsfleet.agent.ports import BusBatch, BusRecord
from dsfleet.plumbing.kafka import Consumer, Producer, Record
from dsfleet.plumbing.signing import SigningKey, sign_record
from dsfleet.schemas.errors import TemporaryError
from dsfleet.schemas.signatures import text_headers
from dsfleet.schemas.wire import (
    AgentInfo,
    AgentLogs,
    AgentResponse,
    Topic,
    encode,
    partition_for,
    signed_fields_of,
    topic_name,
)

__all__ = ["KafkaBus"]

log = logging.getLogger(__name__)
METADATA_TIMEOUT = 1.0
RETRY_SECONDS = 3.0
RECHECK_SECONDS = 3.0
_CONSUMER_ONLY = frozenset(
    {"fetch.wait.max.ms", "fetch.min.bytes", "auto.offset.reset", "enable.partition.eof"}
)


class KafkaBus:
    def __init__(
        self,
        config: Mapping[str, str],
        *,
        prefix: str = "",
        client_id: str = "dsfleet-agent",
        identity: SigningKey | None = None,
    ) -> None:
        """``config``: librdkafka settings (``bootstrap.servers``, security, …), e.g.
        ``KafkaSettings.client_config()``; consumer-only keys are dropped for the producer. ``identity``: the
        agent's own key, which signs what it sends (None: unsigned, which a coordinator drops)."""
        self._identity = identity
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
        self._rereading = False
        self._reset = False
        self._held: list[BusRecord] = []
        self._next_check = time.monotonic() + RECHECK_SECONDS

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

    def _recheck(self) -> None:
        """Every few seconds: partition counts read again (re-assign when one changed); the producer renewed when
        the brokers went down since it was made and they answer again."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + RECHECK_SECONDS
        for topic in (self._info_topic, self._response_topic):
            self._partitions.pop(topic, None)  # asked again when next sent to
        topics = [self._command_topic] + ([self._config_topic] if self._node_key else [])
        changed = False
        for topic in topics:
            try:
                count = self._producer.partitions(topic, timeout=METADATA_TIMEOUT)
            except TemporaryError:
                return  # broker unreachable: a state, try again later
            if not count:
                return
            if self._partitions.get(topic) != count:
                if topic in self._partitions:
                    log.warning(
                        "partition count changed topic=%s before=%s now=%d; re-assigning",
                        topic,
                        self._partitions.get(topic),
                        count,
                    )
                    changed = True
                self._partitions[topic] = count
        if self._producer.saw_broker_down or self._producer.fatal:
            log.info("broker answers again after a disconnection; producer renewed, partitions read again")
            self._producer.renew()
            changed = True
        if changed and self._assigned:
            self._assigned = False
            self._assign()
            self._rereading = self._config_partition is not None
            self._held = []
            self._reset = True

    def poll(self, timeout: float) -> BusBatch:
        self._producer.poll(0)
        self._recheck()
        self._assign()
        if not self._assigned:
            time.sleep(min(timeout, 0.05))
            return BusBatch()
        records, eof = self._consumer.poll_batch(500, timeout)
        configs = [_record(r) for r in records if r.topic == self._config_topic]
        commands = [_record(r) for r in records if r.topic == self._command_topic]
        caught_up = self._config_partition is not None and (self._config_topic, self._config_partition) in eof
        if self._rereading:
            self._held += configs
            if not caught_up:
                return BusBatch(commands=commands)
            key = (self._node_key or "").encode()
            configs, self._held, self._rereading = [c for c in self._held if c[0] == key][-1:], [], False
        reset, self._reset = self._reset, False
        return BusBatch(configs=configs, commands=commands, caught_up=caught_up, reset=reset)

    def _send(self, topic: str, key: str, message: AgentInfo | AgentResponse | AgentLogs) -> None:
        count = self._count(topic)
        if count is None:
            raise TemporaryError(f"{topic}: partition count unknown (broker unreachable?)")
        value = encode(message)
        headers = None
        if self._identity is not None:
            headers = sign_record(self._identity, signed_fields_of(message), key, value)
        self._producer.send(topic, key, value, headers=headers, partition=partition_for(key, count))
        self._producer.poll(0)

    def publish_info(self, key: str, info: AgentInfo) -> None:
        self._send(self._info_topic, key, info)

    def publish_response(self, key: str, response: AgentResponse) -> None:
        self._send(self._response_topic, key, response)

    def publish_logs(self, key: str, logs: AgentLogs) -> None:
        self._send(self._response_topic, key, logs)

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(2.0)
        self._producer.close(2.0)


def _record(r: Record) -> BusRecord:
    return BusRecord(r.key, r.value, text_headers(r.headers))
