"""Printing findings: gcc-style text (colours on a TTY unless NO_COLOR) or JSON."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from dsfleet.schemas.findings import Finding, Location, Severity, SourceRef

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


Names = Callable[[str], str]
"""How a file is named in messages (:func:`root_names`)."""


def root_names(paths: Sequence[str], cwd: str | None = None) -> Names:
    """How files are named in messages wherever the command runs from: as seen from the working directory when
    they lie under it (``manifests/cameras/gate.yaml``: a name to open from here), else relative to the manifest
    root they were found under (a directory given as PATH; for a file given itself, its directory), led by the
    root's own name when there are several — never ``../../x`` or a long absolute path. A file under none keeps
    its name."""
    here = os.path.abspath(cwd or os.getcwd())
    roots = sorted(
        {os.path.abspath(p if os.path.isdir(p) else (os.path.dirname(p) or ".")) for p in paths},
        key=len,
        reverse=True,  # the innermost root first
    )
    several = len(roots) > 1

    def name(file: str) -> str:
        full = os.path.abspath(file)
        if full.startswith(here.rstrip(os.sep) + os.sep):
            return os.path.relpath(full, here)
        for root in roots:
            if full.startswith(root.rstrip(os.sep) + os.sep):
                rel = os.path.relpath(full, root)
                return os.path.join(os.path.basename(root), rel) if several else rel
        return file

    return name


def _where(location: Location | None, source: SourceRef | None, name: Names | None, default: str) -> str:
    if location is not None:
        return str(location.model_copy(update={"file": name(location.file)}) if name else location)
    if source is not None:
        return name(source.file) if name else source.file
    return default


def format_finding(f: Finding, color: bool = False, name: Names | None = None) -> list[str]:
    """The finding's lines (gcc style); ``name``: how files are named (as loaded, by default)."""
    where = _where(f.location, f.source, name, "dsfleet")
    sev = f.severity.value
    lines = [f"{_paint(where + ':', 'bold', color)} {_paint(sev + ':', sev, color)} {f.message} [{f.rule}]"]
    for note in f.notes:
        nwhere = _where(note.location, note.source, name, where)
        lines.append(f"{_paint(nwhere + ':', 'bold', color)} {_paint('note:', 'note', color)} {note.message}")
    return lines


def print_findings(
    findings: Iterable[Finding], stream: TextIO | None = None, *, roots: Sequence[str] = ()
) -> None:
    """Every finding on ``stream`` (stderr); ``roots``: the manifest paths given, to name files by (their
    names relative to the root they were found under, wherever the command runs from)."""
    out = stream or sys.stderr
    color = use_color(out)
    name = root_names(roots) if roots else None
    for f in findings:
        for line in format_finding(f, color, name):
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
