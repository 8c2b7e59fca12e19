"""Import an existing deepstream-app config (key file) as Camera, InferenceProfile and DsInstance documents (pure).

Read with GLib's rules (:mod:`dsfleet.reconciler.importers.keyfilereader`), every key by the getter deepstream-app
really calls (most switches, ``enable`` among them, are integers: ``enable=2`` loads, ``enable=true`` does not).
Where each original key lands in what dsfleet renders is recorded (``placements``), so a round trip can be checked
key for key:

* ``[sourceN]`` → one Camera per source, in deepstream-app's order (a MultiURI ``type=3`` with ``num-sources=K``
  is its group's source, and K-1 copies after every other source, ``%d`` in the URI numbered, as deepstream-app
  expands it); ``uri`` → ``url`` (credentials moved to a secret; a relative ``file://`` resolved); a USB
  (``type=1``) or CSI (``type=5``) source → a ``usb`` / ``csi`` Camera (device node, sensor id, size, frame
  rate). Keys every source sets alike → ``app.sources``, the others → that source's ``app.extraGroups``;
* ``[source-list]`` → one Camera per URI of ``list`` (``usb:N`` / ``csi:N`` too; credentials moved to a secret;
  ``sensor-id-list`` → ``cameraId``), the other keys → ``app.source-list``; ``[source-attr-all]`` →
  ``app.source-attr-all``; beside a source list, ``[sourceN]`` groups override a listed source's attributes and
  are kept verbatim;
* ``[streammux]``, ``[application]``, ``[osd]``, ``[tracker]``, ``[tiled-display]``, ``[sinkN]``,
  ``[message-converter]``, ``[message-consumerN]``, ``[nvds-analytics]``, ``[img-save]``, ``[tests]`` → ``app``
  (a group without ``enable``, which deepstream-app leaves off, is imported with ``enable: false``); a broker
  connection string with credentials moves whole to a secret and becomes ``{secretRef: <instance>-sinkN}``;
* ``[primary-gie]`` / ``[secondary-gieN]`` / ``[pre-process]`` / ``[secondary-pre-processN]`` → the profile's GIEs
  from their ``config-file``. Only the keys deepstream-app sets on the element override the file's
  (``gie-unique-id``, ``batch-size``, ``interval``, ``model-engine-file``, ``input-tensor-meta``, and for a
  secondary ``operate-on-gie-id`` / ``operate-on-class-ids``; ``process-mode`` follows the group); the others
  (``labelfile-path``, which deepstream-app reads itself, ``bbox-border-colorN``, ``nvbuf-memory-type``, …) →
  ``app.gies.<name>``;
* anything else (unknown keys, groups dsfleet does not model) → ``app.extraGroups``, verbatim, under the group
  name dsfleet renders (the renderer adds them to that group).

Paths (docs/manifests/layouts.md, "Files a config names"): every relative path is resolved against the directory
the original file sat in, in the container (``origin``); small text configs (labels, tracker, analytics, message
converter, streammux configs) are imported (``app.files``, the profile's ``files``) and named by their rendered
name; models, engines and libraries become absolute container paths, and with ``mount_origin`` the host
directory they sit in is mounted at the same path.

``gpu-id`` is rendered 0 (the container sees one GPU); one non-zero GPU everywhere becomes the instance's
``spec.gpu``. A YAML config (DS 6.2+; its GIE files too) is read as the key file it stands for, its sources from
the CSV it names. Everything deepstream-app itself refuses is refused, with FILE:LINE:COL and its reason.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from dsfleet.reconciler.importers.appkeys import (
    APPLICATION_MODEL_KEYS,
    CONNECTION_KEYS,
    MODELLED,
    NUMBERED,
    OFF_BY_DEFAULT,
    SET_ON_NVINFER,
    SOURCE_DEFAULT_KEYS,
    STREAMMUX_MODEL_KEYS,
    group_kind,
    has_credentials,
    printf_d,
    spec_of,
)
from dsfleet.reconciler.importers.keyfilereader import KeyEntry, KeyGroup, parse_keyfile, read_typed
from dsfleet.reconciler.importers.legacyrows import Secret, _strip_userinfo, dns_label, manifest_document
from dsfleet.reconciler.importers.paths import FileNames, is_relative, resolve_file_uri, resolve_path
from dsfleet.reconciler.importers.yamlconfigs import (
    YamlConfigError,
    is_yaml_config,
    keyfile_name,
    yaml_to_keyfile,
)
from dsfleet.resolution.files import APP_CONFIG
from dsfleet.schemas.deepstream import (
    APP_GROUP_TABLES,
    APP_SOURCE_KEYS,
    NVINFER_PROPERTY_KEYS,
    PROPERTY_TABLES,
    SOURCE_LIST_DERIVED_KEYS,
    GieFormat,
    KeySpec,
    PathKind,
    ValueKind,
    spec_for,
)
from dsfleet.schemas.findings import Finding, plural
from dsfleet.schemas.nodeconfigs import CONFIGS_DIR
from dsfleet.schemas.placeholders import broker_connection_has_credentials, url_has_credentials

DEFAULT_IMAGE = "nvcr.io/nvidia/deepstream:7.0-triton-multiarch"
_I, _S = ValueKind.INT, ValueKind.STRING

ReadFile = Callable[[str], tuple[str, str] | None]
"""An absolute path in the container → (text, the name to report it under), or None when it cannot be read."""


class AppImportError(Exception):
    """The file cannot be imported (gcc-style message, one line per cause)."""


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
    """(original group, key) → the getter deepstream-app reads it with (strings for keys dsfleet does not know)."""
    paths: dict[tuple[str, str], str] = field(default_factory=dict)
    """(original group, key) → the path it names, resolved as DeepStream opens it (the rendered value differs:
    an imported file's name, or the absolute path)."""
    files: dict[str, str] = field(default_factory=dict)
    """Rendered name → the container path of the original file imported under it."""


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass
class _Source:
    group: str
    known: dict[str, Any]
    unknown: dict[str, Any]
    line: int
    copy: int = 0


class _App:
    """One import (the state of :func:`import_app`)."""

    def __init__(self, file: str, read: ReadFile, origin: PurePosixPath, base: str) -> None:
        self.file, self.read, self.origin, self.base = file, read, origin, base
        self.out = AppImport()
        self.extra: dict[str, dict[str, Any]] = {}
        self.app: dict[str, Any] = {}
        self.gies: list[dict[str, Any]] = []
        self.gie_names: set[str] = set()
        self.cameras: list[str] = []
        self.app_gies: dict[str, dict[str, Any]] = {}
        self.files = FileNames(reserved=(APP_CONFIG,))
        self.instance_files: dict[str, str] = {}
        self.profile_files: dict[str, str] = {}
        self.gpus: dict[int, str] = {}
        self.mount_paths: list[str] = []
        self.secondaries = 0
        self.secondary_preprocesses = 0

    # -- messages -----------------------------------------------------------------------------------------------
    def warn(self, message: str) -> None:
        self.out.warnings.append(f"{self.file}: warning: {message}")

    def fail(self, message: str, entry: KeyEntry | KeyGroup | None = None) -> AppImportError:
        where = self.file
        if isinstance(entry, KeyEntry):
            where += f":{entry.line}:{entry.value_column}"
        elif isinstance(entry, KeyGroup):
            where += f":{entry.line}:{entry.column}"
        return AppImportError(f"{where}: error: {message}")

    def place(self, group: str, key: str, rendered_group: str, rendered_key: str | None = None,
              rendered_file: str = APP_CONFIG) -> None:  # fmt: skip
        self.out.placements[(group, key)] = (rendered_file, rendered_group, rendered_key or key)

    def add_extra(self, group: str, rendered: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            self.extra.setdefault(rendered, {})[key] = _plain(value)
            self.place(group, key, rendered)

    # -- values -------------------------------------------------------------------------------------------------
    def typed(self, group: KeyGroup) -> tuple[dict[str, Any], dict[str, Any], dict[str, KeyEntry]]:
        """Known keys by deepstream-app's getter (as the key's model kind), unknown keys as strings."""
        known: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        entries = group.effective()
        for key, entry in entries.items():
            spec = spec_of(group.name, key)
            getter = spec.read_kind if spec is not None else _S
            value, problems = read_typed(KeySpec(key, getter), entry.raw)
            self.out.getters[(group.name, key)] = getter
            for p in problems:
                if p.severity.value == "error":
                    raise self.fail(
                        f"[{group.name}] {key}: {p.message} (deepstream-app fails to parse it)", entry
                    )
                self.warn(f"[{group.name}] {key}: {p.message}")
            if spec is not None and spec.kind is ValueKind.BOOL and spec.getter in (_I, ValueKind.DOUBLE):
                if value not in (0, 1):
                    self.warn(f"[{group.name}] {key}={entry.raw.strip()}: deepstream-app only tests it for non-zero; "
                              "imported as true")  # fmt: skip
                value = bool(value)
            (known if spec is not None else unknown)[key] = value
        return known, unknown, entries

    def gpu(self, group: str, values: dict[str, Any], rendered: str | None) -> None:
        """``gpu-id`` (and ``global-gpu-id``) leave ``values``: dsfleet renders 0 and picks the host GPU with the
        instance's ``spec.gpu``."""
        for key in ("gpu-id", "global-gpu-id"):
            value = values.pop(key, None)
            if value is None:
                continue
            self.gpus.setdefault(int(value), f"[{group}] {key}")
            if rendered is not None and key == "gpu-id":
                self.place(group, key, rendered)

    # -- paths and files ----------------------------------------------------------------------------------------
    def path_value(self, group: str, key: str, spec: KeySpec, value: str, base: PurePosixPath,
                   files: dict[str, str]) -> str:  # fmt: skip
        """The value dsfleet writes for path ``value`` named in a file in ``base``: an imported text file's name,
        or the path as DeepStream opens it."""
        if not value:
            return value
        resolved = resolve_path(value, base, spec, cwd=self.origin)
        self.out.paths[(group, key)] = resolved
        if is_relative(resolved):
            return value  # a library name dlopen searches for, or an output relative to the working directory
        if spec.path_kind is PathKind.CONFIG:
            found = self.read(resolved)
            if found is not None:
                text, where = found
                if key in ("msg-broker-config", "config-file") and has_credentials(text):
                    self.warn(f"[{group}] {key} {value}: {where} holds credentials; not imported (mount it from a "
                              "secret at the path it names)")  # fmt: skip
                else:
                    name = self.files.name_for(resolved)
                    if name not in self.profile_files:  # rendered with every instance of the profile already
                        files[name] = text
                    self.out.files[name] = resolved
                    return f"{CONFIGS_DIR}/{name}" if spec.cwd_relative else name
            elif is_relative(value):
                self.warn(f"[{group}] {key} {value}: not found beside the config; kept as {resolved}")
        if is_relative(value) and spec.path_kind is not PathKind.OUTPUT:
            self.mount_paths.append(resolved)
        return resolved

    def paths_of(self, group: str, values: dict[str, Any], table: Mapping[str, KeySpec], base: PurePosixPath,
                 files: dict[str, str]) -> None:  # fmt: skip
        for key, value in list(values.items()):
            spec = spec_for(table, key)
            if spec is not None and spec.is_path and isinstance(value, str):
                values[key] = self.path_value(group, key, spec, value, base, files)

    # -- cameras ------------------------------------------------------------------------------------------------
    def add_camera(self, group: str, key: str, spec: dict[str, Any]) -> str:
        """One Camera (URL credentials moved to a secret named after the camera)."""
        cam = f"{self.base}-src{len(self.cameras)}"
        url = spec.get("url")
        if isinstance(url, str) and url_has_credentials(url):
            spec["url"], user, password = _strip_userinfo(url)
            spec["credentials"] = {"secretRef": cam}
            self.out.secrets.append(Secret(ref=cam, username=user, password=password))
            self.warn(f"[{group}] {key} carried credentials; moved to secret {cam!r}")
        self.out.cameras.append(manifest_document("Camera", cam, spec))
        self.cameras.append(cam)
        return cam


def import_app(
    text: str,
    file: str,
    read_file: ReadFile,
    *,
    origin: str | PurePosixPath | None = None,
    image: str = DEFAULT_IMAGE,
    name: str | None = None,
    mount_origin: bool = False,
) -> AppImport:
    """Import one deepstream-app config. ``origin``: the directory it sat in, in the container (default: the
    directory of ``file``); ``read_file(absolute path in the container)`` → (text, display name) or None (GIE
    files, the text configs the groups name, a YAML config's sources CSV). ``mount_origin``: the files under the
    original directories are not in the image: mount them (read-only, at the same path) on the instance."""
    where = PurePosixPath(origin) if origin is not None else PurePosixPath(file).parent
    if is_yaml_config(file):
        try:
            text = yaml_to_keyfile(text, file, lambda ref: read_file(resolve_path(ref, where, _S_PATH)))
        except YamlConfigError as exc:
            raise AppImportError(str(exc)) from None
    kf = parse_keyfile(text, file)
    if not kf.loaded:
        raise AppImportError("\n".join(_gcc(f) for f in kf.findings if f.is_error))
    base = dns_label(name or PurePosixPath(file).stem.rsplit("__", 1)[-1])[:50].rstrip("-") or "app"
    if not base[0].isalpha():
        base = f"app-{base}"[:50].rstrip("-")
    state = _App(file, read_file, where, base)
    _import_groups(state, kf.groups)
    return _finish(state, image, mount_origin)


_S_PATH = KeySpec("csv-file-path", _S, path=True)


def _import_groups(st: _App, groups: tuple[KeyGroup, ...]) -> None:
    listed = any(g.name == "source-list" for g in groups)
    sources: list[_Source] = []
    copies: list[_Source] = []
    for group in groups:
        kind = group_kind(group.name)
        known, unknown, entries = st.typed(group)
        if kind == "application":
            _application(st, group.name, known, unknown)
        elif kind == "streammux":
            _streammux(st, group.name, known, unknown)
        elif kind == "source" and listed:
            st.warn(
                f"[{group.name}] overrides a listed source's attributes; written verbatim (app.extraGroups)"
            )
            st.paths_of(group.name, known, APP_SOURCE_KEYS, st.origin, st.instance_files)
            st.add_extra(group.name, group.name, {**known, **unknown})
        elif kind == "source-list":
            _source_list(st, group, known, unknown)
        elif kind == "source-attr-all":
            st.gpu(group.name, known, "source-attr-all")
            st.paths_of(group.name, known, APP_SOURCE_KEYS, st.origin, st.instance_files)
            known.setdefault("enable", False)
            st.app["source-attr-all"] = {k: _plain(v) for k, v in known.items()}
            for k in known:
                st.place(group.name, k, "source-attr-all")
            st.add_extra(group.name, "source-attr-all", unknown)
        elif kind == "source":
            if not known.get("enable"):
                st.warn(f"[{group.name}] is disabled; not imported")
                continue
            source = _Source(group.name, known, unknown, group.line)
            sources.append(source)
            if known.get("type") == 3:
                count = max(int(known.get("num-sources", 1)), 1)
                copies.extend(_Source(group.name, known, unknown, group.line, j) for j in range(1, count))
        elif kind in ("primary-gie", "secondary-gie", "pre-process", "secondary-pre-process"):
            _gie_group(st, group, kind, known, unknown, entries)
        elif kind in MODELLED:
            _modelled(st, group, kind, known, unknown)
        else:
            st.warn(f"[{group.name}] is not modelled by dsfleet; written verbatim (app.extraGroups)")
            if "gpu-id" in known:
                st.gpu(group.name, known, None)
                known["gpu-id"] = 0  # the container's one GPU
            st.add_extra(group.name, group.name, {**known, **unknown})
    _sources(st, sources + copies)


def _application(st: _App, group: str, known: dict[str, Any], unknown: dict[str, Any]) -> None:
    st.gpu(group, known, None)
    st.paths_of(group, known, APP_GROUP_TABLES["application"], st.origin, st.instance_files)
    values = {k: v for k, v in known.items() if k in APPLICATION_MODEL_KEYS}
    st.app["application"] = values
    for k in values:
        st.place(group, k, "application")
    st.add_extra(group, "application", {**{k: v for k, v in known.items() if k not in values}, **unknown})


def _streammux(st: _App, group: str, known: dict[str, Any], unknown: dict[str, Any]) -> None:
    st.gpu(group, known, "streammux")
    st.paths_of(group, known, APP_GROUP_TABLES["streammux"], st.origin, st.instance_files)
    values = {k: v for k, v in known.items() if k in STREAMMUX_MODEL_KEYS}
    st.app["streammux"] = values
    for k in values:
        st.place(group, k, "streammux")
    st.add_extra(group, "streammux", {**{k: v for k, v in known.items() if k not in values}, **unknown})


_RENDERS_GPU = {"tiled-display", "tracker", "osd", "img-save"}
"""Groups the renderer writes ``gpu-id=0`` into itself; in the others a ``gpu-id`` is kept as 0 (verbatim)."""


def _modelled(st: _App, group: KeyGroup, kind: str, known: dict[str, Any], unknown: dict[str, Any]) -> None:
    table = APP_GROUP_TABLES[kind]
    rendered_gpu = "gpu-id" in known and kind not in _RENDERS_GPU
    st.gpu(group.name, known, None)
    if rendered_gpu:
        unknown["gpu-id"] = 0  # the container's one GPU
    if kind in OFF_BY_DEFAULT and "enable" not in known:
        known["enable"] = 0 if kind == "tiled-display" else False  # deepstream-app's default, explicit
    if kind == "sink":
        rendered = f"sink{len(st.app.setdefault('sinks', []))}"
        st.app["sinks"].append(known)
    elif kind == "message-consumer":
        rendered = f"message-consumer{len(st.app.setdefault('message-consumers', []))}"
        st.app["message-consumers"].append(known)
    else:
        rendered = kind
        st.app[MODELLED[kind]] = known
    if kind in _RENDERS_GPU and (group.name, "gpu-id") in st.out.getters:
        st.place(group.name, "gpu-id", rendered)
    st.paths_of(group.name, known, table, st.origin, st.instance_files)
    conn_key = CONNECTION_KEYS.get(kind)
    conn = known.get(conn_key) if conn_key else None
    if conn_key and isinstance(conn, str) and broker_connection_has_credentials(conn):
        ref = dns_label(f"{st.base}-{rendered}")[:63].rstrip("-")
        st.out.secrets.append(Secret(ref=ref, username="", password=conn))
        known[conn_key] = {"secretRef": ref}
        st.warn(f"[{group.name}] {conn_key} carried credentials; the whole string moved to secret {ref!r}")
    for k, value in list(known.items()):
        st.place(group.name, k, rendered)
        known[k] = _plain(value)
    st.add_extra(group.name, rendered, unknown)


# ------------------------------------------------------------------------------------------------------- sources
def _source_list(st: _App, group: KeyGroup, known: dict[str, Any], unknown: dict[str, Any]) -> None:
    uris = list(known.get("list", ()))
    ids = list(known.get("sensor-id-list", ()))
    names = known.get("sensor-name-list")
    bins = known.get("num-source-bins")
    if "list" in known and bins is not None and bins != len(uris):
        raise st.fail(f"[{group.name}] num-source-bins {bins} but {len(uris)} URIs in list (deepstream-app "
                      "refuses it)", group.get("num-source-bins"))  # fmt: skip
    if ids and len(ids) != len(uris):
        st.warn(f"[{group.name}] sensor-id-list has {plural(len(ids), 'id')} for {plural(len(uris), 'URI')}; "
                "cameras are numbered")  # fmt: skip
        ids = []
    if names is not None and len(names) != len(uris):
        st.warn(f"[{group.name}] sensor-name-list has {plural(len(names), 'name')} for "
                f"{plural(len(uris), 'URI')}; not imported")  # fmt: skip
        names = None
    for i, uri in enumerate(uris):
        camera_id = ids[i] if ids else str(i)
        spec: dict[str, Any] = {"cameraId": camera_id}
        device = re.fullmatch(r"(usb|csi):([0-9]+)", uri)
        if device and device.group(1) == "usb":
            spec.update(type="usb", device=f"/dev/video{int(device.group(2))}")
        elif device:
            spec.update(type="csi", sensorId=int(device.group(2)))
        elif uri.startswith(("rtsp://", "file://")):
            resolved = resolve_file_uri(uri, st.origin)
            if resolved != uri:
                st.mount_paths.append(resolved[len("file://") :])
            spec["url"] = resolved
        else:
            raise st.fail(f"[{group.name}] list: {uri!r} is no rtsp://, file://, usb:N or csi:N source (deepstream-app: "
                          "'URI not in proper format')", group.get("list"))  # fmt: skip
        st.add_camera(group.name, "list", spec)
    settings = {k: _plain(v) for k, v in known.items() if k not in SOURCE_LIST_DERIVED_KEYS}
    if names is None:
        settings.pop("sensor-name-list", None)
    else:
        settings["sensor-name-list"] = list(names)
    st.app["source-list"] = settings
    for k in known:
        if (
            k in settings
            or k == "list"
            or (k == "sensor-id-list" and ids)
            or (k == "num-source-bins" and uris)
        ):
            st.place(group.name, k, "source-list")
    st.add_extra(group.name, "source-list", unknown)


def _sources(st: _App, sources: list[_Source]) -> None:
    """One Camera per source in deepstream-app's order; keys alike in every source → ``app.sources``."""
    if not sources:
        return
    common: dict[str, Any] = {}
    for key in SOURCE_DEFAULT_KEYS:
        values = [s.known.get(key, _MISSING) for s in sources]
        if values[0] is not _MISSING and all(v == values[0] for v in values):
            common[key] = values[0]
    rtsp_types = {s.known.get("type") for s in sources if str(s.known.get("uri", "")).startswith("rtsp")}
    uri_rtsp = rtsp_types <= {2, 3} and bool(rtsp_types)
    if uri_rtsp:
        common["type"] = 2
    st.app["sources"] = common
    for index, source in enumerate(sources):
        _source(st, source, index, common)


class _Missing:
    pass


_MISSING = _Missing()


def _source(st: _App, src: _Source, index: int, common: dict[str, Any]) -> None:
    known, group = src.known, src.group
    rendered = f"source{index}"
    source_type = int(known.get("type", 0))
    group_number = int(NUMBERED.match(group).group(2)) if NUMBERED.match(group) else index  # type: ignore[union-attr]
    camera_id = str(known.get("camera-id", group_number))
    if src.copy:
        camera_id = (
            f"{camera_id}-{src.copy}"  # deepstream-app gives every copy its group's id; dsfleet's are unique
        )
    spec: dict[str, Any] = {"cameraId": camera_id}
    placed = ["enable", "camera-id"] if source_type == 3 else ["enable", "type", "camera-id"]
    consumed = ["type", "num-sources"] if source_type == 3 else []  # expanded: the copies carry them
    if source_type in (2, 3, 4):
        uri = known.get("uri")
        if not isinstance(uri, str):
            raise st.fail(f"[{group}] has no uri (deepstream-app: 'No URI provided')")
        if src.copy:
            uri = printf_d(uri, src.copy)
        resolved = resolve_file_uri(uri, st.origin)
        if resolved != uri:
            st.out.paths[(group, "uri")] = resolved
            st.mount_paths.append(resolved[len("file://") :])
        spec["url"] = resolved
        placed.append("uri")
        effective = 2 if source_type == 3 else source_type
        default = 4 if uri.startswith("rtsp") else 2
        if effective != default and common.get("type") != effective:
            st.add_extra(group, rendered, {"type": effective})
    elif source_type == 1:
        node = int(known.get("camera-v4l2-dev-node", 0))
        spec.update(type="usb", device=f"/dev/video{node}")
        placed.append("camera-v4l2-dev-node")
    elif source_type == 5:
        spec.update(type="csi", sensorId=int(known.get("camera-csi-sensor-id", 0)))
        placed.append("camera-csi-sensor-id")
    else:
        raise st.fail(f"[{group}] type {source_type}: deepstream-app creates only URI (2, 3), RTSP (4), USB (1) and "
                      "CSI (5) video sources ('Source type not yet implemented!')")  # fmt: skip
    if source_type in (1, 5):
        for key, field_name in (("camera-width", "width"), ("camera-height", "height")):
            if key in known:
                spec[field_name] = known[key]
                placed.append(key)
        if "camera-fps-n" in known:
            n, d = int(known["camera-fps-n"]), int(known.get("camera-fps-d", 1))
            spec["fps"] = n if d == 1 else f"{n}/{d}"
            placed.extend(("camera-fps-n", "camera-fps-d"))
    st.add_camera(group, "uri", spec)
    gpu_known = dict(known)
    st.gpu(group, gpu_known, rendered)
    for k in placed:
        if k in known and not src.copy:
            st.place(group, k, rendered)
    own: dict[str, Any] = {}
    for key, value in gpu_known.items():
        if key in placed or key in consumed or key == "gpu-id" or (key in common and common[key] == value):
            if key in common and not src.copy:
                st.place(group, key, rendered)
            continue
        own[key] = value
    st.paths_of(group, own, APP_SOURCE_KEYS, st.origin, st.instance_files)
    if src.copy:
        for key, value in {**own, **src.unknown}.items():
            st.extra.setdefault(rendered, {})[key] = _plain(value)
    else:
        st.add_extra(group, rendered, {**own, **src.unknown})


# ------------------------------------------------------------------------------------------------------- GIEs
def _gie_group(st: _App, group: KeyGroup, kind: str, known: dict[str, Any], unknown: dict[str, Any],
               entries: Mapping[str, KeyEntry]) -> None:  # fmt: skip
    if not known.get("enable"):
        st.warn(f"[{group.name}] is {'disabled' if 'enable' in known else 'off (no enable=1)'}; not imported")
        return
    if known.get("plugin-type", 0) != 0:
        raise st.fail(
            f"[{group.name}] plugin-type 1 (nvinferserver) is not supported", entries.get("plugin-type")
        )
    if kind == "secondary-gie":
        rendered = f"secondary-gie{st.secondaries}"
        st.secondaries += 1
    elif kind == "secondary-pre-process":
        rendered = f"secondary-pre-process{st.secondary_preprocesses}"
        st.secondary_preprocesses += 1
    else:
        rendered = kind
    gie = _gie(st, group, kind, known, entries)
    st.gies.append(gie)
    st.gpu(group.name, known, rendered)
    file = gie["file"]
    passed = SET_ON_NVINFER.get(kind, ("operate-on-gie-id",) if kind == "secondary-pre-process" else ())
    app_only: dict[str, Any] = {}
    for k, value in known.items():
        if k in ("enable", "config-file"):
            if k == "enable":
                st.place(group.name, k, rendered)
            continue
        if k in passed:
            st.place(group.name, k, "property", rendered_file=file)
        elif k == "input-tensor-meta" and kind in SET_ON_NVINFER:
            if value:
                st.place(group.name, k, rendered)
            else:
                app_only[k] = value
        elif k in ("operate-on-gie-id", "operate-on-class-ids") or kind in (
            "pre-process",
            "secondary-pre-process",
        ):
            unknown[k] = value  # read by deepstream-app, set on nothing: kept verbatim
        else:
            app_only[k] = value
    if "labelfile-path" in app_only:
        spec = APP_GROUP_TABLES["primary-gie"]["labelfile-path"]
        app_only["labelfile-path"] = st.path_value(group.name, "labelfile-path", spec, app_only["labelfile-path"],
                                                   st.origin, st.instance_files)  # fmt: skip
    if "infer-raw-output-dir" in app_only:
        spec = APP_GROUP_TABLES["primary-gie"]["infer-raw-output-dir"]
        app_only["infer-raw-output-dir"] = st.path_value(group.name, "infer-raw-output-dir", spec,
                                                         app_only["infer-raw-output-dir"], st.origin,
                                                         st.instance_files)  # fmt: skip
    if app_only:
        st.app_gies.setdefault(gie["name"], {}).update({k: _plain(v) for k, v in app_only.items()})
        for k in app_only:
            st.place(group.name, k, rendered)
    st.add_extra(group.name, rendered, unknown)


def _gie(st: _App, group: KeyGroup, kind: str, known: Mapping[str, Any], entries: Mapping[str, KeyEntry]
         ) -> dict[str, Any]:  # fmt: skip
    from dsfleet.reconciler.importers.nvinfer import import_keyfile

    ref = known.get("config-file")
    if not isinstance(ref, str) or not ref:
        raise st.fail(f"[{group.name}] config-file is mandatory in a GIE group (deepstream-app: 'Config file path is "
                      "not set')", group)  # fmt: skip
    path = resolve_path(ref, st.origin, KeySpec("config-file", _S, path=True))
    file = st.files.name_for(path, keyfile_name(ref))
    st.out.paths[(group.name, "config-file")] = path
    if is_yaml_config(ref):
        st.warn(f"[{group.name}] config-file {ref}: a YAML config; rendered as the key file {file}")
    role = {"primary-gie": "primary", "secondary-gie": "secondary"}.get(kind, "preprocess")
    stem = dns_label(PurePosixPath(file).stem) or "gie"
    name, n = stem, 2
    while name in st.gie_names:
        name, n = f"{stem[:58]}-{n}", n + 1
    st.gie_names.add(name)
    gie: dict[str, Any] = {"name": name, "role": role, "file": file}
    found = st.read(path)
    props: dict[str, Any] = {}
    fmt = GieFormat.NVINFER if kind in SET_ON_NVINFER else GieFormat.NVDSPREPROCESS
    if found is None:
        st.warn(f"[{group.name}] config-file {ref}: not found; the GIE keeps only the app-level keys")
    else:
        text, where = found
        result = import_keyfile(text, where)
        errors = [f for f in result.findings if f.is_error]
        for f in result.findings:
            if not f.is_error:
                st.out.warnings.append(_gcc(f))
        if errors or not result.gie:
            lines = [_gcc(f) for f in errors] or [f"{where}: error: cannot import this GIE file"]
            raise AppImportError("\n".join([*lines, f"{st.file}:{group.line}:{group.column}: note: [{group.name}] "
                                            f"config-file names {where}"]))  # fmt: skip
        imported = result.gie
        fmt = GieFormat(imported.get("format", fmt.value))
        props = dict(imported.get("properties", {}))
        for key in ("format", "classAttrs", "groups", "userConfigs", "extraProperties"):
            if imported.get(key):
                gie[key] = imported[key]
        st.paths_of(group.name, props, PROPERTY_TABLES[fmt], PurePosixPath(path).parent, st.profile_files)
        gpu = props.get("gpu-id")
        if isinstance(gpu, int) and gpu != 0:
            props["gpu-id"] = 0
        if isinstance(gpu, int) and "gpu-id" not in known:  # else deepstream-app sets the group's on nvinfer
            st.gpus.setdefault(gpu, f"{where} gpu-id")
    if kind in SET_ON_NVINFER:
        _app_overrides(st, group, kind, known, props, where_app=st.origin)
    elif kind == "secondary-pre-process" and "operate-on-gie-id" in known:
        props["operate-on-gie-id"] = known["operate-on-gie-id"]
    if kind == "secondary-pre-process" and props.get("process-on-frame", True):
        st.warn(f"[{group.name}] config-file {ref}: process-on-frame is not 0 (an nvdspreprocess for objects); "
                "rendered as [pre-process]")  # fmt: skip
    if kind == "pre-process" and props.get("process-on-frame") is False:
        st.warn(f"[{group.name}] config-file {ref}: process-on-frame is 0 (objects); rendered as "
                "[secondary-pre-process0]")  # fmt: skip
    gie["properties"] = {k: _plain(v) for k, v in props.items()}
    return gie


def _app_overrides(st: _App, group: KeyGroup, kind: str, known: Mapping[str, Any], props: dict[str, Any],
                   where_app: PurePosixPath) -> None:  # fmt: skip
    """What deepstream-app sets on nvinfer after the file is loaded, so it wins: the group's keys it passes, its
    ``input-tensor-meta`` (always: default 0), and ``process-mode`` by the group."""
    for key in SET_ON_NVINFER[kind]:
        if key not in known or key not in NVINFER_PROPERTY_KEYS:
            continue
        value = known[key]
        if key == "model-engine-file" and isinstance(value, str):
            value = st.path_value(
                group.name, key, NVINFER_PROPERTY_KEYS[key], value, where_app, st.profile_files
            )
        props[key] = value
    meta = bool(known.get("input-tensor-meta", False))
    if meta or "input-tensor-from-meta" in props:
        if props.get("input-tensor-from-meta") and not meta:
            st.warn(f"[{group.name}] input-tensor-meta is 0 (its default), which overrides input-tensor-from-meta=1 of "
                    "its config-file: imported as false")  # fmt: skip
        props["input-tensor-from-meta"] = meta
    want = 1 if kind == "primary-gie" else 2
    if props.get("process-mode", want) != want:
        st.warn(f"[{group.name}] sets process-mode {want} on nvinfer; its config-file's {props['process-mode']} is "
                f"ignored (imported as {want})")  # fmt: skip
        props["process-mode"] = want


def _gcc(f: Finding) -> str:
    loc = f.location
    where = "" if loc is None else loc.file + (f":{loc.line}" if loc.line else "")
    if loc is not None and loc.line and loc.column:
        where += f":{loc.column}"
    return f"{where}: {f.severity.value}: {f.message} [{f.rule}]"


# ------------------------------------------------------------------------------------------------------- the documents
def _finish(st: _App, image: str, mount_origin: bool) -> AppImport:
    out, app = st.out, st.app
    if st.app_gies:
        app["gies"] = st.app_gies
    instance_files = {k: v for k, v in st.instance_files.items() if k not in st.profile_files}
    if instance_files:
        app["files"] = dict(sorted(instance_files.items()))
    if st.extra:
        app["extraGroups"] = st.extra
    if st.gies:
        profile_spec: dict[str, Any] = {"gies": st.gies}
        if st.profile_files:
            profile_spec["files"] = dict(sorted(st.profile_files.items()))
        out.profile = manifest_document("InferenceProfile", st.base, profile_spec)
    else:
        st.warn("no enabled GIE group: the instance runs without inference (no profile)")
    spec: dict[str, Any] = {"image": image, "layout": "deepstream-app"}
    used = sorted(st.gpus)
    if len(used) == 1 and used[0] != 0:
        spec["gpu"] = used[0]
        st.warn(f"gpu-id {used[0]} everywhere: the instance runs on host GPU {used[0]} (spec.gpu), which the container "
                "sees as 0")  # fmt: skip
    elif len(used) > 1:
        st.warn(
            f"gpu-id {', '.join(map(str, used))}: dsfleet runs an instance on one GPU (spec.gpu), seen as 0"
        )
    spec["cameras"] = st.cameras
    if out.profile is not None:
        spec["profile"] = st.base
    if mount_origin and st.mount_paths:
        root = posixpath.commonpath([str(st.origin), *st.mount_paths])
        if root != "/":
            spec["mounts"] = [{"type": "bind", "source": root, "target": root, "readOnly": True}]
    spec["app"] = app
    out.instance = manifest_document("DsInstance", st.base, spec)
    return out
