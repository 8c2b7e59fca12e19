"""Import existing DeepStream key files (nvinfer, nvdspreprocess, CCM align) as one GIE of an InferenceProfile.

Pure: ``import_keyfile(text, file)`` takes the file's text and the name to report it under, and returns the GIE
in manifest shape plus findings. Values are what DeepStream's typed getters read (``dsfleet.reconciler.importers.keyfilereader``), so a
CCM-style ``network-mode=2 # FP16`` imports as ``2`` with a warning, and a broken value is an error, as it is for
DeepStream. Unknown ``[property]`` keys are kept verbatim in ``extraProperties`` (DeepStream only logs them);
unknown keys elsewhere are reported and dropped (DeepStream ignores them).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath, PurePosixPath
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from dsfleet.reconciler.importers.keyfilereader import (
    RULE_INVALID_ESCAPE,
    KeyEntry,
    KeyFile,
    KeyGroup,
    parse_keyfile,
    read_typed,
)
from dsfleet.reconciler.importers.paths import resolve_path
from dsfleet.reconciler.importers.yamlconfigs import (
    YamlConfigError,
    is_yaml_config,
    keyfile_name,
    yaml_to_keyfile,
)
from dsfleet.schemas.deepstream import (
    NVINFER_CLASS_ATTRS_KEYS,
    NVINFER_PROPERTY_KEYS,
    PREPROCESS_GROUP_KEYS,
    PREPROCESS_MANDATORY_KEYS,
    PREPROCESS_PROPERTY_KEYS,
    PROPERTY_MODELS,
    PROPERTY_TABLES,
    ROI_PARAMS_KEY,
    ROI_PARAMS_RE,
    ClassAttrs,
    GieFormat,
    KeySpec,
    PreprocessGroup,
    ValueKind,
    spec_for,
)
from dsfleet.schemas.findings import Finding, Location, Note, Severity

__all__ = [
    "RULE_DEPRECATED_KEY",
    "RULE_IGNORED_GROUP",
    "RULE_INVALID_GROUP",
    "RULE_INVALID_VALUE",
    "RULE_MISSING_KEY",
    "RULE_NOT_A_GIE",
    "RULE_UNKNOWN_KEY",
    "ImportResult",
    "detect_format",
    "gie_name",
    "import_keyfile",
    "suggest_key",
]

RULE_NOT_A_GIE: Final = "keyfile-not-a-gie"
RULE_UNKNOWN_KEY: Final = "keyfile-unknown-key"
RULE_DEPRECATED_KEY: Final = "keyfile-deprecated-key"
RULE_INVALID_VALUE: Final = "keyfile-invalid-value"
RULE_MISSING_KEY: Final = "keyfile-missing-key"
RULE_IGNORED_GROUP: Final = "keyfile-ignored-group"
RULE_INVALID_GROUP: Final = "keyfile-invalid-group"

_ROLE_DEFAULT_FORMAT: Final = {
    "primary": GieFormat.NVINFER,
    "secondary": GieFormat.NVINFER,
    "preprocess": GieFormat.NVDSPREPROCESS,
}
_APP_GROUP_RE: Final = re.compile(
    r"^(application|tiled-display|streammux|primary-gie|osd|tests|source-list|source-attr-all|img-save"
    r"|message-converter|nvds-analytics|pre-process|segvisual|ds-example"
    r"|(source|sink|secondary-gie|secondary-pre-process|message-consumer|dewarper)[0-9]+)$"
)
_CLASS_ATTRS_RE: Final = re.compile(r"^class-attrs-(.*)$")
_PREPROCESS_GROUP_RE: Final = re.compile(r"^group-(.*)$")
_INT_TEXT_RE: Final = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT_RE: Final = re.compile(
    r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?[0-9]+[eE][+-]?[0-9]+"
)

_TYPOS: Final = {
    "gie-id": "gie-unique-id",
    "unique-id": "gie-unique-id",
    "reinfer-interval": "secondary-reinfer-interval",
    "model-engine": "model-engine-file",
    "labelfile": "labelfile-path",
    "min-boxes": "minBoxes",
    "is-classifer": "network-type",
}


@dataclass(frozen=True)
class ImportResult:
    """``gie``: one GIE in InferenceProfile manifest shape (empty when nothing could be imported);
    ``findings``: warnings and errors with file:line:col, sorted by position; ``format``: what the file is."""

    gie: dict[str, Any]
    findings: list[Finding]
    format: GieFormat | None = None

    @property
    def has_errors(self) -> bool:
        return any(f.is_error for f in self.findings)


def gie_name(file: str) -> str:
    """A DNS label from the file stem: lowercase, other characters → ``-``, trimmed, at most 63 characters."""
    stem = PurePath(file.replace("\\", "/")).stem.lower()
    name = re.sub(r"[^a-z0-9-]", "-", stem).strip("-")[:63].strip("-")
    return name or "gie"


def suggest_key(key: str, table: Mapping[str, KeySpec]) -> str | None:
    """The known key ``key`` was probably meant to be (case slip, known typo, or a close spelling)."""
    candidates = [k for k in table if k != ROI_PARAMS_KEY]
    by_lower = {k.lower(): k for k in candidates}
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    typo = _TYPOS.get(key) or _TYPOS.get(key.lower())
    if typo in table:
        return typo
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def detect_format(keyfile: KeyFile) -> tuple[GieFormat | None, str]:
    """Which GIE config ``keyfile`` is, or None and what it is instead."""
    names = keyfile.group_names()
    prop = keyfile.group("property")
    if prop is None:
        if any(_APP_GROUP_RE.match(name) for name in names):
            return None, "this is a deepstream-app config, not an nvinfer or nvdspreprocess config"
        if "tracker" in names:
            return None, "this is a tracker config ([tracker]), not an nvinfer or nvdspreprocess config"
        return None, "no [property] group: not an nvinfer or nvdspreprocess config"
    keys = set(prop.effective())
    if keys & {"algorithm-type", "overall-max-fps-n", "overall-min-fps-n", "max-same-source-frames"}:
        return None, "this is a config of the new nvstreammux ([streammux] config-file), not a GIE config"
    has_preprocess_groups = any(n == "user-configs" or _PREPROCESS_GROUP_RE.match(n) for n in names)
    if has_preprocess_groups or "custom-tensor-preparation-function" in keys:
        return GieFormat.NVDSPREPROCESS, "an nvdspreprocess config"
    if keys & {"network-input-shape", "tensor-name"}:
        preprocess_only = {"processing-width", "processing-height", "custom-lib-path"}
        if not keys & preprocess_only and any(k.startswith("input-object-") for k in keys):
            return GieFormat.CCM_ALIGN, "a CCM align-plugin config"
        return GieFormat.NVDSPREPROCESS, "an nvdspreprocess config"
    if any(_CLASS_ATTRS_RE.match(n) for n in names) or keys & set(NVINFER_PROPERTY_KEYS):
        return GieFormat.NVINFER, "an nvinfer config"
    return None, "[property] has no nvinfer or nvdspreprocess keys"


def _plain(value: object) -> object:
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


@dataclass
class _Importer:
    file: str
    keyfile: KeyFile
    findings: list[Finding] = field(default_factory=list)

    def add(
        self,
        severity: Severity,
        rule: str,
        message: str,
        line: int = 0,
        column: int = 0,
        notes: tuple[Note, ...] = (),
    ) -> None:
        location = Location(file=self.file, line=line, column=column)
        self.findings.append(
            Finding(severity=severity, rule=rule, message=message, location=location, notes=notes)
        )

    def at_entry(
        self, severity: Severity, rule: str, message: str, entry: KeyEntry, value: bool = False
    ) -> None:
        self.add(severity, rule, message, entry.line, entry.value_column if value else entry.column)

    # -- values ---------------------------------------------------------------------------------------------

    def typed(self, spec: KeySpec, entry: KeyEntry) -> object | None:
        value, problems = read_typed(spec, entry.raw)
        for problem in problems:
            self.add(
                problem.severity,
                problem.rule,
                problem.message,
                entry.line,
                entry.value_column + problem.offset,
            )
        return value

    def check_model(
        self, model: type[BaseModel], key: str, value: object, entry: KeyEntry, where: str
    ) -> None:
        try:
            model.model_validate({key: value})
        except ValidationError as exc:
            for error in exc.errors():
                message = f"{key} in [{where}]: {error['msg']}"
                self.at_entry(Severity.ERROR, RULE_INVALID_VALUE, message, entry, value=True)

    def unknown(
        self, key: str, entry: KeyEntry, group: str, table: Mapping[str, KeySpec], kept: bool
    ) -> None:
        hint = ""
        suggestion = suggest_key(key, table)
        elsewhere = _belongs_elsewhere(key, group)
        if elsewhere:
            hint = f"; it belongs in {elsewhere}"
        elif suggestion:
            hint = f"; did you mean {suggestion}?"
        fate = "kept verbatim in extraProperties" if kept else "not imported"
        message = f"unknown key {key} in [{group}]: DeepStream ignores it with only a log line ({fate}){hint}"
        self.at_entry(Severity.WARNING, RULE_UNKNOWN_KEY, message, entry)

    def read_group(
        self,
        group: KeyGroup,
        table: Mapping[str, KeySpec],
        model: type[BaseModel],
        extra: dict[str, str] | None = None,
    ) -> dict[str, object]:
        """Typed values of ``group`` in file order; unknown keys go to ``extra`` (or are dropped)."""
        values: dict[str, object] = {}
        for key, entry in group.effective().items():
            spec = spec_for(table, key)
            if spec is None:
                self.unknown(key, entry, group.name, table, kept=extra is not None)
                if extra is not None:
                    extra[key] = entry.raw
                continue
            value = self.typed(spec, entry)
            if value is None:
                continue
            values[key] = value
            self.check_model(model, key, value, entry, group.name)
        return values

    def deprecations(
        self, group: KeyGroup, table: Mapping[str, KeySpec], values: Mapping[str, object]
    ) -> None:
        for key, entry in group.effective().items():
            spec = spec_for(table, key)
            if spec is None or spec.deprecated is None or key == "is-classifier":
                continue
            message = f"{key} is deprecated: use {spec.deprecated}"
            if spec.deprecated in values:
                message += f" (DeepStream ignores {key} because {spec.deprecated} is set)"
            self.at_entry(Severity.WARNING, RULE_DEPRECATED_KEY, message, entry)

    # -- formats --------------------------------------------------------------------------------------------

    def nvinfer(self, gie: dict[str, Any]) -> None:
        prop = self.keyfile.group("property")
        assert prop is not None
        extra: dict[str, str] = {}
        properties = self.read_group(prop, NVINFER_PROPERTY_KEYS, PROPERTY_MODELS[GieFormat.NVINFER], extra)
        self.deprecations(prop, NVINFER_PROPERTY_KEYS, properties)
        properties = self.legacy_is_classifier(prop, properties)
        gie["role"] = "secondary" if properties.get("process-mode") == 2 else "primary"
        gie["file"] = keyfile_name(self.file)
        gie["properties"] = {k: _plain(v) for k, v in properties.items()}
        network_type = properties.get("network-type", 0)
        detector = network_type in (0, 3)
        num_classes = properties.get("num-detected-classes", 0)
        class_attrs: dict[str, tuple[int, dict[str, object]]] = {}
        for group in self.keyfile.groups:
            if group.name == "property":
                continue
            match = _CLASS_ATTRS_RE.match(group.name)
            if match is None:
                self.add(
                    Severity.WARNING,
                    RULE_IGNORED_GROUP,
                    f"nvinfer ignores group [{group.name}] (not imported)",
                    group.line,
                    group.column,
                )
                continue
            suffix = match.group(1)
            if suffix != "all" and not (suffix.isdigit() and suffix.isascii()):
                severity = Severity.ERROR if detector else Severity.WARNING
                self.add(
                    severity,
                    RULE_INVALID_GROUP,
                    f"[{group.name}]: class attributes go in [class-attrs-all] or [class-attrs-<class id>] "
                    "(not imported)",
                    group.line,
                    group.column,
                )
                continue
            if not detector:
                self.add(
                    Severity.WARNING,
                    RULE_IGNORED_GROUP,
                    f"nvinfer ignores [{group.name}] because network-type is {network_type} "
                    "(class attributes apply to detectors and instance segmentation only)",
                    group.line,
                    group.column,
                )
            elif suffix != "all" and isinstance(num_classes, int) and int(suffix) >= num_classes:
                self.add(
                    Severity.ERROR,
                    RULE_INVALID_GROUP,
                    f"[{group.name}] needs num-detected-classes greater than {int(suffix)} "
                    f"(it is {num_classes}): nvinfer fails to start",
                    group.line,
                    group.column,
                )
            attrs = self.read_group(group, NVINFER_CLASS_ATTRS_KEYS, ClassAttrs)
            self.deprecations(group, NVINFER_CLASS_ATTRS_KEYS, attrs)
            name = "all" if suffix == "all" else str(int(suffix))
            class_attrs[name] = (-1 if suffix == "all" else int(suffix), attrs)
        if class_attrs:
            ordered = sorted(class_attrs.items(), key=lambda item: item[1][0])
            gie["classAttrs"] = {
                name: {k: _plain(v) for k, v in attrs.items()} for name, (_, attrs) in ordered
            }
        if extra:
            gie["extraProperties"] = extra

    def legacy_is_classifier(self, prop: KeyGroup, properties: dict[str, object]) -> dict[str, object]:
        """As nvinfer reads it: is-classifier becomes network-type 1/0 unless network-type is in the file."""
        entry = prop.get("is-classifier")
        if entry is None:
            return properties
        value = properties.get("is-classifier")
        if prop.get("network-type") is not None:
            message = "is-classifier is deprecated and ignored because network-type is set (dropped)"
            self.at_entry(Severity.WARNING, RULE_DEPRECATED_KEY, message, entry)
            return {k: v for k, v in properties.items() if k != "is-classifier"}
        if value is None:
            return properties  # the getter failed: already an error
        network_type = 1 if value else 0
        message = (
            f"is-classifier is deprecated: imported as network-type {network_type}, as nvinfer converts it"
        )
        self.at_entry(Severity.WARNING, RULE_DEPRECATED_KEY, message, entry)
        converted: dict[str, object] = {}
        for key, item in properties.items():
            if key == "is-classifier":
                converted["network-type"] = network_type
            else:
                converted[key] = item
        return converted

    def preprocess(self, gie: dict[str, Any], fmt: GieFormat) -> None:
        prop = self.keyfile.group("property")
        assert prop is not None
        table = PROPERTY_TABLES[fmt]
        extra: dict[str, str] = {}
        properties = self.read_group(prop, table, PROPERTY_MODELS[fmt], extra)
        self.deprecations(prop, table, properties)
        gie["role"] = "preprocess"
        if fmt is not _ROLE_DEFAULT_FORMAT["preprocess"]:
            gie["format"] = fmt.value
        gie["file"] = keyfile_name(self.file)
        gie["properties"] = {k: _plain(v) for k, v in properties.items()}
        if fmt is GieFormat.NVDSPREPROCESS:
            missing = [key for key in PREPROCESS_MANDATORY_KEYS if prop.get(key) is None]
            if missing:
                self.add(
                    Severity.ERROR,
                    RULE_MISSING_KEY,
                    f"nvdspreprocess needs {', '.join(missing)} in [property] "
                    '("Some preprocess config properties not set")',
                    prop.line,
                    prop.column,
                )
        groups: list[tuple[int, dict[str, object]]] = []
        user_configs: dict[str, object] = {}
        on_frames = properties.get("process-on-frame", True) is not False
        seen: set[str] = set()  # nvdspreprocess remembers a group key once any group has set it
        for group in self.keyfile.groups:
            if group.name == "property":
                continue
            match = _PREPROCESS_GROUP_RE.match(group.name)
            if fmt is GieFormat.NVDSPREPROCESS and group.name == "user-configs":
                user_configs = self.user_configs(group)
            elif (
                fmt is GieFormat.NVDSPREPROCESS
                and match
                and match.group(1).isdigit()
                and match.group(1).isascii()
            ):
                values = self.read_group(group, PREPROCESS_GROUP_KEYS, PreprocessGroup)
                seen.update("roi-params-src" if ROI_PARAMS_RE.match(k) else k for k in group.effective())
                missing = [key for key in _group_needs(on_frames, values) if key not in seen]
                if missing:
                    mode = "process-on-frame=1 (frames)" if on_frames else "process-on-frame=0 (objects)"
                    self.add(
                        Severity.ERROR,
                        RULE_MISSING_KEY,
                        f"[{group.name}] needs {', '.join(k + ('-<id>' if k == 'roi-params-src' else '') for k in missing)} "
                        f'with {mode} (nvdspreprocess: "Some preprocess group config properties not set")',
                        group.line,
                        group.column,
                    )
                groups.append((int(match.group(1)), {k: _plain(v) for k, v in values.items()}))
            else:
                reader = "nvdspreprocess" if fmt is GieFormat.NVDSPREPROCESS else "the CCM align plugin"
                self.add(
                    Severity.WARNING,
                    RULE_IGNORED_GROUP,
                    f"{reader} ignores group [{group.name}] (not imported)",
                    group.line,
                    group.column,
                )
        if groups:
            gie["groups"] = [values for _, values in sorted(groups, key=lambda item: item[0])]
        if user_configs:
            gie["userConfigs"] = user_configs
        if extra:
            gie["extraProperties"] = extra

    def user_configs(self, group: KeyGroup) -> dict[str, object]:
        """``[user-configs]`` are strings to nvdspreprocess; numbers are imported as numbers."""
        out: dict[str, object] = {}
        for key, entry in group.effective().items():
            value = self.typed(KeySpec(key, ValueKind.STRING), entry)
            if not isinstance(value, str):
                continue
            if _INT_TEXT_RE.fullmatch(value):
                out[key] = int(value)
            elif _FLOAT_TEXT_RE.fullmatch(value):
                out[key] = float(value)
            else:
                out[key] = value
        return out


def _group_needs(on_frames: bool, values: Mapping[str, object]) -> tuple[str, ...]:
    """The ``[group-N]`` keys nvdspreprocess requires: on frames ``src-ids`` and ``process-on-roi`` (and ROIs when
    it is 1), on objects ``src-ids`` and ``process-on-all-objects`` (and ROIs when it is 0)."""
    if on_frames:
        return ("src-ids", "process-on-roi") + (("roi-params-src",) if values.get("process-on-roi") else ())
    return ("src-ids", "process-on-all-objects") + (
        ("roi-params-src",) if values.get("process-on-all-objects") is False else ()
    )


def _belongs_elsewhere(key: str, group: str) -> str | None:
    if group == "property" and key in NVINFER_CLASS_ATTRS_KEYS:
        return "[class-attrs-all] or [class-attrs-<class id>]"
    if group.startswith("class-attrs-") and key in NVINFER_PROPERTY_KEYS:
        return "[property]"
    if group == "property" and key in PREPROCESS_GROUP_KEYS and key not in PREPROCESS_PROPERTY_KEYS:
        return "[group-<N>] (for nvdspreprocess)"
    if group.startswith("group-") and key in PREPROCESS_PROPERTY_KEYS:
        return "[property]"
    return None


def import_keyfile(text: str, file: str, origin: PurePosixPath | None = None) -> ImportResult:
    """Import one nvinfer / nvdspreprocess / CCM-align key file as a GIE (see the module docstring). ``origin``:
    the file's directory in the container; relative paths are then resolved against it, as DeepStream opens them
    (the GIE is rendered in another directory), else kept as written."""
    if is_yaml_config(file):  # DS 6.2+: the same groups and keys, read as the key file they stand for
        try:
            text = yaml_to_keyfile(text, file)
        except YamlConfigError as exc:
            finding = Finding(
                severity=Severity.ERROR,
                rule=RULE_NOT_A_GIE,
                message=exc.message,
                location=Location(file=exc.file, line=exc.line, column=exc.column),
            )
            return ImportResult(gie={}, findings=[finding])
    keyfile = parse_keyfile(text, file)
    importer = _Importer(file=file, keyfile=keyfile)
    # Invalid escapes matter only where a getter reads the value: ``read_typed`` reports them per key.
    importer.findings.extend(f for f in keyfile.findings if f.rule != RULE_INVALID_ESCAPE)
    fmt, what = detect_format(keyfile)
    if fmt is None:
        first = keyfile.groups[0] if keyfile.groups else None
        importer.add(
            Severity.ERROR,
            RULE_NOT_A_GIE,
            f"{what}; nothing imported",
            first.line if first else 0,
            first.column if first else 0,
        )
        return ImportResult(gie={}, findings=sorted(importer.findings, key=Finding.sort_key))
    gie: dict[str, Any] = {"name": gie_name(file)}
    if fmt is GieFormat.NVINFER:
        importer.nvinfer(gie)
    else:
        importer.preprocess(gie, fmt)
    if origin is not None:
        table = PROPERTY_TABLES[fmt]
        for key, value in gie.get("properties", {}).items():
            spec = spec_for(table, key)
            if spec is not None and spec.is_path and isinstance(value, str):
                gie["properties"][key] = resolve_path(value, origin, spec, cwd=origin)
    ordered: dict[str, Any] = {key: gie[key] for key in _GIE_KEY_ORDER if key in gie}
    return ImportResult(gie=ordered, findings=sorted(importer.findings, key=Finding.sort_key), format=fmt)


_GIE_KEY_ORDER: Final = (
    "name",
    "role",
    "format",
    "file",
    "properties",
    "classAttrs",
    "groups",
    "userConfigs",
    "extraProperties",
)
