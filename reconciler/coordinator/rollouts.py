"""The coordinator's side of progressive rollouts: once a second it reads the rollout (the store's ``rollout``
sync state), an operator's command waiting for it, the released nodes' latest reports, and asks
:func:`dsfleet.reconciler.planning.rollouts.step`; it releases the held rows of the nodes released, records one
``rollout`` event per transition, and on an abort returns every changed node to the last good revision with a
rollback pin on the failed revision's source (:func:`dsfleet.reconciler.rollbacks.roll_back`), in one
transaction with the rollout's final state. Everything lives in the store, so a restarted coordinator goes on
where the last one stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from dsfleet.reconciler.planning.pins import SourceState
from dsfleet.reconciler.planning.rollouts import (
    FINISHED,
    Command,
    InstanceReading,
    NodeReading,
    NodeState,
    Rollout,
    RolloutState,
    is_rollout_hold,
    step,
)
from dsfleet.reconciler.ports import StorePort
from dsfleet.reconciler.rollbacks import RollbackRequest, roll_back
from dsfleet.reconciler.staging import HISTORY_LENGTH, finished_summary, fps_by_instance
from dsfleet.reconciler.store import NodeStatusRow, StoredNodeConfig
from dsfleet.reconciler.store.values import CORDONED, ROLLOUT, ROLLOUT_HISTORY, ROLLOUT_REQUEST

__all__ = ["EVENT_KIND", "Rollouts", "node_reading"]

log = logging.getLogger("dsfleet.coordinator")

EVENT_KIND = "rollout"
ABORTED_BY = "the coordinator (rollout abort)"


def node_reading(
    config: StoredNodeConfig | None,
    status: NodeStatusRow | None,
    observed: list[dict[str, Any]],
    *,
    online: bool,
) -> NodeReading:
    """A released node's report as the gate reads it, from the store's rows."""
    desired = {
        str(i.get("name")): str(i.get("configHash"))
        for i in (config.payload.get("instances") or () if config is not None else ())
    }
    received = config is not None and status is not None and status.observed_config_hash == config.config_hash
    refused = [
        f"{r.get('reason') or 'refused'}: {r.get('detail') or ''}".rstrip(": ")
        for r in (status.rejections if status is not None else ())
        if config is not None and r.get("generation") == config.generation
    ]
    instances = {
        str(row["instance"]): InstanceReading(
            state=str(row["state"]),
            config_hash=row.get("config_hash"),
            restarts=int(row.get("restarts") or 0),
            conditions=tuple(
                f"{c.get('reason') or ''}: {c.get('message') or ''}" for c in row.get("conditions") or ()
            ),
            fps={str(k): float(v) for k, v in (row.get("fps") or {}).items()},
            error=row.get("last_error"),
        )
        for row in observed
    }
    return NodeReading(online, received, desired, instances, refused[0] if refused else "")


def _command(value: Any, revision: int) -> tuple[Command, str] | None:
    """An operator's request for this rollout (one aimed at another revision is dropped)."""
    if not isinstance(value, Mapping):
        return None
    try:
        what = Command(str(value.get("action")))
    except ValueError:
        return None
    aimed = value.get("revision")
    if aimed is not None and aimed != revision:
        return None
    return what, str(value.get("by") or "unknown")


@dataclass
class Rollouts:
    store: StorePort

    def tick(
        self,
        now: datetime,
        configs: Mapping[str, StoredNodeConfig],
        online: Callable[[str], bool],
        encode: Callable[[str, int, dict[str, Any] | None], tuple[str, str, bytes | None, dict[str, str]]],
    ) -> list[int]:
        """One decision; returns the outbox ids released (the caller pumps the publisher)."""
        store = self.store
        rollout = Rollout.from_json(store.sync_state(ROLLOUT))
        held: dict[str, int] = {}
        for row in store.held_outbox():
            if is_rollout_hold(row.hold):
                held[row.key] = row.id  # the newest per node (rows come oldest first)
        request = store.sync_state(ROLLOUT_REQUEST)
        command = None
        if request is not None:
            store.set_sync_state(ROLLOUT_REQUEST, None, now)
            command = _command(request, rollout.revision) if rollout is not None else None
            if command is None:
                log.warning(
                    "rollout request dropped (no running rollout of that revision) request=%s", request
                )
        if rollout is None:
            return self._release(held, list(held), "no rollout holds them")
        if rollout.state in FINISHED and not held:
            return []
        cordoned = frozenset(store.sync_state(CORDONED) or {})
        statuses = {s.node: s for s in store.node_statuses()}
        readings = {
            p.node: node_reading(
                configs.get(p.node),
                statuses.get(p.node),
                store.observed_details(p.node),
                online=online(p.node),
            )
            for p in rollout.nodes
            if p.state in (NodeState.RELEASED, NodeState.SOAKING)
        }
        pending = {p.node for p in rollout.nodes if p.state is NodeState.PENDING}
        fps = (
            fps_by_instance([r for r in store.observed_details() if r["node"] in pending]) if pending else {}
        )
        result = step(rollout, readings, now, cordoned=cordoned, fps_now=fps, command=command)
        new = result.rollout
        for node, message in result.events:
            log.info("rollout revision=%d node=%s %s", new.revision, node or "-", message)
            store.record_event(now, EVENT_KIND, f"revision {new.revision}: {message}", node=node)
        if new.state is RolloutState.ABORTING:
            self._abort(new, now, encode)
            return []
        if new != rollout:
            store.set_sync_state(ROLLOUT, new.to_json(), now)
            if new.state is RolloutState.SUCCEEDED and rollout.state is not RolloutState.SUCCEEDED:
                self._remember(new, now)
        out = {p.node for p in new.nodes if p.released_at is not None or p.state is NodeState.PASSED}
        gone = [n for n in held if new.progress(n) is None]
        return self._release(held, [n for n in held if n in out] + gone, "released")

    def _release(self, held: Mapping[str, int], nodes: list[str], why: str) -> list[int]:
        ids = [held[n] for n in nodes if n in held]
        if not ids:
            return []
        self.store.release_outbox(ids)
        log.info("rollout: held configs go out nodes=%s (%s)", ",".join(sorted(nodes)), why)
        return ids

    def _remember(self, rollout: Rollout, now: datetime) -> None:
        history = [h for h in self.store.sync_state(ROLLOUT_HISTORY) or [] if isinstance(h, dict)]
        self.store.set_sync_state(
            ROLLOUT_HISTORY, [finished_summary(rollout), *history][:HISTORY_LENGTH], now
        )

    def _abort(
        self,
        rollout: Rollout,
        now: datetime,
        encode: Callable[[str, int, dict[str, Any] | None], tuple[str, str, bytes | None, dict[str, str]]],
    ) -> None:
        """Return every changed node to the last good revision, pinned on the failed revision's source, with the
        rollout marked aborted (one transaction)."""
        aborted = replace(rollout, state=RolloutState.ABORTED, finished=now, updated=now)
        history = [h for h in self.store.sync_state(ROLLOUT_HISTORY) or [] if isinstance(h, dict)]
        states: dict[str, Callable[[int], Any]] = {
            ROLLOUT: lambda _rid: aborted.to_json(),
            ROLLOUT_HISTORY: lambda _rid: [finished_summary(aborted), *history][:HISTORY_LENGTH],
        }
        target = self.store.revision(rollout.from_revision) if rollout.from_revision is not None else None
        applied = None
        if target is not None and target.accepted:
            request = RollbackRequest(
                target=target,
                current=rollout.revision,
                source=SourceState(rollout.commit, rollout.manifests_hash),
                by=ABORTED_BY,
                why=f"the rollout of revision {rollout.revision} was aborted: {rollout.reason}",
            )
            applied = roll_back(self.store, request, now, encode, states=states)
        if applied is None:
            for key, value in states.items():
                self.store.set_sync_state(key, value(0), now)
            log.error(
                "rollout revision=%d aborted: %s; no earlier revision to return to (nodes not yet released keep "
                "their configs)",
                rollout.revision,
                rollout.reason,
            )
            return
        log.error(
            "rollout revision=%d aborted: %s; revision %d restores revision %d on nodes=%s, auto sync pinned",
            rollout.revision,
            rollout.reason,
            applied.revision_id,
            target.id if target else -1,
            ",".join(sorted(applied.generations)),
        )
        self.store.record_event(
            now,
            EVENT_KIND,
            f"revision {rollout.revision} failed: {rollout.reason}; revision {applied.revision_id} returns "
            f"{len(applied.generations)} nodes to revision {rollout.from_revision}",
        )
