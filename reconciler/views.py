"""The JSON shapes of what dsfleet shows (validate, apply, history, get): one module the CLI and the HTTP API
share, so both print the same documents (pure: values in, JSON-ready dicts out)."""

from __future__ import annotations

from typing import Any

from schemas.findings import Finding

__all__ = ["finding_json"]


def finding_json(f: Finding) -> dict[str, Any]:
    loc = f.location
    return {
        "severity": f.severity.value,
        "rule": f.rule,
        "message": f.message,
        "file": loc.file if loc else (f.source.file if f.source else None),
        "line": loc.line if loc else None,
        "column": loc.column if loc else None,
        "notes": [
            {
                "message": n.message,
                "file": n.location.file if n.location else None,
                "line": n.location.line if n.location else None,
                "column": n.location.column if n.location else None,
            }
            for n in f.notes
        ],
    }
