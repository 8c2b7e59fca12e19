"""Test helper: a coordinator stand-in on a real broker (publishes AgentConfig/AgentCommand, reads AgentInfo and
AgentResponse) and ``dsfleet-agent run`` subprocesses, stopped by their PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dsfleet.plumbing.kafka import Admin, Consumer, Producer, client_config
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
    topic_name,
)
from tests.support.dockerengine import ROOT

PARTITIONS = 4
FAST = {"fetch.wait.max.ms": "10", "linger.ms": "0"}


@dataclass
class Coordinator:
    bootstrap: str
    prefix: str
    responses: dict[str, AgentResponse] = field(default_factory=dict)
    infos: list[AgentInfo] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config = client_config(self.bootstrap, FAST)
        Admin(client_config(self.bootstrap)).ensure_topics(prefix=self.prefix, partitions=PARTITIONS)
        self.producer = Producer(self.config)
        self._consumer: Consumer | None = None

    def topic(self, t: Topic) -> str:
        return topic_name(t, self.prefix)

    def publish_config(self, node: str, value: bytes | None) -> None:
        self.producer.send(
            self.topic(Topic.AGENT_CONFIG), node, value, partition=partition_for(node, PARTITIONS)
        )
        self.producer.flush(10)

    def publish_raw(self, node: str, values: list[bytes]) -> None:
        topic = self.topic(Topic.AGENT_CONFIG)
        p = partition_for(node, PARTITIONS)
        for v in values:
            self.producer.send(topic, node, v, partition=p)
            self.producer.poll(0)
        self.producer.flush(30)

    def command(
        self, target: str, kind: CommandKind, node: str | None = None, machine_id: str | None = None
    ) -> None:
        from datetime import UTC, datetime

        cmd = AgentCommand(
            sent_at=datetime.now(UTC).isoformat(),
            command=kind,
            target=target,
            node=node,
            machineId=machine_id,
        )
        self.producer.send(
            self.topic(Topic.AGENT_COMMAND), target, encode(cmd), partition=partition_for(target, PARTITIONS)
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


def agent_args(bootstrap: str, prefix: str, state_dir: Path, node: str | None) -> list[str]:
    args = [
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
