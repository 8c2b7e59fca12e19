"""Pure: the sync and health of every instance and node, from what the store holds (Argo CD's words, the kubelet's
rules for what a report is worth).

**Connection** of a node, computed when read (never a stored flag): ``online`` while its last heartbeat is younger
than ``misses`` heartbeat intervals; ``unknown`` while nobody can tell — the coordinator is not running (its
heartbeat in the store is stale), its broker is unreachable, or it (re)started or got its broker back less than
that long ago and has not heard the node since; ``offline`` otherwise.

**Sync** compares the config hash the agent reports for an instance with the desired one — whatever generation the
node is at (a node's generation moves on with any of its instances, so a generation says nothing of the others):

- ``Synced``: the agent reports the desired config hash applied (a paused instance: applied and not running);
  an instance that is no longer desired and no longer reported is simply gone.
- ``Progressing``: not there yet, but the change is on its way: the node's config left the outbox less than
  ``progress_deadline`` ago and the node is online (or, for a node removed from the manifests, its agent is online
  and removes what it ran).
- ``OutOfSync``: anything else, with the true reason: the config still waits in the outbox (and why: the broker is
  unreachable, no coordinator runs), the node is offline or unknown, or it has not applied a config published
  long ago.

A node's config held back by a camera handover (:mod:`dsfleet.reconciler.planning.handovers`: it gives a camera to
another node and waits until that node runs it) keeps its instances ``Progressing`` while the handover waits, and
``OutOfSync`` when it is blocked (the target cannot take the camera) or no coordinator runs to release it; the
reason says which camera moves where, since when, and until when at the latest.

**Health** reads the observed container and the agent's conditions:

- ``Unknown``: the node is not online, or it never reported this instance;
- ``Failed``: ``backoff`` (crash loop), ``exited``, ``missing``, or ``stopped`` when it should run;
- ``Degraded``: the agent reports a condition (``ImageNotFound``, ``SecretMissing``, ``CreateFailed``, … with the
  cameras left out and the next retry; the instance keeps running what it ran before), ``restarting``,
  ``created`` (not started yet), a source at 0 FPS, or an agent error marked ``degraded:``;
- ``Healthy``: running (or stopped because the instance is paused).

FPS are shown only when fresh: printed (or, when the agent does not say when, reported) less than ``fps_max_age``
ago, by a container that runs — never for a crash loop.

Each instance and node also gets a ``reason`` sentence for people. No clock: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from dsfleet.schemas.findings import plural
from dsfleet.schemas.redaction import redact

__all__ = [
    "DEFAULT_FPS_MAX_AGE",
    "DEFAULT_PROGRESS_DEADLINE",
    "Condition",
    "Connection",
    "CoordinatorFacts",
    "Health",
    "HeldChange",
    "InstanceDesired",
    "InstanceObserved",
    "InstanceView",
    "NodeDesired",
    "NodeFacts",
    "NodeView",
    "Sync",
    "age_text",
    "connection_of",
    "coordinator_running",
    "derive_instances",
    "derive_nodes",
    "fresh_fps",
    "health_of",
    "redact",
    "sync_of",
]

DEFAULT_PROGRESS_DEADLINE = timedelta(seconds=60)
DEFAULT_FPS_MAX_AGE = timedelta(seconds=30)
"""FPS printed (or reported) longer ago than this are not shown: the instance may have stopped producing them."""
DEFAULT_HEARTBEAT_MISSES = 3
COORDINATOR_STALE_BEATS = 5
"""The coordinator counts as not running once this many of its heartbeats are overdue."""
DEGRADED_PREFIX = "degraded: "
"""The agent marks a degraded instance's ``error`` with this prefix (``dsfleet.agent.observations.DEGRADED_PREFIX``)."""
NOT_RUNNING = frozenset({"stopped", "exited", "created", "missing"})
"""States of a container that does not run (a paused instance is synced in any of them)."""


class Sync(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    PROGRESSING = "Progressing"


class Health(StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class Connection(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CoordinatorFacts:
    """What the coordinator's heartbeat says, as of ``now``."""

    running: bool
    """It wrote its heartbeat lately and did not stop."""
    seen_at: datetime | None = None
    started_at: datetime | None = None
    broker_reachable: bool | None = None
    """None: no broker configured."""
    broker_since: datetime | None = None


@dataclass(frozen=True)
class NodeFacts:
    """What the store knows of a node's agent (``node_status``); ``known=False``: no agent ever announced it.
    ``online`` is what the caller computed (:func:`connection_of`); ``connection`` says why it is not."""

    name: str
    online: bool = False
    last_seen: datetime | None = None
    heartbeat_seconds: float = 5.0
    observed_generation: int | None = None
    observed_config_hash: str | None = None
    reported_at: datetime | None = None
    known: bool = True
    connection: Connection | None = None
    """None: ``ONLINE`` when ``online``, else ``OFFLINE``."""
    connection_reason: str = ""
    retiring: bool = False
    """The manifests no longer declare the node: its agent removes what it runs, then it is forgotten."""

    @property
    def state(self) -> Connection:
        if self.connection is not None:
            return self.connection
        return Connection.ONLINE if self.online else Connection.OFFLINE


@dataclass(frozen=True)
class HeldChange:
    """A node's latest config held back in the outbox by a camera handover: ``blocked`` when a target cannot take
    a camera; ``text``: the handover in words."""

    blocked: bool
    text: str


@dataclass(frozen=True)
class NodeDesired:
    """The node's latest stored config: its generation, hash, when it was published (None: not known to have
    been), when its revision was stored, since when it waits in the outbox (None: it does not), and the camera
    handover that holds it back (None: none)."""

    name: str
    generation: int
    config_hash: str
    published_at: datetime | None = None
    stored_at: datetime | None = None
    pending_since: datetime | None = None
    held: HeldChange | None = None


@dataclass(frozen=True)
class InstanceDesired:
    name: str
    node: str
    config_hash: str
    paused: bool = False


@dataclass(frozen=True)
class Condition:
    """A problem the agent has with an instance (it keeps running what it ran before)."""

    reason: str
    message: str = ""
    cameras: tuple[str, ...] = ()
    attempts: int = 0
    next_retry_at: datetime | None = None


@dataclass(frozen=True)
class InstanceObserved:
    name: str
    node: str
    state: str
    generation: int | None = None
    config_hash: str | None = None
    restarts: int = 0
    exit_code: int | None = None
    error: str | None = None
    fps: Mapping[str, float] = field(default_factory=dict)
    drift: Sequence[Mapping[str, Any]] = ()
    conditions: Sequence[Condition] = ()
    fps_at: datetime | None = None
    updated_at: datetime | None = None
    """When the coordinator stored the report."""


@dataclass(frozen=True)
class InstanceView:
    name: str
    node: str
    sync: Sync
    health: Health
    reason: str
    desired: InstanceDesired | None
    observed: InstanceObserved | None
    fps: Mapping[str, float] = field(default_factory=dict)
    """The FPS worth showing (:func:`fresh_fps`)."""
    moving_from: tuple[str, ...] = ()
    """Other nodes that still report the instance (it moved from there; their reports are not shown)."""


@dataclass(frozen=True)
class NodeView:
    name: str
    online: bool
    desired_generation: int | None
    observed_generation: int | None
    sync: Sync
    connection: Connection = Connection.OFFLINE
    reason: str = ""
    retiring: bool = False


# --------------------------------------------------------------------------------------------------- words


def age_text(seconds: float) -> str:
    """``4 s``, ``2 min``, ``3 h``, ``2 d``."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86_400:.0f} d"


def _since(when: datetime, now: datetime) -> str:
    return f"{when.strftime('%Y-%m-%d %H:%M:%S')} UTC ({age_text((now - when).total_seconds())} ago)"


def _ago(when: datetime, now: datetime) -> str:
    return f"{age_text((now - when).total_seconds())} ago"


# --------------------------------------------------------------------------------------------------- facts


def coordinator_running(
    seen_at: datetime | None, stopped_at: datetime | None, interval_seconds: float, now: datetime
) -> bool:
    """Whether a coordinator that last wrote its heartbeat at ``seen_at`` (every ``interval_seconds``) runs."""
    if seen_at is None or stopped_at is not None:
        return False
    return now - seen_at <= timedelta(seconds=max(interval_seconds, 0.5) * COORDINATOR_STALE_BEATS)


def connection_of(
    last_seen: datetime | None,
    heartbeat_seconds: float,
    now: datetime,
    *,
    coordinator: CoordinatorFacts | None = None,
    misses: int = DEFAULT_HEARTBEAT_MISSES,
) -> tuple[Connection, str]:
    """A node's connection as of ``now`` and why. Without ``coordinator`` (none ever ran on the store) only the
    node's heartbeat counts."""
    window = timedelta(seconds=heartbeat_seconds * misses)
    if coordinator is not None:
        if not coordinator.running:
            seen = f", last seen {_ago(coordinator.seen_at, now)}" if coordinator.seen_at else ""
            return Connection.UNKNOWN, f"unknown: coordinator not running{seen}"
        if coordinator.broker_reachable is False:
            return Connection.UNKNOWN, "unknown: the coordinator cannot reach its broker"
        if coordinator.broker_reachable is None:
            return Connection.UNKNOWN, "unknown: the coordinator has no broker configured"
    if last_seen is not None and now < last_seen + window:
        return Connection.ONLINE, f"online, heard {_ago(last_seen, now)}"
    if coordinator is not None:
        for what, since in (
            ("coordinator started", coordinator.started_at),
            ("broker back", coordinator.broker_since if coordinator.broker_reachable else None),
        ):
            if since is not None and (last_seen is None or last_seen < since) and now < since + window:
                return Connection.UNKNOWN, f"unknown: {what} {_ago(since, now)}; not heard since"
    if last_seen is None:
        return Connection.OFFLINE, "offline: never heard"
    return Connection.OFFLINE, f"offline: no heartbeat for {age_text((now - last_seen).total_seconds())}"


def fresh_fps(
    observed: InstanceObserved, now: datetime, max_age: timedelta = DEFAULT_FPS_MAX_AGE
) -> dict[str, float]:
    """The FPS worth showing: none unless the container runs (a crash loop has none), none when printed (or,
    without a print time, reported) longer than ``max_age`` ago."""
    if observed.state != "running" or not observed.fps:
        return {}
    when = observed.fps_at or observed.updated_at
    if when is None or now - when > max_age:
        return {}
    return dict(observed.fps)


# --------------------------------------------------------------------------------------------------- sync


def _node_phrase(node: NodeFacts | None) -> str:
    if node is None or not node.known:
        return "node never reported"
    if node.connection_reason:
        return f"node {node.connection_reason}"
    return "node offline"


def _waiting(pending_since: datetime, now: datetime, coordinator: CoordinatorFacts | None) -> str:
    base = f"waiting in the outbox for {age_text((now - pending_since).total_seconds())}"
    if coordinator is None:
        return f"{base}: no coordinator has run on this store to publish it"
    if not coordinator.running:
        seen = f" (last seen {_ago(coordinator.seen_at, now)})" if coordinator.seen_at else ""
        return f"{base}: coordinator not running{seen}"
    if coordinator.broker_reachable is False:
        since = f" since {_since(coordinator.broker_since, now)}" if coordinator.broker_since else ""
        return f"{base}: broker unreachable{since}"
    if coordinator.broker_reachable is None:
        return f"{base}: the coordinator has no broker configured"
    return f"{base}: being published"


def _on_its_way(
    why: str,
    node: NodeFacts | None,
    node_desired: NodeDesired | None,
    now: datetime,
    deadline: timedelta,
    coordinator: CoordinatorFacts | None,
) -> tuple[Sync, str]:
    """Whether a change not applied yet is on its way (Progressing) or not (OutOfSync), and why."""
    if node_desired is not None and node_desired.pending_since is not None:
        return Sync.OUT_OF_SYNC, f"{why}; {_waiting(node_desired.pending_since, now, coordinator)}"
    if node_desired is not None and node_desired.held is not None:
        held = node_desired.held
        if held.blocked:
            return Sync.OUT_OF_SYNC, f"{why}; {held.text}"
        if coordinator is None or not coordinator.running:
            return Sync.OUT_OF_SYNC, f"{why}; {held.text}; no coordinator runs to release it"
        return Sync.PROGRESSING, f"{why}; {held.text}"
    if node is None or not node.online:
        return Sync.OUT_OF_SYNC, f"{why}; {_node_phrase(node)}"
    if node_desired is None:
        return Sync.OUT_OF_SYNC, why
    published = node_desired.published_at
    if published is None:
        return Sync.OUT_OF_SYNC, f"{why}; generation {node_desired.generation} not published lately"
    if now - published <= deadline:
        return (
            Sync.PROGRESSING,
            f"{why}; generation {node_desired.generation} published {_ago(published, now)}",
        )
    return (
        Sync.OUT_OF_SYNC,
        f"{why}; generation {node_desired.generation} published {_ago(published, now)}, not applied",
    )


def sync_of(
    desired: InstanceDesired | None,
    observed: InstanceObserved | None,
    node: NodeFacts | None,
    node_desired: NodeDesired | None,
    now: datetime,
    deadline: timedelta = DEFAULT_PROGRESS_DEADLINE,
    *,
    coordinator: CoordinatorFacts | None = None,
) -> tuple[Sync, str]:
    """The instance's sync and why: the reported config hash against the desired one."""
    if desired is None:
        if observed is None:
            return Sync.SYNCED, "removed"
        if node is not None and node.retiring:
            why = "node removed from the manifests; its agent removes what it runs"
            if node.online:
                return Sync.PROGRESSING, why
            return Sync.OUT_OF_SYNC, f"{why}; {_node_phrase(node)}"
        why = "no longer desired; still reported by its node"
    elif observed is None:
        why = "desired; not reported by its node yet"
    elif observed.config_hash != desired.config_hash:
        why = "observed config hash differs from the desired one"
    elif desired.paused and observed.state not in NOT_RUNNING:
        why = f"paused, but its container is {observed.state}"
    else:
        return Sync.SYNCED, "paused as declared" if desired.paused else "desired config applied"
    return _on_its_way(why, node, node_desired, now, deadline, coordinator)


# --------------------------------------------------------------------------------------------------- health


def _condition_text(conditions: Sequence[Condition], now: datetime) -> str:
    parts = []
    for c in conditions:
        text = f"{c.reason}: {c.message}" if c.message else c.reason
        if c.cameras:
            text += f"; cameras left out: {', '.join(c.cameras)}"
        if c.next_retry_at is not None:
            wait = (c.next_retry_at - now).total_seconds()
            text += f"; next retry in {age_text(wait)}" if wait > 0 else "; retrying now"
            if c.attempts:
                text += f" (attempt {c.attempts + 1})"
        parts.append(text)
    return "; ".join(parts)


def health_of(
    desired: InstanceDesired | None,
    observed: InstanceObserved | None,
    node: NodeFacts | None,
    now: datetime | None = None,
    fps_max_age: timedelta = DEFAULT_FPS_MAX_AGE,
) -> tuple[Health, str]:
    """The instance's health and why (``now``: for the freshness of FPS and retry times; None: every FPS counts)."""
    if node is None or not node.online:
        return Health.UNKNOWN, _node_phrase(node)
    if observed is None:
        return Health.UNKNOWN, "no report for this instance"
    conditions = _condition_text(observed.conditions, now) if now is not None and observed.conditions else ""
    if observed.conditions and now is None:
        conditions = "; ".join(c.reason for c in observed.conditions)
    state = observed.state
    failed = {
        "backoff": f"crash loop ({plural(observed.restarts, 'restart')})",
        "exited": "exited" + (f" with code {observed.exit_code}" if observed.exit_code is not None else ""),
        "missing": "container missing",
    }
    if state in failed:
        return Health.FAILED, failed[state] + (f"; {conditions}" if conditions else "")
    if state == "stopped":
        if desired is not None and desired.paused:
            return Health.HEALTHY, "paused"
        return Health.FAILED, "stopped" + (f"; {conditions}" if conditions else "")
    if conditions:
        return Health.DEGRADED, conditions
    if state == "restarting":
        return Health.DEGRADED, "restarting"
    if state == "created":
        return Health.DEGRADED, "created, not started"
    if state != "running":
        return Health.UNKNOWN, f"state {state}"
    fps = fresh_fps(observed, now, fps_max_age) if now is not None else dict(observed.fps)
    stalled = sorted(source for source, value in fps.items() if value <= 0)
    if stalled:
        return Health.DEGRADED, f"0 FPS on source {', '.join(stalled)}"
    if observed.error and observed.error.startswith(DEGRADED_PREFIX):
        return Health.DEGRADED, observed.error.removeprefix(DEGRADED_PREFIX)
    return Health.HEALTHY, "running"


# --------------------------------------------------------------------------------------------------- views


def _reason(sync: Sync, sync_reason: str, health_reason: str) -> str:
    if sync is Sync.SYNCED:
        return health_reason
    if health_reason in sync_reason:
        return sync_reason
    return f"{sync_reason}; {health_reason}"


def derive_instances(
    desired: Sequence[InstanceDesired],
    observed: Sequence[InstanceObserved],
    nodes: Mapping[str, NodeFacts],
    node_desired: Mapping[str, NodeDesired],
    now: datetime,
    deadline: timedelta = DEFAULT_PROGRESS_DEADLINE,
    *,
    coordinator: CoordinatorFacts | None = None,
    fps_max_age: timedelta = DEFAULT_FPS_MAX_AGE,
) -> list[InstanceView]:
    """One view per instance, sorted by node then name: each desired one on its desired node, each one no longer
    desired on every node that still reports it. An instance that moved shows once, on its new node: the old
    node's report of it is not shown (the view names the old node while the new one does not report it yet)."""
    want = {d.name: d for d in desired}
    have: dict[str, dict[str, InstanceObserved]] = {}
    for report in observed:
        have.setdefault(report.name, {})[report.node] = report
    out = []
    for name in sorted(set(want) | set(have)):
        d = want.get(name)
        reports = have.get(name, {})
        pairs: list[tuple[str, InstanceDesired | None, InstanceObserved | None]]
        if d is None:
            pairs = [(node, None, o) for node, o in sorted(reports.items())]
        else:
            pairs = [(d.node, d, reports.get(d.node))]
        for node_name, di, o in pairs:
            node = nodes.get(node_name)
            sync, sync_reason = sync_of(
                di, o, node, node_desired.get(node_name), now, deadline, coordinator=coordinator
            )
            health, health_reason = health_of(di, o, node, now, fps_max_age)
            reason = _reason(sync, sync_reason, health_reason)
            moving = tuple(sorted(n for n in reports if di is not None and n != node_name))
            if moving and o is None:
                reason += f"; still reported by {', '.join(moving)} (moving away)"
            fps = fresh_fps(o, now, fps_max_age) if o is not None else {}
            out.append(InstanceView(name, node_name, sync, health, reason, di, o, fps, moving))
    return sorted(out, key=lambda v: (v.node, v.name))


_WORST = {Sync.SYNCED: 0, Sync.PROGRESSING: 1, Sync.OUT_OF_SYNC: 2}


def derive_nodes(
    names: Sequence[str],
    nodes: Mapping[str, NodeFacts],
    node_desired: Mapping[str, NodeDesired],
    now: datetime,
    deadline: timedelta = DEFAULT_PROGRESS_DEADLINE,
    *,
    instances: Sequence[InstanceView] = (),
    coordinator: CoordinatorFacts | None = None,
) -> list[NodeView]:
    """One view per node name. Its sync follows its instances (the worst of theirs) and its own config hash: the
    node-level parts of a config (prune) and a node without instances are synced when its agent reports the
    desired node config hash."""
    per_node: dict[str, list[InstanceView]] = {}
    for v in instances:
        per_node.setdefault(v.node, []).append(v)
    out = []
    for name in sorted(set(names)):
        facts = nodes.get(name)
        want = node_desired.get(name)
        online = facts is not None and facts.online
        observed = facts.observed_generation if facts else None
        syncs: list[tuple[Sync, str]] = [
            (v.sync, f"instance {v.name} {v.sync.value}: {v.reason}") for v in per_node.get(name, ())
        ]
        if facts is not None and facts.retiring:
            syncs.append(
                (Sync.PROGRESSING, "retiring: its agent removes what it runs")
                if online
                else (Sync.OUT_OF_SYNC, f"retiring; {_node_phrase(facts)}")
            )
        elif want is not None:
            reported = facts.observed_config_hash if facts else None
            if reported == want.config_hash:
                syncs.append((Sync.SYNCED, "desired node config applied"))
            else:
                syncs.append(_on_its_way("node config not applied", facts, want, now, deadline, coordinator))
        sync, reason = max(syncs, key=lambda s: _WORST[s[0]], default=(Sync.SYNCED, "nothing desired"))
        if sync is Sync.SYNCED:
            reason = "synced"
        out.append(
            NodeView(
                name,
                online,
                want.generation if want else None,
                observed,
                sync,
                facts.state if facts else Connection.OFFLINE,
                reason,
                bool(facts and facts.retiring),
            )
        )
    return out
