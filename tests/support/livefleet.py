"""Helpers for tests (and benchmarks) of the live loop: a coordinator as a subprocess, a reader of a topic, and a
fake agent that speaks the wire protocol, signing what it sends with a key of its own (enrolled for its node when
given the store: :mod:`tests.support.keys`). Every wait polls with a deadline."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from dsfleet.plumbing.kafka import Consumer, Producer, Record, client_config
from dsfleet.plumbing.settings import load_settings
from dsfleet.plumbing.signing import SigningKey, generate_key
from dsfleet.schemas.wire import AgentInfo, AgentResponse, Topic, encode, partition_for, topic_name
from tests.support.keys import enroll, sign_message

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def copy_fleet(dest: Path) -> Path:
    shutil.copytree(ROOT / "manifests", dest)
    return dest


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float, what: str) -> int:
    """SIGTERM a process this test started and wait for it; killed (and the test failed) if it does not stop."""
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else 0
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"{what} did not stop on SIGTERM within {timeout} s") from None


class CoordinatorProc:
    def __init__(
        self,
        manifests: Path,
        db: str,
        bootstrap: str | None,
        prefix: str,
        log: Path,
        *,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "dsfleet.reconciler.cli",
            "coordinator",
            "--manifests",
            str(manifests),
            "--db",
            db,
            "--topic-prefix",
            prefix,
            "--partitions",
            "3",
            *extra,
        ]
        if bootstrap:
            self.args += ["--bootstrap-servers", bootstrap, "-X", "fetch.wait.max.ms=10"]
        self.env = {**os.environ, **(env or {})}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CoordinatorProc:
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env, cwd=ROOT
        )
        fh.close()
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, pattern: str, timeout: float = 20.0, count: int = 1) -> str:
        rx = re.compile(pattern)

        def found() -> str | None:
            hits = rx.findall(self.text())
            if len(hits) >= count:
                return str(hits[-1])
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"coordinator exited {self.proc.returncode} before {pattern!r}:\n{self.text()[-3000:]}"
                )
            return None

        return wait_for(found, timeout, f"log line {pattern!r}")

    def stop(self, timeout: float = 15.0) -> int:
        return stop_process(self.proc, timeout, "coordinator")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)


def kafka_client_config(bootstrap: str) -> dict[str, str]:
    """A test client's librdkafka settings: the librdkafka keys of the settings file the product processes read
    (``DSFLEET_CONFIG``: e.g. TLS to the broker), and short fetch waits."""
    extra = load_settings().kafka.passthrough() if os.environ.get("DSFLEET_CONFIG") else {}
    return client_config(bootstrap, {**extra, "fetch.wait.max.ms": "10"})


class TopicReader:
    """Reads one topic (all partitions) from the beginning, without a consumer group."""

    def __init__(self, bootstrap: str, prefix: str, topic: Topic) -> None:
        self.config = kafka_client_config(bootstrap)
        self.name = topic_name(topic, prefix)
        self.consumer = Consumer(self.config, client_id="test-reader")
        self.records: list[Record] = []
        self._assigned = 0

    def _assign(self) -> bool:
        count = self.consumer.partitions(self.name)
        if not count:
            return False
        if count != self._assigned:
            self.consumer.assign(self.name, list(range(count)))
            self._assigned = count
        return True

    def poll(self, timeout: float = 0.05) -> list[Record]:
        if not self._assign():
            return []
        batch, _ = self.consumer.poll_batch(timeout=timeout)
        self.records += batch
        return batch

    def wait(self, predicate: Callable[[list[Record]], bool], timeout: float, what: str) -> list[Record]:
        def check() -> list[Record] | None:
            self.poll()
            return self.records if predicate(self.records) else None

        return wait_for(check, timeout, what, interval=0)

    def close(self) -> None:
        self.consumer.close()


class FakeAgent:
    """Speaks the agent's side of the wire (AgentInfo, AgentResponse) without Docker, signed by a key of its own
    (``key``; made now when not given) that its AgentInfo announces. ``db``: the store its key is enrolled in for
    ``node`` (else the coordinator keeps its announces as a pending enrollment and drops its reports)."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        node: str | None,
        hostname: str,
        heartbeat: float = 0.5,
        *,
        db: str | None = None,
        key: SigningKey | None = None,
    ) -> None:
        self.config = kafka_client_config(bootstrap)
        self.prefix = prefix
        self.node = node
        self.hostname = hostname
        self.heartbeat = heartbeat
        self.key = key or generate_key()
        if db is not None and node is not None:
            enroll(db, node, self.key)
        self.producer = Producer(self.config, client_id=f"fake-{hostname}")

    def _send(self, topic: Topic, key: str, message: AgentInfo | AgentResponse) -> None:
        name = topic_name(topic, self.prefix)
        count = self.producer.partitions(name) or 1
        headers = sign_message(self.key, message, key)
        self.producer.send(name, key, encode(message), headers=headers, partition=partition_for(key, count))
        self.producer.flush(5)

    def announce(self, generation: int | None = None, machine_id: str | None = None, **kw: Any) -> None:
        kw.setdefault("publicKey", self.key.public.text())
        info = AgentInfo(
            sent_at=now_iso(),
            node=self.node,
            hostname=self.hostname,
            machineId=machine_id,
            heartbeatSeconds=self.heartbeat,
            observedGeneration=generation,
            agentVersion="test",
            **kw,
        )
        self._send(Topic.AGENT_INFO, self.node or machine_id or self.hostname, info)

    def respond(self, generation: int | None, instances: Sequence[dict[str, Any]] = ()) -> None:
        assert self.node is not None
        resp = AgentResponse.model_validate(
            {
                "sent_at": now_iso(),
                "node": self.node,
                "observedGeneration": generation,
                "instances": list(instances),
            }
        )
        self._send(Topic.AGENT_RESPONSE, self.node, resp)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.producer.flush(2)
