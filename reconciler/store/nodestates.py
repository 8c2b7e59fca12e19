"""What the live loop keeps: each node's agent as it announces itself (``node_status``), what it reports per
instance (``observed``), transitions as events, and the coordinator's sync state (the pending plan of manual sync).

A batch of AgentInfo or AgentResponse messages (already coalesced to one per node) is written in **one**
transaction, not one per message. Times come from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsfleet.reconciler.store.database import StoreBase
from dsfleet.reconciler.store.errors import PermanentStoreError
from dsfleet.reconciler.store.schema import (
    EVENTS,
    NODE_CONFIGS,
    NODE_STATUS,
    NODES,
    OBSERVED,
    REVISIONS,
    SYNC_STATE,
)
from dsfleet.reconciler.store.values import _from_db, _to_utc
from dsfleet.schemas.wire import AgentInfo, AgentResponse

__all__ = ["KnownNodeRow", "LiveMixin", "NodeLive", "NodeStatusRow", "RetiringNode"]


class TransitionLike(Protocol):
    @property
    def node(self) -> str: ...
    @property
    def online(self) -> bool: ...
    @property
    def at(self) -> datetime: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class OnlineTransition:
    node: str
    online: bool
    at: datetime
    reason: str


@dataclass(frozen=True)
class KnownNodeRow:
    """A node of the current inventory, as agents are matched against it."""

    name: str
    hostname: str | None
    node_id: str | None


@dataclass(frozen=True)
class NodeLive:
    node: str
    online: bool
    last_seen: datetime | None
    heartbeat_seconds: float = 5.0
    observed_generation: int | None = None
    observed_config_hash: str | None = None


@dataclass(frozen=True)
class NodeStatusRow:
    node: str
    online: bool
    last_seen: datetime | None
    heartbeat_seconds: float
    hostname: str | None
    machine_id: str | None
    addresses: tuple[str, ...]
    gpus: tuple[dict[str, Any], ...]
    capacity: int | None
    agent_version: str | None
    docker_version: str | None
    nvidia_runtime: bool
    observed_generation: int | None
    observed_config_hash: str | None
    error: str | None
    reported_at: datetime | None
    fleet: str | None = None
    """The fleet the node's agent says it is bound to (None: it did not say)."""
    rejections: tuple[dict[str, Any], ...] = ()
    """The AgentConfig records the agent refused lately (``reason``, ``generation``, ``detail``, ``at``)."""


@dataclass(frozen=True)
class RetiringNode:
    """A node an agent announced that the manifests no longer declare."""

    node: str
    removed_at: datetime | None
    """When the revision that removed its config was stored (None: it never had one)."""
    instances: int
    """How many instances its agent last reported."""
    reported_at: datetime | None
    last_seen: datetime | None


def _status_row(r: Mapping[str, Any]) -> NodeStatusRow:
    return NodeStatusRow(
        node=r["node"],
        online=bool(r["online"]),
        last_seen=_from_db(r["last_seen"]),
        heartbeat_seconds=float(r["heartbeat_seconds"]),
        hostname=r["hostname"],
        machine_id=r["machine_id"],
        addresses=tuple(r["addresses"] or ()),
        gpus=tuple(r["gpus"] or ()),
        capacity=r["capacity"],
        agent_version=r["agent_version"],
        docker_version=r["docker_version"],
        nvidia_runtime=bool(r["nvidia_runtime"]),
        observed_generation=r["observed_generation"],
        observed_config_hash=r["observed_config_hash"],
        error=r["error"],
        reported_at=_from_db(r["reported_at"]),
        fleet=r.get("fleet"),
        rejections=tuple(dict(x) for x in r.get("rejections") or ()),
    )


_STATUS_UPDATE = NODE_STATUS.update().where(NODE_STATUS.c.node == sa.bindparam("b_node"))
_INVENTORY_ONLINE = NODES.update().where(NODES.c.name == sa.bindparam("b_name"))


def _defaults(node: str) -> dict[str, Any]:
    return {
        "node": node,
        "online": False,
        "last_seen": None,
        "heartbeat_seconds": 5.0,
        "addresses": [],
        "gpus": [],
        "nvidia_runtime": False,
        "reported_at": None,
    }


class LiveMixin(StoreBase):
    """Node status, observed instances and the coordinator's sync state."""

    def last_accepted_revision_id(self) -> int | None:
        with self._read() as conn:
            value = conn.execute(
                sa.select(sa.func.max(REVISIONS.c.id)).where(REVISIONS.c.accepted.is_(True))
            ).scalar()
            return int(value) if value is not None else None

    def known_nodes(self) -> list[KnownNodeRow]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(NODES.c.name, NODES.c.hostname, NODES.c.node_id)
                .where(NODES.c.deleted.is_(False))
                .order_by(NODES.c.name)
            ).all()
        return [KnownNodeRow(r[0], r[1], r[2]) for r in rows]

    def node_statuses(self) -> list[NodeStatusRow]:
        with self._read() as conn:
            return [
                _status_row(dict(r))
                for r in conn.execute(sa.select(NODE_STATUS).order_by(NODE_STATUS.c.node)).mappings()
            ]

    def node_liveness(self) -> dict[str, NodeLive]:
        return {
            s.node: NodeLive(
                s.node,
                s.online,
                s.last_seen,
                s.heartbeat_seconds,
                s.observed_generation,
                s.observed_config_hash,
            )
            for s in self.node_statuses()
        }

    def _current_status(self, conn: Connection, nodes: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not nodes:
            return {}
        rows = conn.execute(sa.select(NODE_STATUS).where(NODE_STATUS.c.node.in_(list(nodes)))).mappings()
        return {r["node"]: dict(r) for r in rows}

    def _save_status(
        self, conn: Connection, before: Mapping[str, Mapping[str, Any]], rows: Sequence[dict[str, Any]]
    ) -> None:
        inserts = [r for r in rows if r["node"] not in before]
        updates = [r for r in rows if r["node"] in before]
        # one executemany per shape of row: it binds the columns of the first row (a new node's first report may
        # name its fleet, another's not)
        new_shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in inserts:
            new_shapes.setdefault(tuple(sorted(r)), []).append(r)
        for group in new_shapes.values():
            conn.execute(NODE_STATUS.insert(), group)
        # one compiled statement per shape of row, executed for many rows (a statement with literal values is
        # compiled again for every row: that was most of the ingest time of a fleet of 1,000 nodes)
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in updates:
            columns = tuple(sorted(k for k in r if k != "node"))
            shapes.setdefault(columns, []).append({**{k: r[k] for k in columns}, "b_node": r["node"]})
        for params in shapes.values():
            conn.execute(_STATUS_UPDATE, params)

    def record_agent_infos(
        self, infos: Mapping[str, AgentInfo], fresh: Mapping[str, bool], at: datetime
    ) -> list[OnlineTransition]:
        """Upsert what each named agent announced; a fresh heartbeat marks its node online (an event when it was
        not). Returns the online transitions."""
        at = _to_utc(at)
        transitions: list[OnlineTransition] = []
        with self._write() as conn:
            before = self._current_status(conn, sorted(infos))
            rows = []
            for node, info in sorted(infos.items()):
                row = dict(before.get(node) or _defaults(node))
                row.update(
                    hostname=info.hostname,
                    machine_id=info.machineId,
                    addresses=list(info.addresses),
                    gpus=[g.model_dump(mode="json") for g in info.gpus],
                    capacity=info.capacity,
                    agent_version=info.agentVersion or None,
                    docker_version=info.dockerVersion,
                    nvidia_runtime=info.nvidiaRuntime,
                    heartbeat_seconds=info.heartbeatSeconds,
                    fleet=info.fleet,
                )
                if info.observedGeneration is not None or fresh.get(node, False):
                    row["observed_generation"] = info.observedGeneration
                    row["observed_config_hash"] = info.configHash
                if fresh.get(node, False):
                    if not row["online"]:
                        transitions.append(OnlineTransition(node, True, at, "heartbeat"))
                    row["online"] = True
                    row["last_seen"] = at
                rows.append(row)
            self._save_status(conn, before, rows)
            self._write_transitions(conn, transitions)
        return transitions

    def record_agent_responses(self, responses: Mapping[str, AgentResponse], at: datetime) -> int:
        """Replace each reporting node's observed instances with its report, and note state changes and new
        drift as events; returns how many instance rows were written."""
        at = _to_utc(at)
        written = 0
        with self._write() as conn:
            nodes = sorted(responses)
            old: dict[tuple[str, str], Mapping[str, Any]] = {
                (r["node"], r["instance"]): dict(r)
                for r in conn.execute(sa.select(OBSERVED).where(OBSERVED.c.node.in_(nodes))).mappings()
            }
            events: list[dict[str, Any]] = []
            conn.execute(OBSERVED.delete().where(OBSERVED.c.node.in_(nodes)))
            rows = []
            for node in nodes:
                resp = responses[node]
                for inst in resp.instances:
                    drift = [d.model_dump(mode="json") for d in inst.drift]
                    previous = old.get((node, inst.name))
                    if previous is None or previous["state"] != inst.state.value:
                        events.append(
                            {
                                "at": at,
                                "node": node,
                                "instance": inst.name,
                                "kind": "state",
                                "message": f"{previous['state'] if previous else 'unknown'} → {inst.state.value}",
                            }
                        )
                    seen = {
                        (d.get("kind"), d.get("at")) for d in (previous["drift"] if previous else None) or ()
                    }
                    for d in drift:
                        if (d["kind"], d["at"]) not in seen:
                            healed = " (healed)" if d.get("healed") else ""
                            events.append(
                                {
                                    "at": at,
                                    "node": node,
                                    "instance": inst.name,
                                    "kind": "drift",
                                    "message": f"{d['kind']}{healed}: {d.get('detail', '')}"[:1000],
                                }
                            )
                    rows.append(
                        {
                            "node": node,
                            "instance": inst.name,
                            "state": inst.state.value,
                            "generation": inst.generation,
                            "config_hash": inst.configHash,
                            "restarts": inst.restarts,
                            "drift": drift,
                            "last_error": inst.error,
                            "updated_at": at,
                            "container_id": inst.containerId,
                            "spec_hash": inst.specHash,
                            "files_hash": inst.filesHash,
                            "exit_code": inst.exitCode,
                            "last_log_line": inst.lastLogLine,
                            "fps": dict(inst.fps),
                            "started_at": _parse(inst.startedAt),
                            "conditions": [c.model_dump(mode="json") for c in inst.conditions],
                            "fps_at": _parse(inst.fpsAt),
                            "cameras": [c.model_dump(mode="json", exclude_none=True) for c in inst.cameras],
                        }
                    )
            if rows:
                conn.execute(OBSERVED.insert(), rows)
                written = len(rows)
            if events:
                conn.execute(EVENTS.insert(), events)
            before = self._current_status(conn, nodes)
            status_rows = []
            for node in nodes:
                resp = responses[node]
                row = dict(before.get(node) or _defaults(node))
                row.update(
                    observed_generation=resp.observedGeneration,
                    observed_config_hash=resp.configHash,
                    error=resp.error,
                    reported_at=at,
                    rejections=[r.model_dump(mode="json") for r in resp.rejections],
                )
                if resp.fleet is not None:
                    row["fleet"] = resp.fleet
                status_rows.append(row)
            self._save_status(conn, before, status_rows)
        return written

    def observed_details(self, node: str | None = None) -> list[dict[str, Any]]:
        """Every column of the observed rows (status, API), by node then instance."""
        query = sa.select(OBSERVED).order_by(OBSERVED.c.node, OBSERVED.c.instance)
        if node is not None:
            query = query.where(OBSERVED.c.node == node)
        with self._read() as conn:
            out = []
            for r in conn.execute(query).mappings():
                row = dict(r)
                row["updated_at"] = _from_db(row["updated_at"])
                row["started_at"] = _from_db(row["started_at"])
                out.append(row)
            return out

    def _write_transitions(self, conn: Connection, transitions: Sequence[TransitionLike]) -> None:
        if not transitions:
            return
        conn.execute(
            EVENTS.insert(),
            [
                {
                    "at": _to_utc(t.at),
                    "node": t.node,
                    "instance": None,
                    "kind": "online" if t.online else "offline",
                    "message": t.reason,
                }
                for t in transitions
            ],
        )
        # the older system's "connected" flag, in the inventory (one statement for many rows)
        ups = [
            {"b_name": t.node, "online": True, "last_seen": _to_utc(t.at)} for t in transitions if t.online
        ]
        downs = [{"b_name": t.node, "online": False} for t in transitions if not t.online]
        for params in (ups, downs):
            if params:
                conn.execute(_INVENTORY_ONLINE, params)

    def record_transitions(self, transitions: Sequence[TransitionLike]) -> None:
        """Mark nodes online/offline (``node_status`` and the inventory's ``online`` flag), with an event each."""
        if not transitions:
            return
        with self._write() as conn:
            conn.execute(_STATUS_UPDATE, [{"b_node": t.node, "online": t.online} for t in transitions])
            self._write_transitions(conn, transitions)

    # ---- nodes the manifests no longer declare

    def retiring_nodes(self) -> list[RetiringNode]:
        """Every node with an agent's status that the manifests no longer declare (by name), with when its config
        was removed and how many instances its agent still reports."""
        declared = sa.select(NODES.c.name).where(NODES.c.deleted.is_(False))
        newest = (
            sa.select(NODE_CONFIGS.c.node, sa.func.max(NODE_CONFIGS.c.generation).label("generation"))
            .group_by(NODE_CONFIGS.c.node)
            .subquery()
        )
        removed = (
            sa.select(NODE_CONFIGS.c.node, REVISIONS.c.created_at)
            .join(
                newest,
                sa.and_(
                    NODE_CONFIGS.c.node == newest.c.node, NODE_CONFIGS.c.generation == newest.c.generation
                ),
            )
            .join(REVISIONS, REVISIONS.c.id == NODE_CONFIGS.c.revision_id)
            .where(NODE_CONFIGS.c.deleted.is_(True))
        )
        with self._read() as conn:
            rows = conn.execute(
                sa.select(NODE_STATUS.c.node, NODE_STATUS.c.reported_at, NODE_STATUS.c.last_seen)
                .where(NODE_STATUS.c.node.not_in(declared))
                .order_by(NODE_STATUS.c.node)
            ).all()
            if not rows:
                return []
            names = [r[0] for r in rows]
            when = {n: _from_db(t) for n, t in conn.execute(removed.where(NODE_CONFIGS.c.node.in_(names)))}
            counts: dict[str, int] = dict(
                conn.execute(
                    sa.select(OBSERVED.c.node, sa.func.count())
                    .where(OBSERVED.c.node.in_(names))
                    .group_by(OBSERVED.c.node)
                ).all()
            )
        return [
            RetiringNode(
                node=r[0],
                removed_at=when.get(r[0]),
                instances=int(counts.get(r[0], 0)),
                reported_at=_from_db(r[1]),
                last_seen=_from_db(r[2]),
            )
            for r in rows
        ]

    def retire_node(self, node: str, at: datetime, reason: str) -> bool:
        """Forget what the agent of a node the manifests no longer declare reported (its status and observed
        instances), with a ``retired`` event; False when there was nothing to forget. Refuses a declared node."""
        with self._write() as conn:
            declared = conn.execute(
                sa.select(NODES.c.name).where(NODES.c.name == node, NODES.c.deleted.is_(False))
            ).first()
            if declared is not None:
                raise PermanentStoreError(
                    f"node {node} is declared by the manifests; remove it from them first (nothing forgotten)"
                )
            gone = conn.execute(NODE_STATUS.delete().where(NODE_STATUS.c.node == node)).rowcount
            gone += conn.execute(OBSERVED.delete().where(OBSERVED.c.node == node)).rowcount
            if gone:
                conn.execute(
                    EVENTS.insert().values(
                        at=_to_utc(at), node=node, instance=None, kind="retired", message=reason[:1000]
                    )
                )
            return bool(gone)

    def set_sync_state(self, key: str, value: Any, at: datetime) -> None:
        with self._write() as conn:
            exists = conn.execute(sa.select(SYNC_STATE.c.key).where(SYNC_STATE.c.key == key)).first()
            if exists:
                conn.execute(
                    SYNC_STATE.update()
                    .where(SYNC_STATE.c.key == key)
                    .values(value=value, updated_at=_to_utc(at))
                )
            else:
                conn.execute(SYNC_STATE.insert().values(key=key, value=value, updated_at=_to_utc(at)))

    def sync_state(self, key: str) -> Any:
        with self._read() as conn:
            return conn.execute(sa.select(SYNC_STATE.c.value).where(SYNC_STATE.c.key == key)).scalar()


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _to_utc(value) if value.tzinfo is not None else None
