"""Pure: the container plan — desired instances against observed managed containers → actions, as data.

**Labels** (:mod:`dsfleet.schemas.labels`, docs/architecture/decisions/0003-hashes.md): the container spec brings
the managed and instance labels (set by the compiler); the agent adds only what the host knows — its node, the
spec hash the container was created from and the generation it was created at (:func:`container_labels`). An
agent touches only managed containers of its own node; anything else, even named ``dsfleet-<instance>``, is never
touched. The files hash the agent last (re)started each container with is recorded in ``<state-dir>/applied.json``
(with the container id and spec hash; :class:`dsfleet.agent.drift.Applied`), and both hashes are reported in
``AgentResponse``. The engine volume ``<name>_engine`` carries the image it was made for: when a container is
(re)created for another image the volume is recreated (its TensorRT engines belong to the old image).

**Plan rules**, per desired instance (container name ``dsfleet-<instance>``):

- a container with that name that is not ours → ``clash`` finding, nothing done for that instance;
- none of ours → ``create`` (``removed`` drift when the agent had applied one; then only with self-heal on);
- ours with another spec hash → ``recreate`` (``relabelled`` drift when the agent applied the desired spec);
- files differ on disk, or the files hash applied to this container is not the desired one → ``restart`` with
  the files rewritten (``write-files`` only when the instance is paused or its container is not running);
  files edited by hand are ``file-edited``/``file-missing`` drift (healed only with self-heal on);
- ``paused`` and running → ``stop``; not paused and ``created`` → ``start``; exited because someone stopped it
  (:func:`dsfleet.agent.drift.stopped_by_hand`) → ``start`` (``stopped`` drift); a crash is left to Docker's restart policy;
- more than one of ours for an instance → the extra ones are removed;
- ours for an instance no longer desired (or without instance label) → ``remove`` (container, engine volume and
  rendered files).

Applying a plan and planning again gives an empty plan (tests check it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

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
    "ActionKind",
    "ContainerAction",
    "ContainerRequest",
    "FileState",
    "Finding",
    "MountRequest",
    "ObservedContainer",
    "ObservedVolume",
    "Plan",
    "compute_plan",
    "container_labels",
    "container_name",
    "container_request",
    "is_ours",
    "pick_container",
    "record_applied",
    "volume_labels",
]

CONTAINER_PREFIX = "dsfleet-"
RUNNING_STATES = frozenset({"running", "restarting"})

REASON_NEW = "new instance"
REASON_SPEC = "container spec changed"
REASON_FILES = "files changed"
REASON_PAUSED = "paused"
REASON_CREATED = "created, not started"
REASON_UNWANTED = "instance no longer desired"
REASON_KEPT_NO_PRUNE = "no longer desired; kept because the fleet's sync policy has prune off"
REASON_DUPLICATE = "duplicate container of the instance"
REASON_CLASH = "a container named {name} exists that dsfleet does not manage; not touched"


def container_name(instance: str) -> str:
    return CONTAINER_PREFIX + instance


class ActionKind(StrEnum):
    CREATE = "create"
    RECREATE = "recreate"
    RESTART = "restart"
    WRITE_FILES = "write-files"
    START = "start"
    STOP = "stop"
    REMOVE = "remove"


@dataclass(frozen=True)
class ObservedContainer:
    """One container as Docker lists it (``state`` is Docker's: created, running, restarting, exited, …)."""

    id: str
    name: str
    labels: Mapping[str, str]
    state: str
    image: str = ""
    restart_count: int = 0
    exit_code: int | None = None
    started_at: str | None = None
    restart_policy: str = ""

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

    @property
    def in_sync(self) -> bool:
        return not self.writes and not self.removals


@dataclass(frozen=True)
class ContainerAction:
    kind: ActionKind
    instance: str
    container_id: str | None = None
    reason: str = ""
    recreate_volume: bool = False
    """create/recreate: the engine volume was made for another image."""
    start: bool = True
    """create/recreate: start the container (False when the instance is paused)."""
    heals: tuple[DriftKind, ...] = ()


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

    def __bool__(self) -> bool:
        return bool(self.actions)

    def describe(self) -> list[str]:
        return [
            f"{a.kind} instance={a.instance}"
            + (f" container={a.container_id[:12]}" if a.container_id else "")
            + (f" reason={a.reason!r}" if a.reason else "")
            for a in self.actions
        ]


def is_ours(container: ObservedContainer, node: str) -> bool:
    """Managed by dsfleet, and by this node's agent (a container without node label counts as this node's)."""
    return container.labels.get(LABEL_MANAGED) == "true" and container.labels.get(LABEL_NODE, node) == node


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


def _volume_outdated(instance: InstanceConfig, volumes: Mapping[str, ObservedVolume], node: str) -> bool:
    vol = volumes.get(instance.container.engineVolume)
    if vol is None or vol.labels.get(LABEL_MANAGED) != "true" or vol.labels.get(LABEL_NODE, node) != node:
        return False  # absent (created fresh) or not ours (used as it is, never removed)
    return vol.labels.get(LABEL_IMAGE) != instance.container.image


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


def _plan_instance(
    inst: InstanceConfig,
    current: ObservedContainer | None,
    files: FileState,
    applied: Applied | None,
    volumes: Mapping[str, ObservedVolume],
    node: str,
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
            recreate_volume=_volume_outdated(inst, volumes, node),
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
            ActionKind.RECREATE,
            name,
            current.id,
            reason=REASON_SPEC if not heals else "relabelled",
            recreate_volume=_volume_outdated(inst, volumes, node),
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
) -> Plan:
    """The actions that make the host run ``desired``; see the module docstring for the rules."""
    by_name = {c.name: c for c in observed}
    ours = [c for c in observed if is_ours(c, node)]
    vols = {v.name: v for v in volumes}
    wanted = {inst.name for inst in desired}
    actions: list[ContainerAction] = []
    drift: list[DriftFinding] = []
    findings: list[Finding] = []

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
        candidates = [c for c in ours if c.instance == inst.name]
        current = pick_container(candidates, inst) if candidates else None
        for extra in sorted(candidates, key=lambda c: c.id):
            if current is not None and extra.id != current.id:
                actions.append(ContainerAction(ActionKind.REMOVE, inst.name, extra.id, REASON_DUPLICATE))
        inst_actions, inst_drift = _plan_instance(
            inst, current, state, applied.get(inst.name), vols, node, self_heal and inst.selfHeal
        )
        actions.extend(inst_actions)
        drift.extend(inst_drift)
    return Plan(tuple(actions), tuple(drift), tuple(findings))


# ---------------------------------------------------------------------------------------------------------------
# what the runtime is asked to create


@dataclass(frozen=True)
class MountRequest:
    type: Literal["bind", "volume"]
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerRequest:
    """Everything the runtime needs to create one container. ``env`` may hold secret values: hidden from repr."""

    name: str
    image: str
    command: tuple[str, ...] | None
    env: Mapping[str, str] = field(repr=False)
    labels: Mapping[str, str]
    mounts: tuple[MountRequest, ...]
    restart_policy: Mapping[str, str | int]
    network_mode: str
    shm_size: str
    working_dir: str | None
    ipc_mode: str | None
    privileged: bool
    security_opt: tuple[str, ...]
    gpu_ids: tuple[str, ...]
    """Device request ids; empty when the host has no NVIDIA runtime."""
    healthcheck: Mapping[str, object] | None


_NS = 1_000_000_000


def container_request(
    inst: InstanceConfig,
    node: str,
    generation: int | None,
    configs_dir: str,
    secret_env: Mapping[str, str],
    *,
    nvidia: bool,
) -> ContainerRequest:
    """The container of ``inst``; ``configs_dir`` is the host directory of its rendered files (bind-mounted
    read-only), ``secret_env`` the values of its ``envSecrets`` (already looked up)."""
    spec = inst.container
    mounts: list[MountRequest] = []
    for m in spec.mounts:
        if m.type == "configs":
            mounts.append(MountRequest("bind", configs_dir, m.target, True))
        else:
            mounts.append(MountRequest(m.type, m.source, m.target, m.readOnly))
    policy: dict[str, str | int] = {"Name": spec.restartPolicy.name}
    if spec.restartPolicy.name == "on-failure" and spec.restartPolicy.maximumRetryCount:
        policy["MaximumRetryCount"] = spec.restartPolicy.maximumRetryCount
    health: dict[str, object] | None = None
    if spec.healthCheck is not None:
        h = spec.healthCheck
        health = {
            "test": list(h.test),
            "interval": h.intervalSeconds * _NS,
            "timeout": h.timeoutSeconds * _NS,
            "retries": h.retries,
            "start_period": h.startPeriodSeconds * _NS,
        }
    return ContainerRequest(
        name=container_name(inst.name),
        image=spec.image,
        command=spec.command,
        env={**spec.env, **secret_env},
        labels=container_labels(inst, node, generation),
        mounts=tuple(mounts),
        restart_policy=policy,
        network_mode=spec.networkMode,
        shm_size=spec.shmSize,
        working_dir=spec.workingDir,
        ipc_mode=spec.ipc,
        privileged=spec.privileged,
        security_opt=spec.securityOpt,
        gpu_ids=spec.gpus if nvidia else (),
        healthcheck=health,
    )


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
    files count as applied when they are in sync on disk. Records of instances no longer desired are dropped."""
    ours = [c for c in observed if is_ours(c, node)]
    result: dict[str, Applied] = {}
    for inst in desired:
        known = previous.get(inst.name)
        candidates = [c for c in ours if c.instance == inst.name]
        current = pick_container(candidates, inst) if candidates else None
        if (
            current is not None
            and current.spec_hash == inst.specHash
            and (known is None or known.container_id != current.id)
        ):
            in_sync = files.get(inst.name, FileState()).in_sync
            files_hash = inst.filesHash if in_sync else (known.files_hash if known else "")
            result[inst.name] = Applied(current.id, inst.specHash, files_hash, generation)
        elif known is not None:
            result[inst.name] = known
    return result
