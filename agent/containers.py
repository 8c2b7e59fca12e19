"""Pure: the container plan — desired instances against observed managed containers → actions, as data.

**Labels** (:mod:`dsfleet.schemas.labels`, docs/architecture/decisions/0003-hashes.md): the container spec brings
the managed and instance labels (set by the compiler); the agent adds only what the host knows — its node, the
spec hash the container was created from and the generation it was created at (:func:`container_labels`). An
agent touches only managed containers of its own node; anything else, even named ``dsfleet-<instance>``, is never
touched. The files hash the agent last (re)started each container with is recorded in ``<state-dir>/applied.json``
(with the container id and spec hash; :class:`dsfleet.agent.drift.Applied`), and both hashes are reported in
``AgentResponse``.

**Engine volumes, one per image.** TensorRT engines belong to the image that built them, so the agent keeps one
volume per (instance, image): ``<engineVolume>-<12 hex of sha256(image)>`` (:func:`engine_volume_name`), labelled
with the image; a volume of the instance already labelled with that image (e.g. ``<instance>_engine`` made by an
older agent) is used as it is (:func:`engine_volume_for`). The spec's ``engineVolume`` mount is pointed at it when
the container is created. Nothing is deleted before a switch: the old container keeps its volume until it is
removed. Once an instance runs its desired spec, the volumes of images other than the current one and the one it
replaced (``Applied.previous_image``) are removed (``remove-volume``): a rollback to the previous image finds
its engines; older ones go.

**Replacing a container** (a spec change), by the instance's ``strategy``
(:data:`dsfleet.schemas.nodeconfigs.UpdateStrategy`); the new container is first created under the temporary name
``dsfleet-<instance>.next`` (:func:`next_name`) and renamed ``dsfleet-<instance>`` once the old one is gone:

- ``CreateBeforeStop`` (default) → ``replace``: image present (else ``ImageNotFound``, the old keeps running),
  files written, next created (a failure leaves the old running: ``CreateFailed``), old stopped, next started (a
  failure starts the old again and removes next: ``StartFailed``), old removed, next renamed;
- ``StartBeforeStop`` → ``start-next``: next created and started beside the old one; when it runs (and is
  ``healthy``, if it has a health check) → ``finish`` (old stopped and removed, next renamed); when it exits,
  restarts or turns ``unhealthy`` → ``rollback`` (next removed, the old one kept or started again);
- ``Recreate`` → ``recreate``: image present, then the old removed, the new created and started;
- a paused instance is replaced without starting anything (``replace`` with ``start`` false).

An agent that dies in the middle finds on its next tick an intermediate state and resumes from it (golden cases
``tests/golden/agent-plan/switch-*``): ``.next`` of another spec than desired → removed; ``.next`` created and the
old one there → ``replace`` (resumes: stop, start, remove, rename); ``.next`` running and the old one there →
``finish``; ``.next`` exited, restarting or unhealthy → ``rollback``; ``.next`` alone → ``finish`` (rename, start).

**Plan rules**, per desired instance (container name ``dsfleet-<instance>``):

- a container with that name that is not ours → ``clash`` finding, nothing done for that instance;
- files that cannot be rendered (a missing secret, an unreadable directory) → ``files`` finding, nothing done:
  the instance keeps running its last good files;
- a replacement in progress (a ``.next`` container) → resumed as above;
- none of ours → ``create`` (``removed`` drift when the agent had applied one; then only with self-heal on);
- ours with another spec hash → replaced as above (``relabelled`` drift when the agent applied the desired spec);
- files differ on disk, or the files hash applied to this container is not the desired one → ``restart`` with
  the files rewritten (``write-files`` only when the instance is paused or its container is not running);
  files edited by hand are ``file-edited``/``file-missing`` drift (healed only with self-heal on);
- ``paused`` and running → ``stop``; not paused and ``created`` → ``start``; exited because someone stopped it
  (:func:`dsfleet.agent.drift.stopped_by_hand`) → ``start`` (``stopped`` drift); a crash is left to Docker's
  restart policy;
- more than one of ours for an instance → the extra ones are removed;
- an instance in ``holding`` (a failed action waiting for its retry, an image being pulled) gets no forward
  action (``rollback``, ``finish`` and removals still happen) and is listed in ``Plan.waiting``;
- ours for an instance no longer desired (or without instance label) → ``remove`` (container, engine volumes and
  rendered files).

Applying a plan and planning again gives an empty plan (tests check it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dsfleet.agent.drift import Applied, DriftFinding, DriftKind, file_drift, stopped_by_hand
from dsfleet.schemas.labels import (
    LABEL_GENERATION,
    LABEL_IMAGE,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_SPEC_HASH,
)
from dsfleet.schemas.nodeconfigs import InstanceConfig

__all__ = [
    "CONTAINER_PREFIX",
    "FORWARD",
    "NEXT_SUFFIX",
    "ActionKind",
    "ContainerAction",
    "FileState",
    "Finding",
    "ObservedContainer",
    "ObservedVolume",
    "Plan",
    "compute_plan",
    "container_labels",
    "container_name",
    "engine_volume_for",
    "engine_volume_name",
    "instance_containers",
    "is_ours",
    "next_name",
    "pick_container",
    "record_applied",
    "volume_labels",
]

CONTAINER_PREFIX = "dsfleet-"
NEXT_SUFFIX = ".next"
RUNNING_STATES = frozenset({"running", "restarting"})

REASON_NEW = "new instance"
REASON_SPEC = "container spec changed"
REASON_FILES = "files changed"
REASON_PAUSED = "paused"
REASON_UNPAUSED = "no longer paused"
REASON_CREATED = "created, not started"
REASON_UNWANTED = "instance no longer desired"
REASON_KEPT_NO_PRUNE = "no longer desired; kept because the fleet's sync policy has prune off"
REASON_DUPLICATE = "duplicate container of the instance"
REASON_CLASH = "a container named {name} exists that dsfleet does not manage; not touched"
REASON_STALE_NEXT = "replacement container of an older spec"
REASON_SPARE_NEXT = "replacement container not needed: the instance runs its desired spec"
REASON_RESUME = "resume the replacement"
REASON_NEXT_READY = "the new container runs"
REASON_NEXT_ALONE = "the new container is the only one"
REASON_OLD_VOLUME = "engine volume of an image neither current nor previous"

CONDITION_START_FAILED = "StartFailed"
CONDITION_UNHEALTHY = "Unhealthy"


def container_name(instance: str) -> str:
    return CONTAINER_PREFIX + instance


def next_name(instance: str) -> str:
    """The temporary name of a replacement container (instance names are DNS labels: no dot, no clash)."""
    return container_name(instance) + NEXT_SUFFIX


class ActionKind(StrEnum):
    CREATE = "create"
    RECREATE = "recreate"
    """``Recreate``: remove the old container, then create and start the new one."""
    REPLACE = "replace"
    """``CreateBeforeStop``: create next (unless there), stop the old, start next, remove the old, rename next."""
    START_NEXT = "start-next"
    """``StartBeforeStop``: create next (unless there) and start it beside the old one."""
    FINISH = "finish"
    """Next runs the desired spec: stop and remove the old one, rename next (start it when created)."""
    ROLLBACK = "rollback"
    """Next failed: remove it, keep (or start again) the old one."""
    RESTART = "restart"
    WRITE_FILES = "write-files"
    START = "start"
    STOP = "stop"
    REMOVE = "remove"
    REMOVE_VOLUME = "remove-volume"


FORWARD = frozenset(
    {
        ActionKind.CREATE,
        ActionKind.RECREATE,
        ActionKind.REPLACE,
        ActionKind.START_NEXT,
        ActionKind.RESTART,
        ActionKind.WRITE_FILES,
        ActionKind.START,
        ActionKind.STOP,
    }
)
"""Actions that move an instance towards its desired config: held while the instance waits for a retry."""


@dataclass(frozen=True)
class ObservedContainer:
    """One container as Docker lists it (``state`` is Docker's: created, running, restarting, exited, …;
    ``health`` its health check's status — ``starting``, ``healthy``, ``unhealthy`` — or None without one)."""

    id: str
    name: str
    labels: Mapping[str, str]
    state: str
    image: str = ""
    restart_count: int = 0
    exit_code: int | None = None
    started_at: str | None = None
    restart_policy: str = ""
    health: str | None = None

    @property
    def instance(self) -> str | None:
        return self.labels.get(LABEL_INSTANCE)

    @property
    def spec_hash(self) -> str | None:
        return self.labels.get(LABEL_SPEC_HASH)


@dataclass(frozen=True)
class ObservedVolume:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class FileState:
    """An instance's rendered files on disk compared with the desired ones (secrets filled in)."""

    writes: tuple[str, ...] = ()
    removals: tuple[str, ...] = ()
    existing: tuple[str, ...] = ()
    error: str | None = None
    """Why the files cannot be written (a missing secret): the instance is then left as it is."""
    reason: str = ""
    """The condition ``error`` stands for: ``SecretMissing``, ``FilesUnwritable``, ``ConfigError``."""
    refs: tuple[str, ...] = ()
    """The secret refs that are missing (``SecretMissing``)."""

    @property
    def in_sync(self) -> bool:
        return not self.writes and not self.removals


@dataclass(frozen=True)
class ContainerAction:
    kind: ActionKind
    instance: str
    container_id: str | None = None
    """The instance's container acted on (for a replacement: the old one)."""
    reason: str = ""
    start: bool = True
    """create/recreate/replace/finish/rollback: start the container (False when the instance is paused)."""
    heals: tuple[DriftKind, ...] = ()
    next_id: str | None = None
    """replace/start-next/finish/rollback: the replacement container ``.next`` when there is one."""
    volume: str | None = None
    """remove-volume: the volume's name."""
    condition: str = ""
    """rollback: the condition the failed replacement stands for (``StartFailed``, ``Unhealthy``)."""


@dataclass(frozen=True)
class Finding:
    """A problem the plan cannot solve by acting (reported, never healed by force)."""

    instance: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Plan:
    actions: tuple[ContainerAction, ...] = ()
    drift: tuple[DriftFinding, ...] = ()
    findings: tuple[Finding, ...] = ()
    waiting: tuple[str, ...] = ()
    """Instances with work left that is not done now (a retry not due, a health check still starting)."""

    def __bool__(self) -> bool:
        return bool(self.actions)

    def describe(self) -> list[str]:
        return [
            f"{a.kind} instance={a.instance}"
            + (f" container={a.container_id[:12]}" if a.container_id else "")
            + (f" next={a.next_id[:12]}" if a.next_id else "")
            + (f" volume={a.volume}" if a.volume else "")
            + (f" reason={a.reason!r}" if a.reason else "")
            for a in self.actions
        ]


def is_ours(container: ObservedContainer, node: str) -> bool:
    """Managed by dsfleet, and by this node's agent (a container without node label counts as this node's)."""
    return container.labels.get(LABEL_MANAGED) == "true" and container.labels.get(LABEL_NODE, node) == node


def _volume_is_ours(vol: ObservedVolume, node: str) -> bool:
    return vol.labels.get(LABEL_MANAGED) == "true" and vol.labels.get(LABEL_NODE, node) == node


def container_labels(instance: InstanceConfig, node: str, generation: int | None) -> dict[str, str]:
    """The spec's labels (managed, instance, manifest labels: checked when the config was accepted) and the
    host's."""
    labels = dict(instance.container.labels)
    labels.update(
        {
            LABEL_NODE: node,
            LABEL_SPEC_HASH: instance.specHash,
            LABEL_GENERATION: str(generation if generation is not None else 0),
        }
    )
    return labels


def volume_labels(instance: InstanceConfig, node: str) -> dict[str, str]:
    labels = dict(instance.container.labels)
    labels.update(
        {
            LABEL_NODE: node,
            LABEL_IMAGE: instance.container.image,
        }
    )
    return labels


def engine_volume_name(instance: InstanceConfig) -> str:
    """``<engineVolume>-<12 hex of sha256(image)>``: the instance's engine volume for its image."""
    digest = hashlib.sha256(instance.container.image.encode("utf-8")).hexdigest()[:12]
    return f"{instance.container.engineVolume}-{digest}"


def engine_volume_for(instance: InstanceConfig, volumes: Sequence[ObservedVolume], node: str) -> str:
    """The volume a container of ``instance`` mounts for its engines: one of the instance's volumes labelled with
    its image (the derived name first, then the spec's own name, as older agents made it), else the derived name
    (created with :func:`volume_labels`)."""
    derived = engine_volume_name(instance)
    legacy = instance.container.engineVolume
    found = {
        v.name
        for v in volumes
        if _volume_is_ours(v, node)
        and v.labels.get(LABEL_INSTANCE) == instance.name
        and v.labels.get(LABEL_IMAGE) == instance.container.image
    }
    if derived in found or legacy not in found:
        return derived
    return legacy


def pick_container(candidates: list[ObservedContainer], inst: InstanceConfig) -> ObservedContainer:
    """The container to keep among several of one instance: right name, right spec, running first."""

    def rank(c: ObservedContainer) -> tuple[bool, bool, bool, str]:
        return (
            c.name != container_name(inst.name),
            c.spec_hash != inst.specHash,
            c.state not in RUNNING_STATES,
            c.id,
        )

    return min(candidates, key=rank)


@dataclass(frozen=True)
class _InstanceContainers:
    current: ObservedContainer | None
    next: ObservedContainer | None
    extra: tuple[ObservedContainer, ...]


def _split(inst: InstanceConfig, ours: Sequence[ObservedContainer]) -> _InstanceContainers:
    mine = [c for c in ours if c.instance == inst.name]
    nxt = next((c for c in mine if c.name == next_name(inst.name)), None)
    rest = [c for c in mine if nxt is None or c.id != nxt.id]
    current = pick_container(rest, inst) if rest else None
    extra = tuple(sorted((c for c in rest if current is not None and c.id != current.id), key=lambda c: c.id))
    return _InstanceContainers(current, nxt, extra)


def instance_containers(
    inst: InstanceConfig, observed: Sequence[ObservedContainer], node: str
) -> tuple[ObservedContainer | None, ObservedContainer | None]:
    """(the instance's container — ``dsfleet-<instance>`` or the best other one —, its replacement ``.next``)."""
    split = _split(inst, [c for c in observed if is_ours(c, node)])
    return split.current, split.next


def _next_failed(c: ObservedContainer) -> bool:
    return c.state in ("exited", "dead", "restarting") or c.restart_count > 0 or c.health == "unhealthy"


def _plan_switch(
    inst: InstanceConfig, current: ObservedContainer | None, nxt: ObservedContainer
) -> tuple[list[ContainerAction], bool]:
    """A replacement in progress (``nxt`` carries the desired spec): the action that carries it on, and whether
    the instance waits (a health check still starting)."""
    name = inst.name
    start = not inst.paused
    if current is None:
        return [
            ContainerAction(ActionKind.FINISH, name, None, REASON_NEXT_ALONE, start=start, next_id=nxt.id)
        ], False
    if nxt.state == "created":
        sbs = inst.strategy == "StartBeforeStop" and start
        kind = ActionKind.START_NEXT if sbs else ActionKind.REPLACE
        return [ContainerAction(kind, name, current.id, REASON_RESUME, start=start, next_id=nxt.id)], False
    if _next_failed(nxt):
        condition = CONDITION_UNHEALTHY if nxt.health == "unhealthy" else CONDITION_START_FAILED
        detail = (
            "the new container turned unhealthy"
            if condition == CONDITION_UNHEALTHY
            else f"the new container crashed and was restarted {nxt.restart_count} times"
            if nxt.restart_count
            else f"the new container {nxt.state}"
            + (f" (exit code {nxt.exit_code})" if nxt.exit_code is not None else "")
        )
        action = ContainerAction(
            ActionKind.ROLLBACK, name, current.id, detail, start=start, next_id=nxt.id, condition=condition
        )
        return [action], False
    if inst.strategy == "StartBeforeStop" and nxt.health == "starting" and current.state in RUNNING_STATES:
        return [], True
    return [
        ContainerAction(ActionKind.FINISH, name, current.id, REASON_NEXT_READY, start=start, next_id=nxt.id)
    ], False


def _replace_kind(inst: InstanceConfig) -> ActionKind:
    if inst.strategy == "Recreate":
        return ActionKind.RECREATE
    if inst.strategy == "StartBeforeStop" and not inst.paused:
        return ActionKind.START_NEXT
    return ActionKind.REPLACE


def _plan_instance(
    inst: InstanceConfig,
    current: ObservedContainer | None,
    files: FileState,
    applied: Applied | None,
    self_heal: bool,
) -> tuple[list[ContainerAction], list[DriftFinding]]:
    name = inst.name
    paused = inst.paused
    if current is None:
        heals: tuple[DriftKind, ...] = ()
        drift: list[DriftFinding] = []
        if applied is not None:
            drift.append(
                DriftFinding(name, DriftKind.REMOVED, f"container {applied.container_id[:12]} is gone")
            )
            heals = (DriftKind.REMOVED,)
            if not self_heal:
                return [], drift
        action = ContainerAction(
            ActionKind.CREATE,
            name,
            reason=REASON_NEW if not heals else "removed",
            start=not paused,
            heals=heals,
        )
        return [action], drift

    if current.spec_hash != inst.specHash:
        drift = []
        heals = ()
        if applied is not None and applied.spec_hash == inst.specHash:
            drift.append(
                DriftFinding(name, DriftKind.RELABELLED, f"container {current.id[:12]} has another spec hash")
            )
            heals = (DriftKind.RELABELLED,)
            if not self_heal:
                return [], drift
        action = ContainerAction(
            _replace_kind(inst),
            name,
            current.id,
            reason=REASON_SPEC if not heals else "relabelled",
            start=not paused,
            heals=heals,
        )
        return [action], drift

    drift = []
    same_container = applied is not None and applied.container_id == current.id
    files_applied = applied is not None and applied.files_hash == inst.filesHash
    rewrite = not files.in_sync
    restart_pending = same_container and not files_applied
    heals = ()
    if rewrite and files_applied:
        drift = file_drift(name, files.writes, files.removals, files.existing)
        heals = tuple(d.kind for d in drift)
        if not self_heal:
            rewrite = False
    running = current.state in RUNNING_STATES
    if rewrite or restart_pending:
        if paused or not running:
            if rewrite:
                return [
                    ContainerAction(ActionKind.WRITE_FILES, name, current.id, REASON_FILES, heals=heals)
                ], drift
        else:
            return [ContainerAction(ActionKind.RESTART, name, current.id, REASON_FILES, heals=heals)], drift
    if paused:
        if running:
            return [ContainerAction(ActionKind.STOP, name, current.id, REASON_PAUSED)], drift
        return [], drift
    if current.state == "created":
        return [ContainerAction(ActionKind.START, name, current.id, REASON_CREATED)], drift
    if (
        current.state in ("exited", "dead")
        and applied is not None
        and applied.paused
        and applied.container_id == current.id
    ):
        return [ContainerAction(ActionKind.START, name, current.id, REASON_UNPAUSED)], drift
    if stopped_by_hand(current.state, current.exit_code, current.restart_policy or _policy(inst)):
        drift.append(
            DriftFinding(name, DriftKind.STOPPED, f"container {current.id[:12]} exited ({current.exit_code})")
        )
        if self_heal:
            return [
                ContainerAction(ActionKind.START, name, current.id, "stopped", heals=(DriftKind.STOPPED,))
            ], drift
    return [], drift


def _policy(inst: InstanceConfig) -> str:
    return inst.container.restartPolicy.name


def _stale_volumes(
    inst: InstanceConfig,
    containers: Sequence[ObservedContainer],
    applied: Applied | None,
    volumes: Sequence[ObservedVolume],
    node: str,
) -> list[ContainerAction]:
    """Engine volumes of ``inst`` for images neither current (desired, or run by one of its containers) nor the
    previous one."""
    keep = {inst.container.image, *(c.image for c in containers)}
    if applied is not None and applied.previous_image:
        keep.add(applied.previous_image)
    return [
        ContainerAction(ActionKind.REMOVE_VOLUME, inst.name, reason=REASON_OLD_VOLUME, volume=v.name)
        for v in sorted(volumes, key=lambda v: v.name)
        if _volume_is_ours(v, node)
        and v.labels.get(LABEL_INSTANCE) == inst.name
        and v.labels.get(LABEL_IMAGE) is not None
        and v.labels.get(LABEL_IMAGE) not in keep
    ]


def compute_plan(
    node: str,
    desired: Sequence[InstanceConfig],
    observed: Sequence[ObservedContainer],
    files: Mapping[str, FileState],
    applied: Mapping[str, Applied],
    volumes: Sequence[ObservedVolume] = (),
    *,
    self_heal: bool = True,
    prune: bool = True,
    holding: Collection[str] = (),
) -> Plan:
    """The actions that make the host run ``desired``; see the module docstring for the rules. ``holding``: the
    instances whose forward actions wait (a failed action's retry is not due yet, an image is being pulled)."""
    by_name = {c.name: c for c in observed}
    ours = [c for c in observed if is_ours(c, node)]
    wanted = {inst.name for inst in desired}
    actions: list[ContainerAction] = []
    drift: list[DriftFinding] = []
    findings: list[Finding] = []
    waiting: list[str] = []

    for c in sorted(ours, key=lambda c: c.name):
        if c.instance not in wanted:
            if prune:
                actions.append(ContainerAction(ActionKind.REMOVE, c.instance or "", c.id, REASON_UNWANTED))
            else:
                findings.append(Finding(c.instance or c.name, "orphaned", REASON_KEPT_NO_PRUNE))

    for inst in sorted(desired, key=lambda i: i.name):
        cname = container_name(inst.name)
        holder = by_name.get(cname)
        if holder is not None and not is_ours(holder, node):
            findings.append(Finding(inst.name, "clash", REASON_CLASH.format(name=cname)))
            continue
        state = files.get(inst.name, FileState())
        if state.error is not None:
            findings.append(Finding(inst.name, "files", state.error))
            continue
        split = _split(inst, ours)
        current, nxt = split.current, split.next
        inst_actions = [
            ContainerAction(ActionKind.REMOVE, inst.name, c.id, REASON_DUPLICATE) for c in split.extra
        ]
        if nxt is not None and nxt.spec_hash != inst.specHash:
            inst_actions.append(ContainerAction(ActionKind.REMOVE, inst.name, nxt.id, REASON_STALE_NEXT))
            nxt = None
        elif nxt is not None and current is not None and current.spec_hash == inst.specHash:
            inst_actions.append(ContainerAction(ActionKind.REMOVE, inst.name, nxt.id, REASON_SPARE_NEXT))
            nxt = None
        record = applied.get(inst.name)
        if nxt is not None:
            switch, wait = _plan_switch(inst, current, nxt)
            inst_actions.extend(switch)
            if wait:
                waiting.append(inst.name)
        else:
            more, inst_drift = _plan_instance(inst, current, state, record, self_heal and inst.selfHeal)
            inst_actions.extend(more)
            drift.extend(inst_drift)
        if inst.name in holding:
            held = [a for a in inst_actions if a.kind in FORWARD]
            if held:
                inst_actions = [a for a in inst_actions if a.kind not in FORWARD]
                if inst.name not in waiting:
                    waiting.append(inst.name)
        settled = (
            not inst_actions
            and nxt is None
            and current is not None
            and current.spec_hash == inst.specHash
            and inst.name not in waiting
        )
        if settled:
            mine = [c for c in ours if c.instance == inst.name]
            inst_actions = _stale_volumes(inst, mine, record, volumes, node)
        actions.extend(inst_actions)
    return Plan(tuple(actions), tuple(drift), tuple(findings), tuple(waiting))


def record_applied(
    previous: Mapping[str, Applied],
    desired: Sequence[InstanceConfig],
    observed: Sequence[ObservedContainer],
    files: Mapping[str, FileState],
    node: str,
    generation: int | None,
) -> dict[str, Applied]:
    """The record after adopting what already runs: a container of the desired spec that the record does not
    know (the agent's state dir was lost, or it died between creating and recording) is adopted as it is; its
    files count as applied when they are in sync on disk. A replacement (``.next``) is never adopted: the plan
    finishes or rolls it back. Records of instances no longer desired are dropped."""
    ours = [c for c in observed if is_ours(c, node)]
    result: dict[str, Applied] = {}
    for inst in desired:
        known = previous.get(inst.name)
        current = _split(inst, ours).current
        if (
            current is not None
            and current.spec_hash == inst.specHash
            and (known is None or known.container_id != current.id)
        ):
            in_sync = files.get(inst.name, FileState()).in_sync
            files_hash = inst.filesHash if in_sync else (known.files_hash if known else "")
            previous_image = known.previous_image if known else None
            result[inst.name] = Applied(current.id, inst.specHash, files_hash, generation, previous_image)
        elif known is not None:
            result[inst.name] = known
    return result
