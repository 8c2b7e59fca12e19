"""Apply a manifest set to the store: the one path both ``dsfleet apply`` and the coordinator take.

Load + validate (cached by content hash), compile (cached per instance), plan against the last applied configs,
then store the revision with exactly the changed nodes' AgentConfig messages in the outbox, in one transaction.
An invalid set is stored as a rejected revision; an apply that would remove every instance is refused unless
allowed (docs/architecture/decisions/0014-prune-safety.md).

Ordered camera moves (:mod:`dsfleet.reconciler.planning.handovers`): when the caller passes a handover timeout
(the coordinator, which decides the holds afterwards), the config of a node that gives a camera to another node
is stored *held* in the outbox, and goes out once the target runs the camera (or at the timeout). Without one
(``dsfleet apply``, which publishes itself and does not stay to decide) nothing is held.

Rollback pins (:mod:`dsfleet.reconciler.planning.pins`): the pin is read before planning and again inside the
revision's own write transaction (:func:`dsfleet.reconciler.planning.pins.apply_held` decides); when it holds the
manifests being stored, or a rollback was stored while this apply planned, nothing is stored (``HELD_BY_PIN``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from dsfleet.policies.engine import Changes
from dsfleet.reconciler.compiling.desired import CompileCache, DesiredState, desired_state
from dsfleet.reconciler.loading.gitinfo import git_info
from dsfleet.reconciler.loading.manifestsets import ManifestCache
from dsfleet.reconciler.loading.yamlfiles import DEFAULT_LIMITS, Limits
from dsfleet.reconciler.planning.handovers import Hold, camera_moves, carry_moves, unordered_sources
from dsfleet.reconciler.planning.pins import Pin, SourceState, apply_held
from dsfleet.reconciler.planning.plans import Plan, compute_plan, removes_every_instance
from dsfleet.reconciler.planning.rollouts import Rollout
from dsfleet.reconciler.ports import StorePort
from dsfleet.reconciler.staging import StagedRollout, stage_rollout
from dsfleet.reconciler.store import (
    AppliedRevision,
    CameraRow,
    InstanceRow,
    Inventory,
    InventoryDelta,
    NewRevision,
    NodeChange,
    NodeRow,
)
from dsfleet.reconciler.store.values import ROLLBACK_PIN, HeldByPin
from dsfleet.reconciler.views import finding_json
from dsfleet.resolution.instances import ResolvedInstance
from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.manifests import Camera, Node
from dsfleet.schemas.nodeconfigs import InstanceConfig, NodeConfig
from dsfleet.schemas.wire import Signer, agent_config_record


def revision_from_git(path: str | os.PathLike[str], *, source: str, now: datetime) -> NewRevision:
    """A revision about to be stored for the manifests at ``path``: the git commit (``-dirty`` when the work
    tree has changes there), author and subject when ``path`` is in a git work tree. The manifests hash is
    filled in by :func:`apply_manifests` once the manifests are read."""
    git = git_info(Path(path))
    return NewRevision(
        source=source,
        created_at=now,
        manifests_hash="",
        git_commit=(git.commit + ("-dirty" if git.dirty else "")) if git else None,
        git_author=git.author if git else None,
        git_message=git.message if git else None,
    )


class Outcome(StrEnum):
    APPLIED = "applied"
    REJECTED = "rejected"
    REFUSED_PRUNE_ALL = "refused-prune-all"
    UNCHANGED = "unchanged"
    """The manifests are byte-for-byte those of the newest revision: nothing is recorded (long-running callers)."""
    HELD_BY_PIN = "held-by-pin"
    """A rollback's pin, read inside the revision's write transaction, held it: nothing is recorded."""


@dataclass
class ApplyResult:
    outcome: Outcome
    desired: DesiredState
    plan: Plan | None = None
    applied: AppliedRevision | None = None
    rejected_revision: int | None = None
    holds: dict[str, Hold] = field(default_factory=dict)
    """The source nodes whose configs were stored held (ordered camera moves), with what they wait for."""
    unordered: tuple[str, ...] = ()
    """Source nodes of camera moves that wait on each other in a cycle: their configs went out at once."""
    pin: Pin | None = None
    """``HELD_BY_PIN``: the pin that held the apply."""
    rollout: Rollout | None = None
    """The rollout the revision started (its governed changes go out wave by wave), as stored."""


@dataclass(frozen=True)
class Applied:
    """What a revision applied from a process stored: its node configs and its inventory."""

    revision_id: int
    configs: dict[str, NodeConfig]
    inventory: Inventory


@dataclass
class Caches:
    """What a long-running process keeps between applies."""

    manifests: ManifestCache = field(default_factory=ManifestCache)
    compiled: CompileCache = field(default_factory=CompileCache)
    rows: InventoryRows | None = None
    """The inventory rows the last apply made (see :func:`inventory`)."""
    applied: Applied | None = None
    """What the last revision applied from here stored."""


def agent_config_encoder(
    now: datetime,
    topic_prefix: str = "",
    fleet: str | None = None,
    *,
    sign: Signer | None = None,
    epoch: int = 0,
) -> Callable[[str, int, dict[str, Any] | None], tuple[str, str, bytes | None, dict[str, str]]]:
    """``encode(node, generation, payload)`` → the AgentConfig outbox row (a tombstone when payload is None),
    carrying the id of the fleet that writes it and the writer's leadership ``epoch``, signed by ``sign`` (the
    coordinator's key; None: the row is signed when it is published)."""
    return lambda node, generation, payload: agent_config_record(
        node, generation, payload, now.isoformat(), topic_prefix, fleet=fleet, sign=sign, epoch=epoch
    )


def _camera_row(camera: Camera, owner: str | None) -> CameraRow:
    spec = camera.spec
    return CameraRow(
        name=camera.name,
        camera_id=spec.cameraId,
        url=spec.url,
        secret_ref=spec.credentials.secretRef if spec.credentials else None,
        encoding=spec.encoding,
        type=spec.source_type.value,
        width=spec.width,
        height=spec.height,
        labels=dict(camera.metadata.labels),
        instance=owner,
    )


def _node_row(node: Node) -> NodeRow:
    return NodeRow(
        name=node.name,
        hostname=node.hostname,
        node_id=node.spec.nodeId,
        labels=dict(node.metadata.labels),
        capacity=node.spec.capacity,
        gpus=tuple(node.spec.gpus),
    )


def _instance_row(name: str, res: ResolvedInstance, comp: InstanceConfig | None) -> InstanceRow:
    spec = res.instance.spec
    return InstanceRow(
        name=name,
        node=spec.node,
        gpu=spec.gpu,
        image=res.image,
        layout=spec.layout,
        app_type=getattr(spec.app, "appType", None),
        profile=spec.profile,
        paused=spec.paused,
        camera_count=len(res.cameras),
        spec_hash=comp.specHash if comp else None,
        files_hash=comp.filesHash if comp else None,
        config_hash=comp.configHash if comp else None,
    )


@dataclass
class InventoryRows:
    """The rows :func:`inventory` made last, by name, for the fleet they were made for."""

    fleet: Fleet
    nodes: dict[str, NodeRow]
    cameras: dict[str, CameraRow]
    instances: dict[str, InstanceRow]
    users: dict[str, set[str]]
    """Camera → the instances whose resolution names it (the row's owner is the last of them by name)."""
    cameras_of: dict[str, tuple[str, ...]]
    """Instance → the cameras its resolution names."""
    compiled: bool
    """Whether the desired state was compiled (valid): the instances' rows carry their configs' hashes then."""
    touched: dict[str, set[str]] = field(default_factory=dict)
    """Table → the names of the rows made again since the last rows (a delta's)."""
    inventory: Inventory | None = None
    """The inventory these rows were handed out as."""


def inventory(desired: DesiredState, caches: Caches | None = None) -> Inventory:
    """The nodes, cameras and instances of a desired state, as the store's rows (never a credential). With
    ``caches`` and a desired state that knows what changed since the fleet of the last call, only the rows of
    what changed are made again; the others are that call's very objects (the store compares them by identity:
    :meth:`dsfleet.reconciler.store.inventory.InventoryMixin._replace_inventory`)."""
    last = caches.rows if caches is not None else None
    if caches is not None:
        caches.rows = None  # the delta updates the last rows' index in place: they are not kept on a failure
    delta: InventoryDelta | None = None
    if (
        last is not None
        and desired.changes is not None
        and desired.since is last.fleet
        and last.compiled == (desired.configs is not None)
    ):
        rows = _rows_delta(desired, last, desired.changes)
        if last.inventory is not None:
            delta = InventoryDelta(
                base=last.inventory,
                nodes={name: rows.nodes.get(name) for name in rows.touched["nodes"]},
                cameras={name: rows.cameras.get(name) for name in rows.touched["cameras"]},
                instances={name: rows.instances.get(name) for name in rows.touched["instances"]},
            )
    else:
        rows = _rows(desired)
    made = Inventory(
        nodes=list(rows.nodes.values()),
        cameras=list(rows.cameras.values()),
        instances=list(rows.instances.values()),
        delta=delta,
    )
    rows.inventory = made
    if caches is not None:
        caches.rows = rows
    return made


def _compiled(desired: DesiredState, name: str) -> InstanceConfig | None:
    res = desired.resolved.get(name)
    node = res.instance.spec.node if res is not None else None
    config = desired.configs.get(node) if desired.configs is not None and node is not None else None
    return next((i for i in config.instances if i.name == name), None) if config is not None else None


def _rows(desired: DesiredState) -> InventoryRows:
    fleet = desired.fleet
    users: dict[str, set[str]] = {}
    for name, res in desired.resolved.items():
        for cam in res.cameras:
            users.setdefault(cam, set()).add(name)
    compiled = {i.name: i for c in (desired.configs or {}).values() for i in c.instances}
    return InventoryRows(
        fleet=fleet,
        nodes={n.name: _node_row(n) for n in fleet.nodes.values()},
        cameras={c.name: _camera_row(c, _owner(users, c.name)) for c in fleet.cameras.values()},
        instances={
            name: _instance_row(name, res, compiled.get(name)) for name, res in desired.resolved.items()
        },
        users=users,
        cameras_of={name: res.cameras for name, res in desired.resolved.items()},
        compiled=desired.configs is not None,
    )


def _owner(users: Mapping[str, set[str]], camera: str) -> str | None:
    names = users.get(camera)
    return max(names) if names else None  # the last by name, as a pass over the instances in order finds


def _rows_delta(desired: DesiredState, last: InventoryRows, changes: Changes) -> InventoryRows:
    fleet = desired.fleet
    nodes, cameras, instances = dict(last.nodes), dict(last.cameras), dict(last.instances)
    users, cameras_of = last.users, last.cameras_of  # updated in place (see inventory)
    for name in changes.documents.get("Node", ()):
        node = fleet.nodes.get(name)
        if node is None:
            nodes.pop(name, None)
        else:
            nodes[name] = _node_row(node)
    touched = set(changes.documents.get("Camera", ()))
    for name in {*changes.instances, *changes.documents.get("DsInstance", ())}:
        before = cameras_of.pop(name, ())
        res = desired.resolved.get(name)
        for cam in before:
            users.get(cam, set()).discard(name)
        if res is None:
            instances.pop(name, None)
        else:
            cameras_of[name] = res.cameras
            for cam in res.cameras:
                users.setdefault(cam, set()).add(name)
            instances[name] = _instance_row(name, res, _compiled(desired, name))
        touched.update(before)
        touched.update(res.cameras if res is not None else ())
    for name in touched:
        camera = fleet.cameras.get(name)
        if camera is None:
            cameras.pop(name, None)
        else:
            cameras[name] = _camera_row(camera, _owner(users, name))
    touched_nodes = set(changes.documents.get("Node", ()))
    touched_instances = {*changes.instances, *changes.documents.get("DsInstance", ())}
    return InventoryRows(
        fleet,
        nodes,
        cameras,
        instances,
        users,
        cameras_of,
        desired.configs is not None,
        {"nodes": touched_nodes, "cameras": touched, "instances": touched_instances},
    )


def stored_configs(
    store: StorePort, desired: Mapping[str, NodeConfig] | None = None
) -> dict[str, NodeConfig]:
    """The last applied config of every node. A node whose stored hash equals its desired hash gets the desired
    object itself (equal sha256 of the canonical form = equal content), so only changed nodes are read and
    parsed."""
    if desired is None:
        return {name: NodeConfig.model_validate(c.payload) for name, c in store.latest_node_configs().items()}
    same, changed = store.latest_node_changes({name: config.configHash for name, config in desired.items()})
    out = {name: desired[name] for name in same}
    out.update((name, NodeConfig.model_validate(c.payload)) for name, c in changed.items())
    return dict(sorted(out.items()))


def configs_at(store: StorePort, revision: int) -> dict[str, NodeConfig]:
    """Every node's config as of ``revision`` (what ``history diff`` and a rollback compare)."""
    return {
        name: NodeConfig.model_validate(c.payload)
        for name, c in store.latest_node_configs(at_revision=revision).items()
    }


def _desired(
    paths: Sequence[str | os.PathLike[str]],
    caches: Caches | None,
    limits: Limits,
    hint: AbstractSet[str] | None,
    warnings: bool,
) -> DesiredState:
    manifests, compiled = (caches.manifests, caches.compiled) if caches is not None else (None, None)
    return desired_state(paths, manifests, compiled, limits=limits, hint=hint, warnings=warnings)


def apply_manifests(
    paths: Sequence[str | os.PathLike[str]],
    store: StorePort,
    revision: NewRevision,
    *,
    allow_prune_all: bool = False,
    caches: Caches | None = None,
    topic_prefix: str = "",
    stored: dict[str, NodeConfig] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    skip_unchanged: bool = False,
    desired: DesiredState | None = None,
    handover_timeout: timedelta | None = None,
    sign: Signer | None = None,
    rollouts: bool = False,
    hint: AbstractSet[str] | None = None,
    warnings: bool = True,
) -> ApplyResult:
    """Validate, plan and store one revision (its ``manifests_hash`` is filled in here). ``stored`` (the last
    applied configs) may be passed by a caller that keeps them; otherwise they are read from the store.
    ``skip_unchanged``: when the manifests hash equals the newest revision's (accepted or rejected), record
    nothing and return ``UNCHANGED`` (a watcher woken by a touch, or the same broken file seen twice).
    ``desired``: the desired state of ``paths`` when the caller has just computed it (a plan made first).
    ``handover_timeout``: hold the configs of nodes that give cameras to other nodes (released by the caller
    once the targets run them, or this long after the apply); None: hold nothing. ``sign``: signs the outbox
    rows (the coordinator's key). ``rollouts``: run the fleet's ``Policy.spec.rollout`` (the coordinator, which
    releases the held nodes wave by wave afterwards); False: every change goes out at once. ``hint``: the real
    paths a file watcher saw change since the last read through ``caches`` (see
    :func:`dsfleet.reconciler.loading.manifestsets.load_manifests`). ``warnings``: see
    :func:`dsfleet.reconciler.compiling.desired.desired_state`."""
    if desired is None:
        desired = _desired(paths, caches, limits, hint, warnings)
    revision = dataclasses.replace(revision, manifests_hash=desired.loaded.digest)
    if skip_unchanged:
        newest = store.revisions(limit=1)
        if newest and newest[0].manifests_hash == desired.loaded.digest:
            return ApplyResult(Outcome.UNCHANGED, desired)
    if desired.configs is None:
        rid = store.record_rejected(revision, [finding_json(f) for f in desired.loaded.errors])
        return ApplyResult(Outcome.REJECTED, desired, rejected_revision=rid)
    seen = Pin.from_json(store.sync_state(ROLLBACK_PIN))  # read before the configs the plan is made against
    # node configs are stored by revisions only (a re-issue stores the same content again): while the last
    # accepted revision is the one applied from here, its configs are what the store holds
    if (
        stored is None
        and caches is not None
        and caches.applied is not None
        and store.last_accepted_revision_id() == caches.applied.revision_id
    ):
        stored = caches.applied.configs
    current = stored if stored is not None else stored_configs(store, desired.configs)
    plan = compute_plan(desired.configs, current)
    if removes_every_instance(plan, desired.configs, current) and not allow_prune_all:
        return ApplyResult(Outcome.REFUSED_PRUNE_ALL, desired, plan=plan)
    changes = []
    for node in plan.changed:
        config = desired.configs.get(node.name)
        if config is None:
            changes.append(NodeChange(node=node.name, config_hash=None, payload=None))
        else:
            changes.append(
                NodeChange(
                    node=node.name, config_hash=config.configHash, payload=config.model_dump(mode="json")
                )
            )
    holds: dict[str, Hold] = {}
    unordered: frozenset[str] = frozenset()
    if handover_timeout is not None and changes:
        holds, unordered = _holds(
            store, current, desired.configs, changes, revision.created_at, handover_timeout
        )
    staged: StagedRollout | None = None
    if rollouts and changes:
        staged = stage_rollout(store, plan, current, desired, revision)
        holds = {n: h for n, h in holds.items() if n not in staged.holds}  # their wave decides those nodes
    rows = inventory(desired, caches)
    source = SourceState(revision.git_commit, revision.manifests_hash)
    applied = store.apply_revision(
        revision,
        changes,
        rows,
        agent_config_encoder(
            revision.created_at, topic_prefix, store.fleet_id(), sign=sign, epoch=store.writer_epoch()
        ),
        inventory_base=(
            (caches.applied.revision_id, caches.applied.inventory) if caches and caches.applied else None
        ),
        holds={**{node: hold.to_json() for node, hold in holds.items()}, **(staged.holds if staged else {})},
        unless_pinned=lambda pin: apply_held(
            Pin.from_json(pin), source, seen.rollback_revision if seen is not None else None
        ),
        states=staged.states if staged is not None else None,
    )
    if isinstance(applied, HeldByPin):
        return ApplyResult(Outcome.HELD_BY_PIN, desired, plan=plan, pin=Pin.from_json(applied.pin))
    if caches is not None:
        caches.applied = Applied(applied.revision_id, dict(desired.configs), rows)
    return ApplyResult(
        Outcome.APPLIED,
        desired,
        plan=plan,
        applied=applied,
        holds=holds,
        unordered=tuple(sorted(unordered)),
        rollout=staged.started(applied.revision_id) if staged is not None else None,
    )


def _holds(
    store: StorePort,
    current: Mapping[str, NodeConfig],
    new: Mapping[str, NodeConfig],
    changes: Sequence[NodeChange],
    now: datetime,
    timeout: timedelta,
) -> tuple[dict[str, Hold], frozenset[str]]:
    """The holds of the changed source nodes: the moves from their last stored configs to the new ones, and the
    moves still under way of the holds their last configs were under (see :func:`carry_moves`)."""
    changed = {c.node for c in changes}
    # a camera leaves a node only when that node's config changes, and reaches one only when its config does
    # (an unchanged node runs what it ran: the last configs gave no camera to two nodes), so the changed nodes'
    # configs say every move
    moves = camera_moves(
        {n: current[n] for n in changed if n in current}, {n: new[n] for n in changed if n in new}
    )
    previous: dict[str, Hold] = {}
    for row in store.held_outbox():
        hold = Hold.from_json(row.hold)
        if hold is not None:
            previous[row.key] = hold  # the newest per node (rows come oldest first)
    wanted: dict[str, Hold] = {}
    for node in sorted(changed & (set(moves) | set(previous))):
        hold = carry_moves(moves.get(node, ()), previous.get(node), new, now, timeout)
        if hold is not None:
            wanted[node] = hold
    unordered = unordered_sources({node: hold.moves for node, hold in wanted.items()})
    return {n: h for n, h in wanted.items() if n not in unordered}, unordered


@dataclass
class PlanResult:
    desired: DesiredState
    plan: Plan | None
    """None when the manifests are invalid (``desired.loaded.errors`` says why)."""


def plan_manifests(
    paths: Sequence[str | os.PathLike[str]],
    store: StorePort,
    *,
    caches: Caches | None = None,
    limits: Limits = DEFAULT_LIMITS,
    desired: DesiredState | None = None,
    hint: AbstractSet[str] | None = None,
    warnings: bool = True,
) -> PlanResult:
    """What applying would change, without storing anything (manual sync, ``diff`` of a watched directory);
    ``desired``: the desired state of ``paths`` when the caller has just computed it; ``hint``: as for
    :func:`apply_manifests`."""
    if desired is None:
        desired = _desired(paths, caches, limits, hint, warnings)
    if desired.configs is None:
        return PlanResult(desired, None)
    return PlanResult(desired, compute_plan(desired.configs, stored_configs(store, desired.configs)))
