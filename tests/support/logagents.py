"""A stand-in agent for tests of instance logs: it answers ``logs`` commands (AgentCommand) for one node on the
real broker with an AgentLogs reply signed by a key of its own (enrolled for the node when given the store), like
the agent does, with whatever text the test gives it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from dsfleet.plumbing.kafka import Consumer, Producer, client_config
from dsfleet.plumbing.signing import SigningKey, generate_key
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
from tests.support.keys import enroll, sign_message
from tests.support.livefleet import wait_for

__all__ = ["LogAgent"]


class LogAgent:
    """Answers ``logs`` commands for one node on the real broker; ``text(command)`` makes each reply's text. Its
    replies are signed by ``key`` (made now when not given), enrolled for ``node`` in ``db`` when given (else the
    coordinator drops them)."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        node: str,
        text: Callable[[AgentCommand], str],
        *,
        db: str | None = None,
        key: SigningKey | None = None,
    ) -> None:
        self.config = client_config(bootstrap, {"fetch.wait.max.ms": "10"})
        self.prefix, self.node, self.text = prefix, node, text
        self.key = key or generate_key()
        if db is not None:
            enroll(db, node, self.key)
        self.commands: list[AgentCommand] = []
        self.producer = Producer(self.config, client_id=f"log-agent-{node}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer = Consumer(self.config, client_id=f"log-agent-{self.node}")
        name = topic_name(Topic.AGENT_COMMAND, self.prefix)
        try:
            count = wait_for(lambda: consumer.partitions(name), 30, "the AgentCommand topic")
            consumer.assign(name, list(range(count)))
            while not self._stop.is_set():
                records, _ = consumer.poll_batch(100, 0.05)
                for r in records:
                    got = decode(Topic.AGENT_COMMAND, r.key, r.value)
                    if not isinstance(got, Decoded) or not isinstance(got.message, AgentCommand):
                        continue
                    command = got.message
                    if command.command is CommandKind.LOGS and command.target == self.node:
                        self.commands.append(command)
                        self._answer(command)
        finally:
            consumer.close()

    def _answer(self, command: AgentCommand) -> None:
        assert command.requestId is not None and command.instance is not None
        reply = AgentLogs(
            sent_at=datetime.now(UTC).isoformat(),
            node=self.node,
            requestId=command.requestId,
            instance=command.instance,
            text=self.text(command),
        )
        name = topic_name(Topic.AGENT_RESPONSE, self.prefix)
        count = self.producer.partitions(name) or 1
        self.producer.send(
            name,
            self.node,
            encode(reply),
            headers=sign_message(self.key, reply, self.node),
            partition=partition_for(self.node, count),
        )
        self.producer.flush(5)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.producer.flush(2)
