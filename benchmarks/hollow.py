"""Hollow agents: N agents in one process against one coordinator subprocess and a real broker (issue 9).

Each hollow agent is the real :class:`dsfleet.agent.loop.Agent` (plan, files written to its own state dir, reports)
with the in-memory container runtime of :mod:`dsfleet.agent.testing` (a container runs as soon as it is started).
Their bus is multiplexed (:class:`Mux`, a real Kafka client: not an in-memory fake): one consumer reads every
AgentConfig partition and hands each agent the records of its own key, one producer sends every agent's AgentInfo
and AgentResponse. The Mux keeps the semantics of :class:`dsfleet.agent.bus.KafkaBus` that matter here: an agent is
caught up when its partition reached its end; partition counts are read again every few seconds; after the broker
went down and answers again the producer is renewed, every partition is read again from the beginning and each agent
gets only the last record of its key at the partition's end (``reset``).

Keys are set up as an operator does (:mod:`tests.support.keys`): the coordinator's signing key made before it
starts, every hollow agent trusting it (it checks the signature of every AgentConfig it takes) and signing its
reports with a key of its own enrolled for its node (the coordinator checks every report): the figures include
signing and verifying.

Measured, for each N (``BENCH_HOLLOW=100,250,1000``):

* **initial convergence**: coordinator started → every node's observed generation in the store equals its
  desired generation;
* **ingest lag** in steady state (heartbeats spread over the 5 s period, as agents started at different times
  are): the time from an agent sending an AgentResponse to the coordinator's store showing it (read back from the
  store; the reading interval is the resolution), p50/p95/max over every report of the window;
* **one-camera change → its node**: manifest written → the agent of that node holds the new generation,
  p50/p95 over several edits; and that exactly one node's config changed each time;
* **broker loss**: the broker killed and replaced by an empty one, then every agent re-announcing at once
  (worst case): time until every agent holds its config again from the new broker, every node's report is in the
  store again with observed = desired; AgentConfig records published in that window (one per node is the floor;
  a storm would be many per node);
* coordinator RSS (current and peak) and CPU (% of one core) over the steady window.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from dsfleet.agent.identity import load_identity
from dsfleet.agent.loop import Agent, HostFacts, LoopSettings
from dsfleet.agent.ports import BusBatch, BusRecord
from dsfleet.agent.testing import Credential, MemoryRuntime, MemorySecretStore
from dsfleet.agent.trust import Trust
from dsfleet.plumbing.kafka import Consumer, Producer, client_config
from dsfleet.plumbing.signing import Keyring, SigningKey, sign_record
from dsfleet.reconciler.store import Store
from dsfleet.schemas.errors import TemporaryError
from dsfleet.schemas.signatures import text_headers
from dsfleet.schemas.wire import (
    AgentConfig,
    AgentInfo,
    AgentLogs,
    AgentResponse,
    Topic,
    encode,
    partition_for,
    signed_fields_of,
    topic_name,
)
from tests.support.brokers import Tansu
from tests.support.keys import coordinator_key, enroll_all
from tests.support.livefleet import CoordinatorProc

RECHECK_SECONDS = 3.0
HEARTBEAT = 5.0
PARTITIONS = 12


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
        """(wall clock, perf counter) of every AgentResponse sent, oldest first."""
        mux.add(self)

    def follow(self, node_key: str, command_keys: Sequence[str]) -> None:
        pass  # every hollow agent has its node name; the Mux reads every partition

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
        self.sent.append((time.time(), time.perf_counter()))
        del self.sent[:-50]

    def publish_logs(self, key: str, logs: AgentLogs) -> None:
        self._send(Topic.AGENT_RESPONSE, key, logs)

    def close(self) -> None:
        pass


class Mux:
    """One consumer (every AgentConfig partition) and one producer shared by N hollow agents."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.prefix = prefix
        self.producer = Producer(client_config(bootstrap, {"linger.ms": "20"}), client_id="hollow")
        self.consumer = Consumer(client_config(bootstrap, {"fetch.wait.max.ms": "10"}), client_id="hollow")
        self.topic = topic_name(Topic.AGENT_CONFIG, prefix)
        self.buses: dict[bytes, HollowBus] = {}
        self.count: int | None = None
        self.counts: dict[str, int] = {}
        self._last_try: dict[str, float] = {}
        self._next_check = time.monotonic() + RECHECK_SECONDS
        self.arrivals: list[tuple[float, str, int | None]] = []
        """(perf counter, key, generation or None for a tombstone) of every AgentConfig record read."""
        self.renewals = 0

    def add(self, bus: HollowBus) -> None:
        self.buses[bus.key] = bus

    def assign(self) -> bool:
        try:
            count = self.producer.partitions(self.topic, timeout=1.0)
        except TemporaryError:
            return False
        if not count:
            return False
        self.count = count
        self.consumer.assign(self.topic, list(range(count)))
        for bus in self.buses.values():
            bus.partition = partition_for(bus.node, count)
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

    def pump(self, timeout: float = 0.0) -> None:
        self.producer.poll(0)
        self._recheck()
        if self.count is None and not self.assign():
            return
        records, eof = self.consumer.poll_batch(5000, timeout)
        now = time.perf_counter()
        for r in records:
            bus = self.buses.get(r.key or b"")
            if bus is None:
                continue
            bus.queue.append(BusRecord(r.key, r.value, text_headers(r.headers)))
            gen = None
            if r.value is not None:
                with contextlib.suppress(ValueError):
                    gen = AgentConfig.model_validate_json(r.value).generation
            self.arrivals.append((now, bus.node, gen))
        for _topic, p in eof:
            for bus in self.buses.values():
                if bus.partition == p:
                    bus.eof = True

    def send(self, topic: Topic, key: str, value: bytes, headers: Mapping[str, str]) -> None:
        name = topic_name(topic, self.prefix)
        count = self.counts.get(name)
        if count is None:
            now = time.monotonic()
            if now - self._last_try.get(name, -1e9) < RECHECK_SECONDS:
                raise TemporaryError(f"{name}: partition count unknown")
            self._last_try[name] = now
            count = self.producer.partitions(name, timeout=1.0) or 0
            if not count:
                raise TemporaryError(f"{name}: partition count unknown")
            self.counts[name] = count
        self.producer.send(name, key, value, headers=headers, partition=partition_for(key, count))


def _rss_cpu(pid: int) -> tuple[float, float, float]:
    """(RSS MB, peak RSS MB, CPU seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()

    def kb(field: str) -> float:
        m = re.search(rf"{field}:\s+(\d+)", status)
        return int(m.group(1)) / 1024 if m else 0.0

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return kb("VmRSS"), kb("VmHWM"), cpu


class Fleet:
    """The hollow fleet's driver: ticks every agent, reads the coordinator's store."""

    def __init__(self, agents: Sequence[Agent], buses: Sequence[HollowBus], mux: Mux, db: str) -> None:
        self.agents = agents
        self.buses = buses
        self.mux = mux
        self.store = Store.open(db, readonly=True)
        self.ticks = 0

    def tick(self) -> None:
        self.mux.pump(0.002)
        for a in self.agents:
            a.step()
        self.ticks += 1

    def until(self, pred: Callable[[], bool], timeout: float, every: float = 0.1) -> float | None:
        t0 = time.perf_counter()
        next_check = 0.0
        while time.perf_counter() - t0 < timeout:
            self.tick()
            if time.perf_counter() >= next_check:
                if pred():
                    return time.perf_counter() - t0
                next_check = time.perf_counter() + every
        return None

    def desired(self) -> dict[str, int]:
        return {n: c.generation for n, c in self.store.latest_node_configs().items()}

    def statuses(self) -> dict[str, tuple[int | None, datetime | None]]:
        return {r.node: (r.observed_generation, r.reported_at) for r in self.store.node_statuses()}

    def converged(self, since: datetime | None = None) -> bool:
        want = self.desired()
        seen = self.statuses()
        return bool(want) and all(
            seen.get(n, (None, None))[0] == g
            and (since is None or (seen[n][1] is not None and seen[n][1] > since))  # type: ignore[operator]
            for n, g in want.items()
        )

    def laggards(self) -> list[str]:
        want = self.desired()
        seen = self.statuses()
        agents = {a.node: a for a in self.agents}
        out = []
        for n, g in sorted(want.items()):
            if seen.get(n, (None, None))[0] != g:
                a = agents.get(n)
                out.append(
                    f"{n}: desired {g}, store {seen.get(n, (None, None))[0]}, agent holds "
                    f"{getattr(a.desired, 'generation', None) if a else '-'} caught_up={a.caught_up if a else '-'}"
                )
        return out

    def close(self) -> None:
        self.store.close()


def run(n: int, edits: int = 10) -> dict[str, Any]:
    from benchmarks.fleetgen import generate

    logging.getLogger("dsfleet.agent").setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix=f"dsfleet-bench-hollow-{n}-"))
    fleet_dir = generate(tmp / "fleet", nodes=n, cameras=4 * n, instances_per_node=2)
    nodes = sorted(re.findall(r"^  name: (\S+)$", (fleet_dir / "nodes.yaml").read_text(), re.M))
    broker = Tansu().start()
    prefix = f"h{n}."
    db = f"sqlite:///{tmp / 'state.db'}"
    coord = CoordinatorProc(
        fleet_dir, db, broker.bootstrap, prefix, tmp / "coordinator.log", extra=["--resync-grace", "10"]
    )
    coord.args[coord.args.index("--partitions") + 1] = str(PARTITIONS)
    signing = coordinator_key(db)  # where the coordinator looks for it: next to the store
    trust = Trust(Keyring.of([signing.public]))
    identities = {node: load_identity(tmp / "agents" / node)[0] for node in nodes}
    enroll_all(db, identities, by="benchmark")
    out: dict[str, Any] = {"n": n, "instances": 2 * n, "heartbeat_s": HEARTBEAT}
    fleet: Fleet | None = None
    try:
        t_start = time.perf_counter()
        coord.start()
        coord.wait_log(r"revision applied revision=1", 300)
        out["coordinator_first_apply_s"] = time.perf_counter() - t_start
        pid = coord.proc.pid  # type: ignore[union-attr]
        mux = Mux(broker.bootstrap, prefix)
        refs = {m for f in fleet_dir.rglob("*.yaml") for m in re.findall(r"secretRef: (\S+)", f.read_text())}
        secrets = MemorySecretStore({ref: Credential("viewer", "x") for ref in refs})
        buses = [HollowBus(mux, node, identities[node]) for node in nodes]
        agents = [
            Agent(
                LoopSettings(
                    tmp / "agents" / node,
                    node=node,
                    heartbeat_seconds=HEARTBEAT,
                    resync_seconds=60,
                    poll_seconds=0.0,
                    trust=trust,
                ),
                MemoryRuntime(),
                bus,
                secrets,
                HostFacts(hostname=node, machine_id=None),
                identity=identities[node],
            )
            for node, bus in zip(nodes, buses, strict=True)
        ]
        fleet = Fleet(agents, buses, mux, db)
        conv = fleet.until(fleet.converged, float(os.environ.get("HOLLOW_CONVERGE", "300")), every=0.25)
        out["initial_convergence_s"] = None if conv is None else time.perf_counter() - t_start
        if conv is None:
            out["laggards"] = fleet.laggards()[:10]
            return out
        # steady state: heartbeats spread over the period
        start = time.monotonic()
        for i, a in enumerate(agents):
            a._next_heartbeat = start + HEARTBEAT * i / n
        fleet.until(lambda: False, HEARTBEAT)  # one period to spread
        _r0, _h0, cpu0 = _rss_cpu(pid)
        t0 = time.perf_counter()
        ticks0 = fleet.ticks
        last: dict[str, datetime | None] = {}
        lags: list[float] = []
        window = max(15.0, 3 * HEARTBEAT)
        by_node = {b.node: b for b in buses}

        def sample() -> bool:
            read = time.perf_counter()
            for node, (_gen, at) in fleet.statuses().items():
                if at is None or last.get(node) == at:
                    continue
                if node in last:  # a report that arrived in the window
                    stamp = at.timestamp()
                    sent = [p for (w, p) in by_node[node].sent if w <= stamp + 0.001]
                    if sent:
                        lags.append(read - sent[-1])
                last[node] = at
            return False

        fleet.until(sample, window, every=0.05)
        r1, h1, cpu1 = _rss_cpu(pid)
        steady = time.perf_counter() - t0
        out.update(
            steady_seconds=steady,
            driver_ticks_per_s=(fleet.ticks - ticks0) / steady,
            coordinator_rss_mb=r1,
            coordinator_peak_rss_mb=h1,
            coordinator_cpu_pct=100 * (cpu1 - cpu0) / steady,
            messages_per_s=2 * n / HEARTBEAT,
            ingest_reports=len(lags),
            ingest_lag_p50_s=statistics.median(lags) if lags else None,
            ingest_lag_p95_s=pct(lags, 0.95) if lags else None,
            ingest_lag_max_s=max(lags) if lags else None,
        )
        # one camera changed: manifest written → its agent holds the new generation
        sites = sorted(fleet_dir.glob("sites/*/cameras.yaml"))
        reach: list[float] = []
        changed_nodes: list[int] = []
        for k in range(edits):
            site = sites[(k * 7) % len(sites)]
            before = {a.node: getattr(a.desired, "generation", None) for a in agents}
            text = site.read_text()
            m = re.search(r"url: (rtsp://\S+?/main)(-v\d+)?\n", text)
            assert m is not None
            new = text[: m.start(1)] + f"{m.group(1)}-v{k}" + text[m.end(2) if m.group(2) else m.end(1) :]
            t0 = time.perf_counter()
            site.write_text(new)

            def moved(before: dict[str, int | None] = before) -> bool:
                return any(getattr(a.desired, "generation", None) != before[a.node] for a in agents)

            took = fleet.until(moved, 30, every=0.0)
            if took is not None:
                reach.append(took)
            fleet.until(fleet.converged, 30, every=0.25)
            changed_nodes.append(
                sum(1 for a in agents if getattr(a.desired, "generation", None) != before[a.node])
            )
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
        # broker loss: an empty broker on the same port, every agent re-announcing at once
        arrivals_before = len(mux.arrivals)
        broker.restart_empty()
        t0 = time.perf_counter()
        back = datetime.now().astimezone()
        for a in agents:
            a._next_heartbeat = 0.0  # all at once: the worst case

        def reconverged() -> bool:
            got = {node for (_t, node, gen) in mux.arrivals[arrivals_before:] if gen is not None}
            return len(got) == n and all(a.caught_up for a in agents) and fleet.converged(since=back)

        took = fleet.until(reconverged, 120, every=0.25)
        after = mux.arrivals[arrivals_before:]
        per_key: dict[str, int] = {}
        for _t, node, gen in after:
            if gen is not None:
                per_key[node] = per_key.get(node, 0) + 1
        out.update(
            broker_loss_converge_s=took if took is None else time.perf_counter() - t0,
            broker_loss_configs_published=sum(per_key.values()),
            broker_loss_max_per_node=max(per_key.values()) if per_key else 0,
            broker_loss_nodes_reached=len(per_key),
            mux_producer_renewals=mux.renewals,
        )
        if took is None:
            out["laggards"] = fleet.laggards()[:10]
        _r2, h2, _ = _rss_cpu(pid)
        out["coordinator_peak_rss_mb"] = h2
    finally:
        if fleet is not None:
            fleet.close()
        coord.stop(30)
        broker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def report(results: Sequence[Mapping[str, Any]]) -> list[str]:
    def f(v: Any, unit: str = " s", digits: int = 2) -> str:
        return "—" if v is None else f"{v:.{digits}f}{unit}"

    lines = [
        "Hollow agents (the real agent loop with an in-memory runtime; one consumer + one producer for all) against "
        f"one coordinator subprocess and Tansu; heartbeat {HEARTBEAT:.0f} s, 2 instances per node, "
        f"{PARTITIONS} partitions:",
        "",
        "| N | all converged from start | reports/s | ingest lag p50 / p95 / max | one change → node p50 / p95 (coordinator apply p50) "
        "| broker loss → all re-converged | configs re-published (max per node) | coord RSS (peak) | coord CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for h in results:
        lines.append(
            f"| {h['n']:,} | {f(h.get('initial_convergence_s'))} | {h.get('messages_per_s', 0):.0f} | "
            f"{f(h.get('ingest_lag_p50_s'))} / {f(h.get('ingest_lag_p95_s'))} / {f(h.get('ingest_lag_max_s'))} | "
            f"{f(h.get('one_change_p50_s'))} / {f(h.get('one_change_p95_s'))} "
            f"(apply {f(h.get('one_change_apply_p50_s'))}) | "
            f"{f(h.get('broker_loss_converge_s'))} | {h.get('broker_loss_configs_published', '—')} "
            f"({h.get('broker_loss_max_per_node', '—')}) | {h.get('coordinator_rss_mb', 0):.0f} MB "
            f"({h.get('coordinator_peak_rss_mb', 0):.0f} MB) | {f(h.get('coordinator_cpu_pct'), ' %', 0)} |"
        )
    for h in results:
        if h.get("laggards"):
            lines.append(f"\nN = {h['n']}: did not converge; first laggards: " + "; ".join(h["laggards"]))
    lines.append("")
    return lines
