"""The persisted cache of ``dsfleet validate`` and ``dsfleet diff``: cold and warm CLI runs side by side.

The fleet is the example fleet (``manifests/``) copied N times (``benchmarks/fleetgen.py`` ``generate_copies``):
1,000 copies are 10,000 cameras, 2,000 nodes, 3,000 instances, 2,000 profiles in 8,001 files. For each size:

* ``validate`` cold (``--no-cache``), cold with the cache on (no file yet: the run also writes it) and warm (the
  file is there, nothing changed);
* ``diff`` against a store that holds the fleet after one camera changed: cold (``--no-cache``) and warm (the file
  is there; the run also writes it again, since something changed);
* the cache file's size and, in this process, the time to read and to write it.

The reference workload (``benchmarks/run.py``: a fixed pure-Python loop) is timed in the same run, before and
after, to tell the machine's speed. Each CLI timing is the best of ``--runs`` runs (other load only ever adds
time); all runs are kept in the JSON.

Usage: ``python benchmarks/clicache.py [--copies 1000 10000] [--runs 3] [--out benchmarks/out/clicache.json]``.
The cache's key covers the code: a package edited while this runs makes the next "warm" run cold. On a tree
others edit, time a copy: ``cp -rL dsfleet /tmp/frozen/`` and ``PYTHONPATH=/tmp/frozen`` (it is then the one
imported, here and by the CLI runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: a frozen copy of the package given there is the one timed

from benchmarks.fleetgen import generate_copies  # noqa: E402

DSFLEET = str(Path(sys.executable).parent / "dsfleet")


def reference_s(runs: int = 5) -> float:
    """The reference workload of ``benchmarks/run.py`` (sum of 5M squares, pure Python), best of ``runs``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sum(i * i for i in range(5_000_000))
        times.append(time.perf_counter() - start)
    return min(times)


def timed(env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    proc = subprocess.run([DSFLEET, *args], capture_output=True, text=True, check=False, env=env)
    took = time.perf_counter() - start
    if proc.returncode not in ok:
        raise SystemExit(f"dsfleet {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return took


def edit_camera(fleet: Path, n: int) -> None:
    """Change the stream of the first camera in the middle copy (a different path each time)."""
    copies = sorted((fleet / "copies").iterdir())
    cams = copies[len(copies) // 2] / "cameras" / "gate.yaml"
    text = cams.read_text()
    start = text.index("url: ") + len("url: ")
    end = text.index("\n", start)
    base = text[start:end].split("/main", 1)[0]
    cams.write_text(text[:start] + f"{base}/main-v{n}" + text[end:])


def best(times: list[float]) -> dict[str, Any]:
    return {"best": min(times), "all": times}


def measure(work: Path, copies: int, runs: int) -> dict[str, Any]:
    fleet = generate_copies(work / f"fleet-{copies}", copies)
    files = sum(1 for _ in fleet.rglob("*.yaml"))
    xdg = work / f"xdg-{copies}"
    env = {**os.environ, "NO_COLOR": "1", "XDG_CACHE_HOME": str(xdg)}
    env.pop("DSFLEET_NO_CACHE", None)
    os.chdir(work)
    out: dict[str, Any] = {"copies": copies, "cameras": copies * 10, "files": files}
    out["validate_cold_s"] = best([timed(env, "validate", str(fleet), "--no-cache") for _ in range(runs)])
    first = []
    for _ in range(runs):
        shutil.rmtree(xdg, ignore_errors=True)
        first.append(timed(env, "validate", str(fleet)))
    out["validate_first_cached_s"] = best(first)
    out["validate_warm_s"] = best([timed(env, "validate", str(fleet)) for _ in range(runs)])
    # The newest file: another is left only when the code changed meanwhile (a new key).
    cache_file = max((xdg / "dsfleet").glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns)
    out["cache_mb"] = cache_file.stat().st_size / 1e6
    out["cache_read_s"], out["cache_write_s"] = _in_process(fleet, xdg / "dsfleet")

    db = f"sqlite:///{work / f'fleet-{copies}.db'}"
    start = time.perf_counter()
    timed(env, "apply", str(fleet), "--db", db)
    out["apply_s"] = time.perf_counter() - start
    edits = iter(range(1, 1000))
    cold = []
    for _ in range(runs):
        edit_camera(fleet, next(edits))
        cold.append(timed(env, "diff", str(fleet), "--db", db, "--no-cache", ok=(1,)))
    out["diff_cold_s"] = best(cold)
    timed(env, "diff", str(fleet), "--db", db, ok=(1,))  # the cache as the last validate/diff left it
    warm = []
    for _ in range(runs):
        edit_camera(fleet, next(edits))
        warm.append(timed(env, "diff", str(fleet), "--db", db, ok=(1,)))
    out["diff_warm_after_edit_s"] = best(warm)
    shutil.rmtree(fleet, ignore_errors=True)
    shutil.rmtree(xdg, ignore_errors=True)
    return out


def _in_process(fleet: Path, directory: Path) -> tuple[float, float]:
    """Seconds to read the cache file and to write it again, in this process (no imports counted)."""
    import gc

    from dsfleet.reconciler.cli.caches import cache_key, read_cache, write_cache
    from dsfleet.reconciler.cli.options import settings_of
    from dsfleet.reconciler.loading.yamlfiles import loader_limits

    limits = loader_limits(settings_of(argparse.Namespace()).coordinator, ())
    key = cache_key([str(fleet)], limits)
    gc.disable()  # as in the CLI's one-shot commands
    try:
        start = time.perf_counter()
        loaded, why = read_cache(directory, key)
        read = time.perf_counter() - start
        if loaded is None:
            raise SystemExit(f"cache not read: {why}")
        start = time.perf_counter()
        write_cache(directory, key, loaded.manifests, loaded.compiled, loaded.digest or "")
        write = time.perf_counter() - start
    finally:
        gc.enable()
    return read, write


def report(results: dict[str, Any]) -> str:
    ref = results["reference_s"]
    lines = [
        f"Reference workload: {ref:.3f} s before, {results['reference_after_s']:.3f} s after.",
        "",
        "| cameras (files) | validate cold | validate, first with cache | validate warm | diff cold, 1 edit "
        "| diff warm, 1 edit | cache file | read / write in process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["sizes"]:
        lines.append(
            f"| {r['cameras']:,} ({r['files']:,}) | {r['validate_cold_s']['best']:.2f} s "
            f"| {r['validate_first_cached_s']['best']:.2f} s | {r['validate_warm_s']['best']:.2f} s "
            f"| {r['diff_cold_s']['best']:.2f} s | {r['diff_warm_after_edit_s']['best']:.2f} s "
            f"| {r['cache_mb']:.0f} MB | {r['cache_read_s']:.2f} / {r['cache_write_s']:.2f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, nargs="+", default=[1000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "clicache.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"reference_s": reference_s(), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="dsfleet-clicache-") as tmp:
        for copies in args.copies:
            results["sizes"].append(measure(Path(tmp), copies, args.runs if copies <= 1000 else 1))
            print(json.dumps(results["sizes"][-1]), flush=True)
    results["reference_after_s"] = reference_s()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


if __name__ == "__main__":
    main()
