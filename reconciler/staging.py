"""Start a rollout with the revision that needs one: which changed nodes it governs, which of them go out with
the revision and which are stored held (:mod:`dsfleet.reconciler.planning.rollouts`), and the rollout's state,
written in the revision's own transaction. A rollout still running when a newer revision arrives is superseded:
its nodes still held join the new rollout (they never got the older config), or go out when the new revision has
none to govern them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dsfleet.policies.syncs import fleet_rollout
from dsfleet.reconciler.compiling.desired import DesiredState
from dsfleet.reconciler.planning.plans import Plan
from dsfleet.reconciler.planning.rollouts import (
    FINISHED,
    HOLD_KIND,
    NodeState,
    Rollout,
    RolloutState,
    governed_instances,
    is_rollout_hold,
    start_rollout,
    step,
)
from dsfleet.reconciler.ports import StorePort
from dsfleet.reconciler.store import NewRevision
from dsfleet.reconciler.store.values import CORDONED, ROLLOUT, ROLLOUT_HISTORY
from dsfleet.schemas.nodeconfigs import NodeConfig

__all__ = ["HISTORY_LENGTH", "StagedRollout", "finished_summary", "fps_by_instance", "stage_rollout"]

HISTORY_LENGTH = 50


@dataclass
class StagedRollout:
    holds: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Node → the hold of its outbox row (the nodes of later waves)."""
    states: dict[str, Callable[[int], Any]] = field(default_factory=dict)
    """Sync-state writes of the revision's transaction (the new rollout; the one it supersedes, in history)."""
    rollout: Rollout | None = None
    """The new rollout (its ``revision`` filled in by :meth:`started`)."""

    def started(self, revision: int) -> Rollout | None:
        return replace(self.rollout, revision=revision) if self.rollout is not None else None


def finished_summary(rollout: Rollout) -> dict[str, Any]:
    """What ``history`` keeps of a finished rollout."""
    return {
        "revision": rollout.revision,
        "fromRevision": rollout.from_revision,
        "state": rollout.state.value,
        "reason": rollout.reason,
        "since": rollout.since.isoformat(),
        "finished": (rollout.finished or rollout.updated or rollout.since).isoformat(),
        "nodes": len(rollout.nodes),
        "failed": [p.node for p in rollout.failed],
    }


def fps_by_instance(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Node → instance → camera → FPS, from the store's observed rows."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        fps = row.get("fps")
        if isinstance(fps, dict) and fps:
            out.setdefault(str(row["node"]), {})[str(row["instance"])] = {
                str(k): float(v) for k, v in fps.items()
            }
    return out


def stage_rollout(
    store: StorePort,
    plan: Plan,
    current: Mapping[str, NodeConfig],
    desired: DesiredState,
    revision: NewRevision,
) -> StagedRollout:
    assert desired.configs is not None
    now = revision.created_at
    previous = Rollout.from_json(store.sync_state(ROLLOUT))
    # a rollout still running, or a finished one with cordoned nodes still held: its held nodes carry over
    unfinished = (
        previous
        if previous is not None
        and (previous.state not in FINISHED or any(p.state is NodeState.CORDONED for p in previous.nodes))
        else None
    )
    states: dict[str, Callable[[int], Any]] = {}
    if unfinished is not None and unfinished.state not in FINISHED:
        history = [h for h in store.sync_state(ROLLOUT_HISTORY) or [] if isinstance(h, dict)]

        def superseded(rid: int) -> Any:
            done = replace(
                unfinished,
                state=RolloutState.SUPERSEDED,
                reason=f"superseded by revision {rid}",
                finished=now,
                updated=now,
            )
            return [finished_summary(done), *history][:HISTORY_LENGTH]

        states[ROLLOUT_HISTORY] = superseded
    strategy = fleet_rollout(desired.fleet)
    if strategy is None:
        if unfinished is not None:
            states[ROLLOUT] = lambda rid: (
                None
            )  # its held nodes are released by the coordinator (no rollout holds them)
        return StagedRollout(states=states)
    governed = governed_instances(plan, current, desired.configs, strategy.governs)
    if unfinished is not None:
        held = {row.key for row in store.held_outbox() if is_rollout_hold(row.hold)}
        for progress in unfinished.nodes:
            config = desired.configs.get(progress.node)
            if progress.node in held and progress.node not in governed and config is not None:
                names = tuple(i for i in progress.instances if config.instance(i) is not None)
                governed[progress.node] = names or tuple(i.name for i in config.instances)
    if not governed:
        if unfinished is not None:
            states[ROLLOUT] = lambda rid: None
        return StagedRollout(states=states)
    last = store.last_accepted_revision()
    from_revision = unfinished.from_revision if unfinished is not None else (last.id if last else None)
    labels = {name: dict(node.metadata.labels) for name, node in desired.fleet.nodes.items()}
    cordoned = frozenset(store.sync_state(CORDONED) or {})
    fps = fps_by_instance(store.observed_details())
    rollout = start_rollout(
        0,
        from_revision,
        strategy,
        governed,
        labels,
        now,
        commit=revision.git_commit,
        manifests_hash=revision.manifests_hash,
    )
    first = step(rollout, {}, now, cordoned=cordoned, fps_now=fps)
    changed = {n.name for n in plan.changed}
    holds = {n: {"kind": HOLD_KIND} for n in governed if n in changed and n not in first.release}
    states[ROLLOUT] = lambda rid: replace(first.rollout, revision=rid).to_json()
    return StagedRollout(holds=holds, states=states, rollout=first.rollout)
