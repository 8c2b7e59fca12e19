"""The coordinator's apply of one change at 100, 1,000 and 10,000 nodes, in process (issue 24).

The path the coordinator takes: one ``Caches`` kept across applies, a store that holds the fleet, ordered camera
moves and rollouts on, and (where the tree has them) the watcher's hint naming the file that changed and errors
only in the findings (the coordinator shows no warnings). Fleet: ``benchmarks/fleetgen.py``'s hollow shape
(4 cameras and 2 instances per node, one site directory per node, every instance on the default host network, so
every instance carries a ``host-network`` warning, as such a fleet written by hand would). Each edit changes the
stream path of one camera of the middle site: exactly one node's config changes.

Run one tree per process so two trees can be compared side by side (``PYTHONPATH=<tree>``):

    PYTHONPATH=/path/to/tree python benchmarks/applyscale.py 100 1000 10000

Prints one JSON line per size: the first (cold) apply, then the median and every time of ``BENCH_EDITS`` edits
(default 9), the peak RSS of the process, and the reference workload's time measured just before.
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.fleetgen import generate
from dsfleet.reconciler.applying import Caches, apply_manifests
from dsfleet.reconciler.store import NewRevision, Store


def reference() -> float:
    started = time.perf_counter()
    sum(i * i for i in range(5_000_000))
    return time.perf_counter() - started


def run(nodes: int, edits: int, work: Path) -> dict[str, object]:
    fleet = work / f"fleet-{nodes}"
    if not fleet.exists():
        generate(fleet, nodes=nodes, cameras=4 * nodes, instances_per_node=2)
        past = time.time() - 60  # files older than the racy window, as a fleet that has been there a while
        for path in [fleet, *fleet.rglob("*")]:
            os.utime(path, (past, past))
    db = work / f"state-{nodes}.db"
    db.unlink(missing_ok=True)
    accepted = inspect.signature(apply_manifests).parameters
    hints = "hint" in accepted
    options: dict[str, object] = {"handover_timeout": timedelta(seconds=60), "rollouts": True}
    if "warnings" in accepted:
        options["warnings"] = False
    caches = Caches()
    out: dict[str, object] = {"nodes": nodes, "instances": 2 * nodes, "cameras": 4 * nodes, "hint": hints}
    out["reference_s"] = round(reference(), 3)
    with Store.open(f"sqlite:///{db}") as store:

        def apply(**extra: object) -> float:
            revision = NewRevision(source="watch", created_at=datetime.now(UTC), manifests_hash="")
            started = time.perf_counter()
            result = apply_manifests(
                [fleet], store, revision, caches=caches, skip_unchanged=True, **options, **extra
            )
            took = time.perf_counter() - started
            assert result.applied is not None, result.outcome
            return took

        out["first_apply_s"] = round(apply(), 3)
        cameras = fleet / "sites" / f"site-{nodes // 2:04d}" / "cameras.yaml"
        times = []
        for n in range(edits):
            text = cameras.read_text()
            cameras.write_text(re.sub(r"/main[^\n]*", f"/main-e{n}", text, count=1))
            extra = {"hint": frozenset({str(cameras.resolve())})} if hints else {}
            times.append(apply(**extra))
        out["apply_p50_s"] = round(statistics.median(times), 4)
        out["apply_s"] = [round(t, 4) for t in times]
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> None:
    gc.set_threshold(100_000, 50, 50)  # the coordinator's collector settings (dsfleet.reconciler.cli.main)
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000]
    edits = int(os.environ.get("BENCH_EDITS", "9"))
    work = Path(os.environ.get("BENCH_WORK") or tempfile.mkdtemp(prefix="dsfleet-applyscale-"))
    for nodes in sizes:
        print(json.dumps(run(nodes, edits, work)), flush=True)


if __name__ == "__main__":
    main()
