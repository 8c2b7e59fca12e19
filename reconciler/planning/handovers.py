"""Pure: ordered camera moves between nodes (make-before-break across hosts).

A camera that an instance of node X ran and an instance of another node Y runs in a new revision *moves*. Sent
at once, both configs race: with Y's agent down the camera ran on X and nowhere else… until X took its new config
and dropped it (dark), and with Y missing the camera's secret it ran on neither. So the coordinator orders them:

- :func:`camera_moves` finds the moves of a revision (old configs → new ones), grouped by source node;
  :func:`unordered_sources` names the sources whose moves wait on each other in a cycle (a swap of cameras
  between two nodes): those are not held, as a hold there could only end by the timeout;
- the **target**'s config goes out at once; the **source**'s config is held back in the outbox
  (:class:`Hold`: the moves, since when, the deadline) — the source keeps running the camera meanwhile;
- every tick the coordinator decides each hold from the target nodes' latest reports
  (:func:`handover_decision`): *done* (release the source's config) once every target instance reports its desired
  config hash applied and running, with no condition naming the camera; *blocked* (keep it) while a target
  reports that it cannot take the camera (a condition naming the camera, a failed action of the target instance, a
  refused config); *timed-out* (release) once the deadline passes without either — the target was down or
  silent; *waiting* (keep) otherwise. A blocked hold never times out: the source keeps the camera until the
  manifests change (or the target can take it after all).

Like Kubernetes' ``maxUnavailable: 0`` rollouts (the new pod must be Ready before the old one is removed) and Argo
CD's sync waves (a wave waits for the previous one to be healthy), applied to one camera across two hosts
(docs/architecture/decisions/0023-ordered-camera-moves.md).
No clock and no I/O: ``now`` is passed in, holds travel as JSON-ready dicts (:meth:`Hold.to_json`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from dsfleet.schemas.nodeconfigs import InstanceConfig, NodeConfig

__all__ = [
    "NON_BLOCKING_REASONS",
    "Decision",
    "HandoverState",
    "Hold",
    "Move",
    "TargetCondition",
    "TargetInstance",
    "TargetReport",
    "camera_moves",
    "carry_moves",
    "describe_hold",
    "handover_decision",
    "refresh_moves",
    "unordered_sources",
]

NON_BLOCKING_REASONS = frozenset({"Pulling"})
"""Conditions of a target instance that say "not yet", not "cannot": the image is being pulled."""
REFUSAL_IGNORED = frozenset({"stale-generation", "other-fleet", "stale-epoch"})
"""Refused configs that say nothing of the target's current one (an old generation, another fleet's record, a
deposed coordinator's late record)."""


class HandoverState(StrEnum):
    WAITING = "waiting"
    BLOCKED = "blocked"
    DONE = "done"
    TIMED_OUT = "timed-out"


@dataclass(frozen=True)
class Move:
    """One camera leaving ``source_node``'s ``source_instance`` for ``target_node``'s ``target_instance``, whose
    desired config hash (with the camera) is ``target_config_hash``; ``secret_ref``: the secret of the camera's
    credentials (to name it when the target lacks it)."""

    camera: str
    source_node: str
    source_instance: str
    target_node: str
    target_instance: str
    target_config_hash: str
    secret_ref: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "sourceNode": self.source_node,
            "sourceInstance": self.source_instance,
            "targetNode": self.target_node,
            "targetInstance": self.target_instance,
            "targetConfigHash": self.target_config_hash,
            "secretRef": self.secret_ref,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Move:
        ref = data.get("secretRef")
        return cls(
            camera=str(data["camera"]),
            source_node=str(data["sourceNode"]),
            source_instance=str(data["sourceInstance"]),
            target_node=str(data["targetNode"]),
            target_instance=str(data["targetInstance"]),
            target_config_hash=str(data["targetConfigHash"]),
            secret_ref=str(ref) if ref is not None else None,
        )


@dataclass(frozen=True)
class Hold:
    """A source node's config held back until its moves are done: since when, released at ``deadline`` at the
    latest (unless blocked), the last decision's state and reason (``reason`` empty: not decided yet)."""

    moves: tuple[Move, ...]
    since: datetime
    deadline: datetime
    state: HandoverState = HandoverState.WAITING
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "moves": [m.to_json() for m in self.moves],
            "since": self.since.isoformat(),
            "deadline": self.deadline.isoformat(),
            "state": self.state.value,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Hold | None:
        """The hold a stored JSON value describes; None when it is not one (missing or malformed)."""
        if not data:
            return None
        try:
            since = datetime.fromisoformat(str(data["since"]))
            deadline = datetime.fromisoformat(str(data["deadline"]))
            moves = tuple(Move.from_json(m) for m in data.get("moves") or ())
            state = HandoverState(str(data.get("state") or HandoverState.WAITING.value))
        except (KeyError, TypeError, ValueError):
            return None
        if since.tzinfo is None or deadline.tzinfo is None:
            return None
        return cls(moves, since, deadline, state, str(data.get("reason") or ""))


@dataclass(frozen=True)
class Decision:
    release: bool
    state: HandoverState
    reason: str


@dataclass(frozen=True)
class TargetCondition:
    reason: str
    message: str = ""
    cameras: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetInstance:
    """One instance as the target node's agent last reported it."""

    name: str
    state: str
    config_hash: str | None
    conditions: tuple[TargetCondition, ...] = ()


@dataclass(frozen=True)
class TargetReport:
    """What a target node's agent last reported. ``received``: its node config hash is the desired one (so its
    conditions and refusals are about the config that carries the camera, not an older one); ``refusals``:
    (reason, detail) of the configs it refused of the desired generation; ``online`` and ``connection``: whether it
    is heard, and the words for it (``offline: no heartbeat for 2 min``)."""

    node: str
    online: bool = False
    connection: str = ""
    received: bool = False
    instances: Mapping[str, TargetInstance] = field(default_factory=dict)
    refusals: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------------------------------- moves


def _active(inst: InstanceConfig) -> bool:
    return not inst.paused


def camera_moves(old: Mapping[str, NodeConfig], new: Mapping[str, NodeConfig]) -> dict[str, tuple[Move, ...]]:
    """The cameras of a revision that leave one node for another: source node → its moves (by camera). A camera
    counts when a running (not paused) instance of node X ran it in ``old`` and a running instance of another node
    runs it in ``new`` while no instance of X does; moves within a node are that node's own business (one config)."""
    owners: dict[str, list[tuple[str, InstanceConfig]]] = {}
    for node, config in new.items():
        for inst in config.instances:
            for camera in inst.cameras:
                owners.setdefault(camera, []).append((node, inst))
    moves: dict[str, list[Move]] = {}
    for source, config in sorted(old.items()):
        for inst in config.instances:
            if not _active(inst):
                continue
            for camera in inst.cameras:
                now_on = owners.get(camera, [])
                if any(node == source for node, _ in now_on):
                    continue
                targets = sorted(((n, i) for n, i in now_on if _active(i)), key=lambda t: (t[0], t[1].name))
                if not targets:
                    continue
                node, target = targets[0]
                moves.setdefault(source, []).append(
                    Move(
                        camera=camera,
                        source_node=source,
                        source_instance=inst.name,
                        target_node=node,
                        target_instance=target.name,
                        target_config_hash=target.configHash,
                        secret_ref=target.cameraSecrets.get(camera),
                    )
                )
    return {node: tuple(sorted(ms, key=lambda m: m.camera)) for node, ms in sorted(moves.items())}


def unordered_sources(moves: Mapping[str, Sequence[Move]]) -> frozenset[str]:
    """Source nodes whose holds would wait on each other in a cycle (X waits for Y, which waits for X: cameras
    swapped between them): holding them could only end at the timeout, so their configs go out at once."""
    waits = {source: {m.target_node for m in ms if m.target_node in moves} for source, ms in moves.items()}
    cyclic: set[str] = set()
    for start, first in waits.items():
        seen: set[str] = set()
        stack = list(first)
        while stack:
            node = stack.pop()
            if node == start:
                cyclic.add(start)
                break
            if node in seen:
                continue
            seen.add(node)
            stack.extend(waits.get(node, ()))
    return frozenset(cyclic)


def _placements(configs: Mapping[str, NodeConfig]) -> dict[str, list[tuple[str, InstanceConfig]]]:
    out: dict[str, list[tuple[str, InstanceConfig]]] = {}
    for node, config in configs.items():
        for inst in config.instances:
            for camera in inst.cameras:
                out.setdefault(camera, []).append((node, inst))
    return out


def refresh_moves(moves: Iterable[Move], configs: Mapping[str, NodeConfig]) -> tuple[Move, ...]:
    """The moves still under way by the latest desired ``configs``: each with its target instance's current
    config hash; a move whose camera is back on its source node, or no longer on its target instance (moved again,
    removed, paused), is over. ``configs`` must hold the moves' source and target nodes (a node absent from it
    has no config: removed)."""
    out = []
    for move in moves:
        source = configs.get(move.source_node)
        if source is not None and any(move.camera in i.cameras for i in source.instances):
            continue
        target = configs.get(move.target_node)
        inst = target.instance(move.target_instance) if target is not None else None
        if inst is None or move.camera not in inst.cameras or not _active(inst):
            continue
        out.append(
            replace(move, target_config_hash=inst.configHash, secret_ref=inst.cameraSecrets.get(move.camera))
        )
    return tuple(out)


def carry_moves(
    fresh: Sequence[Move],
    held: Hold | None,
    configs: Mapping[str, NodeConfig],
    now: datetime,
    timeout: timedelta,
) -> Hold | None:
    """The hold of a source node's new config: its ``fresh`` moves (from the last stored config to the new one)
    and those of the hold its previous config was still under (``held``; the camera it gave away is still away in
    the new config) — the latter keep their start and deadline unless a fresh move starts the clock again. None:
    nothing to wait for."""
    carried = refresh_moves(held.moves, configs) if held is not None else ()
    by_camera = {m.camera: m for m in carried}
    by_camera.update((m.camera, m) for m in fresh)
    if not by_camera:
        return None
    moves = tuple(by_camera[c] for c in sorted(by_camera))
    if fresh or held is None:
        return Hold(moves, now, now + timeout)
    return Hold(moves, held.since, held.deadline)


# --------------------------------------------------------------------------------------------------- decisions


def _names(items: Sequence[str]) -> str:
    return ", ".join(items)


def _move_blocked(move: Move, report: TargetReport | None) -> str | None:
    """Why the target cannot take the camera (None: it does not say so)."""
    if report is None or not report.received:
        return None
    where = f"{move.target_node}/{move.target_instance}"
    inst = report.instances.get(move.target_instance)
    for c in inst.conditions if inst is not None else ():
        if move.camera in c.cameras:
            if c.reason == "SecretMissing" and move.secret_ref:
                return f"secret {move.secret_ref} missing on {move.target_node}"
            return f"{where} cannot take camera {move.camera}: {c.reason}" + (
                f": {c.message}" if c.message else ""
            )
    for c in inst.conditions if inst is not None else ():
        if c.reason not in NON_BLOCKING_REASONS:
            return f"{where} cannot run its new config: {c.reason}" + (f": {c.message}" if c.message else "")
    for reason, detail in report.refusals:
        if reason not in REFUSAL_IGNORED:
            return f"{move.target_node} refused its new config: {reason}" + (f": {detail}" if detail else "")
    return None


def _move_done(move: Move, report: TargetReport | None) -> bool:
    inst = report.instances.get(move.target_instance) if report is not None else None
    return (
        inst is not None
        and inst.state == "running"
        and inst.config_hash == move.target_config_hash
        and not any(move.camera in c.cameras for c in inst.conditions)
    )


def handover_decision(
    moves: Sequence[Move],
    deadline: datetime,
    target_reports: Mapping[str, TargetReport],
    now: datetime,
) -> Decision:
    """Release the source's config (done / timed-out) or keep it (waiting / blocked), and why. Blocked wins over
    the deadline: a target that says it cannot take a camera leaves the camera where it runs."""
    if not moves:
        return Decision(True, HandoverState.DONE, "no camera left to hand over")
    done = [m for m in moves if _move_done(m, target_reports.get(m.target_node))]
    if len(done) == len(moves):
        targets = sorted({f"{m.target_node}/{m.target_instance}" for m in moves})
        cameras = sorted(m.camera for m in moves)
        return Decision(
            True,
            HandoverState.DONE,
            f"{_camera_words(cameras)} running on {_names(targets)}",
        )
    blocked = []
    for m in moves:
        if m in done:
            continue
        why = _move_blocked(m, target_reports.get(m.target_node))
        if why is not None and why not in blocked:
            blocked.append(why)
    if blocked:
        return Decision(False, HandoverState.BLOCKED, "; ".join(blocked))
    left = [m for m in moves if m not in done]
    waiting = []
    for node in sorted({m.target_node for m in left}):
        report = target_reports.get(node)
        if report is not None and not report.online and report.connection:
            waiting.append(f"{node} ({report.connection})")
        else:
            waiting.append(node)
    verb = "them" if len(left) > 1 else "it"
    if now >= deadline:
        return Decision(
            True,
            HandoverState.TIMED_OUT,
            f"{_names(waiting)} did not report running {verb} by the deadline",
        )
    return Decision(False, HandoverState.WAITING, f"waiting for {_names(waiting)} to run {verb}")


def _camera_words(cameras: Sequence[str]) -> str:
    return f"camera{'s' if len(cameras) > 1 else ''} {_names(cameras)}"


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_hold(hold: Hold) -> str:
    """The hold in words, as status shows it on the source node and its instances: ``camera lobby-2 moving to
    gpu-node-2/traffic-parking: waiting for gpu-node-2 to run it, since …, released at … at the latest``."""
    by_target: dict[str, list[str]] = {}
    for m in hold.moves:
        by_target.setdefault(f"{m.target_node}/{m.target_instance}", []).append(m.camera)
    moving = "; ".join(
        f"{_camera_words(sorted(cams))} moving to {target}" for target, cams in sorted(by_target.items())
    )
    since = f"since {_when(hold.since)}"
    if hold.state is HandoverState.BLOCKED:
        return (
            f"{moving}: blocked: {hold.reason}; {since}; the source keeps "
            f"{'them' if len(hold.moves) > 1 else 'it'} until the manifests change or the target can take "
            f"{'them' if len(hold.moves) > 1 else 'it'}"
        )
    reason = hold.reason or f"waiting for {_names(sorted({m.target_node for m in hold.moves}))} to run " + (
        "them" if len(hold.moves) > 1 else "it"
    )
    return f"{moving}: {reason}, {since}, released at {_when(hold.deadline)} at the latest"
