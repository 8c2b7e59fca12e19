"""The coordinator's Kafka bus: publishes records with the shared partition function, reads what agents and the
API send (one consumer group), and reads the AgentConfig topic back from the beginning (assign-only) so the
coordinator knows what the compacted topic holds for every node.

Partition counts come from the broker's metadata and are refreshed whenever topics are (re)created: the agent
computes ``partition_for(node, partitions)`` from the same metadata.

With a ``signer`` (the coordinator's key, or a ``dsfleet serve`` process's own), every record sent without a
signature is signed on its way out: the outbox rows a ``dsfleet apply`` wrote without the key, the requests and
commands of the API. Rows the coordinator wrote carry their signature already and go out as stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dsfleet.plumbing.kafka import Admin, Consumer, Delivery, Producer, Record, topic_specs
from dsfleet.plumbing.signing import SigningKey, sign_record
from dsfleet.schemas.errors import TemporaryError
from dsfleet.schemas.signatures import HEADER_SIGNATURE, SignedFields, signed_fields
from dsfleet.schemas.wire import MAX_MESSAGE_BYTES, Topic, partition_for, schema_of, topic_name

log = logging.getLogger(__name__)

INBOUND = (Topic.AGENT_INFO, Topic.AGENT_RESPONSE, Topic.UPDATE_CONFIG, Topic.REFRESH)


@dataclass(frozen=True)
class BusSettings:
    bootstrap_servers: str
    client: Mapping[str, str] = field(default_factory=dict)
    """librdkafka settings passed through (security.protocol, sasl.*, ssl.*, fetch.wait.max.ms, …)."""
    topic_prefix: str = ""
    partitions: int = 12
    replication_factor: int = 1
    max_message_bytes: int = MAX_MESSAGE_BYTES
    group_id: str = "dsfleet-coordinator"


class CoordinatorBus:
    def __init__(self, settings: BusSettings, *, read: bool = True, signer: SigningKey | None = None) -> None:
        self.settings = settings
        self.signer = signer
        self._config = {"bootstrap.servers": settings.bootstrap_servers, **settings.client}
        self.producer = Producer(self._config, client_id="dsfleet-coordinator")
        self._partitions: dict[str, int] = {}
        self.inbound: Consumer | None = None
        self.observer: Consumer | None = None
        if read:
            self.inbound = Consumer(
                self._config,
                group_id=settings.topic_prefix + settings.group_id,
                client_id="dsfleet-coordinator",
            )
            self.observer = Consumer(self._config, client_id="dsfleet-coordinator-observer")

    def reset_producer(self) -> None:
        """Replace the producer (its idempotence state is useless against a broker that lost its data, or it hit
        a fatal error). What it still held gets failed delivery reports, so the outbox sends it again."""
        self.producer.renew()
        self._partitions.clear()

    def topic(self, topic: Topic) -> str:
        return topic_name(topic, self.settings.topic_prefix)

    def ensure_topics(self, timeout: float = 10.0) -> list[str]:
        """Create missing topics (idempotent); refresh partition counts. Raises TemporaryError when no broker."""
        created = Admin(self._config).ensure_topics(
            topic_specs(
                self.settings.topic_prefix,
                partitions=self.settings.partitions,
                replication_factor=self.settings.replication_factor,
                max_message_bytes=self.settings.max_message_bytes,
            ),
            timeout=timeout,
        )
        self._partitions.clear()
        return created

    def partitions(self, topic: Topic) -> int:
        name = self.topic(topic)
        count = self._partitions.get(name)
        if count is None:
            count = self.producer.partitions(name)
            if count is None:
                raise TemporaryError(f"topic {name} does not exist (yet)")
            self._partitions[name] = count
        return count

    def topic_partitions(self) -> dict[str, int]:
        """Every topic the broker has now, with its partition count (a fresh metadata request)."""
        return Admin(self._config).list_topics(timeout=5.0)

    def forget_partitions(self) -> None:
        self._partitions.clear()

    def partition_count_changed(self, topic: Topic) -> bool:
        """Ask the broker again; True when ``topic`` now has another partition count than the one cached (a
        broker that lost its data auto-creates topics with its default count)."""
        name = self.topic(topic)
        before = self._partitions.pop(name, None)
        try:
            now = self.partitions(topic)
        except TemporaryError:
            return False
        return before is not None and before != now

    @property
    def producer_failed(self) -> bool:
        """The producer hit a fatal error and must be replaced (:meth:`reset_producer`)."""
        return self.producer.fatal

    @property
    def broker_was_down(self) -> bool:
        """The connection to the brokers broke since the producer was made."""
        return self.producer.saw_broker_down

    def send(
        self,
        topic: Topic,
        key: str | None,
        value: bytes | None,
        *,
        headers: Mapping[str, str] | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        """Send one record; keyed records go to ``partition_for(key)`` of the topic's current partition count.
        A record without a signature is signed here when the bus has a ``signer``."""
        partition = partition_for(key, self.partitions(topic)) if key is not None else 0
        if self.signer is not None and HEADER_SIGNATURE not in (headers or {}):
            fields = signed_fields(headers or {}) or _fields_of(topic, value)
            headers = {**(headers or {}), **sign_record(self.signer, fields, key, value)}
        self.producer.send(
            self.topic(topic), key, value, headers=headers, partition=partition, on_delivery=on_delivery
        )

    def start_reading(self) -> None:
        assert self.inbound is not None and self.observer is not None
        self.inbound.subscribe([self.topic(t) for t in INBOUND])
        self.assign_observer()

    def assign_observer(self) -> int:
        """(Re)read the AgentConfig topic from the beginning; returns its partition count."""
        assert self.observer is not None
        count = self.partitions(Topic.AGENT_CONFIG)
        self.observer.assign(self.topic(Topic.AGENT_CONFIG), list(range(count)))
        return count

    def poll_inbound(self, max_records: int = 500, timeout: float = 0.05) -> list[Record]:
        assert self.inbound is not None
        records, _ = self.inbound.poll_batch(max_records, timeout)
        return records

    def poll_observer(self, max_records: int = 1000) -> tuple[list[Record], dict[int, int]]:
        """AgentConfig records read back, and the partitions that reached their end now, with the end offset."""
        assert self.observer is not None
        records, eof = self.observer.poll_batch(max_records, 0.0)
        ends = {p: self.observer.end_offsets.get((t, p), 0) for t, p in eof}
        return records, ends

    def poll(self, timeout: float = 0.0) -> int:
        return self.producer.poll(timeout)

    def flush(self, timeout: float = 10.0) -> int:
        return self.producer.flush(timeout)

    def close(self, timeout: float = 10.0) -> int:
        left = self.producer.flush(timeout)
        for consumer in (self.inbound, self.observer):
            if consumer is not None:
                consumer.close()
        return left

    def delete_topics(self, topics: Sequence[Topic]) -> None:  # for tests and `topics delete`
        Admin(self._config).delete_topics([self.topic(t) for t in topics])


def _fields_of(topic: Topic, value: bytes | None) -> SignedFields:
    """The signed fields of a message the bus sends unsigned: read from its JSON (``schema``, ``sent_at``,
    ``fleet``, ``generation``), else the topic's schema and now."""
    data: object = None
    if value is not None:
        try:
            data = json.loads(value)
        except ValueError:
            data = None
    body = data if isinstance(data, dict) else {}
    schema, sent, fleet, generation = (body.get(k) for k in ("schema", "sent_at", "fleet", "generation"))
    return SignedFields(
        schema=schema if isinstance(schema, str) else schema_of(topic),
        issued=sent if isinstance(sent, str) else datetime.now(UTC).isoformat(),
        fleet=fleet if isinstance(fleet, str) else None,
        generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else None,
    )
