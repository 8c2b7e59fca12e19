"""DeepStream fidelity over the corpus: ``python benchmarks/deepstream_corpus.py [--listed DIR]``.

For every app config and every GIE file (nvinfer, nvdspreprocess) of tests/data/deepstream-corpus: imported /
validated / rendered / effectively equal under real GLib / relative paths left dangling in what dsfleet renders
(:mod:`tests.support.dscorpus`). ``--listed DIR``: also the files LISTED.tsv names (their licence forbids a copy
in the repository), fetched into DIR with the same layout (``<owner>__<repo>/<path>``, DIR/SOURCES.tsv).

Results: a markdown table on stdout (by group: NVIDIA's SDK samples, NVIDIA's reference apps, community
projects) and ``benchmarks/out/deepstream_corpus.json`` with every outcome, its differences and refusal.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.dscorpus import Outcome, entries, run_corpus  # noqa: E402
from tests.support.glibcheck import GlibChecker, glib_available  # noqa: E402

NVIDIA_APPS = ("NVIDIA-AI-IOT/",)
SDK = ("hiennguyen9874/deepstream-sources", "mars3219/deepstream70")


def family(outcome: Outcome) -> str:
    repo = outcome.entry.repo
    if repo in SDK:
        return "NVIDIA SDK samples"
    if repo.startswith(NVIDIA_APPS):
        return "NVIDIA reference apps"
    return "community"


def rows(outcomes: list[Outcome], kind: str) -> list[list[str]]:
    out = []
    chosen = [o for o in outcomes if o.entry.kind == kind]
    for name in ("NVIDIA SDK samples", "NVIDIA reference apps", "community", "all"):
        group = [o for o in chosen if name == "all" or family(o) == name]
        if not group:
            continue
        out.append([
            name, str(len(group)), str(sum(o.imported for o in group)), str(sum(o.validated for o in group)),
            str(sum(o.rendered for o in group)), str(sum(o.equal for o in group)),
            str(sum(len(o.dangling) for o in group)),
        ])  # fmt: skip
    return out


def table(outcomes: list[Outcome], kind: str, title: str) -> str:
    head = [
        "",
        "files",
        "imported",
        "validated",
        "rendered",
        "effectively equal",
        "relative paths left dangling",
    ]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(outcomes, kind)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listed", type=Path, metavar="DIR", help="a copy of the files LISTED.tsv names")
    args = parser.parse_args()
    problem = glib_available()
    if problem is not None:
        raise SystemExit(f"real GLib is needed: {problem}")
    glib = GlibChecker()
    started = time.perf_counter()
    outcomes = run_corpus(entries(), glib)
    listed = run_corpus(entries(args.listed), glib) if args.listed else []
    seconds = time.perf_counter() - started
    print(f"DeepStream corpus, {datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}: {len(outcomes) + len(listed)} files in {seconds:.1f} s\n")  # fmt: skip
    print(table(outcomes, "app", "deepstream-app configs (committed)") + "\n")
    print(table(outcomes, "gie", "GIE files: nvinfer and nvdspreprocess (committed)") + "\n")
    if listed:
        print(table(listed, "app", "deepstream-app configs (listed only: DeepStream 7.0 SDK samples)") + "\n")
        print(table(listed, "gie", "GIE files (listed only: DeepStream 7.0 SDK samples)") + "\n")
    for o in [*outcomes, *listed]:
        if o.refusal or not o.equal or not o.validated or o.dangling:
            why = (
                o.refusal.splitlines()[0]
                if o.refusal
                else "; ".join([*o.errors, *o.differences, *o.dangling])
            )
            print(f"- {o.entry.label}: {why[:300]}")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "deepstream_corpus.json").write_text(json.dumps([{
        "kind": o.entry.kind, "file": o.entry.label, "commit": o.entry.commit, "imported": o.imported,
        "validated": o.validated, "rendered": o.rendered, "equal": o.equal, "dangling": o.dangling,
        "refusal": o.refusal, "errors": o.errors, "differences": o.differences,
    } for o in [*outcomes, *listed]], indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
