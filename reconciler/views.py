"""The JSON shapes of what dsfleet shows — validate, apply, history, get, status, and the findings inside them — in
one module that the CLI (``-o json``) and the HTTP API share, so both print the same documents. Pure: values in,
JSON-ready dicts out (the store's types are imported for type checking only); the status document is built from
a :class:`~dsfleet.reconciler.store.StatusSnapshot` the caller read, and the ``now`` it passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dsfleet.reconciler.planning.conditions import (
    DEFAULT_PROGRESS_DEADLINE,
    InstanceDesired,
    InstanceObserved,
    InstanceView,
    NodeDesired,
    NodeFacts,
    NodeView,
    derive_instances,
    derive_nodes,
    redact,
)
from dsfleet.schemas.findings import Finding

if TYPE_CHECKING:
    from dsfleet.reconciler.loading.manifestsets import LoadedManifests
    from dsfleet.reconciler.store import (
        AppliedRevision,
        EventRecord,
        InstanceRow,
        NodeRow,
        NodeStatusRow,
        ObservedDetail,
        RevisionRecord,
        StatusSnapshot,
    )

__all__ = [
    "STATUS_SCHEMA",
    "apply_json",
    "event_json",
    "finding_json",
    "history_json",
    "record_json",
    "records_json",
    "revision_json",
    "revision_view",
    "status_document",
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


def validate_json(
    loaded: LoadedManifests, errors: int, warnings: int, *, strict: bool = False
) -> dict[str, Any]:
    """``dsfleet.validate/v1``: valid (errors, or warnings when ``strict``, make it invalid), counts, findings.
    ``errors``/``warnings``: the command's totals (an empty manifest set counts as a warning there)."""
    return {
        "schema": "dsfleet.validate/v1",
        "valid": not (errors > 0 or (strict and warnings > 0)),
        "errors": errors,
        "warnings": warnings,
        "counts": validate_counts(loaded),
        "findings": [finding_json(f) for f in loaded.findings],
    }


def apply_json(
    applied: AppliedRevision, summary: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``dsfleet.apply/v1`` of an applied revision: its id, the generation of each changed node, its outbox
    rows, the plan's summary and the findings (warnings) of the manifests."""
    return {
        "schema": "dsfleet.apply/v1",
        "outcome": "applied",
        "revision": applied.revision_id,
        "accepted": True,
        "generations": dict(applied.generations),
        "outbox": list(applied.outbox_ids),
        "summary": dict(summary),
        "findings": list(findings),
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
        "manifests_hash": r.manifests_hash,
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


# --------------------------------------------------------------------------------------------------- status

STATUS_SCHEMA = "dsfleet.status/v1"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def revision_view(r: RevisionRecord) -> dict[str, Any]:
    """A revision as ``status``, ``history`` and the API show it (errors keep their ``file``/``line``)."""
    return {
        "id": r.id,
        "createdAt": r.created_at.isoformat(),
        "source": r.source,
        "commit": r.git_commit,
        "author": r.git_author,
        "subject": (r.git_message or "").splitlines()[0] if r.git_message else None,
        "accepted": r.accepted,
        "nodesChanged": r.nodes_changed,
        "errors": [dict(e) for e in r.errors],
    }


def event_json(e: EventRecord) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at.isoformat(),
        "kind": e.kind,
        "node": e.node,
        "instance": e.instance,
        "message": redact(e.message),
    }


def status_document(
    snapshot: StatusSnapshot, now: datetime, *, deadline: timedelta = DEFAULT_PROGRESS_DEADLINE
) -> dict[str, Any]:
    """The ``dsfleet.status/v1`` document of what the store held (``snapshot``, read in one transaction by
    :meth:`~dsfleet.reconciler.store.Store.status_snapshot`) as of ``now``; the derivation of sync and health is
    :mod:`dsfleet.reconciler.planning.conditions`. Never a file body, a URL or a credential: configs contribute
    their generation and hashes only; log lines and errors have URL user-info removed."""
    fleet = _derive(snapshot, now, deadline)
    nodes = [_node_json(fleet, name, now) for name in fleet.names]
    instances = [_instance_json(fleet, view) for view in fleet.instances]
    last = snapshot.last_revision
    return {
        "schema": STATUS_SCHEMA,
        "generatedAt": now.isoformat(),
        "summary": _summary_json(nodes, instances),
        "nodes": nodes,
        "instances": instances,
        "revision": revision_view(last) if last is not None else None,
        "pendingPlan": dict(snapshot.pending_plan) if snapshot.pending_plan is not None else None,
        "events": [event_json(e) for e in snapshot.events],
    }


@dataclass(frozen=True)
class _Fleet:
    """A snapshot indexed by name, with the derived view of every node and instance."""

    names: list[str]
    statuses: dict[str, NodeStatusRow]
    wanted: dict[str, NodeDesired]
    inventory_nodes: dict[str, NodeRow]
    inventory_instances: dict[str, InstanceRow]
    observed: dict[tuple[str, str], ObservedDetail]
    nodes: dict[str, NodeView]
    instances: list[InstanceView]
    per_node: dict[str, int]


def _derive(snapshot: StatusSnapshot, now: datetime, deadline: timedelta) -> _Fleet:
    statuses = {s.node: s for s in snapshot.node_statuses}
    heads = snapshot.node_heads
    facts = {name: _facts(s) for name, s in statuses.items()}
    wanted = {name: NodeDesired(name, gen, hash_, at) for name, (gen, hash_, at) in heads.items()}
    # the inventory holds each desired instance's node, config hash and paused flag (what the node configs
    # carry), so no config payload is parsed here
    desired = [
        InstanceDesired(name=i.name, node=i.node, config_hash=i.config_hash or "", paused=i.paused)
        for i in snapshot.instances
        if i.node is not None and i.node in heads
    ]
    observed = [_observed(r) for r in snapshot.observed]
    inventory_nodes = {n.name: n for n in snapshot.nodes}
    names = sorted(set(inventory_nodes) | set(statuses) | set(heads))
    views = derive_instances(desired, observed, facts, wanted, now, deadline)
    per_node: dict[str, int] = {}
    for v in views:
        if v.desired is not None:
            per_node[v.node] = per_node.get(v.node, 0) + 1
    return _Fleet(
        names=names,
        statuses=statuses,
        wanted=wanted,
        inventory_nodes=inventory_nodes,
        inventory_instances={i.name: i for i in snapshot.instances},
        observed={(r.node, r.instance): r for r in snapshot.observed},
        nodes={v.name: v for v in derive_nodes(names, facts, wanted, now, deadline)},
        instances=views,
        per_node=per_node,
    )


def _facts(s: NodeStatusRow) -> NodeFacts:
    return NodeFacts(
        name=s.node,
        online=s.online,
        last_seen=s.last_seen,
        heartbeat_seconds=s.heartbeat_seconds,
        observed_generation=s.observed_generation,
        observed_config_hash=s.observed_config_hash,
        reported_at=s.reported_at,
    )


def _observed(r: ObservedDetail) -> InstanceObserved:
    return InstanceObserved(
        name=r.instance,
        node=r.node,
        state=r.state,
        generation=r.generation,
        config_hash=r.config_hash,
        restarts=r.restarts,
        exit_code=r.exit_code,
        error=r.last_error,
        fps=dict(r.fps),
        drift=r.drift,
    )


def _node_json(fleet: _Fleet, name: str, now: datetime) -> dict[str, Any]:
    s = fleet.statuses.get(name)
    inv = fleet.inventory_nodes.get(name)
    nv = fleet.nodes[name]
    return {
        "name": name,
        "online": bool(s and s.online),
        "lastSeen": _iso(s.last_seen if s else None),
        "heartbeatAgeSeconds": (round((now - s.last_seen).total_seconds(), 3) if s and s.last_seen else None),
        "heartbeatSeconds": s.heartbeat_seconds if s else None,
        "hostname": (s.hostname if s else None) or (inv.hostname if inv else None),
        "agentVersion": s.agent_version if s else None,
        "dockerVersion": s.docker_version if s else None,
        "nvidiaRuntime": bool(s and s.nvidia_runtime),
        "gpus": [dict(g) for g in s.gpus] if s else [],
        "capacity": (s.capacity if s and s.capacity is not None else (inv.capacity if inv else None)),
        "instances": fleet.per_node.get(name, 0),
        "desiredGeneration": nv.desired_generation,
        "observedGeneration": nv.observed_generation,
        "sync": nv.sync.value,
        "managed": inv is not None,
        "error": redact(s.error) if s else None,
    }


def _instance_json(fleet: _Fleet, v: InstanceView) -> dict[str, Any]:
    row = fleet.observed.get((v.node, v.name))
    inv = fleet.inventory_instances.get(v.name)
    nd = fleet.wanted.get(v.node)
    return {
        "name": v.name,
        "node": v.node,
        "sync": v.sync.value,
        "health": v.health.value,
        "state": row.state if row else None,
        "reason": redact(v.reason),
        "desiredGeneration": nd.generation if nd and v.desired else None,
        "observedGeneration": row.generation if row else None,
        "desiredConfigHash": v.desired.config_hash if v.desired else None,
        "observedConfigHash": row.config_hash if row else None,
        "paused": bool(v.desired and v.desired.paused),
        "gpu": inv.gpu if inv else None,
        "profile": inv.profile if inv else None,
        "cameras": inv.camera_count if inv else None,
        "restarts": row.restarts if row else 0,
        "exitCode": row.exit_code if row else None,
        "lastLogLine": redact(row.last_log_line) if row else None,
        "error": redact(row.last_error) if row else None,
        "fps": dict(row.fps) if row else {},
        "drift": [{**d, "detail": redact(d.get("detail"))} for d in row.drift] if row else [],
        "containerId": row.container_id if row else None,
        "updatedAt": _iso(row.updated_at) if row else None,
    }


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return dict(sorted(out.items()))


def _summary_json(
    nodes: Sequence[Mapping[str, Any]], instances: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    online = sum(1 for n in nodes if n["online"])
    return {
        "nodes": {"total": len(nodes), "online": online, "offline": len(nodes) - online},
        "instances": {
            "total": len(instances),
            "sync": _count(i["sync"] for i in instances),
            "health": _count(i["health"] for i in instances),
            "drift": sum(len(i["drift"]) for i in instances),
        },
    }
