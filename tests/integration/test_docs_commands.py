"""The commands the docs tell a newcomer to type work as the docs say: the README's tour and the steps of "Your first
fleet on one machine" that need no broker and no Docker (copying and editing the fleet, validate, diff, apply,
status, history), run as written, in order, in a scratch directory with the example fleet, checked against the exit
code each line's comment announces."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ("validate", "diff", "apply", "status", "history", "render", "get", "rules", "schema")
EXIT = re.compile(r"#\s*exit (\d)")


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def commands(text: str) -> list[str]:
    """Single-line commands of the ```bash blocks, in order (shell loops are left out: they need a broker)."""
    out = []
    for block in bash_blocks(text):
        out += [line.strip() for line in block.splitlines() if line.strip() and not line.startswith(" ")]
    return out


def _dsfleet(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**env, "NO_COLOR": "1"},
    )


def argv_of(line: str) -> list[str]:
    return shlex.split(line, comments=True)  # a '#' inside quotes (sed 's#a#b#') is not a comment


def comment_of(line: str) -> str:
    parts = re.split(r"\s+#\s", line, maxsplit=1)
    return parts[1] if len(parts) == 2 else ""


def run_line(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = argv_of(line)
    if argv[0] == "dsfleet":
        return _dsfleet(argv[1:], cwd)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def expected_exit(line: str) -> int:
    m = EXIT.search("# " + comment_of(line))
    return int(m.group(1)) if m else 0


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    return tmp_path


def test_the_readme_tour_runs_as_written(scratch: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    lines = commands(tour)
    assert [argv_of(line)[1] for line in lines] == ["validate", "diff", "apply", "status"]
    for line in lines:
        done = run_line(line, scratch)
        assert done.returncode == expected_exit(line), (line, done.stdout[-2000:], done.stderr[-2000:])
    assert (scratch / ".dsfleet" / "state.db").is_file()
    history = _dsfleet(["history", "-o", "json"], scratch)
    assert '"accepted": true' in history.stdout


def test_the_first_fleet_page_runs_as_written_up_to_the_broker(scratch: Path) -> None:
    """Every cp/sed/offline dsfleet line of the page, in order: the copies and edits do what the page says (each
    sed changes its file; after each run of edits the fleet is valid, except after the edit that puts a password in
    a URL, which is refused at the place the page shows), and each dsfleet command exits as its comment says."""
    text = (ROOT / "docs" / "getting-started" / "first-fleet.md").read_text(encoding="utf-8")
    claimed = re.search(r"rejected, (\S+: error: [\w.]+):", text)
    assert claimed is not None, "the page shows where the rejected revision's error is"
    ran: list[str] = []
    edits: list[str] = []

    def check_edits() -> None:
        if not edits:
            return
        done = _dsfleet(["validate", "my-fleet/"], scratch)
        output = done.stdout + done.stderr
        if any(re.search(r"://\w+:\w+@", e) for e in edits):
            assert done.returncode == 1 and claimed.group(1) in output, output
        else:
            assert done.returncode == 0, (edits, output)
        edits.clear()

    for line in commands(text):
        argv = argv_of(line)
        if argv[0] == "dsfleet" and (argv[1] not in OFFLINE or "--watch" in argv):
            continue
        if argv[0] not in ("dsfleet", "cp", "sed"):
            continue
        if argv[0] != "sed":
            check_edits()
        target = scratch / argv[-1] if argv[0] == "sed" else None
        before = target.read_text(encoding="utf-8") if target is not None else None
        done = run_line(line, scratch)
        assert done.returncode == expected_exit(line), (line, done.stdout[-2000:], done.stderr[-2000:])
        ran.append(argv[0] if argv[0] != "dsfleet" else f"dsfleet {argv[1]}")
        if target is not None:
            assert target.read_text(encoding="utf-8") != before, f"{line}: changed nothing"
            edits.append(line)
    check_edits()
    assert ran[:7] == [
        "cp",
        "sed",
        "sed",
        "dsfleet validate",
        "dsfleet diff",
        "dsfleet apply",
        "dsfleet status",
    ]
    assert ran.count("sed") >= 4 and "dsfleet history" in ran
