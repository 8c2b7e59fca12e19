"""The JSON shapes of what dsfleet shows — validate, apply, history, get, status, and the findings inside them — in
one module that the CLI (``-o json``) and the HTTP API share, so both print the same documents. Pure: values in,
JSON-ready dicts out (the store's types are imported for type checking only); the status document is built from
a :class:`~dsfleet.reconciler.store.StatusSnapshot` the caller read (with the publications since ``now -``
:data:`PUBLISHED_WINDOW`), and the ``now`` it passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dsfleet.reconciler.planning.conditions import (
    DEFAULT_FPS_MAX_AGE,
    DEFAULT_HEARTBEAT_MISSES,
    DEFAULT_PROGRESS_DEADLINE,
    Condition,
    Connection,
    CoordinatorFacts,
    HeldChange,
    InstanceDesired,
    InstanceObserved,
    InstanceView,
    NodeDesired,
    NodeFacts,
    NodeView,
    age_text,
    connection_of,
    coordinator_running,
    derive_instances,
    derive_nodes,
    redact,
)
from dsfleet.reconciler.planning.handovers import HandoverState, Hold, describe_hold
from dsfleet.reconciler.planning.rollouts import is_rollout_hold
from dsfleet.reconciler.syncviews import pin_view, rollout_view, rollout_waits
from dsfleet.schemas.findings import Finding

if TYPE_CHECKING:
    from dsfleet.reconciler.loading.manifestsets import LoadedManifests
    from dsfleet.reconciler.store import (
        AppliedRevision,
        CoordinatorBeat,
        EventRecord,
        HeldConfig,
        InstanceRow,
        NodeRow,
        NodeStatusRow,
        ObservedDetail,
        RevisionRecord,
        StatusSnapshot,
    )

__all__ = [
    "PUBLISHED_WINDOW",
    "STATUS_SCHEMA",
    "apply_json",
    "enrollment_json",
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
PUBLISHED_WINDOW = timedelta(minutes=10)
"""How far back a status reader asks for publication times (:meth:`Store.status_snapshot`'s ``since``): longer
than any progress deadline."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


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
    snapshot: StatusSnapshot,
    now: datetime,
    *,
    deadline: timedelta = DEFAULT_PROGRESS_DEADLINE,
    fps_max_age: timedelta = DEFAULT_FPS_MAX_AGE,
    heartbeat_misses: int = DEFAULT_HEARTBEAT_MISSES,
) -> dict[str, Any]:
    """The ``dsfleet.status/v1`` document of what the store held (``snapshot``, read in one transaction by
    :meth:`~dsfleet.reconciler.store.Store.status_snapshot`) as of ``now``; the derivation of connection, sync and
    health is :mod:`dsfleet.reconciler.planning.conditions`. Never a file body, a URL or a credential: configs
    contribute their generation and hashes only; log lines and errors have credentials removed."""
    fleet = _derive(snapshot, now, deadline, fps_max_age, heartbeat_misses)
    nodes = [_node_json(fleet, name, now) for name in fleet.names]
    instances = [_instance_json(fleet, view) for view in fleet.instances]
    last = snapshot.last_revision
    return {
        "schema": STATUS_SCHEMA,
        "generatedAt": now.isoformat(),
        "fleet": snapshot.fleet_id,
        "coordinator": _coordinator_json(snapshot.coordinator, fleet.coordinator, now),
        "outbox": _outbox_json(snapshot, fleet.coordinator, now),
        "handovers": [_handover_json(h, hold) for h, hold in _holds(snapshot.held)],
        "summary": _summary_json(nodes, instances, snapshot.drift_events),
        "nodes": nodes,
        "instances": instances,
        "revision": revision_view(last) if last is not None else None,
        "pendingPlan": dict(snapshot.pending_plan) if snapshot.pending_plan is not None else None,
        "pin": pin_view(snapshot.pin),
        "rollout": rollout_view(snapshot.rollout),
        "events": [event_json(e) for e in snapshot.events],
        "enrollment": enrollment_json(snapshot),
        "cameras": cameras_json(snapshot.observed, fleet.nodes),
    }


CAMERAS_SCHEMA = "dsfleet.cameras/v1"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def cameras_json(observed: Iterable[ObservedDetail], nodes: Mapping[str, NodeView]) -> list[dict[str, Any]]:
    """Per camera of the instances served by DeepStream's stream REST API, as their agents last reported them (by
    node, instance, camera). ``nodeOnline`` false: the values are the last ones the node sent before it went
    silent. Reasons have credentials removed."""
    out: list[dict[str, Any]] = []
    for row in observed:
        node = nodes.get(row.node)
        for c in sorted(row.cameras, key=lambda c: str(c.get("name") or "")):
            frame = c.get("frameNumber")
            source = c.get("sourceId")
            out.append(
                {
                    "node": row.node,
                    "instance": row.instance,
                    "camera": str(c.get("name") or ""),
                    "state": str(c.get("state") or ""),
                    "reason": redact(c.get("reason")) if c.get("reason") else None,
                    "sourceId": source if isinstance(source, int) and not isinstance(source, bool) else None,
                    "fps": _number(c.get("fps")),
                    "frameNumber": frame if isinstance(frame, int) and not isinstance(frame, bool) else None,
                    "latencyMs": _number(c.get("latencyMs")),
                    "since": c.get("since") if isinstance(c.get("since"), str) else None,
                    "nodeOnline": bool(node and node.online),
                    "updatedAt": _iso(row.updated_at),
                }
            )
    return out


def cameras_document(status: Mapping[str, Any]) -> dict[str, Any]:
    """``dsfleet.cameras/v1`` (``GET /api/v1/status/cameras``): the cameras of a status document, with counts by
    state."""
    cameras = list(status.get("cameras") or ())
    return {
        "schema": CAMERAS_SCHEMA,
        "generatedAt": status.get("generatedAt"),
        "states": _count(str(c["state"]) for c in cameras),
        "cameras": cameras,
    }


@dataclass(frozen=True)
class _Fleet:
    """A snapshot indexed by name, with the derived view of every node and instance."""

    names: list[str]
    statuses: dict[str, NodeStatusRow]
    facts: dict[str, NodeFacts]
    wanted: dict[str, NodeDesired]
    inventory_nodes: dict[str, NodeRow]
    inventory_instances: dict[str, InstanceRow]
    observed: dict[tuple[str, str], ObservedDetail]
    nodes: dict[str, NodeView]
    instances: list[InstanceView]
    per_node: dict[str, int]
    coordinator: CoordinatorFacts | None
    fleet_id: str | None


def _coordinator_facts(beat: CoordinatorBeat | None, now: datetime) -> CoordinatorFacts | None:
    if beat is None:
        return None
    return CoordinatorFacts(
        running=coordinator_running(beat.seen_at, beat.stopped_at, beat.interval_seconds, now),
        seen_at=beat.seen_at,
        started_at=beat.started_at,
        broker_reachable=beat.broker_reachable,
        broker_since=beat.broker_since,
    )


def _derive(
    snapshot: StatusSnapshot, now: datetime, deadline: timedelta, fps_max_age: timedelta, misses: int
) -> _Fleet:
    coordinator = _coordinator_facts(snapshot.coordinator, now)
    statuses = {s.node: s for s in snapshot.node_statuses}
    heads = snapshot.node_heads
    holds = {h.node: hold for h, hold in _holds(snapshot.held)}
    waiting = rollout_waits(snapshot.rollout, snapshot.held)
    inventory_nodes = {n.name: n for n in snapshot.nodes}
    facts = {
        name: _facts(s, now, coordinator, misses, retiring=name not in inventory_nodes and name not in heads)
        for name, s in statuses.items()
    }
    wanted = {
        name: NodeDesired(
            name,
            gen,
            hash_,
            published_at=snapshot.published.get(name),
            stored_at=at,
            pending_since=wait.since if (wait := snapshot.outbox.get(name)) is not None else None,
            held=(
                HeldChange(hold.state is HandoverState.BLOCKED, describe_hold(hold))
                if (hold := holds.get(name)) is not None
                else waiting.get(name)
            ),
        )
        for name, (gen, hash_, at) in heads.items()
    }
    # the inventory holds each desired instance's node, config hash and paused flag (what the node configs
    # carry), so no config payload is parsed here
    desired = [
        InstanceDesired(name=i.name, node=i.node, config_hash=i.config_hash or "", paused=i.paused)
        for i in snapshot.instances
        if i.node is not None and i.node in heads
    ]
    observed = [_observed(r) for r in snapshot.observed]
    names = sorted(set(inventory_nodes) | set(statuses) | set(heads))
    for name in names:
        if name not in facts:  # declared, never announced: offline, or unknown while nobody listens
            connection, why = connection_of(None, 5.0, now, coordinator=coordinator, misses=misses)
            facts[name] = NodeFacts(name, known=False, connection=connection, connection_reason=why)
    views = derive_instances(
        desired, observed, facts, wanted, now, deadline, coordinator=coordinator, fps_max_age=fps_max_age
    )
    per_node: dict[str, int] = {}
    for v in views:
        if v.desired is not None:
            per_node[v.node] = per_node.get(v.node, 0) + 1
    node_views = derive_nodes(names, facts, wanted, now, deadline, instances=views, coordinator=coordinator)
    return _Fleet(
        names=names,
        statuses=statuses,
        facts=facts,
        wanted=wanted,
        inventory_nodes=inventory_nodes,
        inventory_instances={i.name: i for i in snapshot.instances},
        observed={(r.node, r.instance): r for r in snapshot.observed},
        nodes={v.name: v for v in node_views},
        instances=views,
        per_node=per_node,
        coordinator=coordinator,
        fleet_id=snapshot.fleet_id,
    )


def _facts(
    s: NodeStatusRow, now: datetime, coordinator: CoordinatorFacts | None, misses: int, *, retiring: bool
) -> NodeFacts:
    connection, why = connection_of(
        s.last_seen, s.heartbeat_seconds, now, coordinator=coordinator, misses=misses
    )
    return NodeFacts(
        name=s.node,
        online=connection is Connection.ONLINE,
        last_seen=s.last_seen,
        heartbeat_seconds=s.heartbeat_seconds,
        observed_generation=s.observed_generation,
        observed_config_hash=s.observed_config_hash,
        reported_at=s.reported_at,
        connection=connection,
        connection_reason=why,
        retiring=retiring,
    )


def _condition(c: Mapping[str, Any]) -> Condition:
    return Condition(
        reason=str(c.get("reason") or ""),
        message=str(c.get("message") or ""),
        cameras=tuple(str(x) for x in c.get("cameras") or ()),
        attempts=int(c.get("attempts") or 0),
        next_retry_at=_parse(c.get("nextRetryAt")),
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
        conditions=tuple(_condition(c) for c in r.conditions),
        fps_at=r.fps_at,
        updated_at=r.updated_at,
    )


def _fleet_conflict(s: NodeStatusRow | None, fleet_id: str | None) -> str | None:
    if s is None or s.fleet is None or fleet_id is None or s.fleet == fleet_id:
        return None
    return f"its agent is bound to another fleet ({s.fleet}); it ignores this fleet's configs"


def _node_json(fleet: _Fleet, name: str, now: datetime) -> dict[str, Any]:
    s = fleet.statuses.get(name)
    inv = fleet.inventory_nodes.get(name)
    nv = fleet.nodes[name]
    facts = fleet.facts.get(name)
    return {
        "name": name,
        "online": nv.online,
        "state": nv.connection.value,
        "stateReason": facts.connection_reason if facts else "",
        "retiring": nv.retiring,
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
        "reason": redact(nv.reason),
        "managed": inv is not None,
        "error": redact(s.error) if s else None,
        "fleet": s.fleet if s else None,
        "fleetConflict": _fleet_conflict(s, fleet.fleet_id),
        "rejections": [
            {
                "reason": str(r.get("reason") or ""),
                "generation": r.get("generation"),
                "detail": redact(str(r.get("detail") or "")),
                "at": str(r.get("at") or ""),
            }
            for r in (s.rejections if s else ())
        ],
    }


def _instance_json(fleet: _Fleet, v: InstanceView) -> dict[str, Any]:
    row = fleet.observed.get((v.node, v.name)) if v.observed is not None else None
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
        "fps": dict(v.fps),
        "fpsAt": _iso((row.fps_at or row.updated_at) if row and v.fps else None),
        "conditions": [
            {
                "reason": str(c.get("reason") or ""),
                "message": redact(str(c.get("message") or "")),
                "cameras": [str(x) for x in c.get("cameras") or ()],
                "since": c.get("since"),
                "attempts": int(c.get("attempts") or 0),
                "nextRetryAt": c.get("nextRetryAt"),
            }
            for c in (row.conditions if row else ())
        ],
        "drift": [{**d, "detail": redact(d.get("detail"))} for d in row.drift] if row else [],
        "movingFrom": list(v.moving_from),
        "containerId": row.container_id if row else None,
        "updatedAt": _iso(row.updated_at) if row else None,
    }


def _coordinator_json(
    beat: CoordinatorBeat | None, facts: CoordinatorFacts | None, now: datetime
) -> dict[str, Any] | None:
    if beat is None or facts is None:
        return None
    seen = f"last seen {age_text((now - beat.seen_at).total_seconds())} ago"
    if facts.running:
        summary = f"coordinator running on {beat.host} (pid {beat.pid}), watching {beat.manifests}; {seen}"
    elif beat.stopped_at is not None:
        summary = f"coordinator not running (stopped {age_text((now - beat.stopped_at).total_seconds())} ago)"
    else:
        summary = f"coordinator not running, {seen}"
    if beat.broker is None:
        broker = "no broker configured"
    elif beat.broker_reachable:
        broker = "broker reachable"
    else:
        broker = "broker unreachable"
    if beat.broker is not None and beat.broker_since is not None:
        broker += f" since {beat.broker_since.strftime('%Y-%m-%d %H:%M:%S')} UTC"
        broker += f" ({age_text((now - beat.broker_since).total_seconds())})"
    if not facts.running and beat.broker is not None:
        broker += " (as the coordinator last saw it)"
    return {
        "running": facts.running,
        "summary": summary,
        "host": beat.host,
        "pid": beat.pid,
        "version": beat.version,
        "manifests": beat.manifests,
        "sync": beat.sync,
        "startedAt": beat.started_at.isoformat(),
        "seenAt": beat.seen_at.isoformat(),
        "seenAgeSeconds": round((now - beat.seen_at).total_seconds(), 3),
        "stoppedAt": _iso(beat.stopped_at),
        "broker": {
            "configured": beat.broker is not None,
            "reachable": beat.broker_reachable,
            "since": _iso(beat.broker_since),
            "error": redact(beat.broker_error),
            "summary": broker,
        },
        "foreignConfigs": {"count": beat.foreign_configs, "last": redact(beat.last_foreign)},
    }


def _outbox_json(
    snapshot: StatusSnapshot, coordinator: CoordinatorFacts | None, now: datetime
) -> dict[str, Any]:
    waits = snapshot.outbox
    rows = sum(w.rows for w in waits.values())
    oldest = min((w.since for w in waits.values()), default=None)
    if not waits:
        summary = "nothing waiting to be published"
    else:
        count = len(waits)
        what = f"{count} config{'s' if count != 1 else ''} waiting to be published"
        if coordinator is None:
            why = "no coordinator has run on this store"
        elif not coordinator.running:
            why = "coordinator not running"
        elif coordinator.broker_reachable is False:
            since = coordinator.broker_since
            why = "broker unreachable" + (
                f" since {since.strftime('%Y-%m-%d %H:%M:%S')} UTC ({age_text((now - since).total_seconds())})"
                if since
                else ""
            )
        elif coordinator.broker_reachable is None:
            why = "the coordinator has no broker configured"
        else:
            why = "being published"
        summary = f"{what}: {why}"
    waves = {h.node for h in snapshot.held if is_rollout_hold(h.hold)}
    held = len({h.node for h in snapshot.held} - waves)
    if held:
        summary += f"; {held} config{'s' if held != 1 else ''} held back by a camera handover"
    if waves:
        summary += (
            f"; {len(waves)} config{'s' if len(waves) != 1 else ''} held back by a rollout until their wave"
        )
    return {
        "depth": rows,
        "held": len({h.node for h in snapshot.held}),
        "nodes": sorted(waits),
        "oldestAt": _iso(oldest),
        "oldestAgeSeconds": round((now - oldest).total_seconds(), 3) if oldest else None,
        "summary": summary,
    }


def _holds(held: Sequence[HeldConfig]) -> list[tuple[HeldConfig, Hold]]:
    """The readable holds, the newest per node."""
    newest: dict[str, tuple[HeldConfig, Hold]] = {}
    for h in held:
        hold = Hold.from_json(h.hold)
        if hold is not None:
            newest[h.node] = (h, hold)
    return [newest[node] for node in sorted(newest)]


def _handover_json(h: HeldConfig, hold: Hold) -> dict[str, Any]:
    """A source node's config held back until its cameras run on their new nodes."""
    return {
        "node": h.node,
        "state": hold.state.value,
        "reason": redact(hold.reason),
        "since": hold.since.isoformat(),
        "deadline": hold.deadline.isoformat(),
        "summary": redact(describe_hold(hold)),
        "moves": [
            {
                "camera": m.camera,
                "fromInstance": m.source_instance,
                "toNode": m.target_node,
                "toInstance": m.target_instance,
            }
            for m in hold.moves
        ],
    }


def enrollment_json(snapshot: StatusSnapshot) -> dict[str, Any]:
    """Agents' keys waiting for approval (each with the command that approves it) and the reports the coordinator
    dropped for their signature since it started, by reason."""
    pending = [
        {
            "node": k.node,
            "keyId": k.key_id,
            "hostname": redact(k.hostname) if k.hostname is not None else None,
            "machineId": redact(k.machine_id) if k.machine_id is not None else None,
            "firstSeen": k.first_seen.isoformat(),
            "lastSeen": _iso(k.last_seen),
            "approve": f"dsfleet nodes approve {k.node} --key {k.key_id}",
        }
        for k in sorted(snapshot.pending_keys, key=lambda k: (k.node, k.first_seen, k.key_id))
    ]
    kept = snapshot.unauthenticated or {}
    raw = kept.get("counts")
    counts = (
        {str(r): int(n) for r, n in sorted(raw.items()) if isinstance(n, int) and n > 0}
        if isinstance(raw, Mapping)
        else {}
    )
    since = _parse(kept.get("since"))
    total = sum(counts.values())
    parts = []
    if pending:
        keys = "key" if len(pending) == 1 else "keys"
        parts.append(f"{len(pending)} agent {keys} waiting for approval (dsfleet nodes list)")
    if total:
        why = ", ".join(f"{reason} {n}" for reason, n in counts.items())
        parts.append(
            f"{total} report{'s' if total != 1 else ''} dropped for their signature"
            + (f" since {since.isoformat()}" if since is not None else "")
            + f" ({why})"
        )
    return {
        "pendingKeys": pending,
        "droppedReports": {"since": _iso(since), "total": total, "byReason": counts},
        "summary": "; ".join(parts) or "no keys waiting for approval, no reports dropped",
    }


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return dict(sorted(out.items()))


def _summary_json(
    nodes: Sequence[Mapping[str, Any]], instances: Sequence[Mapping[str, Any]], drift_events: int
) -> dict[str, Any]:
    states = _count(n["state"] for n in nodes)
    return {
        "nodes": {
            "total": len(nodes),
            "online": states.get(Connection.ONLINE.value, 0),
            "offline": states.get(Connection.OFFLINE.value, 0),
            "unknown": states.get(Connection.UNKNOWN.value, 0),
            "retiring": sum(1 for n in nodes if n["retiring"]),
        },
        "instances": {
            "total": len(instances),
            "sync": _count(i["sync"] for i in instances),
            "health": _count(i["health"] for i in instances),
            "drift": sum(1 for i in instances for d in i["drift"] if not d.get("healed")),
            "driftEvents": drift_events,
        },
    }
