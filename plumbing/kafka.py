"""The Kafka client wrapper of both sides: the only module of the project that imports ``confluent_kafka``.

- :class:`Producer`: idempotent, ``acks=all``, compressed; explicit partitions; per-record delivery callbacks.
- :class:`Consumer`: either assign-only (no consumer group: ``assign()`` to named partitions from the beginning,
  end-of-partition events on, so a reader knows when it has caught up) or a group member (committed offsets).
- :class:`Admin`: creates the six topics of :mod:`dsfleet.schemas.wire` (``AgentConfig`` compacted, ``max.message.bytes``
  set) and reads partition counts.

Library errors become :class:`~dsfleet.schemas.errors.TemporaryError` (broker unreachable, timeouts, queue full) or
:class:`~dsfleet.schemas.errors.PermanentError` (bad configuration, authorization). "Caught up" is detected with
``enable.partition.eof``, never with watermark queries (Tansu answers ``ListOffsets`` for the latest offset wrong).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from dsfleet.schemas.errors import PermanentError, TemporaryError
from dsfleet.schemas.wire import MAX_MESSAGE_BYTES, Topic, topic_name

log = logging.getLogger(__name__)

_PERMANENT_CODES = {
    KafkaError._INVALID_ARG,
    KafkaError._UNKNOWN_PROTOCOL,
    KafkaError._NOT_IMPLEMENTED,
    KafkaError._AUTHENTICATION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_CONFIG,
}


def _translate(err: KafkaError | KafkaException | Exception, what: str) -> TemporaryError | PermanentError:
    kerr = err.args[0] if isinstance(err, KafkaException) and err.args else err
    if isinstance(kerr, KafkaError):
        text = f"{what}: {kerr.name()}: {kerr.str()}"
        if kerr.code() in _PERMANENT_CODES or kerr.fatal():
            return PermanentError(text)
        return TemporaryError(text)
    return TemporaryError(f"{what}: {err}")


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp_ms: int | None


@dataclass(frozen=True)
class Delivery:
    """A delivery report: ``error`` is None when the broker acknowledged the record (``acks=all``)."""

    topic: str
    partition: int
    offset: int | None
    error: str | None
    permanent: bool = False


def client_config(bootstrap_servers: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings: ``bootstrap.servers`` plus ``extra`` (security.protocol, sasl.*, ssl.*, …) unchanged."""
    config = {"bootstrap.servers": bootstrap_servers}
    config.update({k: str(v) for k, v in (extra or {}).items()})
    return config


_CONSUMER_ONLY = (
    "fetch.",
    "group.",
    "auto.offset.reset",
    "enable.partition.eof",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.",
    "auto.commit.",
    "isolation.level",
    "partition.assignment.strategy",
    "check.crcs",
    "queued.",
)
_PRODUCER_ONLY = (
    "acks",
    "linger.ms",
    "compression.",
    "enable.idempotence",
    "message.timeout.ms",
    "batch.",
    "queue.buffering.",
    "delivery.timeout.ms",
    "retries",
    "request.required.acks",
    "transactional.",
)


def _only(config: Mapping[str, str], drop: tuple[str, ...]) -> dict[str, str]:
    """One client config may be given to every client: each drops the keys of the other kind of client (librdkafka
    would warn about them)."""
    return {k: v for k, v in config.items() if not k.startswith(drop)}


_LIBRDKAFKA = logging.getLogger(f"{__name__}.librdkafka")
_LIBRDKAFKA.setLevel(logging.CRITICAL)  # the error callback reports what matters, once per kind


def _quiet_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{__name__}.librdkafka.{name}")


def _error_cb(
    name: str, on_fatal: Callable[[], None] | None = None, on_down: Callable[[], None] | None = None
) -> Callable[[KafkaError], None]:
    seen: dict[str, int] = {}

    def on_error(err: KafkaError) -> None:
        if err.fatal() and on_fatal is not None:
            on_fatal()
        if on_down is not None and err.code() == KafkaError._ALL_BROKERS_DOWN:
            on_down()
        # librdkafka retries by itself; say it once per kind (broker down is a state, not an event to flood).
        key = err.name()
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 1 or seen[key] % 100 == 0:
            log.warning("kafka client=%s error=%s count=%d detail=%s", name, key, seen[key], err.str())

    return on_error


class Producer:
    """Idempotent, ``acks=all``, compressed producer with per-record delivery callbacks."""

    _generation: int
    _fatal: bool

    def _callbacks(self) -> tuple[Callable[[], None], Callable[[], None]]:
        """Error callbacks of one client generation: an old client still tearing down cannot flag the new one."""
        generation = self._generation

        def on_fatal() -> None:
            if generation == self._generation:
                self._fatal = True

        def on_down() -> None:
            if generation == self._generation:
                self.saw_broker_down = True

        return on_fatal, on_down

    def __init__(self, config: Mapping[str, str], *, client_id: str = "dsfleet") -> None:
        self._config = dict(config)
        self._client_id = client_id
        self.saw_broker_down = False
        """The connection to the brokers broke since this producer was made (see :meth:`renew`)."""
        self._generation = 0
        self._producer = self._make()

    def _make(self) -> Any:
        client_id = self._client_id
        self._generation += 1
        on_fatal, on_down = self._callbacks()
        settings: dict[str, Any] = {
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "zstd",
            "linger.ms": 5,
            "message.max.bytes": MAX_MESSAGE_BYTES + 64 * 1024,
            "socket.keepalive.enable": True,
            "reconnect.backoff.max.ms": 2000,
            "error_cb": _error_cb(client_id, on_fatal, on_down),
            "logger": _quiet_logger(client_id),
        }
        self._fatal = False
        settings.update(_only(self._config, _CONSUMER_ONLY))
        try:
            return confluent_kafka.Producer(settings)
        except KafkaException as exc:
            raise PermanentError(f"kafka producer settings: {exc}") from exc

    def renew(self) -> None:
        """Replace the client. After a broker lost its data (or a fatal error) an idempotent producer's sequence
        state is void and librdkafka stalls; a new client delivers at once. What the old one held is purged:
        its records get failed delivery reports, so callers send them again."""
        old = self._producer
        old.purge(in_queue=True, in_flight=True, blocking=False)
        old.poll(0)
        self.saw_broker_down = False
        self._producer = self._make()

    def send(
        self,
        topic: str,
        key: str | None,
        value: bytes | None,
        *,
        headers: Mapping[str, str] | None = None,
        partition: int | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        def report(err: KafkaError | None, msg: Any) -> None:
            if on_delivery is None:
                return
            if err is not None:
                translated = _translate(err, f"deliver to {topic}")
                on_delivery(
                    Delivery(
                        topic, msg.partition(), None, str(translated), isinstance(translated, PermanentError)
                    )
                )
            else:
                on_delivery(Delivery(msg.topic(), msg.partition(), msg.offset(), None))

        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": report}
        if headers:
            kwargs["headers"] = list(headers.items())
        if partition is not None:
            kwargs["partition"] = partition
        try:
            self._producer.produce(topic, **kwargs)
        except BufferError:
            self._producer.poll(0.5)
            try:
                self._producer.produce(topic, **kwargs)
            except BufferError as exc:
                raise TemporaryError("kafka producer queue is full") from exc
        except KafkaException as exc:
            raise _translate(exc, f"produce to {topic}") from exc

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports. A fatal error (e.g. ``OUT_OF_ORDER_SEQUENCE_NUMBER`` from a broker that lost its
        data) is not raised: it sets :attr:`fatal`, and the owner renews the producer."""
        try:
            return int(self._producer.poll(timeout))
        except KafkaException as exc:
            return self._poll_failed(exc)

    def _poll_failed(self, exc: KafkaException) -> int:
        err = _translate(exc, "producer poll")
        kerr = exc.args[0] if exc.args else None
        if isinstance(kerr, KafkaError) and kerr.fatal():
            if not self._fatal:
                log.warning("kafka producer fatal error; it must be renewed: %s", err)
            self._fatal = True
            return 0
        raise err from exc

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for outstanding deliveries; returns how many are still queued after ``timeout``."""
        try:
            return int(self._producer.flush(timeout))
        except KafkaException as exc:
            self._poll_failed(exc)
            return len(self._producer)

    def partitions(self, topic: str, timeout: float = 5.0) -> int | None:
        return _partitions(self._producer, topic, timeout)

    @property
    def fatal(self) -> bool:
        """The producer hit a fatal error (e.g. an idempotence sequence lost by a broker that lost its data) and
        must be replaced."""
        return self._fatal

    def close(self, timeout: float = 10.0) -> int:
        return self.flush(timeout)


def _partitions(client: Any, topic: str, timeout: float) -> int | None:
    try:
        meta = client.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise _translate(exc, f"metadata of {topic}") from exc
    info = meta.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        return None
    return len(info.partitions)


class Consumer:
    """A consumer; ``group_id=None`` makes it assign-only (no group membership, nothing committed)."""

    def __init__(
        self,
        config: Mapping[str, str],
        *,
        group_id: str | None = None,
        client_id: str = "dsfleet",
        from_beginning: bool = True,
    ) -> None:
        settings: dict[str, Any] = {
            "client.id": client_id,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
            "socket.keepalive.enable": True,
            "reconnect.backoff.max.ms": 2000,
            "error_cb": _error_cb(client_id),
            "logger": _quiet_logger(client_id),
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
        if group_id is None:
            # librdkafka wants a group.id even for assign(); nothing is ever committed under it.
            settings.update({"group.id": f"{client_id}-assign-only", "enable.auto.commit": False})
        else:
            settings.update(
                {
                    "group.id": group_id,
                    "enable.auto.commit": True,
                    "auto.commit.interval.ms": 1000,
                    "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 1000,
                }
            )
        settings.update(_only(config, _PRODUCER_ONLY))
        self._group = group_id is not None
        try:
            self._consumer = confluent_kafka.Consumer(settings)
        except KafkaException as exc:
            raise PermanentError(f"kafka consumer settings: {exc}") from exc
        self._assigned: list[TopicPartition] = []
        self.end_offsets: dict[tuple[str, int], int] = {}
        """The offset at which each (topic, partition) last reported its end (a partition EOF event)."""

    def assign(self, topic: str, partitions: Sequence[int], *, from_beginning: bool = True) -> None:
        """Read ``partitions`` of ``topic`` (added to what is already assigned), from the beginning."""
        offset = confluent_kafka.OFFSET_BEGINNING if from_beginning else confluent_kafka.OFFSET_STORED
        self._assigned = [tp for tp in self._assigned if tp.topic != topic]
        self._assigned += [TopicPartition(topic, p, offset) for p in partitions]
        try:
            self._consumer.assign(self._assigned)
        except KafkaException as exc:
            raise _translate(exc, f"assign {topic}") from exc

    def seek_to_beginning(self, topic: str, partition: int) -> None:
        """Read one assigned partition again from its first record (after a broker lost everything)."""
        self.assign(
            topic,
            sorted({tp.partition for tp in self._assigned if tp.topic == topic} | {partition}),
        )

    def subscribe(self, topics: Sequence[str]) -> None:
        if not self._group:
            raise PermanentError("subscribe() needs a consumer group")
        try:
            self._consumer.subscribe(list(topics))
        except KafkaException as exc:
            raise _translate(exc, f"subscribe {','.join(topics)}") from exc

    def poll_batch(
        self, max_records: int = 500, timeout: float = 0.1
    ) -> tuple[list[Record], set[tuple[str, int]]]:
        """Up to ``max_records`` records and the ``(topic, partition)``s that reached their end in this call.

        Transient errors (broker down, unknown topic while it is being created) are logged by the client's error
        callback and yield an empty batch; the caller's loop goes on.
        """
        try:
            messages = self._consumer.consume(max_records, timeout)
        except KafkaException as exc:
            raise _translate(exc, "consume") from exc
        records: list[Record] = []
        eof: set[tuple[str, int]] = set()
        for msg in messages:
            err = msg.error()
            topic, partition = msg.topic() or "", msg.partition()
            partition = -1 if partition is None else partition
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof.add((topic, partition))
                    self.end_offsets[(topic, partition)] = msg.offset() or 0
                elif err.fatal():
                    raise _translate(err, "consume")
                else:
                    log.debug("kafka consume error=%s topic=%s", err.name(), msg.topic())
                continue
            stamp_type, stamp = msg.timestamp()
            records.append(
                Record(
                    topic=topic,
                    partition=partition,
                    offset=msg.offset() or 0,
                    key=_as_bytes(msg.key()),
                    value=_as_bytes(msg.value()),
                    headers={k: _as_bytes(v) or b"" for k, v in _headers(msg.headers())},
                    timestamp_ms=stamp if stamp_type != confluent_kafka.TIMESTAMP_NOT_AVAILABLE else None,
                )
            )
            eof.discard((topic, partition))
        return records, eof

    def partitions(self, topic: str, timeout: float = 5.0) -> int | None:
        return _partitions(self._consumer, topic, timeout)

    def close(self) -> None:
        # already closed, or the broker is gone: nothing to commit
        with contextlib.suppress(KafkaException, RuntimeError):
            self._consumer.close()


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode("utf-8") if isinstance(value, str) else value


def _headers(headers: Any) -> list[tuple[str, str | bytes | None]]:
    return list(headers or [])


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def topic_specs(
    prefix: str = "",
    *,
    partitions: int = 12,
    replication_factor: int = 1,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> list[TopicSpec]:
    """The six topics. ``AgentConfig`` is compacted (the last config of each node is what matters) and all carry
    the ``max.message.bytes`` of docs/architecture/decisions/0017-message-size-limits.md. Commands and requests need no more than
    one partition each: they are few and their order matters."""
    specs = []
    for topic in Topic:
        config = {"max.message.bytes": str(max_message_bytes)}
        count = partitions
        if topic is Topic.AGENT_CONFIG:
            config.update({"cleanup.policy": "compact", "min.compaction.lag.ms": "0"})
        elif topic in (Topic.UPDATE_CONFIG, Topic.REFRESH):
            count = 1
        else:
            config["retention.ms"] = str(24 * 3600 * 1000)
        specs.append(TopicSpec(topic_name(topic, prefix), count, replication_factor, config))
    return specs


class Admin:
    def __init__(self, config: Mapping[str, str], *, client_id: str = "dsfleet-admin") -> None:
        settings: dict[str, Any] = {
            "client.id": client_id,
            "error_cb": _error_cb(client_id),
            "logger": _quiet_logger(client_id),
        }
        settings.update(_only(config, _CONSUMER_ONLY + _PRODUCER_ONLY))
        try:
            self._admin = AdminClient(settings)
        except KafkaException as exc:
            raise PermanentError(f"kafka admin settings: {exc}") from exc

    def list_topics(self, timeout: float = 5.0) -> dict[str, int]:
        """Topic name → partition count."""
        try:
            meta = self._admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise _translate(exc, "list topics") from exc
        return {name: len(t.partitions) for name, t in meta.topics.items() if t.error is None}

    def ensure_topics(
        self,
        specs: Sequence[TopicSpec] | None = None,
        *,
        prefix: str = "",
        partitions: int = 12,
        replication_factor: int = 1,
        timeout: float = 10.0,
    ) -> list[str]:
        """Create the topics that do not exist (default: the six of :func:`topic_specs`); returns the names
        created (none: they all existed)."""
        if specs is None:
            specs = topic_specs(prefix, partitions=partitions, replication_factor=replication_factor)
        existing = self.list_topics(timeout)
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        futures = self._admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in missing],
            request_timeout=timeout,
            operation_timeout=timeout,
        )
        created = []
        for name, future in futures.items():
            try:
                future.result(timeout)
                created.append(name)
            except KafkaException as exc:
                kerr = exc.args[0] if exc.args else None
                if isinstance(kerr, KafkaError) and kerr.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise _translate(exc, f"create topic {name}") from exc
            except Exception as exc:  # the future's own timeout
                raise TemporaryError(f"create topic {name}: {exc}") from exc
        return sorted(created)

    def delete_topics(self, names: Sequence[str], timeout: float = 10.0) -> None:
        futures = self._admin.delete_topics(list(names), request_timeout=timeout, operation_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                raise _translate(exc, f"delete topic {name}") from exc
