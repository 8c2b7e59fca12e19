"""The JSON shapes of what dsfleet shows — validate, apply, history, get, and the findings inside them — in one
module that the CLI (``-o json``) and the HTTP API share, so both print the same documents. Pure: values in,
JSON-ready dicts out (the store's types are imported for type checking only)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from schemas.findings import Finding, Severity

if TYPE_CHECKING:
    from reconciler.loading.manifests import LoadedManifests
    from reconciler.store import AppliedRevision, RevisionRecord

__all__ = [
    "apply_json",
    "finding_json",
    "history_json",
    "record_json",
    "records_json",
    "revision_json",
    "validate_counts",
    "validate_json",
]


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


def validate_counts(loaded: LoadedManifests) -> dict[str, int]:
    """How many files and objects of each kind a manifest set holds."""
    fleet = loaded.fleet
    return {
        "files": len(loaded.files),
        "nodes": len(fleet.nodes),
        "cameras": len(fleet.cameras),
        "instances": len(fleet.instances),
        "profiles": len(fleet.profiles),
        "policies": len(fleet.policies),
    }


def validate_json(loaded: LoadedManifests, *, strict: bool = False) -> dict[str, Any]:
    """``dsfleet.validate/v1``: valid (errors, or warnings when ``strict``, make it invalid), counts, findings."""
    errors = sum(1 for f in loaded.findings if f.severity is Severity.ERROR)
    warnings = len(loaded.findings) - errors
    return {
        "schema": "dsfleet.validate/v1",
        "valid": not (errors > 0 or (strict and warnings > 0)),
        "errors": errors,
        "warnings": warnings,
        "counts": validate_counts(loaded),
        "findings": [finding_json(f) for f in loaded.findings],
    }


def apply_json(applied: AppliedRevision, summary: Mapping[str, Any]) -> dict[str, Any]:
    """``dsfleet.apply/v1``: the stored revision, the generation of each changed node, its outbox rows."""
    return {
        "schema": "dsfleet.apply/v1",
        "revision": applied.revision_id,
        "generations": dict(applied.generations),
        "outbox": list(applied.outbox_ids),
        "summary": dict(summary),
    }


def revision_json(r: RevisionRecord) -> dict[str, Any]:
    """One stored revision as ``history`` shows it."""
    return {
        "id": r.id,
        "created_at": r.created_at.isoformat(),
        "source": r.source,
        "git_commit": r.git_commit,
        "git_author": r.git_author,
        "git_message": r.git_message,
        "accepted": r.accepted,
        "nodes_changed": r.nodes_changed,
        "errors": list(r.errors),
    }


def history_json(revisions: Iterable[RevisionRecord]) -> list[dict[str, Any]]:
    return [revision_json(r) for r in revisions]


def record_json(row: Any) -> dict[str, Any]:
    """A store row (a dataclass: inventory rows, the older system's views) as ``get`` shows it."""
    return {k: _plain(v) for k, v in dataclasses.asdict(row).items()}


def records_json(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [record_json(r) for r in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    return str(value)
