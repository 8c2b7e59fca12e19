"""Store a rollback: the node configs of a recorded revision again, under new generations, with a pin — the one
path ``dsfleet rollback`` and an aborted rollout take (:mod:`dsfleet.reconciler.planning.pins`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dsfleet.reconciler.planning.pins import Pin, SourceState, changed_configs
from dsfleet.reconciler.ports import StorePort
from dsfleet.reconciler.store import AppliedRevision, NewRevision, NodeChange, RevisionRecord

__all__ = ["RollbackRequest", "roll_back"]


@dataclass(frozen=True)
class RollbackRequest:
    """Return ``node`` (None: the fleet) to ``target``'s configs, rolling back from revision ``current``;
    ``source``: where the manifests source pointed at what is rolled back from (what the pin holds)."""

    target: RevisionRecord
    current: int
    source: SourceState
    by: str
    node: str | None = None
    why: str = ""
    """Said in the revision's message and the ``pinned`` event (empty: a rollback by hand)."""


def roll_back(
    store: StorePort,
    request: RollbackRequest,
    now: datetime,
    encode: Callable[[str, int, dict[str, Any] | None], tuple[str, str, bytes | None, dict[str, str]]],
    *,
    states: Mapping[str, Callable[[int], Any]] | None = None,
) -> AppliedRevision | None:
    """Store the rollback and its pin in one transaction (with ``states``: sync-state key → value of the
    rollback's revision id); None when no node config differs from the target's (nothing stored)."""
    target = request.target
    wanted = store.latest_node_configs(at_revision=target.id)
    now_configs = store.latest_node_configs()
    restore, remove = changed_configs(
        {n: c.config_hash for n, c in wanted.items()},
        {n: c.config_hash for n, c in now_configs.items()},
        node=request.node,
    )
    if not restore and not remove:
        return None
    changes = [
        NodeChange(node=n, config_hash=wanted[n].config_hash, payload=wanted[n].payload)
        for n in sorted(restore)
    ] + [NodeChange(node=n, config_hash=None, payload=None) for n in sorted(remove)]
    scope = f"node {request.node}" if request.node else "the fleet"
    what = f"rollback of {scope} to revision {target.id} (from revision {request.current})"
    if request.why:
        what += f": {request.why}"
    rev = NewRevision(
        source="rollback",
        created_at=now,
        manifests_hash=target.manifests_hash,
        git_commit=target.git_commit,
        git_author=request.by,
        git_message=what[:1000],
    )

    def pin_of(rollback_id: int) -> dict[str, Any]:
        return Pin(
            revision=target.id,
            rollback_revision=rollback_id,
            from_revision=request.current,
            source=request.source,
            since=now,
            by=request.by,
            node=request.node,
        ).to_json()

    return store.store_rollback(rev, changes, encode, pin_of, f"{what} by {request.by}", states=states)
