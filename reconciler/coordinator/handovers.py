"""The coordinator's side of ordered camera moves: reads the held outbox rows and the target nodes' latest
reports from the store, asks :func:`dsfleet.reconciler.planning.handovers.handover_decision`, and releases a row
(the publisher sends it next) or notes the hold's new state and reason. One ``handover`` event and one log line per
transition (started, blocked, waiting again, done, timed out); the state lives in the row's hold, so a restarted
coordinator goes on where the last one stopped without repeating events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dsfleet.reconciler.planning.handovers import (
    HandoverState,
    Hold,
    TargetCondition,
    TargetInstance,
    TargetReport,
    handover_decision,
    refresh_moves,
)
from dsfleet.reconciler.planning.rollouts import is_rollout_hold
from dsfleet.reconciler.ports import StorePort
from dsfleet.reconciler.store import NodeStatusRow, StoredNodeConfig
from dsfleet.schemas.errors import DsfleetError
from dsfleet.schemas.nodeconfigs import NodeConfig

__all__ = ["EVENT_KIND", "Handovers", "target_report"]

log = logging.getLogger("dsfleet.coordinator")

EVENT_KIND = "handover"
_WORDS = {
    HandoverState.WAITING: "waiting",
    HandoverState.BLOCKED: "blocked",
    HandoverState.DONE: "done",
    HandoverState.TIMED_OUT: "timed out",
}


def target_report(
    node: str,
    config: StoredNodeConfig | None,
    status: NodeStatusRow | None,
    observed: Sequence[Mapping[str, Any]],
    *,
    online: bool,
    connection: str,
) -> TargetReport:
    """A target node's report as the decision reads it, from the store's rows: ``status`` (its node status:
    the node config hash it holds, the configs it refused) and ``observed`` (its instances)."""
    received = config is not None and status is not None and status.observed_config_hash == config.config_hash
    refusals = tuple(
        (str(r.get("reason") or ""), str(r.get("detail") or ""))
        for r in (status.rejections if status is not None else ())
        if config is not None and r.get("generation") == config.generation
    )
    instances = {
        str(row["instance"]): TargetInstance(
            name=str(row["instance"]),
            state=str(row["state"]),
            config_hash=row.get("config_hash"),
            conditions=tuple(
                TargetCondition(
                    reason=str(c.get("reason") or ""),
                    message=str(c.get("message") or ""),
                    cameras=tuple(str(x) for x in c.get("cameras") or ()),
                )
                for c in row.get("conditions") or ()
            ),
        )
        for row in observed
    }
    return TargetReport(node, online, connection, received, instances, refusals)


@dataclass
class Handovers:
    """The held rows this coordinator decides, and what it last decided of each."""

    store: StorePort
    held: dict[int, tuple[str, Hold]] = field(default_factory=dict)
    """Outbox id → (source node, its hold), the newest held row of each node, as last read."""
    _parsed: dict[tuple[str, int], NodeConfig] = field(default_factory=dict)

    @property
    def targets(self) -> set[str]:
        return {m.target_node for _node, hold in self.held.values() for m in hold.moves}

    def read(self) -> None:
        """Read the held rows again (after an apply, once a second)."""
        newest: dict[str, tuple[int, Hold]] = {}
        stray: list[int] = []
        for row in self.store.held_outbox():
            if is_rollout_hold(row.hold):  # a rollout's wave decides it (coordinator/rollouts.py)
                continue
            hold = Hold.from_json(row.hold)
            if hold is None:
                stray.append(row.id)
                continue
            newest[row.key] = (row.id, hold)
        if stray:  # a hold nobody can read would never be decided: the row goes out
            log.warning("held outbox rows without a readable hold released outbox=%s", stray)
            self.store.release_outbox(stray)
        self.held = {row_id: (node, hold) for node, (row_id, hold) in newest.items()}

    def _config(self, stored: StoredNodeConfig | None) -> NodeConfig | None:
        if stored is None:
            return None
        key = (stored.node, stored.generation)
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = self._parsed[key] = NodeConfig.model_validate(stored.payload)
        return parsed

    def decide(
        self,
        now: datetime,
        configs: Mapping[str, StoredNodeConfig],
        connection: Callable[[str], tuple[bool, str]],
    ) -> list[int]:
        """Decide every held row; returns the ids released (the caller pumps the publisher). ``configs``: the
        latest stored config of each node; ``connection(node)``: (online, words for it)."""
        if not self.held:
            return []
        nodes = {node for node, _hold in self.held.values()} | self.targets
        parsed = {n: c for n in nodes if (c := self._config(configs.get(n))) is not None}
        self._parsed = {k: v for k, v in self._parsed.items() if parsed.get(k[0]) is v}
        statuses = {s.node: s for s in self.store.node_statuses() if s.node in self.targets}
        released: list[int] = []
        for row_id, (node, hold) in sorted(self.held.items()):
            moves = refresh_moves(hold.moves, parsed)
            reports = {}
            for target in sorted({m.target_node for m in moves}):
                online, words = connection(target)
                reports[target] = target_report(
                    target,
                    configs.get(target),
                    statuses.get(target),
                    self.store.observed_details(target),
                    online=online,
                    connection=words,
                )
            decision = handover_decision(moves, hold.deadline, reports, now)
            first = not hold.reason
            if first:
                self._event(now, node, hold, "started", _started(node, hold))
            changed = decision.state is not (HandoverState.WAITING if first else hold.state)
            if changed:
                what = "waiting again" if decision.state is HandoverState.WAITING else _WORDS[decision.state]
                self._event(now, node, hold, what, f"{_moving(hold)}: {decision.reason}")
            if (decision.state, decision.reason) != (hold.state, hold.reason):
                self.store.update_hold(row_id, decision.state.value, decision.reason)
            if decision.release:
                try:
                    self.store.release_outbox([row_id])
                except DsfleetError as exc:
                    log.warning("handover release failed node=%s outbox=%d error=%s", node, row_id, exc)
                    continue
                released.append(row_id)
                self.held.pop(row_id, None)
            else:
                self.held[row_id] = (
                    node,
                    Hold(hold.moves, hold.since, hold.deadline, decision.state, decision.reason),
                )
        return released

    def _event(self, now: datetime, node: str, hold: Hold, what: str, message: str) -> None:
        log.info(
            "handover %s node=%s cameras=%s targets=%s; %s",
            what,
            node,
            ",".join(m.camera for m in hold.moves),
            ",".join(sorted({m.target_node for m in hold.moves})),
            message,
        )
        instance = (
            hold.moves[0].source_instance if len({m.source_instance for m in hold.moves}) == 1 else None
        )
        self.store.record_event(now, EVENT_KIND, f"{what}: {message}", node=node, instance=instance)


def _moving(hold: Hold) -> str:
    parts = [
        f"camera {m.camera} from {m.source_node}/{m.source_instance} to {m.target_node}/{m.target_instance}"
        for m in hold.moves
    ]
    return "; ".join(parts)


def _started(node: str, hold: Hold) -> str:
    return (
        f"{_moving(hold)}: {node}'s config held until the target runs "
        f"{'them' if len(hold.moves) > 1 else 'it'} (at the latest until "
        f"{hold.deadline.strftime('%Y-%m-%d %H:%M:%S UTC')})"
    )
