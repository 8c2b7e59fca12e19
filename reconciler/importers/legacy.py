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
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import SingleQuotedScalarString
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from dsfleet.reconciler.importers.legacyrows import (
    CCM_DERIVED,
    CCM_GIES,
    DEFAULT_URL_TEMPLATE,
    LEGACY_TABLES,
    MANIFEST_FILES,
    PROFILE_FILE,
    PROFILE_NAME,
    Conversion,
    LegacyDb,
    LegacyImportError,
    Secret,
    check_url_template,
    convert,
    dns_label,
    manifest_document,
)
from dsfleet.reconciler.loading.manifestsets import load_manifests
from dsfleet.schemas.findings import Finding, plural

_YAML_STR: Final = "tag:yaml.org,2002:str"

__all__ = [
    "DEFAULT_URL_TEMPLATE",
    "Check",
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
    "read_legacy_settings",
    "render_yaml",
    "validation_checks",
    "write_manifests",
    "write_secrets",
]


@dataclass(frozen=True)
class Check:
    """What ``dsfleet validate`` reports on the imported set for one rule: how many, on which field, what to do."""

    rule: str
    severity: str
    count: int
    field: str
    hint: str


_HINTS: Final = {
    "instance-image-missing": (
        "spec.image",
        "set spec.image on each DsInstance, or on its Node (an unplaced instance needs its own); "
        "at import: --image IMAGE or --legacy-settings FILE",
    ),
    "instance-profile-exists": (
        "spec.profile",
        "point spec.profile at an InferenceProfile; at import, --configs DIR holding the older GIE files makes one",
    ),
    "instance-unplaced": ("spec.node", "set spec.node to run it (the older system had it 'Not assigned')"),
    "instance-no-cameras": ("", "list its cameras in spec.cameras, or leave the instance out"),
    "streammux-batch": (
        "batch-size",
        "set the GIE's batch-size to auto in the InferenceProfile (it follows each instance's cameras)",
    ),
}
"""What to do about the findings an imported set typically has, by rule (other rules: their own message)."""


def validation_checks(findings: Sequence[Finding]) -> tuple[Check, ...]:
    """The findings of the imported set, one :class:`Check` per rule (errors first), each naming the rule and the
    field ``dsfleet validate`` reports."""
    by_rule: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        by_rule.setdefault((f.severity.value, f.rule), []).append(f)
    checks = []
    for (severity, rule), found in sorted(by_rule.items(), key=lambda kv: (kv[0][0] != "error", kv[0][1])):
        field, hint = _HINTS.get(rule, ("", ""))
        message = found[0].message
        if not field and message.startswith("spec.") and ":" in message:
            field = message.split(":", 1)[0]
        checks.append(Check(rule, severity, len(found), field, hint or message))
    return tuple(checks)


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
    out_dir: Path | None = None
    checks: tuple[Check, ...] = ()
    """What ``dsfleet validate`` reports on the written manifests."""

    def summary(self) -> str:
        lines = [
            f"imported {self.source}: {plural(self.nodes, 'node')}, "
            f"{plural(self.cameras, 'camera')} ({self.cameras_without_instance} without an instance), "
            f"{plural(self.instances, 'instance')} ({self.unassigned_instances} not assigned to a node)",
            "wrote " + ", ".join(str(f) for f in self.files),
            f"secrets: {plural(len(self.secret_refs), 'camera')} with credentials under {self.secrets_dir}/"
            "<camera>/{username,password} (mode 0600); copy them to each agent's secret store",
        ]
        if self.profile:
            lines.append(
                f"profile: the older GIE files became InferenceProfile '{PROFILE_NAME}', used by every instance"
            )
        lines.extend(self._next_steps())
        if self.warnings:
            lines.append(f"{plural(len(self.warnings), 'import warning')} (above)")
        return "\n".join(lines) + "\n"

    def _next_steps(self) -> list[str]:
        command = f"`dsfleet validate {self.out_dir or 'OUT'}`"
        if not self.checks:
            return [f"next: {command} finds nothing to fix"]
        errors = sum(c.count for c in self.checks if c.severity == "error")
        warnings = sum(c.count for c in self.checks if c.severity != "error")
        out = [f"next: {command} reports {plural(errors, 'error')}, {plural(warnings, 'warning')}:"]
        for c in self.checks:
            field = f" {c.field}" if c.field else ""
            out.append(f"  {plural(c.count, c.severity)} [{c.rule}]{field}: {c.hint}")
        return out


# --------------------------------------------------------------------------------------------------- reading
CCM_DEFAULTS: Final = Path(__file__).resolve().parent / "ccm_defaults"
"""The older app's sample GIE files and app_conf.json: the profile and defaults without ``--configs``."""


def read_legacy_settings(path: Path) -> str:
    """The image the older agents ran: ``IMAGE_NAME`` and ``IMAGE_TAG`` of their ``settings.toml``."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise LegacyImportError(str(path), f"cannot read the older settings: {type(err).__name__}") from err
    name, tag = data.get("IMAGE_NAME"), data.get("IMAGE_TAG")
    if not isinstance(name, str) or not name.strip():
        raise LegacyImportError(str(path), "no IMAGE_NAME (the older agents' image) in these settings")
    tag_text = str(tag).strip() if isinstance(tag, str | int | float) and str(tag).strip() else "latest"
    return f"{name.strip()}:{tag_text}"


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
    from dsfleet.reconciler.importers.nvinfer import import_keyfile

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
    return manifest_document("InferenceProfile", PROFILE_NAME, {"gies": gies}), notes


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
    legacy_settings: Path | None = None,
    force: bool = False,
) -> ImportResult:
    """Read the older system's DB (and app_conf.json), write manifests and secrets; raise on bad input.

    Without ``configs_dir`` the older app's sample GIE files and app_conf.json (``ccm_defaults/``) are the
    profile and the default app settings. A non-empty
    ``out_dir`` is refused unless ``force``. ``legacy_settings``: the older agents' ``settings.toml``, whose
    ``IMAGE_NAME``:``IMAGE_TAG`` becomes every Node's image."""
    source = str(db_path)
    check_url_template(url_template)
    if not force and out_dir.is_dir() and any(out_dir.iterdir()):
        raise LegacyImportError(
            str(out_dir), "--out is not empty; choose an empty directory or pass --force to overwrite"
        )
    node_image = read_legacy_settings(legacy_settings) if legacy_settings is not None else None
    db = read_legacy_db(db_path)
    app_conf: dict[str, Any] = {}
    extra: list[str] = []
    if configs_dir is not None:
        app_conf, conf_path = read_app_conf(configs_dir)
        if conf_path is None:
            extra.append(
                f"{configs_dir}: warning: no app_conf.json; app settings come from the database only"
            )
        profile, profile_notes = read_profile(configs_dir)
        extra.extend(profile_notes)
    else:  # the older app's samples; their own findings (inline comments) are known, not repeated
        app_conf, _path = read_app_conf(CCM_DEFAULTS)
        profile, _notes = read_profile(CCM_DEFAULTS)
    conversion = convert(
        db, url_template=url_template, app_conf=app_conf, image=image, node_image=node_image, source=source
    )
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
        origin = configs_dir or "the older app's samples (no --configs)"
        header = f"The older system's GIE files in {origin}, imported by `dsfleet import-legacy`."
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
        out_dir=out_dir,
        checks=validation_checks(load_manifests([out_dir]).findings),
    )
