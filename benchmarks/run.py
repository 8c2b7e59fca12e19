"""dsfleet benchmarks (``make bench``): one run measures everything side by side on this machine.

* validate a fleet of 10,000 cameras / 1,000 instances / 250 nodes: as a CLI run and in-process (cold, warm cache);
* cold ``dsfleet diff`` (CLI) on that fleet against a store that holds it, after one camera changed;
* incremental apply of one change in a warm process (parse and compile cached by content hash, the path the
  coordinator takes) and as a CLI run;
* the bytes one camera change enqueues vs the bytes the older system's broadcast of the whole fleet config sends;
* scaling (``benchmarks/scaling.py``): validate and diff at 1,000, 3,000, 10,000 cameras for both fleet shapes.

``BENCH_ONLY=scaling`` runs the scaling part alone (with the reference workload).

Results: a table on stdout and ``benchmarks/out/results.json``; copy the table into BENCHMARKS.md with the date.
Timings are medians of several runs (these machines are noisy); targets are checked and reported, never asserted.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import scaling  # noqa: E402
from benchmarks.fleetgen import generate  # noqa: E402
from dsfleet.reconciler.applying import Caches, apply_manifests, stored_configs  # noqa: E402
from dsfleet.reconciler.loading.manifestsets import ManifestCache, load_manifests  # noqa: E402
from dsfleet.reconciler.store import NewRevision, Store  # noqa: E402

BIN = Path(sys.executable).parent
DSFLEET = str(BIN / "dsfleet")


def median_time(fn: Callable[[], Any], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def cli(*args: str, ok: tuple[int, ...] = (0,)) -> None:
    proc = subprocess.run(
        [DSFLEET, *args], capture_output=True, text=True, check=False, env={**os.environ, "NO_COLOR": "1"}
    )
    if proc.returncode not in ok:
        raise SystemExit(f"dsfleet {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")


def cli_peak_rss_mb(*args: str) -> float:
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", DSFLEET, *args], capture_output=True, text=True, check=False
    )
    return int(proc.stderr.strip().splitlines()[-1]) / 1024


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def touch_camera(fleet: Path, n: int) -> None:
    """Change one camera's stream path (a different one each time)."""
    cams = fleet / "sites" / "site-0123" / "cameras.yaml"
    text = cams.read_text()
    cams.write_text(
        text.replace("cam-04925/", f"cam-04925-v{n}/", 1)
        if n == 1
        else text.replace(f"cam-04925-v{n - 1}/", f"cam-04925-v{n}/", 1)
    )


def main() -> None:
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    out_dir = ROOT / "benchmarks" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine(), "runs": runs}
    # how fast this machine is right now (these VMs vary by tens of percent): a fixed pure-Python workload
    results["reference_s"], _ = median_time(lambda: sum(i * i for i in range(5_000_000)), 5)
    if os.environ.get("BENCH_ONLY") == "scaling":
        run_scaling(results, runs)
        (out_dir / "scaling.json").write_text(json.dumps(results, indent=2) + "\n")
        print(scaling.report(results["scaling"], results["reference_s"]))
        return
    with tempfile.TemporaryDirectory(prefix="dsfleet-bench-") as tmp:
        work = Path(tmp)
        fleet = generate(work / "fleet")
        size = sum(p.stat().st_size for p in fleet.rglob("*.yaml"))
        results["fleet"] = {
            "nodes": 250,
            "instances": 1000,
            "cameras": 10_000,
            "files": len(list(fleet.rglob("*.yaml"))),
            "bytes": size,
        }

        # --- validate
        t, ts = median_time(lambda: cli("validate", str(fleet)), runs)
        results["validate_cli_s"] = {"median": t, "all": ts, "target": 2.0}
        results["validate_cli_peak_rss_mb"] = cli_peak_rss_mb("validate", str(fleet))
        t, ts = median_time(lambda: load_manifests([fleet]), max(3, runs // 2))
        results["validate_inprocess_cold_s"] = {"median": t, "all": ts}
        cache = ManifestCache()
        load_manifests([fleet], cache=cache)
        t, ts = median_time(lambda: load_manifests([fleet], cache=cache), max(3, runs // 2))
        results["validate_inprocess_warm_s"] = {"median": t, "all": ts}

        # --- apply the whole fleet once, then diff one change (cold CLI)
        db_path = work / "state.db"
        db = f"sqlite:///{db_path}"
        start = time.perf_counter()
        cli("apply", str(fleet), "--db", db)
        results["apply_full_fleet_cli_s"] = time.perf_counter() - start
        touch_camera(fleet, 1)
        t, ts = median_time(lambda: cli("diff", str(fleet), "--db", db, ok=(1,)), runs)
        results["diff_cold_cli_s"] = {"median": t, "all": ts, "target": 3.0}

        # --- incremental apply of one change: warm process vs CLI
        caches = Caches()
        store = Store.open(db)
        rev = NewRevision(source="cli", created_at=datetime.now(UTC), manifests_hash="")
        first = apply_manifests([fleet], store, rev, caches=caches)  # warms the caches, applies change 1
        stored = stored_configs(store)
        warm_times = []
        outbox_bytes = []
        for n in range(2, 2 + runs):
            touch_camera(fleet, n)
            start = time.perf_counter()
            result = apply_manifests([fleet], store, rev, caches=caches, stored=stored)
            warm_times.append(time.perf_counter() - start)
            assert result.applied is not None and len(result.applied.outbox_ids) == 1, result.plan
            assert result.desired.configs is not None
            stored = (
                {**stored, **{n.name: result.desired.configs[n.name] for n in result.plan.changed}}
                if result.plan
                else stored
            )
            row = next(r for r in store.pending_outbox(limit=100_000) if r.id == result.applied.outbox_ids[0])
            outbox_bytes.append(len(row.value or b""))
        store.close()
        results["apply_incremental_warm_s"] = {
            "median": statistics.median(warm_times),
            "all": warm_times,
            "target": 0.5,
        }
        del first

        def cli_apply_once() -> None:
            touch_camera(fleet, 100 + len(cli_times))
            start = time.perf_counter()
            cli("apply", str(fleet), "--db", db)
            cli_times.append(time.perf_counter() - start)

        cli_times: list[float] = []
        for _ in range(max(3, runs // 2)):
            cli_apply_once()
        results["apply_incremental_cli_s"] = {"median": statistics.median(cli_times), "all": cli_times}

        # --- bytes: one change vs the older system's broadcast of the whole fleet config
        with Store.open(db, readonly=True) as ro:
            all_configs = stored_configs(ro)
        whole = json.dumps(
            {name: c.model_dump(mode="json") for name, c in all_configs.items()}, separators=(",", ":")
        ).encode()
        one = statistics.median(outbox_bytes)
        results["bytes"] = {
            "one_change_enqueued": one,
            "older_broadcast_message": len(whole),
            "ratio_message": len(whole) / one,
            "older_broadcast_delivered_to_250_agents": len(whole) * 250,
            "ratio_delivered": len(whole) * 250 / one,
        }
        # --- YAML parsers on the same 2,000 camera documents
        texts = [p.read_text() for p in sorted(fleet.rglob("cameras.yaml"))[:50]]
        results["parsers_2000_cameras_s"] = compare_parsers(texts)
        shutil.rmtree(fleet, ignore_errors=True)
    run_scaling(results, runs)

    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


def run_scaling(results: dict[str, Any], runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dsfleet-bench-scaling-") as tmp:
        results["scaling"] = scaling.measure(Path(tmp), runs, cli, median_time)
    results["reference_after_s"], _ = median_time(lambda: sum(i * i for i in range(5_000_000)), 5)


def compare_parsers(texts: list[str]) -> dict[str, float]:
    import yaml
    from ruamel.yaml import YAML

    from dsfleet.reconciler.loading.yamlfiles import parse_yaml

    safe_c = YAML(typ="safe", pure=False)
    rt = YAML(typ="rt")
    candidates: dict[str, Callable[[str], Any]] = {
        "ruamel.yaml round-trip (pure Python, line/column)": lambda t: list(rt.load_all(t)),
        "ruamel.yaml safe, C extension": lambda t: list(safe_c.load_all(t)),
        "PyYAML CSafeLoader (YAML 1.1)": lambda t: list(yaml.load_all(t, Loader=yaml.CSafeLoader)),
        "dsfleet loader (libyaml, YAML 1.2, limits, duplicate keys)": parse_yaml,
    }
    out = {}
    for name, fn in candidates.items():
        out[name], _ = median_time(lambda fn=fn: [fn(t) for t in texts], 3)
    return out


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    b = r["bytes"]

    def row(name: str, key: str, target: str = "") -> str:
        v = r[key]
        med = v["median"] if isinstance(v, dict) else v
        spread = f"{min(v['all']):.2f}-{max(v['all']):.2f}" if isinstance(v, dict) else ""
        ok = ""
        if isinstance(v, dict) and "target" in v:
            ok = "yes" if med < v["target"] else "NO"
        return f"| {name} | {med:.3f} s | {spread} | {target} | {ok} |"

    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['date']}; medians of {r['runs']} runs. "
        f"Reference workload (sum of 5M squares, pure Python): {r['reference_s']:.3f} s.",
        f"Fleet: {r['fleet']['nodes']} nodes, {r['fleet']['instances']} instances, {r['fleet']['cameras']} cameras in "
        f"{r['fleet']['files']} files ({r['fleet']['bytes'] / 1e6:.1f} MB).",
        "",
        "| measurement | median | range | target | met |",
        "|---|---|---|---|---|",
        row("`dsfleet validate` (CLI, cold)", "validate_cli_s", "< 2 s"),
        row("validate in-process, cold", "validate_inprocess_cold_s"),
        row("validate in-process, warm parse cache", "validate_inprocess_warm_s"),
        row("`dsfleet diff` after one camera change (CLI, cold)", "diff_cold_cli_s", "< 3 s"),
        row("apply one change, warm process (coordinator path)", "apply_incremental_warm_s", "< 0.5 s"),
        row("`dsfleet apply` one change (CLI)", "apply_incremental_cli_s"),
        f"| `dsfleet apply` whole fleet into an empty store (CLI) | {r['apply_full_fleet_cli_s']:.3f} s | | | |",
        "",
        f"Peak RSS of `dsfleet validate` on the fleet: {r['validate_cli_peak_rss_mb']:.0f} MB.",
        "",
        f"One camera change enqueues {b['one_change_enqueued']:,.0f} bytes (one AgentConfig message for one node). The "
        f"older system's AgentConfig carried every node's config: {b['older_broadcast_message']:,} bytes per "
        f"broadcast, **{b['ratio_message']:,.0f}x** more, and delivered to all 250 agents "
        f"{b['older_broadcast_delivered_to_250_agents']:,} bytes, **{b['ratio_delivered']:,.0f}x** more.",
        "",
        "| YAML parser, 2,000 camera documents | median |",
        "|---|---|",
        *(f"| {name} | {t:.3f} s |" for name, t in r["parsers_2000_cameras_s"].items()),
        "",
        f"Scaling (cold CLI runs; reference workload after: {r['reference_after_s']:.3f} s):",
        "",
        scaling.report(r["scaling"], r["reference_s"]),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
