"""Import an existing deepstream-app config (key file) as Camera, InferenceProfile and DsInstance documents (pure).

Read with GLib's rules (:mod:`dsfleet.reconciler.importers.keyfilereader`), every key by the getter deepstream-app uses. Where
each original key lands in what dsfleet renders is recorded (``placements``), so a round trip can be checked
key for key:

* ``[sourceN]`` → one Camera per source (a MultiURI ``type=3`` with ``num-sources=K`` becomes K cameras, as
  deepstream-app itself creates K source bins); ``uri`` → ``url`` (credentials moved to a secret);
* ``[source-list]`` → one Camera per URI of ``list`` (credentials moved to a secret; ``sensor-id-list`` →
  ``cameraId``), the other keys → ``app.source-list``; ``[source-attr-all]`` → ``app.source-attr-all``; beside a
  source list, ``[sourceN]`` groups override a listed source's attributes and are kept verbatim;
* ``[streammux]``, ``[application]``, ``[osd]``, ``[tracker]``, ``[tiled-display]``, ``[sinkN]``,
  ``[message-converter]``, ``[message-consumerN]``, ``[nvds-analytics]``, ``[img-save]``, ``[tests]`` → ``app``; a
  broker connection string (``msg-broker-conn-str``, ``conn-str``) with credentials moves whole to a secret (its
  password; no user name) and becomes ``{secretRef: <instance>-sinkN}``;
* ``[primary-gie]`` / ``[secondary-gieN]`` / ``[pre-process]`` → the profile's GIEs from their ``config-file``
  (read by :func:`dsfleet.reconciler.importers.nvinfer.import_keyfile`); app-level nvinfer keys override the file's;
  app-only keys (``bbox-border-colorN``, ``nvbuf-memory-type``, ``plugin-type`` 0, …) → ``app.gies.<name>``;
* anything else (unknown keys, groups dsfleet does not model) → ``app.extraGroups``,
  verbatim, under the group name dsfleet renders (the renderer adds them to that group).

``gpu-id`` is always rendered 0 (the container sees one GPU); a different value is reported. A YAML config (DS
6.2+; its GIE files too) is read as the key file it stands for, its sources from the CSV it names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from dsfleet.reconciler.importers.keyfilereader import KeyGroup, parse_keyfile, read_typed
from dsfleet.reconciler.importers.legacyrows import Secret, _strip_userinfo, dns_label, manifest_document
from dsfleet.reconciler.importers.yamlconfigs import (
    YamlConfigError,
    is_yaml_config,
    keyfile_name,
    yaml_to_keyfile,
)
from dsfleet.schemas.deepstream import (
    APP_GROUP_TABLES,
    NVINFER_PROPERTY_KEYS,
    SOURCE_LIST_DERIVED_KEYS,
    KeySpec,
    ValueKind,
    spec_for,
)
from dsfleet.schemas.placeholders import broker_connection_has_credentials, url_has_credentials

DEFAULT_IMAGE = "nvcr.io/nvidia/deepstream:7.0-triton-multiarch"
_I, _B, _S, _IL, _DL = (ValueKind.INT, ValueKind.BOOL, ValueKind.STRING, ValueKind.INT_LIST,
                        ValueKind.DOUBLE_LIST)  # fmt: skip


def _specs(*items: tuple[str, ValueKind]) -> dict[str, KeySpec]:
    return {name: KeySpec(name, kind) for name, kind in items}


APPLICATION_KEYS = _specs(("enable-perf-measurement", _I), ("perf-measurement-interval-sec", _I))
STREAMMUX_KEYS = _specs(
    ("width", _I), ("height", _I), ("batch-size", _I), ("buffer-pool-size", _I), ("nvbuf-memory-type", _I),
    ("batched-push-timeout", _I), ("live-source", _I), ("enable-padding", _I), ("attach-sys-ts-as-ntp", _I),
    ("gpu-id", _I),
)  # fmt: skip
SOURCE_KEYS = _specs(
    ("enable", _I), ("type", _I), ("uri", _S), ("num-sources", _I), ("gpu-id", _I), ("camera-id", _I),
    ("latency", _I), ("cudadec-memtype", _I), ("drop-frame-interval", _I), ("select-rtp-protocol", _I),
    ("rtsp-reconnect-interval-sec", _I), ("num-extra-surfaces", _I),
)  # fmt: skip
SOURCE_DEFAULT_KEYS = ("latency", "cudadec-memtype", "drop-frame-interval", "select-rtp-protocol",
                       "rtsp-reconnect-interval-sec", "num-extra-surfaces")  # fmt: skip
GIE_TO_PROPERTIES = ("gie-unique-id", "operate-on-gie-id", "operate-on-class-ids", "batch-size", "interval",
                     "model-engine-file", "labelfile-path")  # fmt: skip
_NUMBERED = re.compile(r"^(source|sink|secondary-gie|message-consumer)([0-9]+)$")
_MODELLED = {"osd": "osd", "tracker": "tracker", "tiled-display": "tiled-display", "sink": "sinks",
             "message-converter": "message-converter", "message-consumer": "message-consumers",
             "nvds-analytics": "nvds-analytics", "img-save": "img-save", "tests": "tests"}  # fmt: skip
_CONNECTION_KEYS = {"sink": "msg-broker-conn-str", "message-consumer": "conn-str"}
_FORCED_GPU = {"tiled-display", "tracker", "osd", "img-save", "streammux", "source", "primary-gie",
               "secondary-gie"}  # fmt: skip


class AppImportError(Exception):
    """The file cannot be imported (gcc-style message)."""


@dataclass
class AppImport:
    cameras: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    instance: dict[str, Any] = field(default_factory=dict)
    secrets: list[Secret] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    placements: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    """(original group, key) → (rendered file, group, key) where the same GLib-typed value is rendered."""
    getters: dict[tuple[str, str], ValueKind] = field(default_factory=dict)
    """(original group, key) → the kind deepstream-app reads it as (strings for keys dsfleet does not know)."""


_GPU_ID = KeySpec("gpu-id", _I)


def spec_of(group: str, key: str) -> KeySpec | None:
    kind = _kind(group)
    if key == "gpu-id":
        return _GPU_ID
    table: Mapping[str, KeySpec] | None = {
        "application": APPLICATION_KEYS, "streammux": STREAMMUX_KEYS, "source": SOURCE_KEYS,
    }.get(kind) or APP_GROUP_TABLES.get(kind)  # fmt: skip
    return spec_for(table, key) if table is not None else None


def _kind(group: str) -> str:
    m = _NUMBERED.match(group)
    return m.group(1) if m else group


def import_app(
    text: str,
    file: str,
    read_gie: Callable[[str], tuple[str, str] | None],
    *,
    image: str = DEFAULT_IMAGE,
    name: str | None = None,
) -> AppImport:
    """``read_gie(config-file value)`` → (text, display path) or None when the file is missing (it also reads a
    YAML config's sources CSV). A YAML config (DS 6.2+) is read as the key file it stands for
    (:mod:`dsfleet.reconciler.importers.yamlconfigs`)."""
    if is_yaml_config(file):
        try:
            text = yaml_to_keyfile(text, file, read_gie)
        except YamlConfigError as exc:
            raise AppImportError(str(exc)) from None
    kf = parse_keyfile(text, file)
    if not kf.loaded:
        raise AppImportError(f"{file}: error: GLib cannot load this file: " + "; ".join(
            f.message for f in kf.findings if f.severity.value == "error"))  # fmt: skip
    out = AppImport()
    base = dns_label(name or PurePosixPath(file).stem.rsplit("__", 1)[-1])[:50].rstrip("-") or "app"
    if not base[0].isalpha():
        base = f"app-{base}"[:50].rstrip("-")

    def warn(message: str) -> None:
        out.warnings.append(f"{file}: warning: {message}")

    def typed(group: KeyGroup) -> tuple[dict[str, Any], dict[str, Any]]:
        """Known keys by their getter, unknown keys as strings (verbatim escape hatch)."""
        known: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        for key, entry in group.effective().items():
            spec = spec_of(group.name, key)
            target = known if spec is not None else unknown
            value, problems = read_typed(spec or KeySpec(key, _S), entry.raw)
            out.getters[(group.name, key)] = spec.kind if spec is not None else _S
            for p in problems:
                warn(f"[{group.name}] {key}: {p.message}")
            if value is None:
                raise AppImportError(
                    f"{file}:{entry.line}: error: [{group.name}] {key}: deepstream-app cannot read it"
                )
            target[key] = value
        return known, unknown

    extra: dict[str, dict[str, Any]] = {}
    app: dict[str, Any] = {}
    gies: list[dict[str, Any]] = []
    cameras: list[str] = []
    sinks: list[dict[str, Any]] = []
    consumers: list[dict[str, Any]] = []
    app_gies: dict[str, dict[str, Any]] = {}
    secondaries = 0
    config = "deepstream_app_config.txt"

    def place(group: str, key: str, rendered_group: str, rendered_key: str | None = None,
              rendered_file: str = config) -> None:  # fmt: skip
        out.placements[(group, key)] = (rendered_file, rendered_group, rendered_key or key)

    def add_extra(group: str, rendered: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            extra.setdefault(rendered, {})[key] = list(value) if isinstance(value, tuple) else value
            place(group, key, rendered)

    def gpu(group: str, values: dict[str, Any], rendered: str) -> None:
        value = values.pop("gpu-id", None)
        if value not in (None, 0):
            warn(f"[{group}] gpu-id {value} becomes 0 (the container sees only its own GPU)")
        elif value == 0:
            place(group, "gpu-id", rendered)

    def add_camera(group: str, key: str, uri: str, camera_id: str) -> str:
        """One Camera for ``uri`` (credentials moved to a secret named after the camera)."""
        url, user, password = (uri, "", "")
        if url_has_credentials(uri):
            url, user, password = _strip_userinfo(uri)
        cam = f"{base}-src{len(cameras)}"
        spec: dict[str, Any] = {"cameraId": camera_id, "url": url}
        if user or password:
            spec["credentials"] = {"secretRef": cam}
            out.secrets.append(Secret(ref=cam, username=user, password=password))
            warn(f"[{group}] {key} carried credentials; moved to secret {cam!r}")
        out.cameras.append(manifest_document("Camera", cam, spec))
        cameras.append(cam)
        return cam

    def _source_list(group: str, known: dict[str, Any], unknown: dict[str, Any]) -> None:
        uris = list(known.get("list", ()))
        ids = list(known.get("sensor-id-list", ()))
        names = known.get("sensor-name-list")
        bins = known.get("num-source-bins")
        if "list" in known and bins is not None and bins != len(uris):
            raise AppImportError(
                f"{file}: error: [{group}] num-source-bins {bins} but {len(uris)} URIs in list (deepstream-app "
                "refuses it)"
            )
        if ids and len(ids) != len(uris):
            warn(f"[{group}] sensor-id-list has {len(ids)} ids for {len(uris)} URIs; cameras are numbered")
            ids = []
        if names is not None and len(names) != len(uris):
            warn(f"[{group}] sensor-name-list has {len(names)} names for {len(uris)} URIs; not imported")
            names = None
        for i, uri in enumerate(uris):
            add_camera(group, "list", uri, ids[i] if ids else str(i + 1))
        settings = {k: v for k, v in known.items() if k not in SOURCE_LIST_DERIVED_KEYS}
        if names is None:
            settings.pop("sensor-name-list", None)
        else:
            settings["sensor-name-list"] = list(names)
        app["source-list"] = settings
        for k in known:
            if (
                k in settings
                or k == "list"
                or (k == "sensor-id-list" and ids)
                or (k == "num-source-bins" and uris)
            ):
                place(group, k, "source-list")
        add_extra(group, "source-list", unknown)

    listed = kf.group("source-list") is not None
    for group in kf.groups:
        kind = _kind(group.name)
        known, unknown = typed(group)
        if kind == "application":
            app["application"] = {
                k: bool(v) if k == "enable-perf-measurement" else v for k, v in known.items()
            }
            for k in known:
                place(group.name, k, "application")
            add_extra(group.name, "application", unknown)
        elif kind == "streammux":
            gpu(group.name, known, "streammux")
            app["streammux"] = {
                k: bool(v) if k in ("live-source", "enable-padding", "attach-sys-ts-as-ntp") else v
                for k, v in known.items()
            }
            for k in known:
                place(group.name, k, "streammux")
            add_extra(group.name, "streammux", unknown)
        elif kind == "source" and listed:
            warn(f"[{group.name}] overrides a listed source's attributes; written verbatim (app.extraGroups)")
            add_extra(group.name, group.name, {**known, **unknown})
        elif kind == "source-list":
            _source_list(group.name, known, unknown)
        elif kind == "source-attr-all":
            gpu(group.name, known, "source-attr-all")
            app["source-attr-all"] = known
            for k in known:
                place(group.name, k, "source-attr-all")
            add_extra(group.name, "source-attr-all", unknown)
        elif kind == "source":
            if not known.get("enable", 0):
                warn(f"[{group.name}] is disabled; not imported")
                continue
            uri = known.get("uri")
            if not isinstance(uri, str):
                raise AppImportError(
                    f"{file}: error: [{group.name}] has no uri (only URI sources are supported)"
                )
            count = known.get("num-sources", 1) if known.get("type") == 3 else 1
            defaults = {k: known[k] for k in SOURCE_DEFAULT_KEYS if k in known}
            previous = app.setdefault("sources", defaults)
            if previous != defaults:
                raise AppImportError(
                    f"{file}: error: [{group.name}] sets source keys differently from an earlier source; "
                    "dsfleet sets them for all sources (app.sources)"
                )
            source_gpu = known.pop("gpu-id", None)  # rendered as 0 in every source group
            if source_gpu not in (None, 0):
                warn(f"[{group.name}] gpu-id {source_gpu} becomes 0 (the container sees only its own GPU)")
            for _copy in range(count):
                index = len(cameras)
                add_camera(group.name, "uri", uri, str(known.get("camera-id", index + 1)))
                rendered = f"source{index}"
                for k in ("enable", "uri", "camera-id", *defaults):
                    if k in known:
                        place(group.name, k, rendered)
                if source_gpu == 0:
                    place(group.name, "gpu-id", rendered)
                add_extra(group.name, rendered, unknown)
        elif kind in ("primary-gie", "secondary-gie", "pre-process"):
            if not known.get("enable", 0) and "enable" in known:
                warn(f"[{group.name}] is disabled; not imported")
                continue
            if known.get("plugin-type", 0) != 0:
                raise AppImportError(
                    f"{file}: error: [{group.name}] plugin-type 1 (nvinferserver) is not supported"
                )
            rendered = "pre-process" if kind == "pre-process" else kind
            if kind == "secondary-gie":
                rendered = f"secondary-gie{secondaries}"
                secondaries += 1
            gie = _gie(group.name, known, kind, read_gie, warn)
            gies.append(gie)
            if kind != "pre-process":
                gpu(group.name, known, rendered)
            for k in known:
                if k == "enable":
                    place(group.name, k, rendered)
                elif k == "config-file":
                    pass  # the file is rendered under its base name
                elif k in GIE_TO_PROPERTIES:
                    place(group.name, k, "property", rendered_file=gie["file"])
                elif k == "input-tensor-meta" and known[k] is True:
                    place(group.name, k, rendered)  # rendered from the GIE's input-tensor-from-meta
                else:  # app-level only (bbox colours, nvbuf-memory-type, plugin-type, …): app.gies.<name>
                    value = known[k]
                    app_gies.setdefault(gie["name"], {})[k] = (
                        list(value) if isinstance(value, tuple) else value
                    )
                    place(group.name, k, rendered)
            add_extra(group.name, rendered, unknown)
        elif kind in _MODELLED:
            if kind not in _FORCED_GPU and "gpu-id" in known:
                unknown["gpu-id"] = known.pop("gpu-id")  # not rendered by dsfleet here: verbatim
            if kind == "sink":
                rendered = f"sink{len(sinks)}"
                sinks.append(known)
            elif kind == "message-consumer":
                rendered = f"message-consumer{len(consumers)}"
                consumers.append(known)
            else:
                rendered = kind
                app[_MODELLED[kind]] = known
            if kind in _FORCED_GPU:
                gpu(group.name, known, rendered)
            conn_key = _CONNECTION_KEYS.get(kind)
            conn = known.get(conn_key) if conn_key else None
            if conn_key and isinstance(conn, str) and broker_connection_has_credentials(conn):
                ref = dns_label(f"{base}-{rendered}")[:63].rstrip("-")
                out.secrets.append(Secret(ref=ref, username="", password=conn))
                known[conn_key] = {"secretRef": ref}
                warn(
                    f"[{group.name}] {conn_key} carried credentials; the whole string moved to secret {ref!r}"
                )
            for k in known:
                place(group.name, k, rendered)
            add_extra(group.name, rendered, unknown)
        else:
            warn(f"[{group.name}] is not modelled by dsfleet; written verbatim (app.extraGroups)")
            add_extra(group.name, group.name, {**known, **unknown})
    if sinks:
        app["sinks"] = sinks
    if consumers:
        app["message-consumers"] = consumers
    if app_gies:
        app["gies"] = app_gies
    if extra:
        app["extraGroups"] = extra
    if not gies:
        raise AppImportError(f"{file}: error: no enabled [primary-gie]: nothing to run")
    out.profile = manifest_document("InferenceProfile", base, {"gies": gies})
    spec = {"image": image, "layout": "deepstream-app", "cameras": cameras, "profile": base, "app": app}
    out.instance = manifest_document("DsInstance", base, spec)
    return out


def _gie(
    group: str,
    known: Mapping[str, Any],
    kind: str,
    read_gie: Callable[[str], tuple[str, str] | None],
    warn: Callable[[str], None],
) -> dict[str, Any]:
    from dsfleet.reconciler.importers.nvinfer import import_keyfile

    ref = known.get("config-file")
    if not isinstance(ref, str):
        raise AppImportError(f"[{group}]: error: config-file is mandatory in a GIE group")
    file = keyfile_name(ref)
    if is_yaml_config(ref):
        warn(f"[{group}] config-file {ref}: a YAML config; rendered as the key file {file}")
    role = {"primary-gie": "primary", "secondary-gie": "secondary"}.get(kind, "preprocess")
    found = read_gie(ref)
    gie: dict[str, Any] = {"name": dns_label(PurePosixPath(file).stem) or "gie", "role": role, "file": file}
    if found is None:
        warn(f"[{group}] config-file {ref}: not found; the GIE keeps only the app-level keys")
        props: dict[str, Any] = {}
    else:
        text, where = found
        result = import_keyfile(text, where)
        for f in result.findings:
            warn(f"{where}: {f.message} [{f.rule}]")
        if result.has_errors or not result.gie:
            raise AppImportError(f"{where}: error: cannot import this GIE file")
        imported = result.gie
        props = dict(imported.get("properties", {}))
        for key in ("format", "classAttrs", "groups", "userConfigs", "extraProperties"):
            if imported.get(key):
                gie[key] = imported[key]
    if kind != "pre-process":
        for key in GIE_TO_PROPERTIES:
            if key in known and key in NVINFER_PROPERTY_KEYS:
                value = known[key]
                props[key] = list(value) if isinstance(value, tuple) else value
        if known.get("input-tensor-meta") is True:  # deepstream-app sets nvinfer's input-tensor-meta from it
            props["input-tensor-from-meta"] = True
    gie["properties"] = {k: list(v) if isinstance(v, tuple) else v for k, v in props.items()}
    return gie


def read_gie_near(app_file: Path) -> Callable[[str], tuple[str, str] | None]:
    """A ``read_gie`` for :func:`import_app`: ``config-file`` paths are relative to the app file; in a folder of
    flattened copies (``<repo>__<dir>__<name>``, like the shared samples) the copy with the app file's prefix."""

    def read(ref: str) -> tuple[str, str] | None:
        candidates = [app_file.parent / ref]
        prefix = app_file.name.rsplit("__", 1)[0] if "__" in app_file.name else None
        if prefix is not None:
            candidates.append(app_file.parent / f"{prefix}__{ref.replace('/', '__')}")
        for path in candidates:
            if path.is_file():
                return path.read_bytes().decode("utf-8"), str(path)
        return None

    return read
