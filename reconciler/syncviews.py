"""The status document's sync holds: the rollback pin (``pin``) and the newest rollout (``rollout``), and the
nodes whose configs a rollout holds back (pure; no store, no clock)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dsfleet.reconciler.planning.conditions import HeldChange, redact
from dsfleet.reconciler.planning.pins import Pin, unpin_condition
from dsfleet.reconciler.planning.rollouts import NodeState, Rollout, RolloutState, is_rollout_hold

if TYPE_CHECKING:
    from dsfleet.reconciler.store.snapshots import HeldConfig

__all__ = ["pin_view", "rollout_view", "rollout_waits"]


def pin_view(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The status document's ``pin``: the rollback pin that holds automatic sync (None: not pinned)."""
    pin = Pin.from_json(data)
    if pin is None:
        return None
    scope = f"node {pin.node}" if pin.node else "the fleet"
    unpin = unpin_condition(pin)
    return {
        "revision": pin.revision,
        "rollbackRevision": pin.rollback_revision,
        "fromRevision": pin.from_revision,
        "node": pin.node,
        "commit": pin.source.commit,
        "manifestsHash": pin.source.manifests_hash,
        "since": pin.since.isoformat(),
        "by": pin.by,
        "unpinWhen": unpin,
        "summary": (
            f"PINNED: {scope} rolled back to revision {pin.revision} (from revision {pin.from_revision}) by "
            f"{pin.by} since {pin.since.isoformat()}; automatic sync is held until {unpin}"
        ),
    }


def rollout_view(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The status document's ``rollout``: the newest rollout, its waves and per-node progress (None: none yet)."""
    rollout = Rollout.from_json(data)
    if rollout is None:
        return None
    out = rollout.to_json()
    out.pop("strategy", None)
    out["governs"] = list(rollout.strategy.governs)
    out["gate"] = rollout.strategy.gate.model_dump(mode="json", exclude_none=True)
    for node in out["nodes"]:
        node.pop("fpsBefore", None)
        node.pop("restarts", None)
        node["reason"] = redact(node["reason"])
    out["reason"] = redact(out["reason"])
    wave = rollout.waves[rollout.wave] if rollout.wave < len(rollout.waves) else None
    words = {
        RolloutState.PROGRESSING: f"ROLLOUT of revision {rollout.revision} progressing, wave {wave}",
        RolloutState.PAUSED: f"ROLLOUT of revision {rollout.revision} PAUSED in wave {wave}",
        RolloutState.WAITING_PROMOTE: f"ROLLOUT of revision {rollout.revision} waiting for `dsfleet rollout "
        "promote`",
        RolloutState.ABORTING: f"ROLLOUT of revision {rollout.revision} aborting",
        RolloutState.ABORTED: f"ROLLOUT of revision {rollout.revision} ABORTED: revision {rollout.revision} failed, "
        f"the changed nodes returned to revision {rollout.from_revision}",
        RolloutState.SUCCEEDED: f"rollout of revision {rollout.revision} succeeded",
        RolloutState.SUPERSEDED: f"rollout of revision {rollout.revision} superseded",
    }
    done = sum(1 for p in rollout.nodes if p.state is NodeState.PASSED)
    out["summary"] = f"{words[rollout.state]} ({done}/{len(rollout.nodes)} nodes passed): {out['reason']}"
    return out


def rollout_waits(data: Mapping[str, Any] | None, held: Sequence[HeldConfig]) -> dict[str, HeldChange]:
    """The nodes whose configs a rollout holds back, with what they wait for."""
    rollout = Rollout.from_json(data)
    out = {}
    for h in held:
        if not is_rollout_hold(h.hold):
            continue
        progress = rollout.progress(h.node) if rollout is not None else None
        if rollout is None or progress is None:
            out[h.node] = HeldChange(
                False, "held by a rollout no longer running (released by the coordinator)"
            )
        elif progress.state is NodeState.CORDONED:
            out[h.node] = HeldChange(
                False, f"cordoned: the rollout of revision {rollout.revision} leaves it out"
            )
        else:
            out[h.node] = HeldChange(
                False,
                f"held by the rollout of revision {rollout.revision} until wave {rollout.waves[progress.wave]}",
            )
    return out
