"""The effective configuration of a deepstream-app (or nvinfer / nvdspreprocess) config, read by the real GLib.

What DeepStream runs, not how the file spells it, so an original config and what dsfleet renders from it can be
compared key for key:

* every key read by real GLib with the getter DeepStream calls (``glibcheck``), numbers as numbers; a switch
  deepstream-app reads as an integer and tests for non-zero as a boolean;
* sources in deepstream-app's order, a MultiURI ``type=3`` source expanded as deepstream-app expands it (its
  group's source, then ``num-sources - 1`` copies after every other source, ``%d`` numbered, type URI);
  ``[source-list]`` sources from ``list`` + ``[source-attr-all]``;
* each GIE as nvinfer runs it: the file's ``[property]`` with only the keys deepstream-app sets on the element
  over it (``deepstream_primary_gie_bin.c``, ``deepstream_secondary_gie_bin.c``), ``process-mode`` by the group,
  ``input-tensor-meta`` always (default 0); secondaries only those deepstream-app creates (their
  ``operate-on-gie-id`` chains to the primary); the group's own keys (OSD colours, its ``labelfile-path``) apart;
* paths resolved as DeepStream resolves them (against the file's directory, or the working directory); a path
  to a file that can be read is its content (an imported file rendered elsewhere is the same file);
* ``gpu-id`` set apart as the physical GPU (the container sees its one GPU as 0); a disabled group is only its
  ``enable``; deepstream-app's defaults filled in where dsfleet writes a default explicitly.

Two passes: :meth:`Reader.plan` lists the key files of a config and the getter of each key (from the key
tables), one batched GLib subprocess reads them all (:meth:`Reader.fetch`), then :func:`app_effective` and
:func:`gie_effective` build the configurations from GLib's values. :func:`differences` compares two.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from dsfleet.reconciler.importers.deepstreamapp import SET_ON_NVINFER, group_kind, spec_of
from dsfleet.reconciler.importers.keyfilereader import KeyFile, parse_keyfile, read_typed
from dsfleet.reconciler.importers.nvinfer import detect_format
from dsfleet.reconciler.importers.yamlconfigs import is_yaml_config, yaml_to_keyfile
from dsfleet.schemas.deepstream import (
    NVINFER_CLASS_ATTRS_KEYS,
    PREPROCESS_GROUP_KEYS,
    PROPERTY_TABLES,
    GieFormat,
    KeySpec,
    PathKind,
    ValueKind,
    spec_for,
)
from tests.support.glibcheck import GetterError, GlibChecker, GlibFile, getter_for

ReadText = Callable[[str], str | None]
"""An absolute path in the container → its text, or None (not there, or not a text file we hold)."""

_S = ValueKind.STRING
GPU_KEYS = ("gpu-id", "global-gpu-id")
SOURCE_DEFAULTS: dict[str, Any] = {"latency": 100, "num-decode-surfaces": 16, "num-extra-surfaces": 1,
                                   "rtsp-reconnect-attempts": -1}  # fmt: skip
"""parse_source's own defaults (a rendered key equal to one of them is what deepstream-app used anyway)."""
GROUP_DEFAULTS: dict[str, dict[str, Any]] = {
    "application": {"enable-perf-measurement": False},
    "streammux": {"batched-push-timeout": -1, "live-source": False, "enable-padding": False,
                  "attach-sys-ts-as-ntp": True},
}  # fmt: skip
_OFF_GROUPS = ("osd", "tracker", "tiled-display", "message-converter", "nvds-analytics", "img-save")


@dataclass
class Reader:
    """The files of one world (the original tree, or what dsfleet renders + what the container sees besides)."""

    read: ReadText
    cwd: str
    """The working directory DeepStream runs in (relative working-directory paths)."""
    glib: dict[tuple[str, str], GlibFile] = field(default_factory=dict)
    pending: list[tuple[str, dict[str, dict[str, str]]]] = field(default_factory=list)

    def keyfile(self, path: str) -> tuple[str, KeyFile] | None:
        """The key-file text of ``path`` (a YAML config's as the key file it stands for) and its parse."""
        text = self.read(path)
        if text is None:
            return None
        if is_yaml_config(path):
            base = PurePosixPath(path).parent
            text = yaml_to_keyfile(text, path, lambda ref: _pair(self.read(_join(base, ref)), ref))
        return text, parse_keyfile(text, path)

    def plan(self, text: str, getters: dict[str, dict[str, str]]) -> None:
        key = (text, json.dumps(getters, sort_keys=True))
        if key not in self.glib:
            self.pending.append((text, getters))

    def values(self, text: str, getters: dict[str, dict[str, str]]) -> GlibFile:
        return self.glib[(text, json.dumps(getters, sort_keys=True))]


def fetch(glib: GlibChecker, readers: list[Reader]) -> None:
    """One GLib subprocess for every planned file of every reader."""
    todo = [(r, item) for r in readers for item in r.pending]
    results = glib.read([item for _r, item in todo])
    for (reader, (text, getters)), result in zip(todo, results, strict=True):
        reader.glib[(text, json.dumps(getters, sort_keys=True))] = result
    for reader in readers:
        reader.pending.clear()


def _pair(text: str | None, name: str) -> tuple[str, str] | None:
    return None if text is None else (text, name)


def _join(base: PurePosixPath | str, value: str) -> str:
    return posixpath.normpath(posixpath.join(str(base), value))


# ------------------------------------------------------------------------------------------------------- getters
def app_getters(keyfile: KeyFile) -> dict[str, dict[str, str]]:
    return {
        g.name: {k: getter_for((spec_of(g.name, k) or KeySpec(k, _S)).read_kind) for k in g.effective()}
        for g in keyfile.groups
    }


def gie_tables(fmt: GieFormat, group: str) -> Mapping[str, KeySpec] | None:
    if group == "property":
        return PROPERTY_TABLES[fmt]
    if fmt is GieFormat.NVINFER and group.startswith("class-attrs-"):
        return NVINFER_CLASS_ATTRS_KEYS
    if fmt is GieFormat.NVDSPREPROCESS and group.startswith("group-"):
        return PREPROCESS_GROUP_KEYS
    return None


def gie_getters(keyfile: KeyFile, fmt: GieFormat) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for g in keyfile.groups:
        table = gie_tables(fmt, g.name)
        getters = {}
        for key in g.effective():
            spec = spec_for(table, key) if table is not None else None
            getters[key] = getter_for(spec.kind if spec is not None else _S)
        out[g.name] = getters
    return out


def _string(keyfile: KeyFile, group: str, key: str) -> str | None:
    g = keyfile.group(group)
    entry = g.get(key) if g is not None else None
    if entry is None:
        return None
    value, _ = read_typed(KeySpec(key, _S), entry.raw)
    return value if isinstance(value, str) else None


def plan_app(reader: Reader, path: str) -> None:
    """Plan the GLib reads of an app config and of the GIE files its groups name."""
    found = reader.keyfile(path)
    if found is None:
        return
    text, kf = found
    reader.plan(text, app_getters(kf))
    base = PurePosixPath(path).parent
    for group in kf.groups:
        if group_kind(group.name) in ("primary-gie", "secondary-gie", "pre-process", "secondary-pre-process"):
            ref = _string(kf, group.name, "config-file")
            if ref:
                plan_gie(reader, _join(base, ref) if not ref.startswith("/") else ref)


def plan_gie(reader: Reader, path: str) -> None:
    found = reader.keyfile(path)
    if found is None:
        return
    text, kf = found
    fmt, _ = detect_format(kf)
    reader.plan(text, gie_getters(kf, fmt or GieFormat.NVINFER))


# ------------------------------------------------------------------------------------------------------- values
def _value(result: GlibFile, group: str, key: str, spec: KeySpec | None) -> Any:
    value = result.value(group, key)
    if isinstance(value, GetterError):
        return ("getter-error",)
    if spec is not None and spec.kind is ValueKind.BOOL and isinstance(value, int | float):
        return bool(value)
    if spec is not None and spec.kind is ValueKind.DOUBLE and isinstance(value, int):
        return float(value)
    return list(value) if isinstance(value, tuple) else value


def _path(reader: Reader, value: str, base: PurePosixPath, spec: KeySpec) -> Any:
    """A path as DeepStream opens it; the content when the file can be read."""
    if not value:
        return value
    if spec.cwd_relative:
        if not value.startswith("/") and ("/" not in value and spec.path_kind is not PathKind.CONFIG):
            return ("library", value)
        if spec.path_kind is PathKind.OUTPUT and not value.startswith("/"):
            return ("cwd", value)
        resolved = value if value.startswith("/") else _join(reader.cwd, value)
    else:
        resolved = value if value.startswith("/") else _join(base, value)
    text = reader.read(resolved) if spec.path_kind is not PathKind.OUTPUT else None
    return ("file", text) if text is not None else ("path", resolved)


_GIE_GROUPS = ("primary-gie", "secondary-gie", "pre-process", "secondary-pre-process")


def _group_values(reader: Reader, result: GlibFile, kf: KeyFile, group: str, base: PurePosixPath,
                  spec_lookup: Callable[[str], KeySpec | None]) -> dict[str, Any]:  # fmt: skip
    g = kf.group(group)
    out: dict[str, Any] = {}
    if g is None:
        return out
    for key in g.effective():
        spec = spec_lookup(key)
        value = _value(result, group, key, spec)
        if key == "config-file" and group_kind(group) in _GIE_GROUPS and isinstance(value, str):
            value = (
                value if value.startswith("/") else _join(base, value)
            )  # the GIE file, compared by content
        elif spec is not None and spec.is_path and isinstance(value, str):
            value = _path(reader, value, base, spec)
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------------------- GIE files
def gie_effective(reader: Reader, path: str) -> dict[str, Any] | None:
    """An nvinfer / nvdspreprocess file as its element reads it (None: the file is not there)."""
    found = reader.keyfile(path)
    if found is None:
        return None
    text, kf = found
    fmt, _ = detect_format(kf)
    fmt = fmt or GieFormat.NVINFER
    result = reader.values(text, gie_getters(kf, fmt))
    if result.load_error is not None:
        return {"load-error": result.load_error}
    base = PurePosixPath(path).parent
    out: dict[str, Any] = {"format": fmt.value}
    for group in kf.groups:
        table = gie_tables(fmt, group.name)
        if table is None and not (fmt is GieFormat.NVDSPREPROCESS and group.name == "user-configs"):
            continue  # a group the element ignores
        values = _group_values(reader, result, kf, group.name, base,
                               lambda k, t=table: spec_for(t, k) if t is not None else None)  # fmt: skip
        if group.name == "user-configs":  # strings the custom library reads as numbers where they are
            values = {k: _number(v) for k, v in values.items()}
        if fmt is GieFormat.NVINFER and group.name == "property" and "is-classifier" in values:
            legacy = values.pop("is-classifier")
            if "network-type" not in values and isinstance(legacy, bool):
                values["network-type"] = 1 if legacy else 0
        out[group.name] = values
    return out


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


# ------------------------------------------------------------------------------------------------------- app configs
def app_effective(
    reader: Reader, path: str, secrets: Mapping[str, tuple[str, str]] | None = None
) -> dict[str, Any]:
    """A deepstream-app config as deepstream-app runs it (see the module docstring)."""
    found = reader.keyfile(path)
    if found is None:
        raise FileNotFoundError(path)
    text, kf = found
    result = reader.values(text, app_getters(kf))
    if result.load_error is not None:
        return {"load-error": result.load_error}
    base = PurePosixPath(path).parent
    groups: dict[str, dict[str, Any]] = {}
    for group in kf.groups:
        values = _group_values(reader, result, kf, group.name, base, lambda k, g=group.name: spec_of(g, k))
        groups[group.name] = values
    gpus: set[int] = set()
    for name, values in groups.items():
        for key in GPU_KEYS:
            if isinstance(values.get(key), int) and group_kind(name) not in _GIE_GROUPS:
                gpus.add(values.pop(key))
    out: dict[str, Any] = {}
    sources, listed = _sources(groups, base, secrets or {})
    out["sources"] = sources
    if listed is not None:
        out["source-list"] = listed
    out.update(_gies(reader, groups, base, listed, gpus))
    out["gpus"] = sorted(gpus)
    sinks = []
    for name, values in groups.items():
        kind = group_kind(name)
        if kind in ("source", "source-list", "source-attr-all", "primary-gie", "secondary-gie", "pre-process",
                    "secondary-pre-process"):  # fmt: skip
            continue
        if kind == "sink":
            if values.get("enable"):
                sinks.append(_secrets(values, secrets or {}))
            continue
        if kind == "message-consumer":
            if values.get("enable"):
                out.setdefault("message-consumers", []).append(_secrets(values, secrets or {}))
            continue
        defaults = GROUP_DEFAULTS.get(kind, {})
        values = {k: v for k, v in values.items() if defaults.get(k, _NONE) != v}
        if kind in _OFF_GROUPS and not values.get("enable"):
            values = {"enable": values.get("enable", False) or False}
        if kind == "tests" and values.get("file-loop") is False:
            values.pop("file-loop")
        if values or kind not in GROUP_DEFAULTS:
            out[name] = values
    out["sinks"] = sinks
    return out


_NONE = object()


def _secrets(values: dict[str, Any], secrets: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """``${secret:ref}`` / ``${secret:ref:password}`` placeholders → the values the agent fills in."""
    out = {}
    for key, value in values.items():
        if isinstance(value, str) and "${secret:" in value:
            value = re.sub(r"\$\{secret:([a-z0-9-]+):password\}", lambda m: secrets[m.group(1)][1], value)
            value = re.sub(r"\$\{secret:([a-z0-9-]+)\}", lambda m: ":".join(secrets[m.group(1)]), value)
        out[key] = value
    return out


def _sources(groups: dict[str, dict[str, Any]], base: PurePosixPath, secrets: Mapping[str, tuple[str, str]]
             ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:  # fmt: skip
    """The sources in deepstream-app's order, expanded; the source list's own settings."""
    listed = groups.get("source-list")
    out: list[dict[str, Any]] = []
    if listed is not None:
        attrs = dict(groups.get("source-attr-all", {}))
        uris = listed.get("list", [])
        for i, uri in enumerate(uris):
            source = {**attrs, "camera-id": i}
            uri = _secrets({"u": uri}, secrets)["u"]
            if uri.startswith("file://"):
                source.update(type=2, uri=_file_uri(uri, base))
            elif uri.startswith("rtsp://"):
                source.update(type=4, uri=uri)
            elif uri.startswith("usb:"):
                source.update(type=1, **{"camera-v4l2-dev-node": int(uri[4:])})
            elif uri.startswith("csi:"):
                source.update(type=5, **{"camera-csi-sensor-id": int(uri[4:])})
            for name, values in groups.items():  # [sourceN] overrides the listed source N
                m = re.fullmatch(r"source([0-9]+)", name)
                if m and int(m.group(1)) == i:
                    source.update(values)
            out.append(_source_defaults(source))
        settings = {k: v for k, v in listed.items() if k not in ("list", "num-source-bins")}
        if not settings.get("use-nvmultiurisrcbin"):
            settings.pop("sensor-id-list", None)  # only nvmultiurisrcbin reads the ids and names
            settings.pop("sensor-name-list", None)
        return out, settings
    copies: list[dict[str, Any]] = []
    for name, values in groups.items():
        m = re.fullmatch(r"source([0-9]+)", name)
        if m is None or not values.get("enable"):
            continue
        source = {"camera-id": int(m.group(1)), **_secrets(values, secrets)}
        if isinstance(source.get("uri"), str):
            source["uri"] = _file_uri(source["uri"], base)
        if source.get("type") == 3:
            count = max(int(source.pop("num-sources", 1)), 1)
            source["type"] = 2
            for j in range(1, count):
                copy = dict(source, uri=_printf_d(str(source.get("uri", "")), j), copy=True)
                copies.append(copy)
        out.append(source)
    return [_source_defaults(s) for s in out + copies], None


def _source_defaults(source: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if SOURCE_DEFAULTS.get(k, _NONE) != v and k != "num-sources"}


def _file_uri(uri: str, base: PurePosixPath) -> str:
    if not uri.startswith("file://"):
        return uri
    rest = uri[len("file://") :]
    return uri if rest.startswith("/") else "file://" + _join(base, rest)


def _printf_d(uri: str, number: int) -> str:
    return uri.replace("%d", str(number), 1).replace("%%", "%")


def _gies(reader: Reader, groups: dict[str, dict[str, Any]], base: PurePosixPath, listed: dict[str, Any] | None,
          gpus: set[int]) -> dict[str, Any]:  # fmt: skip
    """Each GIE as its element runs: the file, the keys deepstream-app sets on it, the group's own keys."""
    primary: dict[str, Any] | None = None
    secondaries: list[tuple[dict[str, Any], dict[str, Any]]] = []
    preprocess: dict[str, Any] | None = None
    secondary_pre: list[tuple[dict[str, Any], dict[str, Any]]] = []
    n_sources = len(listed.get("list", [])) if listed is not None else 0
    for name, values in groups.items():
        kind = group_kind(name)
        if kind not in ("primary-gie", "secondary-gie", "pre-process", "secondary-pre-process"):
            continue
        if not values.get("enable"):
            continue
        config = values.get("config-file")
        file = gie_effective(reader, config) if isinstance(config, str) else None
        element = dict((file or {}).get("property", {}))
        gpu = values.pop("gpu-id", None)  # deepstream-app sets the group's on the element, over the file's
        gpu = element.pop("gpu-id", None) if gpu is None else gpu
        element.pop("gpu-id", None)
        if isinstance(gpu, int):
            gpus.add(gpu)
        gie = {"file": {k: v for k, v in (file or {}).items() if k != "property"}}
        if kind in SET_ON_NVINFER:
            for key in SET_ON_NVINFER[kind]:
                if key in values:
                    element[key] = values[key]
            if kind == "primary-gie" and listed is not None and "batch-size" in values:
                element["batch-size"] = (listed.get("max-batch-size") if listed.get("use-nvmultiurisrcbin")
                                         else n_sources)  # fmt: skip
            if (
                kind == "secondary-gie"
                and listed is not None
                and "batch-size" in values
                and listed.get("sgie-batch-size")
            ):
                element["batch-size"] = listed["sgie-batch-size"]
            element["process-mode"] = 1 if kind == "primary-gie" else 2
            element["input-tensor-from-meta"] = bool(values.get("input-tensor-meta", False))
            own = {k: v for k, v in values.items()
                   if k not in (*SET_ON_NVINFER[kind], "enable", "config-file", "input-tensor-meta")
                   and not (kind == "primary-gie" and k in ("operate-on-gie-id", "operate-on-class-ids"))}  # fmt: skip
            gie.update(element=element, group=own)
        else:
            if kind == "secondary-pre-process" and "operate-on-gie-id" in values:
                element["operate-on-gie-id"] = values["operate-on-gie-id"]
            gie.update(element=element, group={})
        ids = (values.get("gie-unique-id", 0), values.get("operate-on-gie-id", -1))
        if kind == "primary-gie":
            primary = gie
            primary_ids = ids
        elif kind == "secondary-gie":
            secondaries.append((gie, {"id": ids[0], "on": ids[1]}))
        elif kind == "pre-process":
            preprocess = gie
        else:
            secondary_pre.append((gie, {"on": ids[1]}))
    if primary is None:
        return {"primary": None, "secondaries": [], "pre-process": preprocess, "secondary-pre-process": []}
    primary_id = primary_ids[0]
    created = _created(secondaries, primary_id)
    return {
        "primary": primary,
        "secondaries": [g for (g, _), keep in zip(secondaries, created, strict=True) if keep],
        "pre-process": preprocess,
        "secondary-pre-process": [g for g, ids in secondary_pre if ids["on"] == primary_id],
    }


def _created(secondaries: list[tuple[dict[str, Any], dict[str, Any]]], primary_id: Any) -> list[bool]:
    """``should_create_secondary_gie``: a secondary runs when it operates on the primary or on a created one."""
    created = [False] * len(secondaries)
    changed = True
    while changed:
        changed = False
        for i, (_gie, ids) in enumerate(secondaries):
            if created[i]:
                continue
            if ids["on"] == primary_id or any(
                created[j] and ids["on"] == other["id"] for j, (_g, other) in enumerate(secondaries)
            ):
                created[i] = changed = True
    return created


# ------------------------------------------------------------------------------------------------------- comparing
def differences(original: Any, rendered: Any, where: str = "") -> list[str]:
    """Where two effective configurations differ (``sources[2].uri: 'a' != 'b'``); [] when equal. Expanded
    MultiURI copies carry deepstream-app's group camera id, dsfleet's unique ones: not compared."""
    if isinstance(original, dict) and isinstance(rendered, dict):
        if original.get("copy"):
            original = {k: v for k, v in original.items() if k not in ("copy", "camera-id")}
            rendered = {k: v for k, v in rendered.items() if k != "camera-id"}
        out = []
        for key in sorted(set(original) | set(rendered), key=str):
            if key not in rendered:
                out.append(f"{where}.{key}: only in the original ({_short(original[key])})")
            elif key not in original:
                out.append(f"{where}.{key}: only in the render ({_short(rendered[key])})")
            else:
                out.extend(differences(original[key], rendered[key], f"{where}.{key}"))
        return out
    if isinstance(original, list) and isinstance(rendered, list) and not _scalar_list(original, rendered):
        if len(original) != len(rendered):
            return [f"{where}: {len(original)} items != {len(rendered)}"]
        return [d for i, (a, b) in enumerate(zip(original, rendered, strict=True))
                for d in differences(a, b, f"{where}[{i}]")]  # fmt: skip
    if original != rendered or type(original) is not type(rendered):
        return [f"{where}: {_short(original)} != {_short(rendered)}"]
    return []


def _scalar_list(a: list[Any], b: list[Any]) -> bool:
    return all(not isinstance(x, dict | list) for x in [*a, *b])


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."
