"""DeepStream consistency rules (docs/manifests/policies.md), checked on each instance's effective GIEs.

Findings point at the key in the profile when the profile declared it, at the instance override when the
instance set it, and at the instance when the value was derived.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from dsfleet.policies.registry import (
    INSTANCE,
    PARTITIONED,
    Context,
    Hit,
    each_document,
    rule,
    same_finding,
    same_place,
)
from dsfleet.resolution.files import APP_CONFIG, dangling_paths
from dsfleet.resolution.instances import (
    CCM_ALIGN,
    CCM_GIE_FILES,
    PRECISIONS,
    EffectiveGie,
    ResolvedInstance,
)
from dsfleet.schemas.deepstream import PROPERTY_TABLES, GieFormat, ValueKind, spec_for
from dsfleet.schemas.findings import Note, SourceRef, plural
from dsfleet.schemas.manifests import DeepstreamAppInstanceSpec, GieRole, RuleSeverity
from dsfleet.schemas.streamapi import max_batch_size

E, W = RuleSeverity.ERROR, RuleSeverity.WARNING
ENGINE_RE = re.compile(r"_b(?P<batch>\d+)_(?P<dev>gpu|dla)(?P<id>\d+)_(?P<prec>fp32|int8|fp16|best)\.engine$")
CUSTOM_FUNCS = (
    "parse-bbox-func-name",
    "parse-classifier-func-name",
    "engine-create-func-name",
    "parse-bbox-instance-mask-func-name",
)
PREPROCESS_MANDATORY = (
    "processing-width", "processing-height", "network-input-order", "network-input-shape",
    "network-color-format", "tensor-data-type", "tensor-name", "custom-lib-path",
    "custom-tensor-preparation-function", "scaling-filter", "scaling-pool-memory-type",
)  # fmt: skip


def _ref(ctx: Context, res: ResolvedInstance, gie: EffectiveGie, *path: str | int) -> SourceRef | None:
    """Where a GIE's key was set: the instance's override, else the profile's key; a derived key (not written
    anywhere) points at the GIE's ``properties`` in the profile, where it can be set explicitly."""
    inst = res.instance
    key = path[1] if len(path) >= 2 and path[0] == "properties" else None
    if key is not None and key in inst.spec.overrides.get(gie.name, {}):
        return ctx.fleet.source("DsInstance", res.name, "spec", "overrides", gie.name, key)
    where = path if key is None or key in gie.declared else ("properties",)
    return ctx.fleet.source("InferenceProfile", inst.spec.profile or "", "spec", "gies", gie.index, *where)


def _nvinfer(res: ResolvedInstance) -> Iterator[EffectiveGie]:
    return (g for g in res.gies if g.format is GieFormat.NVINFER)


def _is_detector(gie: EffectiveGie) -> bool:
    return gie.properties.get("network-type", 0) in (0, 3) and "is-classifier" not in gie.properties


def _pfx(res: ResolvedInstance, gie: EffectiveGie) -> str:
    return f"instance {res.name!r}, GIE {gie.name!r}"


def _resolved(ctx: Context) -> list[ResolvedInstance]:
    return [ctx.resolved[name] for name in sorted(ctx.resolved)]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


# ---------------------------------------------------------------------------------------- resolution problems
def _problems(ctx: Context, rule_id: str) -> Iterator[Hit]:
    """Problems found while resolving instances; a profile's problem is reported once, not per instance."""
    seen: set[tuple[str, SourceRef | None]] = set()
    for res in _resolved(ctx):
        for p in res.problems:
            if p.rule != rule_id:
                continue
            if p.kind == "InferenceProfile":
                src = ctx.fleet.source("InferenceProfile", res.instance.spec.profile or "", *p.path)
            else:
                src = ctx.fleet.source("DsInstance", res.name, *p.path)
            if (p.message, src) in seen:
                continue
            seen.add((p.message, src))
            yield Hit(p.message, src)


@rule("override-unknown-gie", E, "instance overrides name GIEs of its profile", category="deepstream",
      scope=INSTANCE, once=same_finding)  # fmt: skip
def override_unknown_gie(ctx: Context) -> Iterator[Hit]:
    return _problems(ctx, "override-unknown-gie")


@rule("override-invalid", E, "instance overrides are valid keys and values for the GIE", category="deepstream",
      scope=INSTANCE, once=same_finding)  # fmt: skip
def override_invalid(ctx: Context) -> Iterator[Hit]:
    return _problems(ctx, "override-invalid")


@rule("batch-auto-secondary", E, "batch-size: auto only on primary GIEs", category="deepstream",
      scope=INSTANCE, once=same_finding)  # fmt: skip
def batch_auto_secondary(ctx: Context) -> Iterator[Hit]:
    return _problems(ctx, "batch-auto-secondary")


@rule("ccm-derived", E, "values the ccm layout derives can be derived", category="deepstream",
      scope=INSTANCE, once=same_finding)  # fmt: skip
def ccm_derived(ctx: Context) -> Iterator[Hit]:
    return _problems(ctx, "ccm-derived")


@rule("engine-auto-no-model", E, "model-engine-file: auto has a model file to name the engine after",
      category="deepstream", scope=INSTANCE, once=same_finding)  # fmt: skip
def engine_auto_no_model(ctx: Context) -> Iterator[Hit]:
    return _problems(ctx, "engine-auto-no-model")


# ---------------------------------------------------------------------------------------- layout
@rule(
    "ccm-layout-files",
    E,
    "a ccm instance's profile provides the five files the ccm app reads",
    category="deepstream",
    scope=INSTANCE,
)
def ccm_layout_files(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        if res.layout != "ccm" or res.instance.spec.profile not in ctx.fleet.profiles:
            continue
        files = {g.file: g for g in res.gies}
        missing = [f for f in CCM_GIE_FILES if f not in files]
        if missing:
            yield Hit(
                f"instance {res.name!r}: the ccm layout needs GIEs with file {', '.join(missing)}",
                ctx.fleet.source("DsInstance", res.name, "spec", "profile"),
            )
        align = files.get(CCM_ALIGN)
        if align is not None and align.format is not GieFormat.CCM_ALIGN:
            yield Hit(
                f"{CCM_ALIGN} is the ccm app's own align format: set format: ccm-align",
                _ref(ctx, res, align, "format"),
            )
        extra = [g.file for g in res.gies if g.file not in CCM_GIE_FILES]
        if extra:
            yield Hit(
                f"instance {res.name!r}: the ccm app does not read {', '.join(extra)}",
                ctx.fleet.source("DsInstance", res.name, "spec", "profile"),
            )


@rule(
    "layout-gie-format",
    E,
    "deepstream-app runs nvinfer and nvdspreprocess GIEs only",
    category="deepstream",
    scope=INSTANCE,
)
def layout_gie_format(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        if res.layout != "deepstream-app":
            continue
        for gie in res.gies:
            if gie.format is GieFormat.CCM_ALIGN:
                yield Hit(
                    f"{_pfx(res, gie)}: ccm-align runs only in the ccm layout", _ref(ctx, res, gie, "format")
                )
        primaries = [g for g in _nvinfer(res) if g.role is GieRole.PRIMARY]
        if len(primaries) > 1:
            yield Hit(
                f"instance {res.name!r}: deepstream-app has one [primary-gie]; the profile has {len(primaries)}",
                ctx.fleet.source("DsInstance", res.name, "spec", "profile"),
            )


# ---------------------------------------------------------------------------------------- gie ids
@rule(
    "gie-unique-id",
    E,
    "gie-unique-id is unique among an instance's GIEs",
    category="deepstream",
    scope=INSTANCE,
)
def gie_unique_id(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        first: dict[Any, EffectiveGie] = {}
        for gie in _nvinfer(res):
            gid = gie.properties.get("gie-unique-id")
            if gid is None:
                continue
            if gid in first:
                yield Hit(
                    f"{_pfx(res, gie)}: gie-unique-id {gid} is also used by GIE {first[gid].name!r}",
                    _ref(ctx, res, gie, "properties", "gie-unique-id"),
                    (
                        Note(
                            message="first used here",
                            source=_ref(ctx, res, first[gid], "properties", "gie-unique-id"),
                        ),
                    ),
                )
            else:
                first[gid] = gie


@rule(
    "operate-on-gie-id",
    E,
    "a secondary operates on the gie-unique-id of an existing detector",
    category="deepstream",
    scope=INSTANCE,
)
def operate_on_gie_id(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        detectors = {
            g.properties.get("gie-unique-id"): g
            for g in _nvinfer(res)
            if _is_detector(g) and g.role is GieRole.PRIMARY
        }
        others = {g.properties.get("gie-unique-id"): g for g in _nvinfer(res)}
        for gie in _nvinfer(res):
            if gie.role is not GieRole.SECONDARY:
                continue
            target = gie.properties.get("operate-on-gie-id")
            if target is None or target == -1:
                continue
            if target not in detectors and (target not in others or others[target] is gie):
                yield Hit(
                    f"{_pfx(res, gie)}: operate-on-gie-id {target} names no primary GIE of this instance "
                    "(nvinfer would silently never see objects)",
                    _ref(ctx, res, gie, "properties", "operate-on-gie-id"),
                )


@rule(
    "process-mode-role",
    E,
    "process-mode matches the GIE's role (1 primary, 2 secondary)",
    category="deepstream",
    scope=INSTANCE,
)
def process_mode_role(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in _nvinfer(res):
            mode = gie.properties.get("process-mode")
            want = 2 if gie.role is GieRole.SECONDARY else 1
            if mode is not None and mode != want:
                yield Hit(
                    f"{_pfx(res, gie)}: process-mode {mode} contradicts role {gie.role.value} (needs {want})",
                    _ref(ctx, res, gie, "properties", "process-mode"),
                )


@rule("gpu-id", E, "rendered gpu-id is 0: the container sees only its own GPU (set spec.gpu instead)",
      category="deepstream", scope=INSTANCE)  # fmt: skip
def gpu_id(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in res.gies:
            declared = gie.declared.get("gpu-id")
            if declared not in (None, 0):
                yield Hit(
                    f"{_pfx(res, gie)}: gpu-id {declared} does not exist inside the container, which sees one GPU "
                    "as 0; choose the host GPU with the instance's spec.gpu",
                    _ref(ctx, res, gie, "properties", "gpu-id"),
                )


# ---------------------------------------------------------------------------------------- class attrs / detectors
@rule(
    "class-attrs-range",
    E,
    "[class-attrs-N] needs N < num-detected-classes",
    category="deepstream",
    scope=INSTANCE,
)
def class_attrs_range(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in _nvinfer(res):
            classes = gie.properties.get("num-detected-classes", 0)
            for key in gie.class_attrs:
                if key != "all" and int(key) >= classes:
                    yield Hit(
                        f"{_pfx(res, gie)}: class-attrs-{key} needs num-detected-classes > {key} (it is {classes}); "
                        "nvinfer refuses to start",
                        _ref(ctx, res, gie, "classAttrs", key),
                    )


@rule(
    "class-attrs-ignored",
    W,
    "class attributes only apply to detectors (network-type 0 or 3)",
    category="deepstream",
    scope=INSTANCE,
)
def class_attrs_ignored(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in _nvinfer(res):
            if gie.class_attrs and not _is_detector(gie):
                yield Hit(
                    f"{_pfx(res, gie)}: classAttrs are ignored for this network-type",
                    _ref(ctx, res, gie, "classAttrs"),
                )


@rule(
    "detector-num-classes", W, "a detector sets num-detected-classes", category="deepstream", scope=INSTANCE
)
def detector_num_classes(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in _nvinfer(res):
            if (
                _is_detector(gie)
                and gie.role is GieRole.PRIMARY
                and "num-detected-classes" not in gie.properties
            ):
                yield Hit(
                    f"{_pfx(res, gie)}: a detector without num-detected-classes",
                    _ref(ctx, res, gie, "properties"),
                )


@rule(
    "cluster-mode-explicit",
    W,
    "detectors set cluster-mode (absent/0 silently becomes NMS)",
    category="deepstream",
    scope=INSTANCE,
)
def cluster_mode_explicit(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in _nvinfer(res):
            if _is_detector(gie) and gie.properties.get("cluster-mode", 0) == 0:
                yield Hit(
                    f"{_pfx(res, gie)}: cluster-mode unset or 0 becomes NMS (topk 20, IoU 0.5) in stock builds",
                    _ref(ctx, res, gie, "properties", "cluster-mode"),
                )


@rule(
    "instance-seg-cluster-mode",
    E,
    "instance segmentation needs cluster-mode 4",
    category="deepstream",
    scope=INSTANCE,
)
def instance_seg_cluster_mode(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in _nvinfer(res):
            p = gie.properties
            if (p.get("network-type") == 3 or p.get("output-instance-mask")) and p.get("cluster-mode") != 4:
                yield Hit(
                    f"{_pfx(res, gie)}: network-type 3 / output-instance-mask needs cluster-mode 4",
                    _ref(ctx, res, gie, "properties", "cluster-mode"),
                )


@rule(
    "custom-lib-required",
    E,
    "custom parser/engine function names need custom-lib-path",
    category="deepstream",
    scope=INSTANCE,
)
def custom_lib_required(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in _nvinfer(res):
            if "custom-lib-path" in gie.properties:
                continue
            for key in CUSTOM_FUNCS:
                if key in gie.properties:
                    yield Hit(
                        f"{_pfx(res, gie)}: {key} is ignored without custom-lib-path",
                        _ref(ctx, res, gie, "properties", key),
                    )


@rule(
    "symmetric-padding",
    W,
    "symmetric-padding only works with maintain-aspect-ratio",
    category="deepstream",
    scope=INSTANCE,
)
def symmetric_padding(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in res.gies:
            p = gie.properties
            if p.get("symmetric-padding") and not p.get("maintain-aspect-ratio"):
                yield Hit(
                    f"{_pfx(res, gie)}: symmetric-padding has no effect without maintain-aspect-ratio",
                    _ref(ctx, res, gie, "properties", "symmetric-padding"),
                )


@rule(
    "raw-output-tensor-meta",
    W,
    "network-type 100 without output-tensor-meta gives no output",
    category="deepstream",
    scope=INSTANCE,
)
def raw_output_tensor_meta(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in _nvinfer(res):
            if gie.properties.get("network-type") == 100 and not gie.properties.get("output-tensor-meta"):
                yield Hit(
                    f"{_pfx(res, gie)}: network-type 100 without output-tensor-meta: 1 produces no output",
                    _ref(ctx, res, gie, "properties", "network-type"),
                )


# ---------------------------------------------------------------------------------------- engines / precision
@rule(
    "int8-calibration",
    W,
    "INT8 needs int8-calib-file (or a prebuilt INT8 engine)",
    category="deepstream",
    scope=INSTANCE,
)
def int8_calibration(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in _nvinfer(res):
            p = gie.properties
            if p.get("network-mode") == 1 and "int8-calib-file" not in p:
                yield Hit(
                    f"{_pfx(res, gie)}: network-mode 1 (INT8) without int8-calib-file builds an FP16 engine",
                    _ref(ctx, res, gie, "properties", "network-mode"),
                )
            elif "int8-calib-file" in p and p.get("network-mode") != 1:
                yield Hit(
                    f"{_pfx(res, gie)}: int8-calib-file is unused unless network-mode is 1 (INT8)",
                    _ref(ctx, res, gie, "properties", "int8-calib-file"),
                )


@rule("engine-name", W, "model-engine-file's _b<batch>_gpu<id>_<precision> matches the settings",
      category="deepstream", scope=INSTANCE)  # fmt: skip
def engine_name(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in _nvinfer(res):
            p = gie.properties
            engine = p.get("model-engine-file")
            if not isinstance(engine, str):
                continue
            m = ENGINE_RE.search(engine)
            if m is None:
                continue
            batch = p.get("batch-size", 1)
            mode = p.get("network-mode", 0)
            expected_prec = PRECISIONS.get(mode, "fp32")
            if mode == 1 and "int8-calib-file" not in p:
                expected_prec = "fp16"
            problems = []
            if int(m["batch"]) != batch:
                problems.append(f"batch {m['batch']} but batch-size is {batch}")
            if m["dev"] == "gpu" and int(m["id"]) != 0:
                problems.append(f"gpu{m['id']} but the container's GPU is gpu0")
            if m["prec"] != expected_prec and not (m["prec"] == "int8" and mode == 1):
                problems.append(f"{m['prec']} but network-mode {mode} builds {expected_prec}")
            if problems:
                yield Hit(
                    f"{_pfx(res, gie)}: model-engine-file says "
                    + "; ".join(problems)
                    + " (nvinfer rebuilds the engine on every start)",
                    _ref(ctx, res, gie, "properties", "model-engine-file"),
                )


# ---------------------------------------------------------------------------------------- streammux
@rule("streammux-size", E, "streammux width and height are set", category="deepstream", scope=INSTANCE)
def streammux_size(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        mux = res.instance.spec.app.streammux
        for key in ("width", "height"):
            if getattr(mux, key) is None:
                yield Hit(
                    f"spec.app.streammux.{key}: required (DeepStream fails with 'Output width not set')",
                    ctx.fleet.source("DsInstance", res.name, "spec", "app"),
                )


@rule("streammux-batch", W, "streammux batch = number of cameras (max-batch-size with nvmultiurisrcbin) = primary "
      "batch-size", category="deepstream", scope=INSTANCE)  # fmt: skip
def streammux_batch(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        n = len(res.cameras)
        mux = res.streammux_batch
        spec = res.instance.spec
        source_list = spec.app.source_list if isinstance(spec, DeepstreamAppInstanceSpec) else None
        limit = max_batch_size(source_list.values_by_key()) if source_list is not None else None
        if limit is not None and mux != limit:
            yield Hit(
                f"instance {res.name!r}: streammux batch-size {mux} but source-list max-batch-size {limit} "
                "(nvmultiurisrcbin batches up to max-batch-size streams)",
                ctx.fleet.source("DsInstance", res.name, "spec", "app", "streammux"),
                instance=res.name,
            )
        elif limit is None and n and mux != n:
            yield Hit(
                f"instance {res.name!r}: streammux batch-size {mux} but {plural(n, 'camera')}",
                ctx.fleet.source("DsInstance", res.name, "spec", "app", "streammux"),
                instance=res.name,
            )
        for gie in _nvinfer(res):
            batch = gie.properties.get("batch-size", 1)
            if gie.role is GieRole.PRIMARY and batch != mux:
                yield Hit(
                    f"{_pfx(res, gie)}: primary batch-size {batch} differs from the streammux batch {mux} "
                    "(DeepStream runs it, wastefully)",
                    _ref(ctx, res, gie, "properties", "batch-size"),
                    instance=res.name,
                )


# ---------------------------------------------------------------------------------------- keys
@rule("extra-properties", W, "extraProperties are written verbatim, unchecked", category="deepstream",
      scope=PARTITIONED, partitions=each_document(("InferenceProfile",)))  # fmt: skip
def extra_properties(ctx: Context) -> Iterator[Hit]:
    for pname, profile in ctx.profiles:
        for i, gie in enumerate(profile.spec.gies):
            table = PROPERTY_TABLES[GieFormat(gie.format)]
            for key in gie.extraProperties:
                known = spec_for(table, key) is not None
                message = f"GIE {gie.name!r}: extraProperties.{key} is passed through unchecked"
                if known:
                    message += f" (dsfleet knows {key}: move it to properties to have it checked)"
                yield Hit(
                    message,
                    ctx.fleet.source("InferenceProfile", pname, "spec", "gies", i, "extraProperties", key),
                )


@rule("deprecated-key", W, "deprecated DeepStream keys", category="deepstream", scope=PARTITIONED,
      partitions=each_document(("InferenceProfile",)))  # fmt: skip
def deprecated_key(ctx: Context) -> Iterator[Hit]:
    for pname, profile in ctx.profiles:
        for i, gie in enumerate(profile.spec.gies):
            table = PROPERTY_TABLES[GieFormat(gie.format)]
            for key in gie.properties.model_dump(by_alias=True, exclude_none=True):
                spec = spec_for(table, key)
                if spec is not None and spec.deprecated:
                    yield Hit(
                        f"GIE {gie.name!r}: {key} is deprecated; use {spec.deprecated}",
                        ctx.fleet.source("InferenceProfile", pname, "spec", "gies", i, "properties", key),
                    )


_GATED = {
    fmt: {k: spec for k, spec in table.items() if spec.since or spec.choices_since}
    for fmt, table in PROPERTY_TABLES.items()
}
"""Per GIE format, the keys (or choices) newer than some DeepStream version (version-gated-key)."""


@rule(
    "version-gated-key",
    E,
    "keys newer than the instance's DeepStream version",
    category="deepstream",
    scope=INSTANCE,
)
def version_gated_key(ctx: Context) -> Iterator[Hit]:
    gated = _GATED
    for res in _resolved(ctx):
        have = _version(res.deepstream_version)
        for gie in res.gies:
            specs = gated[gie.format]
            for key in specs.keys() & gie.properties.keys():
                spec, value = specs[key], gie.properties[key]
                if spec.since and _version(spec.since) > have:
                    yield Hit(
                        f"{_pfx(res, gie)}: {key} needs DeepStream {spec.since}; this instance runs "
                        f"{res.deepstream_version}",
                        _ref(ctx, res, gie, "properties", key),
                    )
                value_since = (spec.choices_since or {}).get(value) if isinstance(value, int) else None
                if value_since and _version(value_since) > have:
                    meaning = (spec.choices or {}).get(value, str(value))
                    yield Hit(
                        f"{_pfx(res, gie)}: {key} {value} ({meaning}) needs DeepStream {value_since}; this instance "
                        f"runs {res.deepstream_version}",
                        _ref(ctx, res, gie, "properties", key),
                    )


@rule("keyfile-value", E, "string values GLib would corrupt or refuse (inline '#', trailing space, backslash)",
      category="deepstream", scope=PARTITIONED, partitions=each_document(("InferenceProfile",)))  # fmt: skip
def keyfile_value(ctx: Context) -> Iterator[Hit]:
    for pname, profile in ctx.profiles:
        for i, gie in enumerate(profile.spec.gies):
            table = PROPERTY_TABLES[GieFormat(gie.format)]
            sections = (
                ("properties", gie.properties.model_dump(by_alias=True, exclude_none=True)),
                ("extraProperties", dict(gie.extraProperties)),
            )
            for section, values in sections:
                for key, value in values.items():
                    problem = _value_pitfall(value, spec_for(table, key))
                    if problem:
                        yield Hit(
                            f"GIE {gie.name!r}: {key} {problem}",
                            ctx.fleet.source("InferenceProfile", pname, "spec", "gies", i, section, key),
                        )


def _value_pitfall(value: Any, spec: Any) -> str | None:
    for item in value if isinstance(value, tuple) else (value,):
        if not isinstance(item, str):
            continue
        problem = _string_pitfall(item)
        if problem is None and spec is not None and spec.kind in (ValueKind.DOUBLE, ValueKind.DOUBLE_LIST):
            problem = "is not a plain decimal number"
        if problem:
            return problem
    return None


def _string_pitfall(value: str) -> str | None:
    if re.search(r"\s#", value):
        return "contains an inline comment, which GLib keeps as part of the value"
    if value != value.rstrip():
        return "ends with whitespace, which GLib keeps as part of the value"
    if "\\" in value:
        return "contains a backslash (GLib accepts only \\s \\n \\t \\r \\\\ escapes; use / in paths)"
    return None


@rule(
    "preprocess-mandatory",
    E,
    "nvdspreprocess files set every mandatory [property] key",
    category="deepstream",
    scope=INSTANCE,
)
def preprocess_mandatory(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in res.gies:
            if gie.format is not GieFormat.NVDSPREPROCESS:
                continue
            missing = [k for k in PREPROCESS_MANDATORY if k not in gie.properties]
            if missing:
                yield Hit(
                    f"{_pfx(res, gie)}: nvdspreprocess needs {', '.join(missing)}",
                    _ref(ctx, res, gie, "properties"),
                )


@rule("preprocess-targets", W, "nvdspreprocess prepares tensors for GIEs that read them (input-tensor-from-meta)",
      category="deepstream", scope=INSTANCE)  # fmt: skip
def preprocess_targets(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        for gie in res.gies:
            if gie.format is not GieFormat.NVDSPREPROCESS:
                continue
            targets = gie.properties.get("target-unique-ids", ())
            consumers = {
                g.properties.get("gie-unique-id")
                for g in _nvinfer(res)
                if g.properties.get("input-tensor-from-meta")
            }
            for t in targets if isinstance(targets, tuple) else ():
                if t not in consumers:
                    yield Hit(
                        f"{_pfx(res, gie)}: target-unique-ids {t} is no GIE with input-tensor-from-meta: 1",
                        _ref(ctx, res, gie, "properties", "target-unique-ids"),
                    )


# ---------------------------------------------------------------------------------------- rendered files and paths
@rule("relative-path", W, "a relative path names a file dsfleet renders (or a mounted directory): DeepStream "
      "resolves it against /workspace/configs", category="deepstream", scope=INSTANCE,
      once=same_place)  # fmt: skip
def relative_path(ctx: Context) -> Iterator[Hit]:
    seen: set[tuple[str, str, tuple[str | int, ...]]] = set()
    for res in _resolved(ctx):
        for use in dangling_paths(ctx.fleet, res):
            if (use.kind, use.name, use.path) in seen:
                continue
            seen.add((use.kind, use.name, use.path))
            yield Hit(
                f"instance {res.name!r}: {use.key} {use.value!r} is relative and names no file dsfleet renders "
                "(DeepStream looks for it under /workspace/configs); give the path in the container, import the "
                "file into files, or mount its directory",
                ctx.fleet.source(use.kind, use.name, *use.path),
                instance=res.name,
            )


@rule(
    "files-names",
    E,
    "the files an instance renders have distinct names",
    category="deepstream",
    scope=INSTANCE,
)
def files_names(ctx: Context) -> Iterator[Hit]:
    for res in _resolved(ctx):
        spec = res.instance.spec
        taken: dict[str, str] = {APP_CONFIG: "the app config"} if res.layout == "deepstream-app" else {}
        for gie in res.gies:
            if gie.file in taken:
                yield Hit(
                    f"instance {res.name!r}: GIE {gie.name!r} renders {gie.file}, which is also {taken[gie.file]}",
                    _ref(ctx, res, gie, "file"),
                )
            taken.setdefault(gie.file, f"GIE {gie.name!r}'s file")
        profile = ctx.fleet.profiles.get(spec.profile) if spec.profile else None
        places: list[tuple[str, Any, str]] = []
        if profile is not None:
            places.extend((name, ctx.fleet.source("InferenceProfile", profile.name, "spec", "files", name), "the "
                           "profile's files") for name in profile.spec.files)  # fmt: skip
        app_files = getattr(spec, "app", None)
        for name in getattr(app_files, "files", {}) or {}:
            places.append(
                (name, ctx.fleet.source("DsInstance", res.name, "spec", "app", "files", name), "app.files")
            )
        for name, where, what in places:
            if name in taken:
                yield Hit(
                    f"instance {res.name!r}: {what} {name} is also {taken[name]}", where, instance=res.name
                )
            else:
                taken[name] = f"in {what}"
