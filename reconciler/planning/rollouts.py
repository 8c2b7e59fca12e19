"""Pure: progressive rollouts — which changes a rollout governs, the waves, the health gate, the abort rule.

A revision whose plan recreates (or, as ``Policy.spec.rollout.governs`` says, restarts) instances is not sent to
every node at once. The coordinator stores every changed node's config as usual, but the outbox rows of the nodes
not yet released stay **held** (the publisher does not send them and anti-entropy leaves those nodes alone, as for
camera handovers); :func:`step` decides, once a second, from the released nodes' latest reports:

- a released node **passes** once every governed instance of it ran its desired config, ``running``, without a
  condition, with no more than ``maxRestarts`` restarts since it first ran it, and (``minFpsRatio``) every camera at
  that fraction of its FPS before the change, for ``soakSeconds`` without a break;
- it **fails** when the agent refused the config, backs off starting the instance, the instance restarts more than
  ``maxRestarts`` times, or it has not passed ``deadlineSeconds`` after its release;
- within a wave at most ``maxUnavailable`` governed instances are released and not yet passed (at least one node);
  a wave is done when each of its nodes passed or failed; a wave with ``pause`` then waits for a promote;
- the **abort** rule (failures ≥ N, or ≥ x % of the released nodes once M were released), or an abort command,
  ends it: the caller returns every changed node to the last good revision and pins it (a rollback).

Cordoned nodes (``dsfleet nodes cordon``) are not released; the rollout finishes without them and releases them
once uncordoned. No clock and no I/O: ``now`` is passed in, the rollout travels as a JSON-ready dict
(:meth:`Rollout.to_json`). Decision record: docs/architecture/decisions/0027-progressive-rollouts.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from dsfleet.reconciler.planning.plans import Action, ChangeKind, Plan
from dsfleet.schemas.nodeconfigs import NodeConfig
from dsfleet.schemas.rollouts import RolloutStrategy

__all__ = [
    "HOLD_KIND",
    "Command",
    "InstanceReading",
    "NodeProgress",
    "NodeReading",
    "NodeState",
    "Rollout",
    "RolloutState",
    "Step",
    "assign_waves",
    "governed_instances",
    "is_rollout_hold",
    "start_rollout",
    "step",
]

HOLD_KIND = "rollout"
"""The ``kind`` of an outbox row's hold that a rollout keeps (a camera handover's hold has none)."""
NOT_YET = frozenset({"Pulling"})
"""Conditions that say "not yet", not "cannot"."""


def is_rollout_hold(hold: Mapping[str, Any] | None) -> bool:
    return bool(hold) and isinstance(hold, Mapping) and hold.get("kind") == HOLD_KIND


class RolloutState(StrEnum):
    PROGRESSING = "progressing"
    PAUSED = "paused"
    """By command: gates are still read, nothing new is released."""
    WAITING_PROMOTE = "waiting-promote"
    """A wave with ``pause: true`` passed: the next one waits for ``dsfleet rollout promote``."""
    SUCCEEDED = "succeeded"
    ABORTING = "aborting"
    """The abort rule or command fired: the caller rolls back and then marks it aborted."""
    ABORTED = "aborted"
    SUPERSEDED = "superseded"
    """A newer revision replaced it (its own rollout, if any, takes over the held nodes)."""


FINISHED = frozenset({RolloutState.SUCCEEDED, RolloutState.ABORTED, RolloutState.SUPERSEDED})


class NodeState(StrEnum):
    PENDING = "pending"
    RELEASED = "released"
    SOAKING = "soaking"
    PASSED = "passed"
    FAILED = "failed"
    CORDONED = "cordoned"


class Command(StrEnum):
    PROMOTE = "promote"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"


# ------------------------------------------------------------------------------------------ what is governed


def governed_instances(
    plan: Plan, current: Mapping[str, NodeConfig], new: Mapping[str, NodeConfig], kinds: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Node → the instances of it whose change the rollout governs (nodes without one are left out).

    ``image``: the container image changes; ``profile``: a TensorRT engine is rebuilt (model, precision, batch);
    ``recreate``: any recreate; ``restart``: any restart or recreate. Created and removed instances, hot camera
    changes, start/stop and settings-only changes are never governed: they stop nothing that runs, or take the
    instance down on purpose."""
    wanted = set(kinds)
    out: dict[str, tuple[str, ...]] = {}
    for node in plan.changed:
        if node.action is not Action.UPDATE:
            continue
        old_cfg, new_cfg = current.get(node.name), new.get(node.name)
        names = []
        for change in node.instances:
            if change.action is not Action.UPDATE or change.kind not in (
                ChangeKind.RECREATE,
                ChangeKind.RESTART,
            ):
                continue
            old = old_cfg.instance(change.name) if old_cfg else None
            fresh = new_cfg.instance(change.name) if new_cfg else None
            image = old is not None and fresh is not None and old.container.image != fresh.container.image
            if (
                "restart" in wanted
                or ("recreate" in wanted and change.kind is ChangeKind.RECREATE)
                or ("image" in wanted and image)
                or ("profile" in wanted and bool(change.engine_rebuilds))
            ):
                names.append(change.name)
        if names:
            out[node.name] = tuple(sorted(names))
    return out


def assign_waves(
    strategy: RolloutStrategy, nodes: Sequence[str], labels: Mapping[str, Mapping[str, str]]
) -> list[tuple[str, list[str]]]:
    """(wave name, its nodes) in order: each wave takes, from the nodes no earlier wave took (by name), those its
    selector matches, at most its count (a percentage is of ``len(nodes)``, rounded up); the nodes no wave took
    form a last wave ``rest``."""
    remaining = sorted(nodes)
    total = len(remaining)
    out: list[tuple[str, list[str]]] = []
    for index, wave in enumerate(strategy.waves):
        matching = [
            n for n in remaining if all(labels.get(n, {}).get(k) == v for k, v in wave.selector.items())
        ]
        if wave.nodes is None:
            count = len(matching)
        elif isinstance(wave.nodes, int):
            count = wave.nodes
        elif wave.nodes.endswith("%"):
            count = math.ceil(total * int(wave.nodes[:-1]) / 100)
        else:
            count = int(wave.nodes)
        taken = matching[:count]
        remaining = [n for n in remaining if n not in taken]
        out.append((wave.name or f"wave-{index + 1}", taken))
    if remaining:
        out.append(("rest", remaining))
    return out


# ------------------------------------------------------------------------------------------ state


@dataclass(frozen=True)
class NodeProgress:
    node: str
    wave: int
    instances: tuple[str, ...]
    """The governed instances of the node."""
    state: NodeState = NodeState.PENDING
    reason: str = ""
    released_at: datetime | None = None
    healthy_since: datetime | None = None
    restarts: Mapping[str, int] = field(default_factory=dict)
    """Instance → its restart count when it first reported its desired config (the baseline)."""
    fps_before: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Instance → camera → FPS at the release (what ``minFpsRatio`` compares with)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "wave": self.wave,
            "instances": list(self.instances),
            "state": self.state.value,
            "reason": self.reason,
            "releasedAt": _iso(self.released_at),
            "healthySince": _iso(self.healthy_since),
            "restarts": dict(self.restarts),
            "fpsBefore": {k: dict(v) for k, v in self.fps_before.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeProgress:
        return cls(
            node=str(data["node"]),
            wave=int(data["wave"]),
            instances=tuple(str(i) for i in data.get("instances") or ()),
            state=NodeState(str(data.get("state") or NodeState.PENDING.value)),
            reason=str(data.get("reason") or ""),
            released_at=_time(data.get("releasedAt")),
            healthy_since=_time(data.get("healthySince")),
            restarts={str(k): int(v) for k, v in (data.get("restarts") or {}).items()},
            fps_before={
                str(k): {str(c): float(f) for c, f in v.items()}
                for k, v in (data.get("fpsBefore") or {}).items()
            },
        )


@dataclass(frozen=True)
class Rollout:
    """One revision's rollout: its strategy (as it was when the revision was stored), waves, per-node progress,
    state and the reason it is in it; ``from_revision``: the last good revision (where an abort returns to);
    ``commit``/``manifests_hash``: the source of the revision (what an abort's pin holds)."""

    revision: int
    from_revision: int | None
    strategy: RolloutStrategy
    waves: tuple[str, ...]
    nodes: tuple[NodeProgress, ...]
    since: datetime
    wave: int = 0
    state: RolloutState = RolloutState.PROGRESSING
    reason: str = ""
    commit: str | None = None
    manifests_hash: str = ""
    updated: datetime | None = None
    finished: datetime | None = None
    by: str = ""
    """Who promoted, paused, resumed or aborted it last."""

    @property
    def failed(self) -> list[NodeProgress]:
        return [p for p in self.nodes if p.state is NodeState.FAILED]

    @property
    def released(self) -> list[NodeProgress]:
        return [p for p in self.nodes if p.released_at is not None]

    def progress(self, node: str) -> NodeProgress | None:
        return next((p for p in self.nodes if p.node == node), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "fromRevision": self.from_revision,
            "strategy": self.strategy.model_dump(mode="json", exclude_none=True),
            "waves": list(self.waves),
            "nodes": [p.to_json() for p in self.nodes],
            "since": self.since.isoformat(),
            "wave": self.wave,
            "state": self.state.value,
            "reason": self.reason,
            "commit": self.commit,
            "manifestsHash": self.manifests_hash,
            "updated": _iso(self.updated),
            "finished": _iso(self.finished),
            "by": self.by,
        }

    @classmethod
    def from_json(cls, data: Any) -> Rollout | None:
        """The rollout of its JSON form; None for None or a malformed value (never raises: read every second)."""
        if not isinstance(data, Mapping):
            return None
        try:
            since = _time(data.get("since"))
            if since is None:
                return None
            from_revision = data.get("fromRevision")
            return cls(
                revision=int(data["revision"]),
                from_revision=int(from_revision) if from_revision is not None else None,
                strategy=RolloutStrategy.model_validate(data["strategy"]),
                waves=tuple(str(w) for w in data.get("waves") or ()),
                nodes=tuple(NodeProgress.from_json(p) for p in data.get("nodes") or ()),
                since=since,
                wave=int(data.get("wave") or 0),
                state=RolloutState(str(data.get("state") or RolloutState.PROGRESSING.value)),
                reason=str(data.get("reason") or ""),
                commit=str(data["commit"]) if data.get("commit") else None,
                manifests_hash=str(data.get("manifestsHash") or ""),
                updated=_time(data.get("updated")),
                finished=_time(data.get("finished")),
                by=str(data.get("by") or ""),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    at = datetime.fromisoformat(str(value))
    if at.tzinfo is None:
        raise ValueError("a rollout's times carry their zone")
    return at


def start_rollout(
    revision: int,
    from_revision: int | None,
    strategy: RolloutStrategy,
    governed: Mapping[str, Sequence[str]],
    labels: Mapping[str, Mapping[str, str]],
    now: datetime,
    *,
    commit: str | None = None,
    manifests_hash: str = "",
) -> Rollout:
    """A new rollout of ``governed`` (node → its governed instances) in ``strategy``'s waves; nothing released
    yet (the first :func:`step` releases the first nodes)."""
    waves = assign_waves(strategy, list(governed), labels)
    progress = [
        NodeProgress(node, index, tuple(governed[node]))
        for index, (_name, members) in enumerate(waves)
        for node in members
    ]
    return Rollout(
        revision=revision,
        from_revision=from_revision,
        strategy=strategy,
        waves=tuple(name for name, _members in waves),
        nodes=tuple(progress),
        since=now,
        commit=commit,
        manifests_hash=manifests_hash,
        updated=now,
    )


# ------------------------------------------------------------------------------------------ readings and a step


@dataclass(frozen=True)
class InstanceReading:
    state: str
    config_hash: str | None
    restarts: int = 0
    conditions: tuple[str, ...] = ()
    """``reason: message`` of each condition the agent reports for it."""
    fps: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class NodeReading:
    """A node's latest report as the gate reads it: heard or not, whether it holds its desired config (node hash),
    the configs it refused (their reasons) and its governed instances' desired config hashes and readings."""

    online: bool
    received: bool
    desired: Mapping[str, str]
    """Instance → its desired config hash (the released config)."""
    instances: Mapping[str, InstanceReading] = field(default_factory=dict)
    refused: str = ""


@dataclass(frozen=True)
class Step:
    rollout: Rollout
    release: tuple[str, ...] = ()
    """Nodes whose held configs go out now."""
    events: tuple[tuple[str | None, str], ...] = ()
    """(node or None, what happened): one per transition."""

    @property
    def aborting(self) -> bool:
        return self.rollout.state is RolloutState.ABORTING


def _health(
    progress: NodeProgress, reading: NodeReading | None, strategy: RolloutStrategy
) -> tuple[bool | None, str, dict[str, int]]:
    """(True: healthy, False: failed, None: not yet), why, and the restart baselines (taken when an instance first
    runs its desired config)."""
    baselines = dict(progress.restarts)
    if reading is None:
        return None, "no report yet", baselines
    if reading.refused:
        return False, f"the agent refused the config: {reading.refused}", baselines
    if not reading.online:
        return None, "node not heard", baselines
    if not reading.received:
        return None, "the node does not hold its new config yet", baselines
    waiting: list[str] = []
    for name in progress.instances:
        seen = reading.instances.get(name)
        want = reading.desired.get(name)
        if seen is None or want is None or seen.config_hash != want:
            waiting.append(f"{name} does not run its new config yet")
            continue
        base = baselines.setdefault(name, seen.restarts)
        restarts = seen.restarts - base
        if restarts > strategy.gate.maxRestarts:
            return (
                False,
                f"{name} restarted {restarts} times since it started its new config (crash loop)",
                baselines,
            )
        if seen.state == "backoff":
            return (
                False,
                f"{name}: the agent backs off starting it: {seen.error or 'start failed'}",
                baselines,
            )
        if seen.state != "running":
            waiting.append(f"{name} is {seen.state}" + (f": {seen.error}" if seen.error else ""))
            continue
        blocking = [c for c in seen.conditions if c.split(":", 1)[0] not in NOT_YET]
        if blocking:
            waiting.append(f"{name}: {blocking[0]}")
            continue
        ratio = strategy.gate.minFpsRatio
        before = progress.fps_before.get(name, {})
        if ratio is not None:
            for camera, old in sorted(before.items()):
                now_fps = seen.fps.get(camera)
                if old > 0 and (now_fps is None or now_fps < ratio * old):
                    got = "no FPS" if now_fps is None else f"{now_fps:.1f} FPS"
                    waiting.append(f"{name} camera {camera}: {got} < {ratio:g} of {old:.1f} before")
                    break
    if waiting:
        return None, "; ".join(waiting), baselines
    return True, "healthy", baselines


def _abort_reason(rollout: Rollout) -> str | None:
    rule = rollout.strategy.abort
    failed, released = len(rollout.failed), len(rollout.released)
    if failed >= rule.failures:
        return f"{failed} of {released} released nodes failed (abort at {rule.failures})"
    if rule.percent is not None and released >= rule.after and failed * 100 >= rule.percent * released:
        return f"{failed} of {released} released nodes failed (≥ {rule.percent} % after {rule.after})"
    return None


def step(
    rollout: Rollout,
    readings: Mapping[str, NodeReading],
    now: datetime,
    *,
    cordoned: frozenset[str] = frozenset(),
    fps_now: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    command: tuple[Command, str] | None = None,
) -> Step:
    """One decision: read the gates of the released nodes, apply ``command`` (what, by whom), fire the abort rule,
    release the next nodes. ``fps_now``: node → instance → camera → FPS now (the baseline of nodes released
    now). A finished rollout only releases nodes that were cordoned and no longer are."""
    events: list[tuple[str | None, str]] = []
    strategy = rollout.strategy
    nodes = {p.node: p for p in rollout.nodes}
    state, reason, by = rollout.state, rollout.reason, rollout.by
    if rollout.state in FINISHED or rollout.state is RolloutState.ABORTING:
        if rollout.state is not RolloutState.SUCCEEDED:
            return Step(rollout)
        freed = [p.node for p in rollout.nodes if p.state is NodeState.CORDONED and p.node not in cordoned]
        if not freed:
            return Step(rollout)
        for node in freed:
            nodes[node] = replace(nodes[node], state=NodeState.PASSED, reason="released once uncordoned")
            events.append((node, "uncordoned: its held config goes out"))
        done = replace(rollout, nodes=tuple(nodes[p.node] for p in rollout.nodes), updated=now)
        return Step(done, tuple(freed), tuple(events))
    if command is not None:
        what, who = command
        by = who
        if what is Command.ABORT:
            state, reason = RolloutState.ABORTING, f"aborted by {who}"
        elif what is Command.PAUSE and state is RolloutState.PROGRESSING:
            state, reason = RolloutState.PAUSED, f"paused by {who}"
            events.append((None, reason))
        elif what in (Command.RESUME, Command.PROMOTE) and state in (
            RolloutState.PAUSED,
            RolloutState.WAITING_PROMOTE,
        ):
            if what is Command.PROMOTE and state is RolloutState.WAITING_PROMOTE:
                events.append((None, f"promoted by {who}: wave {rollout.waves[rollout.wave]} starts"))
            state, reason = RolloutState.PROGRESSING, f"{what.value}d by {who}"
            if what is Command.RESUME:
                events.append((None, reason))
        if state is RolloutState.ABORTING:
            events.append((None, reason))
    # gates
    for name, progress in list(nodes.items()):
        if progress.state not in (NodeState.RELEASED, NodeState.SOAKING):
            continue
        healthy, why, baselines = _health(progress, readings.get(name), strategy)
        updated = replace(progress, restarts=baselines)
        deadline = (progress.released_at or now) + timedelta(seconds=strategy.gate.deadlineSeconds)
        if healthy is False:
            updated = replace(updated, state=NodeState.FAILED, reason=why, healthy_since=None)
            events.append((name, f"failed: {why}"))
        elif healthy is True:
            since = progress.healthy_since or now
            if now - since >= timedelta(seconds=strategy.gate.soakSeconds):
                updated = replace(
                    updated, state=NodeState.PASSED, reason="healthy for the soak time", healthy_since=since
                )
                events.append((name, f"passed the gate (healthy {strategy.gate.soakSeconds} s)"))
            else:
                left = strategy.gate.soakSeconds - (now - since).total_seconds()
                updated = replace(
                    updated,
                    state=NodeState.SOAKING,
                    healthy_since=since,
                    reason=f"healthy, soaking ({left:.0f} s left)",
                )
        elif now >= deadline:
            updated = replace(
                updated,
                state=NodeState.FAILED,
                healthy_since=None,
                reason=f"not healthy {strategy.gate.deadlineSeconds} s after its release: {why}",
            )
            events.append((name, f"failed: {updated.reason}"))
        else:
            updated = replace(updated, state=NodeState.RELEASED, healthy_since=None, reason=why)
        nodes[name] = updated
    current = replace(rollout, nodes=tuple(nodes[p.node] for p in rollout.nodes))
    if state is not RolloutState.ABORTING:
        abort = _abort_reason(current)
        if abort is not None:
            state, reason = RolloutState.ABORTING, abort
            events.append((None, f"abort: {abort}"))
    release: list[str] = []
    wave = rollout.wave
    if state is RolloutState.PROGRESSING:
        while wave < len(rollout.waves):
            members = [nodes[p.node] for p in rollout.nodes if p.wave == wave]
            for p in members:
                if p.state is NodeState.PENDING and p.node in cordoned:
                    nodes[p.node] = replace(
                        p, state=NodeState.CORDONED, reason="cordoned: held until uncordoned"
                    )
                    events.append((p.node, "cordoned: left out of the rollout until uncordoned"))
                elif p.state is NodeState.CORDONED and p.node not in cordoned:
                    nodes[p.node] = replace(p, state=NodeState.PENDING, reason="")
            members = [nodes[p.node] for p in rollout.nodes if p.wave == wave]
            in_flight = sum(
                len(p.instances) for p in members if p.state in (NodeState.RELEASED, NodeState.SOAKING)
            )
            for p in members:
                if p.state is not NodeState.PENDING:
                    continue
                if in_flight and in_flight + len(p.instances) > strategy.maxUnavailable:
                    break
                nodes[p.node] = replace(
                    p,
                    state=NodeState.RELEASED,
                    released_at=now,
                    reason="released",
                    fps_before=dict((fps_now or {}).get(p.node, {})),
                )
                release.append(p.node)
                in_flight += len(p.instances)
            members = [nodes[p.node] for p in rollout.nodes if p.wave == wave]
            if any(p.state in (NodeState.PENDING, NodeState.RELEASED, NodeState.SOAKING) for p in members):
                reason = f"wave {rollout.waves[wave]}: " + _waiting(members)
                break
            events.append((None, f"wave {rollout.waves[wave]} done ({_tally(members)})"))
            paused = wave < len(strategy.waves) and strategy.waves[wave].pause
            wave += 1
            if wave >= len(rollout.waves):
                state, reason = RolloutState.SUCCEEDED, f"every wave done ({_tally(list(nodes.values()))})"
                events.append((None, reason))
                break
            if paused:
                state = RolloutState.WAITING_PROMOTE
                reason = f"wave {rollout.waves[wave - 1]} passed: waiting for `dsfleet rollout promote`"
                events.append((None, reason))
                break
    for node in release:
        events.append((node, f"released in wave {rollout.waves[nodes[node].wave]}"))
    finished = now if state in FINISHED else rollout.finished
    out = replace(
        rollout,
        nodes=tuple(nodes[p.node] for p in rollout.nodes),
        wave=min(wave, max(len(rollout.waves) - 1, 0)) if state is not RolloutState.SUCCEEDED else wave,
        state=state,
        reason=reason,
        updated=now,
        finished=finished,
        by=by,
    )
    return Step(out, tuple(release), tuple(events))


def _tally(members: Sequence[NodeProgress]) -> str:
    counts: dict[str, int] = {}
    for p in members:
        counts[p.state.value] = counts.get(p.state.value, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no nodes"


def _waiting(members: Sequence[NodeProgress]) -> str:
    open_ = [p for p in members if p.state in (NodeState.RELEASED, NodeState.SOAKING)]
    pending = sum(1 for p in members if p.state is NodeState.PENDING)
    parts = [f"{p.node} {p.reason}" for p in open_[:3]]
    if pending:
        parts.append(f"{pending} pending (maxUnavailable)")
    return "; ".join(parts)
