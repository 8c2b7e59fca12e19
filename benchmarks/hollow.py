"""Hollow agents: N agents in several driver processes against one coordinator subprocess and a real broker
(issues 9 and 24).

Two kinds of hollow agent:

* **full** (N ≤ 1,000 unless ``BENCH_HOLLOW_THIN=1``): the real :class:`dsfleet.agent.loop.Agent` (plan, files
  written to its own state dir, reports) with the in-memory container runtime of :mod:`dsfleet.agent.testing` (a
  container runs as soon as it is started); the numbers stay comparable with the runs before issue 24.
* **thin** (N > 1,000, or ``BENCH_HOLLOW_THIN=1``; ``BENCH_HOLLOW_THIN=0`` forces full), stripped as kubemark's
  hollow nodes are: :class:`ThinAgent` judges every AgentConfig record of its node with the agent's own functions
  (:func:`dsfleet.agent.desiredconfigs.accept_record`: the signature checked by the real
  :class:`dsfleet.agent.trust.Trust`, the signed fields against the payload, then
  :func:`~dsfleet.agent.desiredconfigs.judge_config`: stale, conflicting and other fleets' generations refused),
  holds the newest record only once its partition was read to the end (as the agent does), keeps the generation
  and sends signed ``AgentInfo`` + ``AgentResponse`` at start and every heartbeat (5 s), and a signed
  ``AgentResponse`` right after taking a new config: observed = desired, every instance ``running`` with the
  config's hashes. It does **not**: plan or start containers (no runtime at all, not even the in-memory one), write
  config files or a state directory (the applied mark lives in memory), read secrets, read container logs or FPS,
  detect drift, poll DeepStream's REST API, retry failures with backoff, answer ``AgentCommand`` records
  (refresh, naming, logs: the AgentCommand topic is not read), or report rejections in its responses (they are
  counted).

The agents are spread over ``BENCH_HOLLOW_DRIVERS`` driver processes (default: 1 up to N = 1,000, else 3), each
owning the agents whose AgentConfig partition it reads (partition mod drivers): each driver has its own
multiplexed bus (:class:`Mux`, a real Kafka client: not an in-memory fake): one consumer reads only its
partitions and hands each agent the records of its own key, one producer sends its agents' AgentInfo and
AgentResponse. The Mux keeps the semantics of :class:`dsfleet.agent.bus.KafkaBus` that matter here: an agent is
caught up when its partition reached its end; partition counts are read again every few seconds; after the broker
went down and answers again the producer is renewed, every partition is read again from the beginning and each agent
gets only the last record of its key at the partition's end (``reset``). The parent starts the broker and the
coordinator, reads the coordinator's store (read-only SQLite queries) and talks to the drivers over a pipe
(:func:`drive`: one command, one answer; times are ``time.monotonic()``, one clock for every process of the
host).

Keys are set up as an operator does (:mod:`tests.support.keys`): the coordinator's signing key made before it
starts, every hollow agent trusting it (it checks the signature of every AgentConfig it takes) and signing its
reports with a key of its own enrolled for its node (the coordinator checks every report): the figures include
signing and verifying.

Measured, for each N (``BENCH_HOLLOW=100,250,1000``; ``BENCH_HOLLOW=10000`` for issue 24):

* **initial convergence**: coordinator started (the drivers start their agents once it applied revision 1) →
  every node's observed generation in the store equals its desired generation;
* **ingest lag** in steady state (heartbeats spread over the 5 s period, as agents started at different times
  are): the time from an agent sending an AgentResponse to the coordinator's store showing it (read back from the
  store; the reading interval is the resolution), p50/p95/max over every report of the window;
* **one-camera change → its node**: manifest written → the agent of that node holds the new generation,
  p50/p95 over several edits; and that exactly one node's config changed each time;
* **broker loss**: the broker killed and replaced by an empty one, then every agent re-announcing at once
  (worst case): time until every agent holds its config again from the new broker, every node's report is in the
  store again with observed = desired; AgentConfig records published in that window (one per node is the floor;
  a storm would be many per node);
* coordinator RSS (current and peak; per node = peak over N) and CPU (% of one core) over the steady window, the
  drivers' CPU and the load average.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import multiprocessing as mp
import os
import re
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from dsfleet.agent.desiredconfigs import Accepted, AppliedMark, Refusal, Verdict, accept_record, judge_config
from dsfleet.agent.identity import load_identity
from dsfleet.agent.loop import Agent, HostFacts, LoopSettings
from dsfleet.agent.ports import BusBatch, BusRecord
from dsfleet.agent.testing import Credential, MemoryRuntime, MemorySecretStore
from dsfleet.agent.trust import Trust
from dsfleet.plumbing.kafka import Consumer, Producer, client_config
from dsfleet.plumbing.signing import Keyring, PublicKey, SigningKey, sign_record
from dsfleet.schemas.errors import DsfleetError, TemporaryError
from dsfleet.schemas.signatures import signed_fields, text_headers
from dsfleet.schemas.wire import (
    AgentConfig,
    AgentInfo,
    AgentLogs,
    AgentResponse,
    InstanceState,
    InstanceStatus,
    Topic,
    encode,
    partition_for,
    signed_fields_of,
    topic_name,
)

RECHECK_SECONDS = 3.0
HEARTBEAT = 5.0
PARTITIONS = 12
THIN_ABOVE = 1000
PROFILED = (
    "import atexit, cProfile, runpy, sys; out = sys.argv.pop(1); p = cProfile.Profile(); "
    "atexit.register(lambda: (p.disable(), p.dump_stats(out))); p.enable(); "
    "runpy.run_module('dsfleet.reconciler.cli', run_name='__main__', alter_sys=True)"
)
"""Above this N the thin agent is the default (``BENCH_HOLLOW_THIN`` overrides)."""


def pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


class HollowBus:
    """One agent's view of the :class:`Mux` (the :class:`dsfleet.agent.ports.AgentBus` port)."""

    def __init__(self, mux: Mux, node: str, identity: SigningKey) -> None:
        self.mux = mux
        self.node = node
        self.identity = identity
        """The agent's own key: it signs what the agent sends, as :class:`dsfleet.agent.bus.KafkaBus` does."""
        self.key = node.encode()
        self.partition: int | None = None
        self.queue: list[BusRecord] = []
        self.eof = False
        self.rereading = False
        self.reset = False
        self.sent: list[tuple[float, float]] = []
        """(wall clock, monotonic clock) of every AgentResponse sent, oldest first."""
        mux.add(self)

    def follow(self, node_key: str, command_keys: Sequence[str]) -> None:
        pass  # every hollow agent has its node name; the Mux reads every partition of its driver

    def poll(self, timeout: float) -> BusBatch:
        configs, self.queue = self.queue, []
        caught_up, self.eof = self.eof, False
        if self.rereading:
            if not caught_up:
                self.queue = configs  # held until the partition's end
                return BusBatch()
            configs = [c for c in configs if c[0] == self.key][-1:]
            self.rereading = False
        reset, self.reset = self.reset, False
        return BusBatch(configs=configs, caught_up=caught_up, reset=reset)

    def _send(self, topic: Topic, key: str, message: AgentInfo | AgentResponse | AgentLogs) -> None:
        value = encode(message)
        self.mux.send(topic, key, value, sign_record(self.identity, signed_fields_of(message), key, value))

    def publish_info(self, key: str, info: AgentInfo) -> None:
        self._send(Topic.AGENT_INFO, key, info)

    def publish_response(self, key: str, response: AgentResponse) -> None:
        self._send(Topic.AGENT_RESPONSE, key, response)
        self.sent.append((time.time(), time.monotonic()))
        del self.sent[:-20]

    def publish_logs(self, key: str, logs: AgentLogs) -> None:
        self._send(Topic.AGENT_RESPONSE, key, logs)

    def close(self) -> None:
        pass


class Mux:
    """One consumer (the AgentConfig partitions of one driver's agents) and one producer shared by its agents."""

    def __init__(self, bootstrap: str, prefix: str, partitions: Sequence[int] | None = None) -> None:
        self.prefix = prefix
        self.producer = Producer(client_config(bootstrap, {"linger.ms": "20"}), client_id="hollow")
        self.consumer = Consumer(client_config(bootstrap, {"fetch.wait.max.ms": "10"}), client_id="hollow")
        self.topic = topic_name(Topic.AGENT_CONFIG, prefix)
        self.mine = None if partitions is None else sorted(partitions)
        """The partitions this driver reads (None: every one)."""
        self.buses: dict[bytes, HollowBus] = {}
        self.by_partition: dict[int, list[HollowBus]] = {}
        self.touched: set[HollowBus] = set()
        """Buses with something new for their agent since the last :meth:`take_touched`."""
        self.count: int | None = None
        self.counts: dict[str, int] = {}
        self._failed: dict[str, float] = {}
        self._next_check = time.monotonic() + RECHECK_SECONDS
        self.arrivals: list[tuple[float, str, int | None]] = []
        """(monotonic clock, node, generation or None for a tombstone) of every AgentConfig record read."""
        self.renewals = 0

    def add(self, bus: HollowBus) -> None:
        self.buses[bus.key] = bus

    def take_touched(self) -> set[HollowBus]:
        touched, self.touched = self.touched, set()
        return touched

    def assign(self) -> bool:
        try:
            count = self.producer.partitions(self.topic, timeout=1.0)
        except TemporaryError:
            return False
        if not count:
            return False
        self.count = count
        # the partitions of this driver's agents, while the topic has the planned count; every partition when it
        # has another (a broker that came back empty and let a client create the topic with its default count)
        mine = self.mine if self.mine is not None and count == PARTITIONS else list(range(count))
        self.consumer.assign(self.topic, [p for p in range(count) if p in mine])
        self.by_partition = {}
        for bus in self.buses.values():
            bus.partition = partition_for(bus.node, count)
            self.by_partition.setdefault(bus.partition, []).append(bus)
        return True

    def _recheck(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + RECHECK_SECONDS
        self.counts.clear()
        try:
            count = self.producer.partitions(self.topic, timeout=1.0)
        except TemporaryError:
            return
        if not count:
            return
        if count == self.count and not (self.producer.saw_broker_down or self.producer.fatal):
            return
        if self.producer.saw_broker_down or self.producer.fatal:
            self.producer.renew()
            self.renewals += 1
        if self.assign():
            for bus in self.buses.values():
                bus.rereading, bus.reset, bus.queue, bus.eof = True, True, [], False
            self.touched.update(self.buses.values())

    def pump(self, timeout: float = 0.0) -> None:
        self.producer.poll(0)
        self._recheck()
        if self.count is None and not self.assign():
            return
        records, eof = self.consumer.poll_batch(5000, timeout)
        now = time.monotonic()
        for r in records:
            bus = self.buses.get(r.key or b"")
            if bus is None:
                continue
            headers = text_headers(r.headers)
            bus.queue.append(BusRecord(r.key, r.value, headers))
            self.touched.add(bus)
            fields = signed_fields(headers) if r.value is not None else None
            self.arrivals.append((now, bus.node, fields.generation if fields is not None else None))
        for _topic, p in eof:
            for bus in self.by_partition.get(p, ()):
                bus.eof = True
                self.touched.add(bus)

    def send(self, topic: Topic, key: str, value: bytes, headers: Mapping[str, str]) -> None:
        name = topic_name(topic, self.prefix)
        count = self.counts.get(name)
        if count is None:
            now = time.monotonic()
            if now - self._failed.get(name, -1e9) < RECHECK_SECONDS:
                raise TemporaryError(f"{name}: partition count unknown")
            try:
                count = self.producer.partitions(name, timeout=1.0) or 0
            except TemporaryError:
                count = 0
            if not count:
                self._failed[name] = now  # asked again only a few seconds later
                raise TemporaryError(f"{name}: partition count unknown")
            self.counts[name] = count
        self.producer.send(name, key, value, headers=headers, partition=partition_for(key, count))


class ThinAgent:
    """A hollow agent without containers, files or logs (see the module docstring for what it leaves out)."""

    def __init__(
        self, node: str, bus: HollowBus, identity: SigningKey, trust: Trust, heartbeat: float
    ) -> None:
        self.node = node
        self.bus = bus
        self.identity = identity
        self.trust = trust
        self.heartbeat = heartbeat
        self.started_at = datetime.now(UTC).isoformat()
        self.mark = AppliedMark()
        self.desired: AgentConfig | None = None
        self.pending: Accepted | None = None
        self.caught_up = False
        self.rejected = 0
        self.next_heartbeat = 0.0

    def on_batch(self, batch: BusBatch) -> bool:
        """Take what one poll brought, as the agent's intake does; True when a new config was taken."""
        if batch.reset:
            self.caught_up = False
            self.pending = None
        took = False
        for record in batch.configs:
            took |= self._on_config(BusRecord(*record))
        if batch.caught_up and not self.caught_up:
            self.caught_up = True
            if self.pending is not None:
                took |= self._take(self.pending, at_catch_up=True)
                self.pending = None
        return took

    def _on_config(self, record: BusRecord) -> bool:
        verdict = accept_record(self.node, record.key, record.value, headers=record.headers, trust=self.trust)
        if verdict is None:
            return False
        if not isinstance(verdict, Accepted):
            self.rejected += 1
            return False
        if not self.caught_up:
            self.pending = verdict
            return False
        return self._take(verdict, at_catch_up=False)

    def _take(self, accepted: Accepted, *, at_catch_up: bool) -> bool:
        config = accepted.config
        if config is None:
            self.desired = None
            self.mark = AppliedMark(self.mark.fleet or accepted.fleet, accepted.generation, None)
            self.report()
            return True
        verdict = judge_config(config, self.mark, bound=self.mark.fleet, at_catch_up=at_catch_up)
        if isinstance(verdict, Refusal):
            self.rejected += 1
            return False
        if verdict is Verdict.SAME and self.desired is not None:
            return False
        self.desired = config
        self.mark = AppliedMark(self.mark.fleet or config.fleet, config.generation, config.configHash)
        self.report()
        return True

    def _now(self) -> str:
        return datetime.now(UTC).isoformat()

    def report(self) -> None:
        config = self.desired
        generation = config.generation if config is not None else None
        response = AgentResponse(
            sent_at=self._now(),
            node=self.node,
            observedGeneration=self.mark.generation,
            configHash=config.configHash if config is not None else None,
            instances=tuple(
                InstanceStatus(
                    name=inst.name,
                    state=InstanceState.RUNNING,
                    containerId=f"hollow-{inst.name}",
                    generation=generation,
                    specHash=inst.specHash,
                    filesHash=inst.filesHash,
                    configHash=inst.configHash,
                    startedAt=self.started_at,
                )
                for inst in (config.instances if config is not None else ())
            ),
            fleet=self.mark.fleet,
        )
        with contextlib.suppress(DsfleetError):
            self.bus.publish_response(self.node, response)

    def announce(self) -> None:
        info = AgentInfo(
            sent_at=self._now(),
            node=self.node,
            hostname=self.node,
            startedAt=self.started_at,
            heartbeatSeconds=self.heartbeat,
            observedGeneration=self.mark.generation,
            configHash=self.desired.configHash if self.desired is not None else None,
            fleet=self.mark.fleet,
            publicKey=self.identity.public.text(),
        )
        with contextlib.suppress(DsfleetError):
            self.bus.publish_info(self.node, info)


@dataclass
class DriverSpec:
    """What one driver process runs: its agents (global index, node), the partitions they read, the keys."""

    index: int
    bootstrap: str
    prefix: str
    agents_root: str
    nodes: list[tuple[int, str]]
    partitions: list[int]
    total: int
    """N of the whole run (heartbeats are spread over the period by global index)."""
    trust_key: str
    thin: bool
    secret_refs: list[str] = field(default_factory=list)


class Driver:
    """The agents of one driver process, ticked in a loop; answers the parent's commands between ticks."""

    def __init__(self, spec: DriverSpec) -> None:
        self.spec = spec
        trust = Trust(Keyring.of([PublicKey.from_text(spec.trust_key)]))
        self.mux = Mux(spec.bootstrap, spec.prefix, spec.partitions)
        root = Path(spec.agents_root)
        identities = {node: load_identity(root / node)[0] for _i, node in spec.nodes}
        self.buses = [HollowBus(self.mux, node, identities[node]) for _i, node in spec.nodes]
        self.by_node = {b.node: b for b in self.buses}
        self.thin: list[ThinAgent] = []
        self.full: list[Agent] = []
        if spec.thin:
            self.thin = [ThinAgent(b.node, b, b.identity, trust, HEARTBEAT) for b in self.buses]
        else:
            secrets = MemorySecretStore({ref: Credential("viewer", "x") for ref in spec.secret_refs})
            self.full = [
                Agent(
                    LoopSettings(
                        root / b.node,
                        node=b.node,
                        heartbeat_seconds=HEARTBEAT,
                        resync_seconds=60,
                        poll_seconds=0.0,
                        trust=trust,
                    ),
                    MemoryRuntime(),
                    b,
                    secrets,
                    HostFacts(hostname=b.node, machine_id=None),
                    identity=b.identity,
                )
                for b in self.buses
            ]
        self.thin_by_bus = {id(a.bus): a for a in self.thin}
        self.held: dict[str, int | None] = {b.node: None for b in self.buses}
        self.changes: list[tuple[float, str, int | None]] = []
        """(monotonic clock, node, generation) each time an agent took another generation."""
        self.beats: list[tuple[float, int]] = []
        self.ticks = 0

    # -- ticking

    def tick(self) -> None:
        self.mux.pump(0.002)
        if self.spec.thin:
            self._tick_thin()
        else:
            for agent in self.full:
                agent.step()
            now = time.monotonic()
            for bus, agent in zip(self.buses, self.full, strict=True):
                gen = getattr(agent.desired, "generation", None)
                if gen != self.held[bus.node]:
                    self.held[bus.node] = gen
                    self.changes.append((now, bus.node, gen))
        self.ticks += 1

    def _tick_thin(self) -> None:
        for bus in self.mux.take_touched():
            agent = self.thin_by_bus[id(bus)]
            if agent.on_batch(bus.poll(0)):
                self.held[agent.node] = agent.mark.generation
                self.changes.append((time.monotonic(), agent.node, agent.mark.generation))
        now = time.monotonic()
        while self.beats and self.beats[0][0] <= now:
            due, i = heapq.heappop(self.beats)
            agent = self.thin[i]
            if agent.next_heartbeat != due:
                continue  # rescheduled
            agent.announce()
            agent.report()
            agent.next_heartbeat = now + HEARTBEAT
            heapq.heappush(self.beats, (agent.next_heartbeat, i))

    def schedule(self, due: Callable[[int, int], float]) -> None:
        """Set every agent's next heartbeat: ``due(position in this driver, global index)``."""
        if self.spec.thin:
            for i, ((g, _node), agent) in enumerate(zip(self.spec.nodes, self.thin, strict=True)):
                agent.next_heartbeat = due(i, g)
            self.beats = [(a.next_heartbeat, i) for i, a in enumerate(self.thin)]
            heapq.heapify(self.beats)
        else:
            for i, ((g, _node), full) in enumerate(zip(self.spec.nodes, self.full, strict=True)):
                full._next_heartbeat = due(i, g)

    def caught_up(self) -> bool:
        return all(a.caught_up for a in self.thin) and all(a.caught_up for a in self.full)

    # -- the parent's commands

    def answer(self, cmd: str, arg: Any) -> Any:
        if cmd == "go":
            self.schedule(lambda _i, _g: 0.0)
            return True
        if cmd == "spread":
            start = time.monotonic()
            self.schedule(lambda _i, g: start + HEARTBEAT * g / self.spec.total)
            return True
        if cmd == "changes":  # what changed since position arg; the new position
            return self.changes[arg:], len(self.changes)
        if cmd == "sent":  # every AgentResponse sent since wall clock arg
            return {b.node: [s for s in b.sent if s[0] >= arg] for b in self.buses}
        if cmd == "lost":  # the broker was replaced: every agent re-announces at once; the arrivals so far
            self.schedule(lambda _i, _g: 0.0)
            return len(self.mux.arrivals)
        if cmd == "arrivals":  # configs read since position arg, per node; every agent caught up
            per_node: dict[str, int] = {}
            for _t, node, gen in self.mux.arrivals[arg:]:
                if gen is not None:
                    per_node[node] = per_node.get(node, 0) + 1
            return per_node, self.caught_up()
        if cmd == "laggards":  # (node, generation held, caught up) of the nodes named
            agents: list[ThinAgent | Agent] = [*self.thin, *self.full]
            caught = {b.node: a.caught_up for b, a in zip(self.buses, agents, strict=True)}
            return [(n, self.held.get(n), caught[n]) for n in arg if n in caught]
        if cmd == "stats":
            t = os.times()
            return {"ticks": self.ticks, "cpu_s": t.user + t.system, "renewals": self.mux.renewals}
        raise ValueError(cmd)


def drive(conn: Connection, spec: DriverSpec) -> None:
    """One driver process: builds its agents, says ``ready``, ticks them once told ``go`` until told ``stop``."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("dsfleet.agent").setLevel(logging.ERROR)
    driver = Driver(spec)
    conn.send("ready")
    started = False
    while True:
        if started:
            driver.tick()
        if conn.poll(0 if started else 0.05):
            cmd, arg = conn.recv()
            if cmd == "stop":
                conn.send(driver.answer("stats", None))
                break
            started = started or cmd == "go"
            conn.send(driver.answer(cmd, arg))
    driver.mux.producer.flush(5)
    driver.mux.consumer.close()


class Drivers:
    """The parent's side of the driver processes: one command to all, their answers in driver order."""

    def __init__(self, specs: Sequence[DriverSpec]) -> None:
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=drive, args=(child, spec), name=f"hollow-driver-{spec.index}", daemon=True
            )
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for conn in self.conns:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError("a hollow driver did not start")
            assert conn.recv() == "ready"

    def ask(self, cmd: str, arg: Any = None) -> list[Any]:
        for conn in self.conns:
            conn.send((cmd, arg))
        return [conn.recv() for conn in self.conns]

    def close(self) -> list[Any]:
        stats: list[Any] = []
        for conn in self.conns:
            with contextlib.suppress(OSError, EOFError):
                conn.send(("stop", None))
                stats.append(conn.recv() if conn.poll(30) else None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        return stats


def _rss_cpu(pid: int) -> tuple[float, float, float]:
    """(RSS MB, peak RSS MB, CPU seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()

    def kb(name: str) -> float:
        m = re.search(rf"{name}:\s+(\d+)", status)
        return int(m.group(1)) / 1024 if m else 0.0

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return kb("VmRSS"), kb("VmHWM"), cpu


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class StoreView:
    """The coordinator's SQLite store as the benchmark reads it: plain read-only queries (cheap at 10,000 nodes)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)

    def desired(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT node, MAX(generation) FROM node_configs GROUP BY node").fetchall()
        return {str(node): int(gen) for node, gen in rows}

    def statuses(self) -> dict[str, tuple[int | None, str | None]]:
        rows = self.conn.execute("SELECT node, observed_generation, reported_at FROM node_status").fetchall()
        return {str(node): (gen, at) for node, gen, at in rows}

    def reported_since(self, at: str) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT node, reported_at FROM node_status WHERE reported_at > ?", (at,)
        ).fetchall()
        return [(str(node), str(reported)) for node, reported in rows]

    def converged(self, since: datetime | None = None) -> bool:
        want = self.desired()
        seen = self.statuses()
        return bool(want) and all(
            seen.get(n, (None, None))[0] == g
            and (since is None or (seen[n][1] is not None and _stamp(seen[n][1]) > since))  # type: ignore[arg-type]
            for n, g in want.items()
        )

    def laggards(self, drivers: Drivers) -> list[str]:
        want = self.desired()
        seen = self.statuses()
        behind = [n for n, g in sorted(want.items()) if seen.get(n, (None, None))[0] != g][:10]
        held = {n: (gen, caught) for answer in drivers.ask("laggards", behind) for n, gen, caught in answer}
        return [
            f"{n}: desired {want[n]}, store {seen.get(n, (None, None))[0]}, agent holds "
            f"{held.get(n, ('-', '-'))[0]} caught_up={held.get(n, ('-', '-'))[1]}"
            for n in behind
        ]

    def close(self) -> None:
        self.conn.close()


def until(pred: Callable[[], bool], timeout: float, every: float = 0.1) -> float | None:
    """Seconds until ``pred`` held (checked every ``every`` s), None when ``timeout`` passed first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(every)
    return None


def plan_drivers(nodes: Sequence[str], drivers: int) -> list[tuple[list[tuple[int, str]], list[int]]]:
    """Each driver's agents (global index, node) and partitions: partition mod drivers."""
    out: list[tuple[list[tuple[int, str]], list[int]]] = [
        ([], [p for p in range(PARTITIONS) if p % drivers == d]) for d in range(drivers)
    ]
    for i, node in enumerate(nodes):
        out[partition_for(node, PARTITIONS) % drivers][0].append((i, node))
    return out


def run(n: int, edits: int = 10) -> dict[str, Any]:
    from benchmarks.fleetgen import generate
    from dsfleet.reconciler.store import Store  # noqa: F401  (the store's schema is the coordinator's)
    from tests.support.brokers import Tansu
    from tests.support.keys import coordinator_key, enroll_all
    from tests.support.livefleet import CoordinatorProc

    thin_env = os.environ.get("BENCH_HOLLOW_THIN", "")
    thin = n > THIN_ABOVE if thin_env == "" else thin_env == "1"
    k = int(os.environ.get("BENCH_HOLLOW_DRIVERS", "0")) or (1 if n <= THIN_ABOVE else 3)
    tmp = Path(tempfile.mkdtemp(prefix=f"dsfleet-bench-hollow-{n}-"))
    t_gen = time.monotonic()
    fleet_dir = generate(tmp / "fleet", nodes=n, cameras=4 * n, instances_per_node=2)
    nodes = sorted(re.findall(r"^  name: (\S+)$", (fleet_dir / "nodes.yaml").read_text(), re.M))
    out: dict[str, Any] = {
        "n": n,
        "instances": 2 * n,
        "heartbeat_s": HEARTBEAT,
        "agent": "thin" if thin else "full",
        "drivers": k,
        "fleetgen_s": time.monotonic() - t_gen,
        "load_before": os.getloadavg(),
    }
    # the periodic re-read of the manifests blocks the coordinator's loop while it runs (a whole apply: over a
    # minute at 10,000 nodes): above 1,000 nodes it is made rare, as an operator of such a fleet sets it
    resync = os.environ.get("BENCH_HOLLOW_DIRECTORY_RESYNC", "")
    out["directory_resync_s"] = float(resync) if resync else 30.0
    broker = Tansu().start()
    prefix = f"h{n}."
    db_path = tmp / "state.db"
    db = f"sqlite:///{db_path}"
    coord = CoordinatorProc(
        fleet_dir,
        db,
        broker.bootstrap,
        prefix,
        tmp / "coordinator.log",
        extra=["--resync-grace", "10"],
        env={"DSFLEET_COORDINATOR__DIRECTORY_RESYNC_SECONDS": resync} if resync else None,
    )
    coord.args[coord.args.index("--partitions") + 1] = str(PARTITIONS)
    if os.environ.get(
        "BENCH_HOLLOW_PROFILE"
    ):  # cProfile of the coordinator's main thread, written at its exit
        assert coord.args[1:3] == ["-m", "dsfleet.reconciler.cli"]
        coord.args[1:3] = ["-c", PROFILED, os.environ["BENCH_HOLLOW_PROFILE"]]
    signing = coordinator_key(db)  # where the coordinator looks for it: next to the store
    identities = {node: load_identity(tmp / "agents" / node)[0] for node in nodes}
    enroll_all(db, identities, by="benchmark")
    refs = sorted(
        {m for f in fleet_dir.rglob("*.yaml") for m in re.findall(r"secretRef: (\S+)", f.read_text())}
    )
    specs = [
        DriverSpec(
            index=d,
            bootstrap=broker.bootstrap,
            prefix=prefix,
            agents_root=str(tmp / "agents"),
            nodes=agents,
            partitions=partitions,
            total=n,
            trust_key=signing.public.text(),
            thin=thin,
            secret_refs=refs,
        )
        for d, (agents, partitions) in enumerate(plan_drivers(nodes, k))
    ]
    out["agents_per_driver"] = [len(s.nodes) for s in specs]
    drivers: Drivers | None = None
    view: StoreView | None = None
    try:
        t_start = time.monotonic()
        coord.start()
        drivers = Drivers(specs)  # they build their agents while the coordinator applies revision 1
        coord.wait_log(r"revision applied revision=1", 600)
        out["coordinator_first_apply_s"] = time.monotonic() - t_start
        drivers.ready(300)
        drivers.ask("go")
        assert coord.proc is not None
        pid = coord.proc.pid
        view = StoreView(db_path)
        conv = until(view.converged, float(os.environ.get("HOLLOW_CONVERGE", "300")), every=0.25)
        out["initial_convergence_s"] = None if conv is None else time.monotonic() - t_start
        if conv is None:
            out["laggards"] = view.laggards(drivers)
            rss, peak, _cpu = _rss_cpu(pid)
            stored = view.statuses()
            out.update(
                coordinator_rss_mb=rss,
                coordinator_peak_rss_mb=peak,
                converged_in_store=sum(
                    1 for n, g in view.desired().items() if stored.get(n, (None, None))[0] == g
                ),
            )
            return out
        # steady state: heartbeats spread over the period
        drivers.ask("spread")
        time.sleep(HEARTBEAT)  # one period to spread
        _r0, _h0, cpu0 = _rss_cpu(pid)
        d0 = [s["cpu_s"] for s in drivers.ask("stats")]
        t0 = time.monotonic()
        wall0 = time.time()
        window = max(15.0, 3 * HEARTBEAT)
        every = 0.05 if n <= THIN_ABOVE else 0.1
        last = max((at for _g, at in view.statuses().values() if at), default="")
        seen: list[tuple[str, str, float]] = []  # (node, reported_at, read time)
        while time.monotonic() - t0 < window:
            time.sleep(every)
            read = time.monotonic()
            rows = view.reported_since(last)
            seen.extend((node, at, read) for node, at in rows)
            last = max([last, *(at for _node, at in rows)])
        steady = time.monotonic() - t0
        r1, h1, cpu1 = _rss_cpu(pid)
        d1 = [s["cpu_s"] for s in drivers.ask("stats")]
        sent: dict[str, list[tuple[float, float]]] = {}
        for answer in drivers.ask("sent", wall0 - HEARTBEAT):
            sent.update(answer)
        lags: list[float] = []
        for node, at, read in seen:
            stamp = _stamp(at).timestamp()
            before = [m for (w, m) in sent.get(node, ()) if w <= stamp + 0.001]
            if before:
                lags.append(read - before[-1])
        out.update(
            steady_seconds=steady,
            load_steady=os.getloadavg(),
            coordinator_rss_mb=r1,
            coordinator_peak_rss_mb=h1,
            coordinator_cpu_pct=100 * (cpu1 - cpu0) / steady,
            drivers_cpu_pct=[100 * (b - a) / steady for a, b in zip(d0, d1, strict=True)],
            messages_per_s=2 * n / HEARTBEAT,
            ingest_reports=len(lags),
            ingest_rows_seen=len(seen),
            reports_sent_in_window=sum(1 for v in sent.values() for w, _m in v if w >= wall0),
            ingest_lag_p50_s=statistics.median(lags) if lags else None,
            ingest_lag_p95_s=pct(lags, 0.95) if lags else None,
            ingest_lag_max_s=max(lags) if lags else None,
        )
        # one camera changed: manifest written → its agent holds the new generation
        sites = sorted(fleet_dir.glob("sites/*/cameras.yaml"))
        reach: list[float] = []
        changed_nodes: list[int] = []
        marks = [pos for _c, pos in drivers.ask("changes", 0)]
        for e in range(edits):
            site = sites[(e * 7) % len(sites)]
            text = site.read_text()
            m = re.search(r"url: (rtsp://\S+?/main)(-v\d+)?\n", text)
            assert m is not None
            new = text[: m.start(1)] + f"{m.group(1)}-v{e}" + text[m.end(2) if m.group(2) else m.end(1) :]
            t0 = time.monotonic()
            site.write_text(new)
            got: list[tuple[float, str, int | None]] = []

            def moved(marks: list[int] = marks, got: list[tuple[float, str, int | None]] = got) -> bool:
                for d, conn in enumerate(drivers.conns):
                    conn.send(("changes", marks[d]))
                for d, conn in enumerate(drivers.conns):
                    changes, marks[d] = conn.recv()
                    got.extend(changes)
                return bool(got)

            if until(moved, 30, every=0.01) is not None:
                reach.append(min(t for t, _node, _gen in got) - t0)
            until(view.converged, 60, every=0.25)
            moved()
            changed_nodes.append(len({node for _t, node, _gen in got}))
        out.update(
            one_change_edits=len(reach),
            one_change_p50_s=statistics.median(reach) if reach else None,
            one_change_p95_s=pct(reach, 0.95) if reach else None,
            one_change_nodes_changed=sorted(set(changed_nodes)),
        )
        # the coordinator's own time per apply of those edits (revision 1 is the first apply)
        applies = [
            float(ms) / 1000
            for rev_id, ms in re.findall(
                r"revision applied revision=(\d+) nodes_changed=\d+ ms=(\d+)", coord.text()
            )
            if int(rev_id) > 1
        ]
        out["one_change_apply_p50_s"] = statistics.median(applies) if applies else None
        # configs published again before the broker loss (cold start and edits: none needed)
        out["republished_before_loss"] = len(re.findall(r"config re-published", coord.text()))
        # broker loss: an empty broker on the same port, every agent re-announcing at once
        broker.restart_empty()
        t0 = time.monotonic()
        back = datetime.now(UTC)
        arrivals = drivers.ask("lost")
        per_node: dict[str, int] = {}

        def reconverged() -> bool:
            per_node.clear()
            caught = True
            for d, conn in enumerate(drivers.conns):
                conn.send(("arrivals", arrivals[d]))
            for conn in drivers.conns:
                counts, all_caught = conn.recv()
                per_node.update(counts)
                caught = caught and all_caught
            return len(per_node) == n and caught and view.converged(since=back)

        took = until(reconverged, 180, every=0.25)
        out.update(
            broker_loss_converge_s=took if took is None else time.monotonic() - t0,
            broker_loss_configs_published=sum(per_node.values()),
            broker_loss_max_per_node=max(per_node.values()) if per_node else 0,
            broker_loss_nodes_reached=len(per_node),
        )
        if took is None:
            out["laggards"] = view.laggards(drivers)
        _r2, h2, _ = _rss_cpu(pid)
        out["coordinator_peak_rss_mb"] = h2
        out["coordinator_rss_per_node_kb"] = 1024 * h2 / n
    finally:
        if view is not None:
            view.close()
        if drivers is not None:
            stats = drivers.close()
            out["mux_producer_renewals"] = [s["renewals"] if s else None for s in stats]
        coord.stop(30)
        broker.close()
        if os.environ.get("BENCH_HOLLOW_KEEP"):
            out["kept"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def report(results: Sequence[Mapping[str, Any]]) -> list[str]:
    def f(v: Any, unit: str = " s", digits: int = 2) -> str:
        return "—" if v is None else f"{v:.{digits}f}{unit}"

    lines = [
        "Hollow agents against one coordinator subprocess and Tansu (agent kind, driver processes and the load "
        f"average per row); heartbeat {HEARTBEAT:.0f} s, 2 instances per node, {PARTITIONS} partitions:",
        "",
        "| N | agent, drivers | all converged from start | reports/s | ingest lag p50 / p95 / max "
        "| one change → node p50 / p95 (coordinator apply p50) | broker loss → all re-converged "
        "| configs re-published (max per node) | coord RSS (peak; per node) | coord CPU | drivers CPU | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for h in results:
        load = h.get("load_steady") or (0.0,)
        lines.append(
            f"| {h['n']:,} | {h.get('agent')}, {h.get('drivers')} | {f(h.get('initial_convergence_s'))} | "
            f"{h.get('messages_per_s', 0):.0f} | "
            f"{f(h.get('ingest_lag_p50_s'))} / {f(h.get('ingest_lag_p95_s'))} / {f(h.get('ingest_lag_max_s'))} | "
            f"{f(h.get('one_change_p50_s'))} / {f(h.get('one_change_p95_s'))} "
            f"(apply {f(h.get('one_change_apply_p50_s'))}) | "
            f"{f(h.get('broker_loss_converge_s'))} | {h.get('broker_loss_configs_published', '—')} "
            f"({h.get('broker_loss_max_per_node', '—')}) | {h.get('coordinator_rss_mb', 0):.0f} MB "
            f"({h.get('coordinator_peak_rss_mb', 0):.0f} MB; {h.get('coordinator_rss_per_node_kb', 0):.0f} kB) | "
            f"{f(h.get('coordinator_cpu_pct'), ' %', 0)} | "
            f"{' + '.join(f'{c:.0f} %' for c in h.get('drivers_cpu_pct', ()))} | {load[0]:.1f} |"
        )
    for h in results:
        if h.get("laggards"):
            lines.append(f"\nN = {h['n']}: did not converge; first laggards: " + "; ".join(h["laggards"]))
    lines.append("")
    return lines


if __name__ == "__main__":
    import json
    import sys

    results = [run(int(v)) for v in (sys.argv[1:] or os.environ.get("BENCH_HOLLOW", "1000").split(","))]
    print(json.dumps(results, indent=1, default=str))
    print("\n".join(report(results)))
