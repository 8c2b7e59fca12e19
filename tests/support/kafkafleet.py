"""Test helper: a coordinator stand-in on a real broker (publishes AgentConfig/AgentCommand signed by its key, reads
AgentInfo and AgentResponse) and ``dsfleet-agent run`` subprocesses that trust that key, stopped by their PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dsfleet.plumbing.kafka import Admin, Consumer, Producer, client_config
from dsfleet.plumbing.signing import PublicKey, SigningKey, generate_key
from dsfleet.schemas.signatures import SignedFields
from dsfleet.schemas.wire import (
    AgentCommand,
    AgentInfo,
    AgentResponse,
    CommandKind,
    Decoded,
    InstanceStatus,
    Topic,
    decode,
    encode,
    partition_for,
    schema_of,
    topic_name,
)
from tests.support.dockerengine import ROOT
from tests.support.keys import sign_message, sign_value, trust_args

PARTITIONS = 4
FAST = {"fetch.wait.max.ms": "10", "linger.ms": "0"}
STANDIN_KEY = generate_key()
"""The stand-in coordinator's signing key (one for the session: a test may start a second stand-in, as a
coordinator restarted with its key); :func:`agent_args` makes agents trust it unless told otherwise."""


@dataclass
class Coordinator:
    bootstrap: str
    prefix: str
    responses: dict[str, AgentResponse] = field(default_factory=dict)
    infos: list[AgentInfo] = field(default_factory=list)
    key: SigningKey = STANDIN_KEY

    def __post_init__(self) -> None:
        self.config = client_config(self.bootstrap, FAST)
        Admin(client_config(self.bootstrap)).ensure_topics(prefix=self.prefix, partitions=PARTITIONS)
        self.producer = Producer(self.config)
        self._consumer: Consumer | None = None

    def topic(self, t: Topic) -> str:
        return topic_name(t, self.prefix)

    def _sign(self, node: str, value: bytes | None) -> dict[str, str]:
        """Headers of an AgentConfig record signed by :attr:`key`: its signed fields read from the payload when it
        is a JSON object, else (a tombstone, garbage) the schema and the time now."""
        try:
            return sign_value(self.key, node, value)
        except (ValueError, TypeError, AttributeError, RecursionError):
            fields = SignedFields(schema_of(Topic.AGENT_CONFIG), datetime.now(UTC).isoformat())
            return sign_value(self.key, node, value, fields=fields)

    def publish_config(self, node: str, value: bytes | None) -> None:
        self.producer.send(
            self.topic(Topic.AGENT_CONFIG),
            node,
            value,
            headers=self._sign(node, value),
            partition=partition_for(node, PARTITIONS),
        )
        self.producer.flush(10)

    def publish_raw(self, node: str, values: list[bytes]) -> None:
        """Records as given (malformed ones too), each signed: what they test is the agent's parsing."""
        topic = self.topic(Topic.AGENT_CONFIG)
        p = partition_for(node, PARTITIONS)
        for v in values:
            self.producer.send(topic, node, v, headers=self._sign(node, v), partition=p)
            self.producer.poll(0)
        self.producer.flush(30)

    def command(
        self,
        target: str,
        kind: CommandKind,
        node: str | None = None,
        machine_id: str | None = None,
        key_id: str | None = None,
    ) -> None:
        """A signed AgentCommand; an ``assign-name`` names the key of the agent that asked (``key_id``, else the
        key the last AgentInfo of ``machine_id`` announced), as the coordinator does."""
        if kind is CommandKind.ASSIGN_NAME and key_id is None:
            self.read()
            asked = [i for i in self.infos if i.machineId == machine_id and i.publicKey]
            key_id = PublicKey.from_text(asked[-1].publicKey or "").id if asked else None
        cmd = AgentCommand(
            sent_at=datetime.now(UTC).isoformat(),
            command=kind,
            target=target,
            node=node,
            machineId=machine_id,
            keyId=key_id,
        )
        self.producer.send(
            self.topic(Topic.AGENT_COMMAND),
            target,
            encode(cmd),
            headers=sign_message(self.key, cmd, target),
            partition=partition_for(target, PARTITIONS),
        )
        self.producer.flush(10)

    def _reader(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self.config)
            self._consumer.assign(self.topic(Topic.AGENT_RESPONSE), list(range(PARTITIONS)))
            self._consumer.assign(self.topic(Topic.AGENT_INFO), list(range(PARTITIONS)))
        return self._consumer

    def read(self, timeout: float = 0.1) -> None:
        records, _ = self._reader().poll_batch(500, timeout)
        for r in records:
            if r.topic == self.topic(Topic.AGENT_RESPONSE):
                d = decode(Topic.AGENT_RESPONSE, r.key, r.value)
                if isinstance(d, Decoded):
                    self.responses[d.message.node] = d.message
            elif r.topic == self.topic(Topic.AGENT_INFO):
                d = decode(Topic.AGENT_INFO, r.key, r.value)
                if isinstance(d, Decoded):
                    self.infos.append(d.message)

    def status(self, node: str, instance: str) -> InstanceStatus | None:
        self.read()
        resp = self.responses.get(node)
        if resp is None:
            return None
        return next((s for s in resp.instances if s.name == instance), None)

    def response(self, node: str) -> AgentResponse | None:
        self.read()
        return self.responses.get(node)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        self.producer.close(5)


@dataclass
class AgentProcess:
    args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = dict(os.environ, DSFLEET_KAFKA_FETCH_WAIT_MAX_MS="10", PYTHONUNBUFFERED="1")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dsfleet.agent.cli", "run", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
        )
        log.close()
        return self

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def terminate(self, timeout: float = 15.0) -> int | None:
        return self._signal(signal.SIGTERM, timeout)

    def _signal(self, sig: signal.Signals, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def agent_args(
    bootstrap: str,
    prefix: str,
    state_dir: Path,
    node: str | None,
    trust: Sequence[SigningKey] | None = None,
) -> list[str]:
    """``dsfleet-agent run`` flags; ``trust``: the coordinator keys it believes (None: the stand-in's)."""
    args = [
        *trust_args(*(trust if trust is not None else (STANDIN_KEY,))),
        "--bootstrap-servers",
        bootstrap,
        "--topic-prefix",
        prefix,
        "--state-dir",
        str(state_dir),
        "--heartbeat-seconds",
        "1",
        "--resync-seconds",
        "4",
    ]
    if node:
        args += ["--node-name", node]
    return args


def wait_until(what: str, probe, timeout: float = 45.0, log: AgentProcess | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    tail = log.log()[-3000:] if log else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})\n{tail}")
