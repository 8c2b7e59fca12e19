"""Plan = desired node configs vs the last applied ones (pure): what changes, node → instance → file.

Per node ``create``/``update``/``delete``/``unchanged``; per instance the same plus the kind of change
(``recreate`` when the container spec changed, ``restart`` when only files changed, ``hot`` when only the cameras
of an instance with DeepStream's stream REST API changed, ``stop``/``start`` when only ``paused`` changed, ``settings`` when only how the agent treats it changed — ``selfHeal``, ``updateStrategy`` —
which touches no container); per file a unified diff; container spec changes as structured field changes (deepdiff);
per updated instance the GIEs whose TensorRT engine is rebuilt (:mod:`dsfleet.reconciler.planning.rebuilds`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from dsfleet.reconciler.planning.rebuilds import EngineRebuild, engine_rebuilds
from dsfleet.schemas.nodeconfigs import InstanceConfig, NodeConfig, RenderedFile
from dsfleet.schemas.placeholders import secret_env_name
from dsfleet.schemas.streamapi import same_but_cameras, stream_api


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    UNCHANGED = "unchanged"


class ChangeKind(StrEnum):
    RECREATE = "recreate"
    RESTART = "restart"
    STOP = "stop"
    START = "start"
    SETTINGS = "settings"
    """Only the agent's settings of the instance changed (``selfHeal``, ``updateStrategy``): no restart."""
    HOT = "hot"
    """Only the cameras of an instance with DeepStream's stream REST API changed (within ``max-batch-size``):
    the files are rewritten and the streams added/removed in the running pipeline, no restart
    (:func:`hot_swappable`)."""


@dataclass(frozen=True)
class FileChange:
    path: str
    action: Action
    diff: str


@dataclass(frozen=True)
class FieldChange:
    path: str
    action: str
    """``changed``, ``added`` or ``removed``."""
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class InstanceChange:
    name: str
    action: Action
    kind: ChangeKind | None = None
    files: tuple[FileChange, ...] = ()
    fields: tuple[FieldChange, ...] = ()
    old_hash: str | None = None
    new_hash: str | None = None
    engine_rebuilds: tuple[EngineRebuild, ...] = ()
    """GIEs whose TensorRT engine nvinfer builds again (minutes of downtime, not seconds)."""


@dataclass(frozen=True)
class NodeChange:
    name: str
    action: Action
    old_hash: str | None
    new_hash: str | None
    instances: tuple[InstanceChange, ...] = ()


@dataclass(frozen=True)
class Plan:
    nodes: tuple[NodeChange, ...] = field(default_factory=tuple)

    @cached_property
    def changed(self) -> tuple[NodeChange, ...]:
        return tuple(n for n in self.nodes if n.action is not Action.UNCHANGED)

    @property
    def empty(self) -> bool:
        return not self.changed

    def count(self, action: Action) -> int:
        return sum(1 for n in self.nodes if n.action is action)

    def count_instances(self, *, action: Action | None = None, kind: ChangeKind | None = None) -> int:
        return sum(
            1
            for n in self.nodes
            for i in n.instances
            if (action is None or i.action is action) and (kind is None or i.kind is kind)
        )


def unified(path: str, old: str | None, new: str | None) -> str:
    a = [] if old is None else old.splitlines(keepends=True)
    b = [] if new is None else new.splitlines(keepends=True)
    lines = difflib.unified_diff(
        a,
        b,
        fromfile="/dev/null" if old is None else f"a/{path}",
        tofile="/dev/null" if new is None else f"b/{path}",
        n=3,
    )
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def diff_files(old: tuple[RenderedFile, ...], new: tuple[RenderedFile, ...]) -> tuple[FileChange, ...]:
    before = {f.path: f for f in old}
    after = {f.path: f for f in new}
    changes: list[FileChange] = []
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if a is None and b is not None:
            changes.append(FileChange(path, Action.CREATE, unified(path, None, b.content)))
        elif b is None and a is not None:
            changes.append(FileChange(path, Action.DELETE, unified(path, a.content, None)))
        elif a is not None and b is not None and (a.content != b.content or a.secrets != b.secrets):
            changes.append(FileChange(path, Action.UPDATE, unified(path, a.content, b.content)))
    return tuple(changes)


def _dd_path(path: str) -> str:
    """deepdiff's ``root['env']['A']`` → ``env.A``."""
    out = path.removeprefix("root")
    out = out.replace("']['", ".").replace("['", ".").replace("']", "")
    return out.lstrip(".")


SENSITIVE = "(sensitive value)"
"""What a diff shows instead of a value that comes from a secret (or an env variable whose name looks secret)."""


def _manifest_path(path: str) -> str:
    """A container spec path in the manifest's terms: ``gpus[0]`` → ``gpu``, ``envSecrets.X`` → ``env.X``,
    ``restartPolicy.name`` → ``restartPolicy``."""
    head, _, _rest = path.partition(".")
    base = head.partition("[")[0]
    if base == "gpus":
        return "gpu"
    if base == "envSecrets":
        name = path.split(".")[1].partition("[")[0] if "." in path else ""
        return f"env.{name}" if name else "env"
    if base == "restartPolicy":
        return "restartPolicy"
    return path


def _sensitive(path: str) -> bool:
    parts = path.split(".")
    return parts[0].partition("[")[0] == "envSecrets" or (
        parts[0] == "env" and len(parts) > 1 and secret_env_name(parts[1])
    )


def _masked(change: FieldChange) -> FieldChange:
    path = _manifest_path(change.path)
    if not _sensitive(change.path):
        return FieldChange(path, change.action, change.old, change.new)
    return FieldChange(
        path,
        change.action,
        None if change.old is None else SENSITIVE,
        None if change.new is None else SENSITIVE,
    )


def diff_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Container spec changes in manifest terms; values from secrets (and secret-looking env variables) are
    shown as :data:`SENSITIVE`, never their contents."""
    merged: dict[tuple[str, str], FieldChange] = {}
    for change in _raw_field_changes(old, new):
        masked = _masked(change)
        key = (masked.path, masked.action)
        if key in merged:  # gpus[0] and gpus[1], restartPolicy.name and .maximumRetryCount: one line
            continue
        if masked.path in ("gpu", "restartPolicy") and masked.path != change.path:
            whole = "gpus" if masked.path == "gpu" else "restartPolicy"
            before, after = (
                _in_manifest_terms(whole, old.get(whole)),
                _in_manifest_terms(whole, new.get(whole)),
            )
            action = "changed" if before is not None and after is not None else change.action
            masked = FieldChange(masked.path, action, before, after)
            key = (masked.path, action)
            if key in merged:
                continue
        merged[key] = masked
    return tuple(sorted(merged.values(), key=lambda c: c.path))


_RESTART_TERMS = {"unless-stopped": "Always", "on-failure": "OnFailure", "no": "Never"}


def _in_manifest_terms(field: str, value: Any) -> Any:
    """``gpus: ["1"]`` → ``1`` (the manifest's ``gpu``); ``restartPolicy: {name: on-failure}`` → ``OnFailure``."""
    if value is None:
        return None
    if field == "gpus":
        ids = [int(v) if str(v).isdigit() else v for v in value]
        return ids[0] if len(ids) == 1 else (ids or None)
    if isinstance(value, Mapping):
        return _RESTART_TERMS.get(str(value.get("name")), value.get("name"))
    return value


def _raw_field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    from deepdiff import DeepDiff  # imported only when a container spec changed (it is slow to import)

    dd = DeepDiff(dict(old), dict(new), ignore_order=False, verbose_level=2)
    out: list[FieldChange] = []
    for path, change in dd.get("values_changed", {}).items():
        out.append(FieldChange(_dd_path(path), "changed", change.get("old_value"), change.get("new_value")))
    for path, change in dd.get("type_changes", {}).items():
        out.append(FieldChange(_dd_path(path), "changed", change.get("old_value"), change.get("new_value")))
    for key in ("dictionary_item_added", "iterable_item_added"):
        for path, value in dd.get(key, {}).items():
            out.append(FieldChange(_dd_path(path), "added", None, value))
    for key in ("dictionary_item_removed", "iterable_item_removed"):
        for path, value in dd.get(key, {}).items():
            out.append(FieldChange(_dd_path(path), "removed", value, None))
    return tuple(sorted(out, key=lambda c: c.path))


def _container(inst: InstanceConfig) -> dict[str, Any]:
    return inst.container.model_dump(mode="json", by_alias=True)


def _setting_changes(old: InstanceConfig, new: InstanceConfig) -> tuple[FieldChange, ...]:
    """``paused``, ``selfHeal`` and ``updateStrategy`` changes, in the manifest's terms."""
    pairs = (
        ("paused", old.paused, new.paused),
        ("selfHeal", old.selfHeal, new.selfHeal),
        ("updateStrategy", str(old.strategy), str(new.strategy)),
    )
    return tuple(FieldChange(path, "changed", a, b) for path, a, b in pairs if a != b)


def hot_swappable(old: tuple[RenderedFile, ...], new: tuple[RenderedFile, ...]) -> bool:
    """``new`` differs from ``old`` only in the cameras of a ``[source-list]`` served by nvmultiurisrcbin's REST
    API (same port, same ``max-batch-size``, at most that many cameras): the streams change in the running
    pipeline. Any other difference (another file or key, the port, the limit) needs a restart."""
    before = {f.path: f for f in old}
    after = {f.path: f for f in new}
    if set(before) != set(after):
        return False
    hot = False
    for path, a in before.items():
        b = after[path]
        if a.content == b.content:
            continue
        old_api, new_api = stream_api(a.content), stream_api(b.content)
        if (
            old_api is None
            or new_api is None
            or (old_api.port, old_api.max_batch_size) != (new_api.port, new_api.max_batch_size)
            or len(new_api.sources) > new_api.max_batch_size
            or not same_but_cameras(a.content, b.content)
        ):
            return False
        hot = True
    return hot


def _hot(old: InstanceConfig, new: InstanceConfig) -> bool:
    """Only the cameras changed, on an instance that takes them through its REST API (the container stays)."""
    same_settings = (old.paused, old.selfHeal, old.strategy) == (new.paused, new.selfHeal, new.strategy)
    return same_settings and not new.paused and hot_swappable(old.files, new.files)


def diff_instance(old: InstanceConfig | None, new: InstanceConfig | None) -> InstanceChange:
    if old is None and new is not None:
        return InstanceChange(
            new.name,
            Action.CREATE,
            None,
            diff_files((), new.files),
            diff_fields({}, _container(new)),
            None,
            new.configHash,
        )
    if new is None and old is not None:
        return InstanceChange(
            old.name, Action.DELETE, None, diff_files(old.files, ()), (), old.configHash, None
        )
    assert old is not None and new is not None
    if old.configHash == new.configHash:
        return InstanceChange(new.name, Action.UNCHANGED, None, (), (), old.configHash, new.configHash)
    files = diff_files(old.files, new.files)
    fields = diff_fields(_container(old), _container(new)) if old.specHash != new.specHash else ()
    if old.specHash != new.specHash:
        kind = ChangeKind.RECREATE
    elif old.filesHash != new.filesHash:
        kind = ChangeKind.HOT if _hot(old, new) else ChangeKind.RESTART
    elif old.paused != new.paused:
        kind = ChangeKind.STOP if new.paused else ChangeKind.START
    else:
        kind = ChangeKind.SETTINGS
    fields = (*fields, *_setting_changes(old, new))
    return InstanceChange(
        new.name,
        Action.UPDATE,
        kind,
        files,
        fields,
        old.configHash,
        new.configHash,
        engine_rebuilds(old, new),
    )


def diff_node(name: str, old: NodeConfig | None, new: NodeConfig | None) -> NodeChange:
    if old is not None and new is not None and old.configHash == new.configHash:
        return NodeChange(name, Action.UNCHANGED, old.configHash, new.configHash)
    before = {i.name: i for i in old.instances} if old else {}
    after = {i.name: i for i in new.instances} if new else {}
    instances = tuple(
        change
        for change in (diff_instance(before.get(n), after.get(n)) for n in sorted(set(before) | set(after)))
        if change.action is not Action.UNCHANGED
    )
    if old is None:
        action = Action.CREATE
    elif new is None:
        action = Action.DELETE
    else:
        action = Action.UPDATE
    return NodeChange(
        name, action, old.configHash if old else None, new.configHash if new else None, instances
    )


def compute_plan(desired: Mapping[str, NodeConfig], stored: Mapping[str, NodeConfig]) -> Plan:
    changes = []
    for name in sorted(desired.keys() | stored.keys()):
        old, new = stored.get(name), desired.get(name)
        if old is new and old is not None:  # the very config (a caller that keeps them): nothing to compare
            changes.append(NodeChange(name, Action.UNCHANGED, old.configHash, old.configHash))
        else:
            changes.append(diff_node(name, old, new))
    return Plan(tuple(changes))


def removes_every_instance(
    plan: Plan, desired: Mapping[str, NodeConfig], stored: Mapping[str, NodeConfig]
) -> bool:
    """True when the stored fleet runs instances and the desired one runs none
    (docs/architecture/decisions/0014-prune-safety.md)."""
    if plan.empty or any(c.instances for c in desired.values()):
        return False
    return any(c.instances for c in stored.values())
