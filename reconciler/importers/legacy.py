"""Import the older system's (CCM) SQLite database and sample configs as dsfleet manifests.

CCM keeps three tables (``coordinator/models.py`` in bqm1111/CCM):

- ``cameras``: ``id``, ``agent_id``, ``dsInstance_id``, ``camera_id``, ``ip_address``, ``username``,
  ``password``, ``encodeType``, ``type``, ``width``, ``height`` — an address and credentials, no URL;
- ``agents``: ``id``, ``agent_name``, ``ip_address``, ``hostname``, ``node_id``, ``connected``;
- ``dsInstance``: ``id``, ``agent_id`` (NULL = "Not assigned"), ``instance_name``, ``app_type``, the topics,
  ``kafka_connection_str``, ``streammux_*``, ``*_confidence_threshold``, ``status``.

What comes out: ``nodes.yaml``, ``cameras.yaml``, ``instances.yaml`` (one document per object), names
lowered to DNS labels (collisions get ``-2``, ``-3`` and a warning), each camera URL built from
``--url-template`` with no credentials in it, and each camera's user name and password moved to
``<secrets-out>/<camera>/{username,password}`` (files 0600, directories 0700), referenced as
``credentials.secretRef``. Passwords never reach a manifest, a message or the summary.

:func:`convert` is pure (rows in, documents out); :func:`import_legacy` reads and writes the files.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import string
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import SingleQuotedScalarString
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from reconciler.errors import PermanentError
from schemas import API_VERSION
from schemas.placeholders import url_has_credentials

__all__ = [
    "DEFAULT_URL_TEMPLATE",
    "Conversion",
    "ImportResult",
    "LegacyDb",
    "LegacyImportError",
    "Secret",
    "check_url_template",
    "convert",
    "dns_label",
    "import_legacy",
    "read_app_conf",
    "read_legacy_db",
    "render_yaml",
    "write_manifests",
    "write_secrets",
]

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
# The older app's five GIE files: (file, GIE name, role, format) — see policies.resolution for the ccm layout.
CCM_GIES: Final = (
    ("mot_primary.txt", "mot-primary", "primary", None),
    ("faceid_primary.txt", "face-primary", "primary", None),
    ("mot_sgie.txt", "mot-secondary", "secondary", None),
    ("faceid_secondary.txt", "face-secondary", "secondary", None),
    ("faceid_align_config.txt", "face-align", "preprocess", "ccm-align"),
)
# Values the ccm layout derives itself (DESIGN §9.10): left out of the profile so they follow the instance.
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
_YAML_STR: Final = "tag:yaml.org,2002:str"


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


@dataclass(frozen=True)
class ImportResult:
    source: str
    files: tuple[Path, ...]
    secrets_dir: Path
    secret_refs: tuple[str, ...]
    nodes: int
    cameras: int
    instances: int
    unassigned_instances: int
    cameras_without_instance: int
    instances_without_image: int
    warnings: tuple[str, ...]
    profile: bool = False

    def summary(self) -> str:
        def n(count: int, word: str) -> str:
            return f"{count} {word}" if count == 1 else f"{count} {word}s"

        lines = [
            f"imported {self.source}: {n(self.nodes, 'node')}, "
            f"{n(self.cameras, 'camera')} ({self.cameras_without_instance} without an instance), "
            f"{n(self.instances, 'instance')} ({self.unassigned_instances} not assigned to a node)",
            "wrote " + ", ".join(str(f) for f in self.files),
            f"secrets: {n(len(self.secret_refs), 'camera')} with credentials under {self.secrets_dir}/"
            "<camera>/{username,password} (mode 0600); copy them to each agent's secret store",
            _next_steps(self.profile, self.instances_without_image),
        ]
        if self.warnings:
            lines.append(n(len(self.warnings), "warning"))
        return "\n".join(lines) + "\n"


def _next_steps(profile: bool, without_image: int) -> str:
    todo = []
    if profile:
        done = (
            f"profile: the older GIE files became InferenceProfile '{PROFILE_NAME}', used by every instance\n"
        )
    else:
        done = ""
        todo.append("add spec.profile to each DsInstance (--configs DIR imports the older GIE files as one)")
    if without_image:
        noun = "instance" if without_image == 1 else "instances"
        todo.append(f"add spec.image to {without_image} {noun} (or an image to its Node)")
    todo.append("run `dsfleet validate`")
    return done + "next: " + "; ".join(todo)


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


# --------------------------------------------------------------------------------------------------- reading


def read_legacy_db(path: Path) -> LegacyDb:
    """Read ``cameras``, ``agents`` and ``dsInstance`` (read-only; the file is never written)."""
    where = str(path)
    if not path.is_file():
        raise LegacyImportError(where, "cannot open database: no such file")
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()), safe='/')}?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise LegacyImportError(where, f"cannot open database: {err}") from err
    try:
        conn.row_factory = sqlite3.Row
        present = {
            str(r[0]).lower(): str(r[0])
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "cameras" not in present:
            raise LegacyImportError(where, "not the older system's database: it has no 'cameras' table")
        tables: dict[str, tuple[dict[str, Any], ...]] = {}
        missing = []
        for table in LEGACY_TABLES:
            actual = present.get(table.lower())
            if actual is None:
                missing.append(table)
                tables[table] = ()
                continue
            columns = [str(r[1]) for r in conn.execute(f'PRAGMA table_info("{actual}")')]
            order = '"id"' if "id" in columns else "rowid"
            rows = conn.execute(f'SELECT * FROM "{actual}" ORDER BY {order}').fetchall()
            tables[table] = tuple(dict(zip(r.keys(), tuple(r), strict=True)) for r in rows)
    except sqlite3.Error as err:
        raise LegacyImportError(where, f"cannot read database: {err}") from err
    finally:
        conn.close()
    return LegacyDb(
        cameras=tables["cameras"],
        agents=tables["agents"],
        instances=tables["dsInstance"],
        missing_tables=tuple(missing),
    )


def read_app_conf(configs_dir: Path) -> tuple[dict[str, Any], Path | None]:
    """CCM's ``app_conf.json`` in ``configs_dir`` (or a single ``*app_conf.json``); ({}, None) if absent."""
    if not configs_dir.is_dir():
        raise LegacyImportError(str(configs_dir), "--configs: not a directory")
    path = configs_dir / "app_conf.json"
    if not path.is_file():
        matches = sorted(p for p in configs_dir.glob("*app_conf.json") if p.is_file())
        if not matches:
            return {}, None
        path = matches[0]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LegacyImportError(str(path), f"cannot read app_conf.json: {type(err).__name__}") from err
    if not isinstance(data, dict):
        raise LegacyImportError(str(path), "app_conf.json: expected a JSON object")
    return data, path


def _config_file(configs_dir: Path, name: str) -> Path | None:
    """``name`` in ``configs_dir``, or a single file ending in ``name`` (copies like ``X__name`` are common)."""
    path = configs_dir / name
    if path.is_file():
        return path
    matches = sorted(p for p in configs_dir.glob(f"*{name}") if p.is_file())
    return matches[0] if matches else None


def read_profile(configs_dir: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The older app's GIE files in ``configs_dir`` → an ``InferenceProfile`` document (None when they are not
    all there), with the importer's findings as gcc-style warnings. Values the ccm layout derives are dropped."""
    from reconciler.importers import import_keyfile

    notes: list[str] = []
    gies: list[dict[str, Any]] = []
    missing = []
    for file, name, role, fmt in CCM_GIES:
        path = _config_file(configs_dir, file)
        if path is None:
            missing.append(file)
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise LegacyImportError(str(path), f"cannot read: {type(err).__name__}") from err
        result = import_keyfile(text, str(path))
        for finding in result.findings:
            where = str(finding.location) if finding.location else str(path)
            notes.append(f"{where}: {finding.severity.value}: {finding.message} [{finding.rule}]")
        if result.has_errors or not result.gie:
            raise LegacyImportError(str(path), "cannot import this GIE file (errors above)")
        gie: dict[str, Any] = {"name": name, "role": role}
        if fmt is not None:
            gie["format"] = fmt
        gie["file"] = file
        derived = CCM_DERIVED.get(file, ())
        gie["properties"] = {k: v for k, v in result.gie.get("properties", {}).items() if k not in derived}
        for extra in ("classAttrs", "extraProperties"):
            if result.gie.get(extra):
                gie[extra] = result.gie[extra]
        gies.append(gie)
    if missing:
        if len(missing) < len(CCM_GIES):
            notes.append(f"{configs_dir}: no {', '.join(missing)}; no InferenceProfile written")
        return None, notes
    return _document("InferenceProfile", PROFILE_NAME, {"gies": gies}), notes


def check_url_template(template: str, columns: Sequence[str] | None = None) -> tuple[str, ...]:
    """The template's field names; raises when it could carry credentials or names an unknown column."""
    where = "--url-template"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise LegacyImportError(where, f"not a valid format string ({err})") from err
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
        node_spec["gpus"] = [0]
        nodes.append(_document("Node", name, node_spec))

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
        cameras.append(_document("Camera", name, spec))
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
        spec["gpu"] = 0
        if image:
            spec["image"] = image
        spec["layout"] = "ccm"
        spec["cameras"] = members[name]
        spec["app"] = _app(row, defaults, len(members[name]), f"dsInstance {what}", notes)
        spec["restartPolicy"] = RESTART_POLICY
        instances.append(_document("DsInstance", name, spec))

    return Conversion(
        nodes=tuple(sorted(nodes, key=_by_name)),
        cameras=tuple(sorted(cameras, key=_by_name)),
        instances=tuple(sorted(instances, key=_by_name)),
        secrets=tuple(sorted(secrets, key=lambda s: s.ref)),
        warnings=tuple(f"{source}: warning: {note}" for note in notes),
    )


def _document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
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
                notes.append(f"{what}: streammux_batch_size {old} becomes 'auto' (= its {cameras} camera(s))")
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


# --------------------------------------------------------------------------------------------------- writing


def render_yaml(documents: Sequence[Mapping[str, Any]], header: str = "") -> str:
    """Documents as multi-document block YAML (``---`` before each), keys in the given order."""
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.explicit_start = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    for line in header.splitlines():
        out.write(f"# {line}\n" if line else "#\n")
    if documents:
        yaml.dump_all([_plain(d) for d in documents], out)
    return out.getvalue()


_YAML11 = Resolver()


def _yaml11_tag(text: str) -> str:
    tag: str = _YAML11.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return tag


def _plain(value: Any) -> Any:
    """Plain containers; strings a YAML 1.1 reader (PyYAML) would take for a bool/number/date get quoted."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str) and _yaml11_tag(value) != _YAML_STR:
        return SingleQuotedScalarString(value)
    return value


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def write_manifests(conversion: Conversion, out_dir: Path, *, source: str = "camera.db") -> tuple[Path, ...]:
    """Write ``nodes.yaml``, ``cameras.yaml``, ``instances.yaml`` under ``out_dir`` (atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = f"Imported from {Path(source).name} by `dsfleet import-legacy`."
    written = []
    for filename, documents in zip(
        MANIFEST_FILES, (conversion.nodes, conversion.cameras, conversion.instances), strict=True
    ):
        path = out_dir / filename
        _atomic_write(path, render_yaml(documents, header).encode("utf-8"), 0o644)
        written.append(path)
    return tuple(written)


def write_secrets(conversion: Conversion, secrets_dir: Path) -> tuple[str, ...]:
    """``<secrets_dir>/<ref>/{username,password}``: files 0600, directories 0700."""
    if not secrets_dir.exists():
        secrets_dir.mkdir(parents=True, mode=0o700)
        os.chmod(secrets_dir, 0o700)
    refs = []
    for secret in conversion.secrets:
        directory = secrets_dir / secret.ref
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        _atomic_write(directory / "username", secret.username.encode("utf-8"), 0o600)
        _atomic_write(directory / "password", secret.password.encode("utf-8"), 0o600)
        refs.append(secret.ref)
    return tuple(refs)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def import_legacy(
    db_path: Path,
    *,
    out_dir: Path,
    secrets_dir: Path,
    url_template: str = DEFAULT_URL_TEMPLATE,
    configs_dir: Path | None = None,
    image: str | None = None,
) -> ImportResult:
    """Read the older system's DB (and app_conf.json), write manifests and secrets; raise on bad input."""
    source = str(db_path)
    check_url_template(url_template)
    db = read_legacy_db(db_path)
    app_conf: dict[str, Any] = {}
    extra: list[str] = []
    profile: dict[str, Any] | None = None
    if configs_dir is not None:
        app_conf, conf_path = read_app_conf(configs_dir)
        if conf_path is None:
            extra.append(
                f"{configs_dir}: warning: no app_conf.json; app settings come from the database only"
            )
        profile, profile_notes = read_profile(configs_dir)
        extra.extend(profile_notes)
    conversion = convert(db, url_template=url_template, app_conf=app_conf, image=image, source=source)
    if profile is not None:
        conversion = Conversion(
            nodes=conversion.nodes,
            cameras=conversion.cameras,
            instances=tuple(
                {**d, "spec": {**{k: v for k, v in d["spec"].items() if k != "app"}, "profile": PROFILE_NAME,
                               "app": d["spec"]["app"]}}
                for d in conversion.instances
            ),
            secrets=conversion.secrets,
            warnings=conversion.warnings,
        )  # fmt: skip
    if _inside(secrets_dir, out_dir):
        extra.append(
            f"{secrets_dir}: warning: secrets written inside the manifests directory; keep them out of git"
        )
    elif secrets_dir.exists() and secrets_dir.stat().st_mode & 0o077:
        extra.append(f"{secrets_dir}: warning: directory is readable by group or others; use mode 0700")
    files = write_manifests(conversion, out_dir, source=source)
    if profile is not None:
        path = out_dir / PROFILE_FILE
        header = f"The older system's GIE files in {configs_dir}, imported by `dsfleet import-legacy`."
        _atomic_write(path, render_yaml([profile], header).encode("utf-8"), 0o644)
        files = (*files, path)
    refs = write_secrets(conversion, secrets_dir)
    specs = [d["spec"] for d in conversion.instances]
    assigned = {c for s in specs for c in s["cameras"]}
    return ImportResult(
        source=source,
        files=files,
        secrets_dir=secrets_dir,
        secret_refs=refs,
        nodes=len(conversion.nodes),
        cameras=len(conversion.cameras),
        instances=len(conversion.instances),
        unassigned_instances=sum(1 for s in specs if "node" not in s),
        cameras_without_instance=sum(1 for d in conversion.cameras if d["metadata"]["name"] not in assigned),
        instances_without_image=sum(1 for s in specs if "image" not in s),
        warnings=conversion.warnings + tuple(extra),
        profile=profile is not None,
    )
