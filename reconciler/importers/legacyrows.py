"""The older system's (CCM) rows as dsfleet manifest documents: names, URLs, secrets (pure: rows in, documents out).

:func:`convert` takes the rows :func:`dsfleet.reconciler.importers.legacy.read_legacy_db` read and returns the documents,
the secrets to write and the warnings; :mod:`dsfleet.reconciler.importers.legacy` reads and writes the files.
"""

from __future__ import annotations

import re
import string
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

from dsfleet.schemas import API_VERSION
from dsfleet.schemas.errors import PermanentError
from dsfleet.schemas.findings import plural
from dsfleet.schemas.placeholders import url_has_credentials

DEFAULT_URL_TEMPLATE: Final = "rtsp://{ip_address}/main"
CREDENTIAL_COLUMNS: Final = frozenset({"username", "password"})
MAX_NAME: Final = 63
LEGACY_TABLES: Final = ("cameras", "agents", "dsInstance")
ENCODINGS: Final = {
    "h264": "h264",
    "h.264": "h264",
    "avc": "h264",
    "h265": "h265",
    "h.265": "h265",
    "hevc": "h265",
}
CAMERA_TYPES: Final = frozenset({"rtsp", "file", "http"})
APP_TYPES: Final = {"NORMAL": "NORMAL", "DEFAULT": "NORMAL", "VISUAL": "VISUAL", "DEBUG": "VISUAL"}
RESTART_POLICY: Final = "OnFailure"  # CCM ran its containers with restart on-failure
MANIFEST_FILES: Final = ("nodes.yaml", "cameras.yaml", "instances.yaml")
PROFILE_FILE: Final = "profiles.yaml"
PROFILE_NAME: Final = "ccm"
# The older app's five GIE files: (file, GIE name, role, format) — see dsfleet.resolution.instances for the ccm layout.
CCM_GIES: Final = (
    ("mot_primary.txt", "mot-primary", "primary", None),
    ("faceid_primary.txt", "face-primary", "primary", None),
    ("mot_sgie.txt", "mot-secondary", "secondary", None),
    ("faceid_secondary.txt", "face-secondary", "secondary", None),
    ("faceid_align_config.txt", "face-align", "preprocess", "ccm-align"),
)
# Values the ccm layout derives itself (docs/manifests/layouts.md): left out of the profile so they follow the instance.
CCM_DERIVED: Final = {
    "faceid_align_config.txt": ("network-input-shape", "target-unique-ids", "input-object-max-width",
                                "input-object-max-height"),
    "faceid_primary.txt": ("model-engine-file",),
}  # fmt: skip

# (CCM column, dsfleet app key, type); the same keys as CCM's app_conf.json
_APP_FIELDS: Final[tuple[tuple[str, str, type], ...]] = (
    ("app_type", "appType", str),
    ("face_raw_meta_topic", "faceRawMetaTopic", str),
    ("mot_raw_meta_topic", "motRawMetaTopic", str),
    ("visual_topic", "visualTopic", str),
    ("kafka_connection_str", "kafkaConnectionStr", str),
    ("face_confidence_threshold", "faceConfidenceThreshold", float),
    ("mot_confidence_threshold", "motConfidenceThreshold", float),
)
_STREAMMUX_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("streammux_output_width", "width"),
    ("streammux_output_height", "height"),
    ("streammux_batch_size", "batch-size"),
    ("streammux_buffer_pool", "buffer-pool-size"),
    ("streammux_nvbuf_memory_type", "nvbuf-memory-type"),
)
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


class LegacyImportError(PermanentError):
    """The input cannot be imported (unreadable DB, bad template, bad app_conf.json); exit status 2."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: error: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True)
class LegacyDb:
    """The rows of the older system's tables, ordered by id, as plain dicts (column name → value)."""

    cameras: tuple[dict[str, Any], ...] = ()
    agents: tuple[dict[str, Any], ...] = ()
    instances: tuple[dict[str, Any], ...] = ()
    missing_tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class Secret:
    """A camera's credentials, destined for the secret store only (values hidden from repr)."""

    ref: str
    username: str = field(repr=False)
    password: str = field(repr=False)


@dataclass(frozen=True)
class Conversion:
    nodes: tuple[dict[str, Any], ...]
    cameras: tuple[dict[str, Any], ...]
    instances: tuple[dict[str, Any], ...]
    secrets: tuple[Secret, ...]
    warnings: tuple[str, ...]


# --------------------------------------------------------------------------------------------------- names


def dns_label(text: str) -> str:
    """Lower ``text`` to a DNS label (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, ≤ 63); '' when nothing is left."""
    label = re.sub(r"[^a-z0-9]+", "-", text.strip().lower()).strip("-")
    return label[:MAX_NAME].rstrip("-")


class _Names:
    """Hands out unique names per kind; a taken name gets ``-2``, ``-3``, … and a warning."""

    def __init__(self, kind: str, warn: list[str]) -> None:
        self._kind = kind
        self._taken: dict[str, str] = {}
        self._warn = warn

    def claim(self, base: str, what: str) -> str:
        if base not in self._taken:
            self._taken[base] = what
            return base
        n = 2
        while True:
            suffix = f"-{n}"
            candidate = base[: MAX_NAME - len(suffix)].rstrip("-") + suffix
            if candidate not in self._taken:
                break
            n += 1
        self._warn.append(
            f"{self._kind} {what}: name '{base}' is already used by {self._taken[base]}; using '{candidate}'"
        )
        self._taken[candidate] = what
        return candidate


def _camera_base_name(row: Mapping[str, Any]) -> str:
    label = dns_label(_text(row.get("camera_id")))
    if not label:
        return f"cam-{_text(row.get('id')) or 'x'}"
    if not label[0].isalpha():
        label = ("cam-" + label)[:MAX_NAME].rstrip("-")
    return label


def check_url_template(template: str, columns: Sequence[str] | None = None) -> tuple[str, ...]:
    """The template's field names; raises when it could carry credentials or names an unknown column."""
    where = "--url-template"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise LegacyImportError(where, f"not a valid format string ({err})") from err
    if "{{" in template or "}}" in template:
        raise LegacyImportError(
            where,
            "has doubled braces ({{ or }}), which would stay in every URL; write fields with single "
            "braces, e.g. rtsp://{ip_address}/main",
        )
    fields: list[str] = []
    for _literal, name, _spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or conversion is not None:
            raise LegacyImportError(where, "fields must be plain column names, e.g. {ip_address}")
        if name in CREDENTIAL_COLUMNS:
            raise LegacyImportError(
                where, f"must not use {{{name}}}: credentials go to --secrets-out, never into a URL"
            )
        fields.append(name)
    if "://" not in template:
        raise LegacyImportError(where, "must be a URL with a scheme, e.g. rtsp://{ip_address}/main")
    probe = string.Formatter().vformat(
        re.sub(r"\{[^{}]*\}", "{x}", template.replace("{{", "").replace("}}", "")), (), {"x": "x"}
    )
    if url_has_credentials(probe):
        raise LegacyImportError(where, "must not carry credentials (user-info before '@')")
    if columns is not None:
        usable = sorted(set(columns) - CREDENTIAL_COLUMNS)
        unknown = [f for f in fields if f not in columns]
        if unknown:
            raise LegacyImportError(
                where, f"unknown field {{{unknown[0]}}}; the cameras table has: {', '.join(usable)}"
            )
    return tuple(fields)


# ------------------------------------------------------------------------------------------------- converting


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def _truthy(value: Any) -> bool:
    """SQLite booleans: 1/0, or text such as 'true'."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes")
    return bool(value) if isinstance(value, int | float) else False


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _node_id(value: Any) -> str | None:
    text = _text(value).lower()
    if not text:
        return None
    if _HEX32.match(text):
        return text
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _strip_userinfo(url: str) -> tuple[str, str, str]:
    """(url without user-info, user name, password) — the two last percent-decoded."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user), unquote(password)


def _kafka_without_credentials(value: str) -> tuple[str, bool]:
    brokers = [b.strip() for b in value.split(",")]
    cleaned = [b.rpartition("@")[2] for b in brokers]
    return ",".join(cleaned), cleaned != brokers


def convert(
    db: LegacyDb,
    *,
    url_template: str = DEFAULT_URL_TEMPLATE,
    app_conf: Mapping[str, Any] | None = None,
    image: str | None = None,
    node_image: str | None = None,
    source: str = "camera.db",
) -> Conversion:
    """The older system's rows → manifest documents, secrets and warnings (gcc style, prefixed ``source``)."""
    notes: list[str] = []
    columns = sorted({k for row in db.cameras for k in row} or {"ip_address"})
    check_url_template(url_template, columns if db.cameras else None)
    for table in db.missing_tables:
        notes.append(f"no '{table}' table; importing none")
    defaults = dict(app_conf or {})

    # nodes (CCM agents)
    node_names = _Names("agent", notes)
    node_of_agent: dict[Any, str] = {}
    nodes: list[dict[str, Any]] = []
    for row in db.agents:
        what = f"id={_text(row.get('id'))}"
        base = dns_label(_text(row.get("agent_name"))) or dns_label(_text(row.get("hostname")))
        if not base:
            base = f"agent-{_text(row.get('id')) or len(nodes) + 1}"
            notes.append(f"agent {what}: no usable agent_name or hostname; naming it '{base}'")
        name = node_names.claim(base, what)
        node_of_agent[row.get("id")] = name
        node_spec: dict[str, Any] = {
            "hostname": _text(row.get("hostname")) or _text(row.get("agent_name")) or name
        }
        if _text(row.get("node_id")):
            node_id = _node_id(row.get("node_id"))
            if node_id is None:
                notes.append(f"agent {what}: node_id is not 32 hex digits or a UUID; leaving nodeId out")
            else:
                node_spec["nodeId"] = node_id
        node_spec["gpus"] = [0]  # the union of its instances' gpu_id, filled in below
        if node_image:
            node_spec["image"] = node_image
        nodes.append(manifest_document("Node", name, node_spec))

    # instances (CCM dsInstance): names first, cameras are attached below
    instance_names = _Names("dsInstance", notes)
    instance_of_id: dict[Any, str] = {}
    instance_rows: list[tuple[str, dict[str, Any]]] = []
    for row in db.instances:
        what = f"id={_text(row.get('id'))}"
        base = dns_label(_text(row.get("instance_name")))
        if not base:
            base = f"instance-{_text(row.get('id')) or len(instance_rows) + 1}"
            notes.append(f"dsInstance {what}: no usable instance_name; naming it '{base}'")
        name = instance_names.claim(base, what)
        instance_of_id[row.get("id")] = name
        instance_rows.append((name, row))

    # cameras
    camera_names = _Names("camera", notes)
    cameras: list[dict[str, Any]] = []
    secrets: list[Secret] = []
    members: dict[str, list[str]] = {name: [] for name, _ in instance_rows}
    for row in db.cameras:
        what = f"id={_text(row.get('id'))}"
        name = camera_names.claim(_camera_base_name(row), what)
        values = {k: ("" if v is None else v) for k, v in row.items() if k not in CREDENTIAL_COLUMNS}
        try:
            url = url_template.format_map(values)
        except (ValueError, KeyError, IndexError) as err:
            raise LegacyImportError("--url-template", f"cannot format camera {what}: {err}") from err
        username, password = _text(row.get("username")), _text(row.get("password"))
        if url_has_credentials(url):
            url, url_user, url_password = _strip_userinfo(url)
            notes.append(f"camera {what}: its address carried credentials; removed them from the URL")
            if not (username or password):
                username, password = url_user, url_password
        spec: dict[str, Any] = {"cameraId": _text(row.get("camera_id")) or _text(row.get("id")), "url": url}
        if not _text(row.get("camera_id")):
            notes.append(f"camera {what}: no camera_id; using the row id")
        if username or password:
            spec["credentials"] = {"secretRef": name}
            secrets.append(Secret(ref=name, username=username, password=password))
        encoding = ENCODINGS.get(_text(row.get("encodeType")).lower())
        if encoding is None:
            notes.append(f"camera {what}: encodeType is not h264 or h265; using h264")
            encoding = "h264"
        spec["encoding"] = encoding
        camera_type = _text(row.get("type")).lower()
        scheme = urlsplit(url).scheme.lower()
        if camera_type in CAMERA_TYPES:
            spec["type"] = camera_type
            if scheme and not scheme.startswith(camera_type):
                notes.append(f"camera {what}: type {camera_type} but the URL scheme is {scheme}")
        elif camera_type:
            notes.append(f"camera {what}: type is not rtsp, file or http; leaving type out")
        for key in ("width", "height"):
            size = _int(row.get(key))
            if size is not None and size > 0:
                spec[key] = size
        if _truthy(row.get("stream")):
            spec["stream"] = True
        cameras.append(manifest_document("Camera", name, spec))
        instance_id = row.get("dsInstance_id")
        if instance_id is not None:
            instance = instance_of_id.get(instance_id)
            if instance is None:
                notes.append(
                    f"camera {what}: dsInstance_id {_text(instance_id)} does not exist; left unassigned"
                )
            else:
                members[instance].append(name)

    # instance documents
    instances: list[dict[str, Any]] = []
    gpus_of_node: dict[str, set[int]] = {}
    for name, row in instance_rows:
        what = f"id={_text(row.get('id'))}"
        spec = {}
        agent_id = row.get("agent_id")
        if agent_id is not None:
            node = node_of_agent.get(agent_id)
            if node is None:
                notes.append(f"dsInstance {what}: agent_id {_text(agent_id)} does not exist; left unassigned")
            else:
                spec["node"] = node
        gpu = _int(row.get("gpu_id"))
        if gpu is None or gpu < 0:
            if _text(row.get("gpu_id")):
                notes.append(f"dsInstance {what}: gpu_id is not a GPU number; using 0")
            gpu = 0
        spec["gpu"] = gpu
        if "node" in spec:
            gpus_of_node.setdefault(spec["node"], set()).add(gpu)
        if image:
            spec["image"] = image
        elif node_image and "node" not in spec:  # placed instances take it from their node
            spec["image"] = node_image
        spec["layout"] = "ccm"
        spec["cameras"] = members[name]
        spec["app"] = _app(row, defaults, len(members[name]), f"dsInstance {what}", notes)
        spec["restartPolicy"] = RESTART_POLICY
        instances.append(manifest_document("DsInstance", name, spec))

    for doc in nodes:
        doc["spec"]["gpus"] = sorted(gpus_of_node.get(doc["metadata"]["name"], {0}))
    return Conversion(
        nodes=tuple(sorted(nodes, key=_by_name)),
        cameras=tuple(sorted(cameras, key=_by_name)),
        instances=tuple(sorted(instances, key=_by_name)),
        secrets=tuple(sorted(secrets, key=lambda s: s.ref)),
        warnings=tuple(f"{source}: warning: {note}" for note in notes),
    )


def manifest_document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _by_name(doc: Mapping[str, Any]) -> str:
    return str(doc["metadata"]["name"])


def _app(
    row: Mapping[str, Any], defaults: Mapping[str, Any], cameras: int, what: str, notes: list[str]
) -> dict[str, Any]:
    """The ccm layout's app settings: the instance row's own values, else app_conf.json's."""

    def pick(column: str) -> Any:
        value = row.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            value = defaults.get(column)
        return value

    app: dict[str, Any] = {}
    for column, key, kind in _APP_FIELDS:
        value = pick(column)
        if value is None:
            continue
        if kind is float:
            number = _float(value)
            if number is None:
                notes.append(f"{what}: {column} is not a number; leaving it out")
                continue
            app[key] = number
            continue
        text = _text(value)
        if column == "app_type":
            if text.upper() not in APP_TYPES:
                notes.append(f"{what}: app_type is not NORMAL or VISUAL; leaving it out")
                continue
            text = APP_TYPES[text.upper()]
        if column == "kafka_connection_str":
            text, stripped = _kafka_without_credentials(text)
            if stripped:
                notes.append(f"{what}: kafka_connection_str carried credentials; removed them")
        app[key] = text
    streammux: dict[str, Any] = {}
    for column, key in _STREAMMUX_FIELDS:
        value = pick(column)
        if key == "batch-size":
            old = _int(row.get(column))  # app_conf.json's sample batch size is no decision of this instance
            if old is not None and old != cameras:
                notes.append(
                    f"{what}: streammux_batch_size {old} becomes 'auto' (= its {plural(cameras, 'camera')})"
                )
            streammux[key] = "auto"
            continue
        if value is None:
            continue
        number = _int(value)
        if number is None:
            notes.append(f"{what}: {column} is not an integer; leaving it out")
            continue
        streammux[key] = number
    app["streammux"] = streammux
    return app
