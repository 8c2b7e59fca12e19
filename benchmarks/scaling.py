"""Fleet scaling: validate and diff time at 1,000, 3,000 and 10,000 cameras for both fleet shapes, side by side.

Shapes (``benchmarks/fleetgen.py``): ``explicit`` (40 cameras and 4 instances per node, cameras listed by name,
both layouts) and ``selector`` (10 cameras and 3 instances per node, cameras picked by ``cameraSelector``, one
profile per 100 cameras). Each size is timed as cold CLI runs: ``dsfleet validate`` and ``dsfleet diff`` after one
camera changed against a store that holds the fleet. Linear scaling means the per-camera cost stays flat; the
fixed start-up cost of a CLI run (imports) makes small fleets look dearer per camera, so the marginal cost (the
slope between two sizes) is reported too. On a shared, busy machine the best of the runs is the measurement
(other load only ever adds time); the medians are kept in the JSON.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.fleetgen import generate, generate_selector

SIZES = (1_000, 3_000, 10_000)
SHAPES = ("explicit", "selector")
CAMERAS_PER_EXPLICIT_NODE = 40


def generate_shape(shape: str, out: Path, cameras: int) -> Path:
    if shape == "selector":
        return generate_selector(out, cameras)
    return generate(out, nodes=cameras // CAMERAS_PER_EXPLICIT_NODE, cameras=cameras)


def touch_first_camera(fleet: Path, n: int) -> None:
    """Change the stream path of the first camera in the middle site (a different path each time)."""
    sites = sorted((fleet / "sites").iterdir())
    cams = sites[len(sites) // 2] / "cameras.yaml"
    text = cams.read_text()
    start = text.index("url: ") + len("url: ")
    end = text.index("\n", start)
    base = text[start:end].split("/main", 1)[0]
    cams.write_text(text[:start] + f"{base}/main-v{n}" + text[end:])


def measure(
    work: Path,
    runs: int,
    cli: Callable[..., None],
    median_time: Callable[[Callable[[], Any], int], tuple[float, list[float]]],
) -> dict[str, Any]:
    """{shape: {cameras: {validate_s, diff_s, ...}}} plus per-camera ratios."""
    out: dict[str, Any] = {}
    for shape in SHAPES:
        per_size: dict[str, Any] = {}
        for cameras in SIZES:
            fleet = generate_shape(shape, work / f"{shape}-{cameras}", cameras)
            files = len(list(fleet.rglob("*.yaml")))
            validate, vts = median_time(lambda fleet=fleet: cli("validate", str(fleet)), runs)
            db = f"sqlite:///{work / f'{shape}-{cameras}.db'}"
            cli("apply", str(fleet), "--db", db)
            times: list[float] = []
            for n in range(1, runs + 1):
                touch_first_camera(fleet, n)
                start = time.perf_counter()
                cli("diff", str(fleet), "--db", db, ok=(1,))
                times.append(time.perf_counter() - start)
            times.sort()
            diff = times[len(times) // 2]
            per_size[str(cameras)] = {
                "files": files,
                "validate_s": {"median": validate, "best": min(vts), "all": vts},
                "diff_s": {"median": diff, "best": min(times), "all": times},
            }
            shutil.rmtree(fleet, ignore_errors=True)
        out[shape] = per_size
    return out


def ratios(sizes: dict[str, Any], what: str) -> dict[str, float]:
    """Per-camera cost at the largest size ÷ at the smallest, and marginal cost (slope) large ÷ small."""
    t = {int(k): v[what]["best"] for k, v in sizes.items()}
    small, mid, large = sorted(t)
    per_camera = (t[large] / large) / (t[small] / small)
    low = (t[mid] - t[small]) / (mid - small)
    high = (t[large] - t[mid]) / (large - mid)
    return {"per_camera": per_camera, "marginal": high / low if low > 0 else float("inf")}


def report(scaling: dict[str, Any], reference_s: float) -> str:
    lines = [
        "| shape | cameras | files | validate (CLI, best) | ms/camera | median | diff (CLI, best) | ms/camera | median |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for shape, sizes in scaling.items():
        for cameras, row in sizes.items():
            n = int(cameras)
            v, vm = row["validate_s"]["best"], row["validate_s"]["median"]
            d, dm = row["diff_s"]["best"], row["diff_s"]["median"]
            lines.append(
                f"| {shape} | {n:,} | {row['files']} | {v:.3f} s | {1000 * v / n:.3f} | {vm:.3f} s | {d:.3f} s | "
                f"{1000 * d / n:.3f} | {dm:.3f} s |"
            )
    lines.append("")
    lines.append(
        "| shape | validate: per-camera 10k ÷ 1k | marginal 3k→10k ÷ 1k→3k | diff: per-camera 10k ÷ 1k | marginal "
        "| validate < 2 s | diff < 3 s | in reference units (validate, diff) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for shape, sizes in scaling.items():
        rv, rd = ratios(sizes, "validate_s"), ratios(sizes, "diff_s")
        top = sizes[str(max(SIZES))]
        v, d = top["validate_s"]["best"], top["diff_s"]["best"]
        lines.append(
            f"| {shape} | {rv['per_camera']:.2f} | {rv['marginal']:.2f} | {rd['per_camera']:.2f} | "
            f"{rd['marginal']:.2f} | {'yes' if v < 2 else 'NO'} | {'yes' if d < 3 else 'NO'} | "
            f"{v / reference_s:.1f}, {d / reference_s:.1f} |"
        )
    return "\n".join(lines)
