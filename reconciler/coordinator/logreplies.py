"""An instance's log, fetched from its node on request: the API sends an ``AgentCommand`` ``logs`` (key = node) and
waits, bounded, for the ``AgentLogs`` reply with the same request id on the AgentResponse topic.

- :class:`LogReplies`: the waiters, by request id (thread-safe). The coordinator's ingest hands every AgentLogs
  it reads to :meth:`LogReplies.deliver`; a reply nobody waits for (late, or another process's) is dropped.
- :class:`LogListener`: for a process without a coordinator (``dsfleet serve``): an assign-only reader of the
  AgentResponse topic from its end (no consumer group, nothing committed) that hands AgentLogs to its own
  :class:`LogReplies`. It starts on the first request and is ready for a node once that node's partition has
  reported its end, so a reply cannot slip past before the reader is in place.
- :class:`LogFetcher`: one request (send the command, wait for the reply).

The text is redacted on the host; the API redacts it again before it answers.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dsfleet.schemas.errors import DsfleetError, TemporaryError
from dsfleet.schemas.wire import (
    AgentCommand,
    AgentLogs,
    CommandKind,
    Decoded,
    Topic,
    decode,
    encode,
    partition_for,
    topic_name,
)

if TYPE_CHECKING:
    from dsfleet.plumbing.kafka import Consumer

log = logging.getLogger("dsfleet.logs")

__all__ = ["LogFetcher", "LogListener", "LogReplies", "Sender"]

Sender = Callable[[str, str | None, bytes], None]
"""``send("agent-command", node, value)``; raises TemporaryError when the broker cannot take it."""

_MARK = f'"schema":"{AgentLogs.model_fields["schema_"].default}"'.encode()


class LogReplies:
    """Who waits for which reply."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: dict[str, AgentLogs | None] = {}

    def expect(self, request_id: str) -> None:
        with self._cond:
            self._waiting[request_id] = None

    def deliver(self, reply: AgentLogs) -> bool:
        """Hand ``reply`` to its waiter; False when nobody waits for it."""
        with self._cond:
            if reply.requestId not in self._waiting or self._waiting[reply.requestId] is not None:
                return False
            self._waiting[reply.requestId] = reply
            self._cond.notify_all()
            return True

    def wait(self, request_id: str, timeout: float) -> AgentLogs | None:
        """The reply, or None after ``timeout`` seconds; the request is forgotten either way."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting.get(request_id) is not None, timeout)
            return self._waiting.pop(request_id, None)

    def forget(self, request_id: str) -> None:
        with self._cond:
            self._waiting.pop(request_id, None)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)


class LogListener:
    """Reads AgentLogs off the AgentResponse topic in a thread of its own (started by :meth:`ready`)."""

    def __init__(
        self, config: Mapping[str, str], prefix: str = "", *, max_bytes: int = 1_000_000, poll: float = 0.1
    ) -> None:
        self.replies = LogReplies()
        self._config = dict(config)
        self._topic = topic_name(Topic.AGENT_RESPONSE, prefix)
        self._max_bytes = max_bytes
        self._poll = poll
        self._cond = threading.Condition()
        self._partitions = 0
        self._at_end: set[int] = set()
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ready(self, node: str, timeout: float) -> bool:
        """Start reading (once) and wait until ``node``'s partition is read from its end: True when it is."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._error = None
                self._thread = threading.Thread(target=self._run, name="dsfleet-logs", daemon=True)
                self._thread.start()
            self._cond.wait_for(lambda: self._error is not None or self._reading(node), timeout)
            return self._error is None and self._reading(node)

    def _reading(self, node: str) -> bool:
        return bool(self._partitions) and partition_for(node, self._partitions) in self._at_end

    def _run(self) -> None:
        from dsfleet.plumbing.kafka import Consumer

        consumer: Consumer | None = None
        try:
            consumer = Consumer(self._config, client_id="dsfleet-logs", from_beginning=False)
            while not self._stop.is_set():
                count = consumer.partitions(self._topic) or 0
                if count and count != self._partitions:
                    consumer.assign(self._topic, list(range(count)), from_beginning=False)
                    with self._cond:
                        self._partitions, self._at_end = count, set()
                if not count:
                    self._stop.wait(self._poll)
                    continue
                self._read(consumer)
        except DsfleetError as exc:
            log.warning("log replies cannot be read error=%s", exc)
            with self._cond:
                self._error = str(exc)
                self._cond.notify_all()
        finally:
            if consumer is not None:
                consumer.close()

    def _read(self, consumer: Consumer) -> None:
        for _ in range(50):  # then look at the partition count again
            if self._stop.is_set():
                return
            records, ends = consumer.poll_batch(500, self._poll)
            if ends:
                with self._cond:
                    self._at_end |= {p for t, p in ends if t == self._topic}
                    self._cond.notify_all()
            for r in records:
                if r.value is None or _MARK not in r.value[:256]:
                    continue
                got = decode(Topic.AGENT_RESPONSE, r.key, r.value, max_bytes=self._max_bytes)
                if isinstance(got, Decoded) and isinstance(got.message, AgentLogs):
                    self.replies.deliver(got.message)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


class LogFetcher:
    """Asks a node for an instance's log and waits for the answer."""

    def __init__(self, send: Sender, replies: LogReplies, listener: LogListener | None = None) -> None:
        self.send = send
        self.replies = replies
        self.listener = listener

    @classmethod
    def reading(cls, send: Sender, config: Mapping[str, str], prefix: str, max_bytes: int) -> LogFetcher:
        """A fetcher that reads the replies itself (a process without a coordinator)."""
        listener = LogListener(config, prefix, max_bytes=max_bytes)
        return cls(send, listener.replies, listener)

    def fetch(
        self, node: str, instance: str, *, tail: int | None, since: str | None, timeout: float
    ) -> AgentLogs | None:
        """The reply, or None when the node did not answer within ``timeout`` seconds. Raises TemporaryError
        when the command cannot be sent or the replies cannot be read."""
        deadline = time.monotonic() + timeout
        if self.listener is not None and not self.listener.ready(node, min(timeout, 10.0)):
            raise TemporaryError(f"the {Topic.AGENT_RESPONSE.value} topic cannot be read now")
        request_id = uuid.uuid4().hex
        command = AgentCommand(
            sent_at=datetime.now(UTC).isoformat(),
            command=CommandKind.LOGS,
            target=node,
            node=node,
            requestId=request_id,
            instance=instance,
            tail=tail,
            since=since,
        )
        self.replies.expect(request_id)
        try:
            self.send("agent-command", node, encode(command))
            return self.replies.wait(request_id, max(0.0, deadline - time.monotonic()))
        finally:
            self.replies.forget(request_id)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
