"""Printing findings: gcc-style text (colours on a TTY unless NO_COLOR) or JSON."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from dsfleet.schemas.findings import Finding, Severity

_COLORS = {
    "error": "\033[1;31m",
    "warning": "\033[1;35m",
    "note": "\033[1;36m",
    "bold": "\033[1m",
    "reset": "\033[0m",
}


def use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def _paint(text: str, what: str, color: bool) -> str:
    return f"{_COLORS[what]}{text}{_COLORS['reset']}" if color else text


def format_finding(f: Finding, color: bool = False) -> list[str]:
    where = str(f.location) if f.location else (f.source.file if f.source else "dsfleet")
    sev = f.severity.value
    lines = [f"{_paint(where + ':', 'bold', color)} {_paint(sev + ':', sev, color)} {f.message} [{f.rule}]"]
    for note in f.notes:
        nwhere = str(note.location) if note.location else (note.source.file if note.source else where)
        lines.append(f"{_paint(nwhere + ':', 'bold', color)} {_paint('note:', 'note', color)} {note.message}")
    return lines


def print_findings(findings: Iterable[Finding], stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    color = use_color(out)
    for f in findings:
        for line in format_finding(f, color):
            print(line, file=out)


def summary_counts(findings: Sequence[Finding]) -> tuple[int, int]:
    errors = sum(1 for f in findings if f.severity is Severity.ERROR)
    return errors, len(findings) - errors


def report_missing(command: str, paths: Sequence[str]) -> bool:
    """Print one line per path that does not exist; True when any is missing (a usage error: exit 2)."""
    missing = [p for p in paths if not os.path.exists(p)]
    for path in missing:
        print(f"dsfleet {command}: error: {path}: no such file or directory", file=sys.stderr)
    return bool(missing)


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def no_manifests(command: str, paths: Sequence[str], loaded: Any, *, error: bool) -> bool:
    """When the paths hold no manifest at all, say so (a warning, or an error with ``error``); True when none."""
    fleet = loaded.fleet
    if len(fleet) or fleet.invalid or loaded.errors:
        return False
    where = ", ".join(paths)
    level = "error" if error else "warning"
    extra = " (use --allow-empty to accept an empty set)" if error else ""
    print(f"dsfleet {command}: {level}: no manifests found in {where}{extra}", file=sys.stderr)
    return True
