"""Live-loop benchmarks (part of ``make bench``; ``python benchmarks/live.py`` alone), side by side in one run:

* **end to end**: manifest file written → container running with the new config-hash label (an env change of one
  instance: a recreate), p50/p95 over ``BENCH_EDITS`` (≥ 20) edits, beside the floor: ``docker create`` +
  ``start`` of the same image through the SDK; and file written → AgentConfig record on the broker (issue 7);
* **bytes on the wire** for a one-camera change, read from the broker, vs the older system's whole-fleet broadcast;
* **hollow agents** (``benchmarks/hollow.py``): N agents in driver processes (``BENCH_HOLLOW_DRIVERS``) — up to
  1,000 the real :class:`dsfleet.agent.loop.Agent` with an in-memory container runtime, above that a thin agent that
  verifies configs and reports; each driver's bus multiplexed over one consumer and one producer — against one
  coordinator subprocess, for N given by ``BENCH_HOLLOW`` (default ``100,250,1000``; empty to skip): status ingest
  lag, a one-camera change reaching its node, all N re-announcing after a broker loss (no publish storm),
  coordinator RSS and CPU;
* **AgentResponse ingest** into SQLite: 1,000 nodes' reports of 20 instances each, as fast as one producer sends.

Results: ``benchmarks/out/live.json`` and a Markdown table on stdout. Targets are reported, never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DSFLEET_AGENT_IMAGE_PULL", "never")  # local images only: no registry is ever reached
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from benchmarks import hollow  # noqa: E402
from dsfleet.plumbing.kafka import Producer, client_config  # noqa: E402
from dsfleet.plumbing.signing import generate_key  # noqa: E402
from dsfleet.reconciler.store import Store  # noqa: E402
from dsfleet.schemas.labels import LABEL_SPEC_HASH  # noqa: E402
from dsfleet.schemas.wire import AgentConfig, AgentResponse, Topic, encode, partition_for, topic_name  # noqa: E402
from tests.support.brokers import Tansu  # noqa: E402
from tests.support.dockerengine import build_stub_image, ensure_engine  # noqa: E402
from tests.support.fleetstack import Stack  # noqa: E402
from tests.support.keys import enroll_all, sign_message  # noqa: E402
from tests.support.livefleet import CoordinatorProc, TopicReader  # noqa: E402

FAST = {"fetch.wait.max.ms": "10"}


def pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


# --- end to end ---------------------------------------------------------------------------------------------------


def floor_create_start(client: docker.DockerClient, image: str, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        name = f"dsfleet-bench-floor-{uuid.uuid4().hex[:6]}-{i}"
        t0 = time.perf_counter()
        c = client.containers.create(image, ["deepstream-app"], name=name, network_mode="none")
        c.start()
        times.append(time.perf_counter() - t0)
        c.remove(force=True)
    return times


def end_to_end(edits: int) -> dict[str, Any]:
    proc, problem = ensure_engine()
    if problem:
        return {"skipped": problem}
    image = build_stub_image()
    client = docker.from_env(timeout=60)
    broker = Tansu().start()
    tmp = Path(tempfile.mkdtemp(prefix="dsfleet-bench-e2e-"))
    stack = Stack(tmp, broker.bootstrap, f"b{uuid.uuid4().hex[:5]}.", client, image=image)
    out: dict[str, Any] = {}
    try:
        stack.start()
        stack.wait_converged(90)
        _gate, _lobby, parking = stack.instance_names()
        node = stack.nodes[1]
        reader = TopicReader(broker.bootstrap, stack.prefix, Topic.AGENT_CONFIG)
        seen: dict[int, float] = {}
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                for r in reader.poll(0.01):
                    if (r.key or b"").decode() == node and r.value is not None:
                        gen = AgentConfig.model_validate_json(r.value).generation
                        seen.setdefault(gen, time.perf_counter())

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        path = stack.manifests / "instances" / "traffic.yaml"
        base = path.read_text()
        e2e, to_broker = [], []
        api = client.api
        for i in range(edits):
            gen_before = stack.desired()[node]["generation"]
            text = base.replace(
                "  profile: traffic\n", f'  profile: traffic\n  env:\n    BENCH_EDIT: "{i}"\n'
            )
            old_hash = (api.inspect_container(f"dsfleet-{parking}")["Config"]["Labels"] or {}).get(
                LABEL_SPEC_HASH
            )
            tmp_file = path.with_name(".traffic.yaml.tmp")
            tmp_file.write_text(text)
            t0 = time.perf_counter()
            tmp_file.replace(path)
            deadline = t0 + 30
            while time.perf_counter() < deadline:
                with contextlib.suppress(docker.errors.NotFound):
                    info = api.inspect_container(f"dsfleet-{parking}")
                    label = (info["Config"]["Labels"] or {}).get(LABEL_SPEC_HASH)
                    if info["State"]["Running"] and label != old_hash:
                        e2e.append(time.perf_counter() - t0)
                        break
                time.sleep(0.005)
            want = gen_before + 1
            while want not in seen and time.perf_counter() < deadline:
                time.sleep(0.005)
            if want in seen:
                to_broker.append(seen[want] - t0)
            time.sleep(0.3)  # let the agent report before the next edit
        floor = floor_create_start(client, image, edits)
        stop.set()
        thread.join(2)
        # bytes on the wire for a one-camera change, read from the broker
        before = len(reader.records)
        gate = stack.manifests / "cameras" / "gate.yaml"
        gate.write_text(gate.read_text().replace("gate-2/main", "gate-2/sub"))
        reader.wait(lambda rs: len(rs) > before, 20, "the camera change on the broker")
        change = [r for r in reader.records[before:] if r.value is not None]
        one = sum(len(r.value or b"") + len(r.key or b"") for r in change)
        with Store.open(stack.db, readonly=True) as s:
            configs = s.latest_node_configs()
        whole = len(json.dumps({n: c.payload for n, c in configs.items()}, separators=(",", ":")).encode())
        reader.close()
        out = {
            "edits": edits,
            "e2e_s": e2e,
            "floor_s": floor,
            "to_broker_s": to_broker,
            "e2e_p50": statistics.median(e2e),
            "e2e_p95": pct(e2e, 0.95),
            "floor_p50": statistics.median(floor),
            "floor_p95": pct(floor, 0.95),
            "broker_p50": statistics.median(to_broker),
            "broker_p95": pct(to_broker, 0.95),
            "bytes_one_change": one,
            "bytes_records": len(change),
            "bytes_whole_fleet": whole,
            "nodes": len(configs),
        }
    finally:
        stack.stop()
        stack.cleanup()
        broker.close()
        client.close()
        from tests.support.dockerengine import stop_engine

        stop_engine(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def ingest_rate(n: int = 1000, instances: int = 20, seconds: float = 10.0) -> dict[str, Any]:
    """AgentResponse ingest into SQLite: n raw producers' worth of reports (20 instances each) at the rate of a 5 s
    heartbeat, then as fast as possible; lag = time until the coordinator's store shows the last report."""
    from benchmarks.fleetgen import generate

    tmp = Path(tempfile.mkdtemp(prefix="dsfleet-bench-ingest-"))
    fleet = generate(tmp / "fleet", nodes=n, cameras=2 * n, instances_per_node=2)
    names = sorted(re.findall(r"^  name: (\S+)$", (fleet / "nodes.yaml").read_text(), re.M))
    broker = Tansu().start()
    prefix = "ing."
    db = f"sqlite:///{tmp / 'state.db'}"
    # every report signed by its node's enrolled key, as agents sign theirs (the coordinator checks each one)
    keys = {name: generate_key() for name in names}
    enroll_all(db, keys, by="benchmark")
    coord = CoordinatorProc(fleet, db, broker.bootstrap, prefix, tmp / "coordinator.log").start()
    out: dict[str, Any] = {"agents": n, "instances_each": instances}
    try:
        coord.wait_log(r"revision applied revision=1", 240)
        producer = Producer(client_config(broker.bootstrap, {"linger.ms": "20"}), client_id="ingest")
        topic = topic_name(Topic.AGENT_RESPONSE, prefix)
        count = producer.partitions(topic) or 3
        from datetime import UTC, datetime

        def response(i: int, seq: int) -> AgentResponse:
            return AgentResponse.model_validate(
                {
                    "sent_at": datetime.now(UTC).isoformat(),
                    "node": names[i],
                    "observedGeneration": seq,
                    "instances": [
                        {
                            "name": f"{names[i]}-{k}",
                            "state": "running",
                            "generation": seq,
                            "restarts": 0,
                        }
                        for k in range(instances)
                    ],
                }
            )

        total = 0
        t0 = time.perf_counter()
        seq = 0
        while time.perf_counter() - t0 < seconds:
            seq += 1
            for i in range(n):
                message = response(i, seq)
                producer.send(
                    topic,
                    names[i],
                    encode(message),
                    headers=sign_message(keys[names[i]], message, names[i]),
                    partition=partition_for(names[i], count),
                )
                total += 1
                if i % 200 == 0:
                    producer.poll(0)
            producer.flush(30)
        sent_s = time.perf_counter() - t0
        last = names[n - 1]

        def done() -> bool:
            with Store.open(db, readonly=True) as s:
                rows = {r.node: r.observed_generation for r in s.node_statuses()}
            return rows.get(last) == seq and len(rows) >= n

        t1 = time.perf_counter()
        while not done() and time.perf_counter() - t1 < 120:
            time.sleep(0.05)
        drain = time.perf_counter() - t1
        out.update(
            messages=total, send_s=sent_s, drain_after_send_s=drain, rate_msg_s=total / (sent_s + drain)
        )
    finally:
        coord.stop(30)
        broker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def report(r: Mapping[str, Any]) -> str:
    lines = []
    e = r.get("e2e") or {}
    if "e2e_p50" in e:
        ratio = e["e2e_p50"] / e["floor_p50"]
        lines += [
            f"End to end over {e['edits']} edits (one instance's env changed: recreate), same run:",
            "",
            "| measurement | p50 | p95 | target | met |",
            "|---|---|---|---|---|",
            f"| manifest written → container running with the new config-hash label | {e['e2e_p50']:.3f} s | "
            f"{e['e2e_p95']:.3f} s | p50 < 1 s, ≤ 3x floor | {'yes' if e['e2e_p50'] < 1 and ratio <= 3 else 'NO'} |",
            f"| floor: `docker create` + `start` (SDK), same image | {e['floor_p50']:.3f} s | {e['floor_p95']:.3f} s | | |",
            f"| ratio e2e / floor (p50) | {ratio:.2f}x | | ≤ 3x | {'yes' if ratio <= 3 else 'NO'} |",
            f"| manifest written → AgentConfig record on the broker | {e['broker_p50']:.3f} s | {e['broker_p95']:.3f} s "
            f"| p50 < 0.3 s | {'yes' if e['broker_p50'] < 0.3 else 'NO'} |",
            "",
            f"Bytes on the wire (read from the broker) for a one-camera change: {e['bytes_one_change']:,} bytes in "
            f"{e['bytes_records']} AgentConfig record(s); the older system's whole-fleet broadcast of the same "
            f"{e['nodes']}-node fleet: {e['bytes_whole_fleet']:,} bytes per message, delivered to every agent "
            f"({e['bytes_whole_fleet'] * e['nodes']:,} bytes): "
            f"**{e['bytes_whole_fleet'] * e['nodes'] / max(1, e['bytes_one_change']):.1f}x** more.",
            "",
        ]
    if r.get("hollow"):
        lines += hollow.report(r["hollow"])
    ing = r.get("ingest") or {}
    if "rate_msg_s" in ing:
        lines += [
            f"AgentResponse ingest into SQLite: {ing['messages']:,} reports of {ing['agents']} agents x "
            f"{ing['instances_each']} instances sent in {ing['send_s']:.1f} s, all in the store "
            f"{ing['drain_after_send_s']:.2f} s after the last was sent: **{ing['rate_msg_s']:.0f} msg/s** "
            f"(target ≥ 200 msg/s).",
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    edits = int(os.environ.get("BENCH_EDITS", "20"))
    sizes = [int(x) for x in os.environ.get("BENCH_HOLLOW", "100,250,1000").split(",") if x]
    results: dict[str, Any] = {}
    which = set(argv or sys.argv[1:]) or {"e2e", "ingest", *(["hollow"] if sizes else [])}
    if "e2e" in which:
        results["e2e"] = end_to_end(edits)
    if "ingest" in which:
        results["ingest"] = ingest_rate()
    if "hollow" in which:
        results["hollow"] = [hollow.run(n) for n in sizes]
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "live.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(report(results))
    return results


if __name__ == "__main__":
    main()
