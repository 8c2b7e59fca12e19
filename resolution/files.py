"""The files an instance renders into /workspace/configs, and the paths its keys name (pure).

DeepStream resolves a relative path against the directory of the file that names it; every file dsfleet renders
sits in /workspace/configs, so a relative path works only when it names a rendered file (an imported label file,
tracker config, …) or reaches a directory mounted into the container (the engine volume /workspace/build, a
``spec.mounts`` target). :func:`dangling_paths` lists the others, for rule ``relative-path``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dsfleet.resolution.instances import ResolvedInstance
from dsfleet.schemas.deepstream import (
    APP_GIE_KEYS,
    APP_GROUP_TABLES,
    PROPERTY_TABLES,
    KeySpec,
    PathKind,
    spec_for,
)
from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.manifests import CameraType, DeepstreamAppInstanceSpec
from dsfleet.schemas.nodeconfigs import CONFIGS_DIR, ENGINE_DIR

__all__ = ["APP_CONFIG", "PathUse", "dangling_paths", "path_uses", "rendered_names"]

APP_CONFIG = "deepstream_app_config.txt"

_APP_GROUPS = (
    ("application", "application"),
    ("streammux", "streammux"),
    ("tracker", "tracker"),
    ("osd", "osd"),
    ("tiled_display", "tiled-display"),
    ("message_converter", "message-converter"),
    ("nvds_analytics", "nvds-analytics"),
    ("img_save", "img-save"),
    ("source_attr_all", "source-attr-all"),
)
_APP_LISTS = (("sinks", "sink"), ("message_consumers", "message-consumer"))


@dataclass(frozen=True)
class PathUse:
    """A path a key of the instance names: ``kind``/``name`` the document, ``path`` where in it."""

    kind: str
    name: str
    path: tuple[str | int, ...]
    key: str
    value: str
    spec: KeySpec


def rendered_names(fleet: Fleet, res: ResolvedInstance) -> set[str]:
    """The names of the files rendered for ``res`` (app config, GIE files, app.files, the profile's files)."""
    names = {gie.file for gie in res.gies}
    spec = res.instance.spec
    if isinstance(spec, DeepstreamAppInstanceSpec):
        names.add(APP_CONFIG)
        names.update(spec.app.files)
    profile = fleet.profiles.get(spec.profile) if spec.profile else None
    if profile is not None:
        names.update(profile.spec.files)
    return names


def _dumped(model: Any) -> dict[str, Any]:
    dump = model.model_dump(by_alias=True, exclude_none=True) if model is not None else {}
    return dump if isinstance(dump, dict) else {}


def path_uses(fleet: Fleet, res: ResolvedInstance) -> Iterator[PathUse]:
    """Every path value of a deepstream-app instance: its GIEs' properties (as resolved), its app groups and GIE
    settings, and its cameras' ``file://`` URLs."""
    spec = res.instance.spec
    name = res.name
    profile = spec.profile or ""
    for gie in res.gies:
        table = PROPERTY_TABLES[gie.format]
        for key, value in gie.properties.items():
            key_spec = spec_for(table, key)
            if key_spec is not None and key_spec.is_path and isinstance(value, str):
                where = ("spec", "gies", gie.index, "properties", key)
                yield PathUse("InferenceProfile", profile, where, key, value, key_spec)
    if not isinstance(spec, DeepstreamAppInstanceSpec):
        return
    app = spec.app
    groups: list[tuple[tuple[str | int, ...], str, Mapping[str, Any]]] = []
    for attr, group in _APP_GROUPS:
        groups.append(((group,), group, _dumped(getattr(app, attr))))
    for attr, group in _APP_LISTS:
        for i, item in enumerate(getattr(app, attr)):
            groups.append(((attr.replace("_", "-"), i), group, _dumped(item)))
    for gie_name, settings in app.gies.items():
        groups.append((("gies", gie_name), "primary-gie", settings.values_by_key()))
    for place, group, values in groups:
        keys = APP_GIE_KEYS if group == "primary-gie" else APP_GROUP_TABLES[group]
        for key, value in values.items():
            key_spec = spec_for(keys, key)
            if key_spec is not None and key_spec.is_path and isinstance(value, str):
                yield PathUse("DsInstance", name, ("spec", "app", *place, key), key, value, key_spec)
    uri_spec = KeySpec("uri", APP_GIE_KEYS["config-file"].kind, path_kind=PathKind.MODEL)
    for camera_name in res.cameras:
        camera = fleet.cameras.get(camera_name)
        if (
            camera is not None
            and camera.spec.source_type is CameraType.FILE
            and camera.spec.url.startswith("file://")
        ):
            rest = camera.spec.url[len("file://") :]
            yield PathUse("Camera", camera_name, ("spec", "url"), "url", rest, uri_spec)


def dangling_paths(fleet: Fleet, res: ResolvedInstance) -> list[PathUse]:
    """The relative paths of a deepstream-app instance that name no rendered file and reach no mounted directory
    (what DeepStream opens is then not there)."""
    spec = res.instance.spec
    if not isinstance(spec, DeepstreamAppInstanceSpec):
        return []
    rendered = rendered_names(fleet, res)
    mounted = [ENGINE_DIR, *(m.target for m in spec.mounts)]
    workdir = spec.workingDir or ENGINE_DIR
    out = []
    for use in path_uses(fleet, res):
        value = use.value
        if not value or value.startswith("/") or value == "auto" or "{" in value:
            continue
        if use.spec.cwd_relative:
            if "/" not in value and use.spec.path_kind is not PathKind.CONFIG:
                continue  # a library name dlopen searches for
            if use.spec.path_kind is PathKind.OUTPUT and _under(posixpath.join(workdir, value), mounted):
                continue  # written into the working directory, a writable volume
            resolved = posixpath.normpath(posixpath.join(workdir, value))
        else:
            resolved = posixpath.normpath(posixpath.join(CONFIGS_DIR, value))
        if posixpath.dirname(resolved) == CONFIGS_DIR and posixpath.basename(resolved) in rendered:
            continue
        if _under(resolved, mounted):
            continue
        out.append(use)
    return out


def _under(path: str, directories: list[str]) -> bool:
    path = posixpath.normpath(path)
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in directories)
