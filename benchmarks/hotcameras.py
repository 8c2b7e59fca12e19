"""Hitless camera changes (part of ``make bench``; ``python benchmarks/hotcameras.py`` alone): one camera added to
a running nvmultiurisrcbin instance of 8 cameras, through DeepStream's REST API, beside the restart path, in one run.

An in-process agent on the real engine with the stand-in image (``[source-list] use-nvmultiurisrcbin=1``, host
networking, a free loopback port). Each round pushes a signed config that adds camera ``extra<i>`` (then one that
removes it again) and measures **config pushed → DeepStream lists the camera** (the stand-in's
``get-stream-info``, polled every 10 ms), and whether the container restarted. The restart path is the same
instance with a REST server that refuses every change (``STUB_REST_FAIL=1``): the agent restarts the container
and the new process lists the camera at start; the other streams are down meanwhile.

Results: ``benchmarks/out/hotcameras.json`` and a Markdown table on stdout. Targets are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DSFLEET_AGENT_IMAGE_PULL", "never")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from dsfleet.schemas.nodeconfigs import InstanceConfig, RenderedFile, build_instance  # noqa: E402
from tests.support.dockerengine import (  # noqa: E402
    APP_CONFIG,
    agent_config_bytes,
    build_stub_image,
    cleanup,
    ensure_engine,
    stop_engine,
    stub_instance,
)
from tests.support.inprocessagents import Names, start_agent  # noqa: E402

EIGHT = [f"cam{i}" for i in range(8)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _instance(name: str, names: Names, port: int, cameras: list[str], env: dict[str, str]) -> InstanceConfig:
    app = (
        "[application]\nenable-perf-measurement=1\nperf-measurement-interval-sec=1\n\n"
        f"[source-list]\nnum-source-bins={len(cameras)}\n"
        f"list={';'.join(f'rtsp://127.0.0.1:8554/{c}' for c in cameras)}\n"
        f"sensor-id-list={';'.join(cameras)}\nuse-nvmultiurisrcbin=1\nmax-batch-size=12\nhttp-port={port}\n\n"
        "[source-attr-all]\nenable=1\n\n[primary-gie]\nenable=1\nconfig-file=pgie.txt\n"
    )
    base = stub_instance(name, names.run_id, network="host", env=env)
    files = (
        RenderedFile(path=APP_CONFIG, content=app),
        RenderedFile(path="pgie.txt", content="[property]\ngpu-id=0\nbatch-size=12\n"),
    )
    return build_instance(name, "deepstream-app", False, tuple(cameras), base.container, files)


def _listed(port: int) -> set[str]:
    """The camera ids the stand-in's REST server lists (empty while it is down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/stream/get-stream-info", timeout=1) as r:
            body = json.loads(r.read().decode())
    except (OSError, ValueError):
        return set()
    streams = body.get("stream-info", {}).get("stream-info", []) if isinstance(body, dict) else []
    return {str(s.get("camera_id")) for s in streams if isinstance(s, dict)}


def _wait(probe: Any, timeout: float, what: str) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if probe():
            return time.perf_counter() - t0
        time.sleep(0.01)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def _started(client: docker.DockerClient, name: str) -> str:
    return str(client.api.inspect_container(f"dsfleet-{name}")["State"]["StartedAt"])


def _path(
    client: docker.DockerClient, names: Names, tmp: Path, env: dict[str, str], rounds: int
) -> dict[str, Any]:
    name, port = names.instance("hot" if not env else "rst"), _free_port()
    state = tmp / name
    agent = start_agent(state, names.node)
    generation = 1
    try:
        agent.bus.push_config(
            names.node, agent_config_bytes(names.node, generation, [_instance(name, names, port, EIGHT, env)])
        )
        _wait(lambda: _listed(port) >= set(EIGHT), 60, "8 streams listed")
        adds: list[float] = []
        restarts = 0
        for i in range(rounds):
            cam = f"extra{i}"
            before = _started(client, name)
            generation += 1
            t0 = time.perf_counter()
            agent.bus.push_config(
                names.node,
                agent_config_bytes(
                    names.node, generation, [_instance(name, names, port, [*EIGHT, cam], env)]
                ),
            )
            _wait(lambda cam=cam: cam in _listed(port), 60, f"{cam} listed")
            adds.append(time.perf_counter() - t0)
            restarts += _started(client, name) != before
            generation += 1
            agent.bus.push_config(
                names.node,
                agent_config_bytes(names.node, generation, [_instance(name, names, port, EIGHT, env)]),
            )
            _wait(
                lambda cam=cam: cam not in _listed(port) and _listed(port) >= set(EIGHT), 60, f"{cam} removed"
            )
        return {
            "p50": statistics.median(adds),
            "p95": sorted(adds)[max(0, round(0.95 * len(adds)) - 1)],
            "rounds": rounds,
            "restarts": restarts,
        }
    finally:
        agent.halt()


def main() -> dict[str, Any]:
    rounds = int(os.environ.get("BENCH_HOT_ROUNDS", "10"))
    proc, problem = ensure_engine()
    if problem:
        print(f"hot cameras: skipped ({problem})")
        return {"skipped": problem}
    build_stub_image()
    client = docker.from_env(timeout=60)
    names = Names(run_id=uuid.uuid4().hex[:12], prefix=f"bh{uuid.uuid4().hex[:5]}")
    tmp = Path(tempfile.mkdtemp(prefix="dsfleet-bench-hot-"))
    try:
        results = {
            "hot": _path(client, names, tmp, {}, rounds),
            "restart": _path(client, names, tmp, {"STUB_REST_FAIL": "1"}, rounds),
        }
    finally:
        cleanup(client, names.run_id, f"dsfleet-{names.prefix}")
        client.close()
        stop_engine(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "hotcameras.json").write_text(json.dumps(results, indent=2) + "\n")
    hot, restart = results["hot"], results["restart"]
    print(
        f"One camera added to a running nvmultiurisrcbin instance of 8 cameras ({rounds} rounds, same run):\n"
    )
    print("| path | config pushed → DeepStream lists the camera p50 / p95 | container restarts |")
    print("|---|---|---|")
    print(f"| hot (REST `stream/add`) | {hot['p50']:.3f} s / {hot['p95']:.3f} s | {hot['restarts']} |")
    print(
        f"| restart (REST refused) | {restart['p50']:.3f} s / {restart['p95']:.3f} s | {restart['restarts']} |"
    )
    print(f"\nratio restart / hot (p50): {restart['p50'] / hot['p50']:.1f}x; target: hot p50 < 1 s")
    return results


if __name__ == "__main__":
    main()
