"""An instance's effective configuration: cameras, image, and GIEs after profile + overrides + derived values.

Pure. Both the policies (engine-name checks run after ``batch-size: auto`` is resolved) and the renderer use it,
so what is validated is exactly what is rendered. Problems found while resolving are returned as data.

Derived values (docs/architecture/decisions/0011-batch-size-auto.md, 0012-gpu-ids.md):
* ``batch-size: auto`` = number of the instance's cameras (0 cameras → 1; with nvmultiurisrcbin its
  ``max-batch-size``: :func:`dsfleet.resolution.tensorrt.batch_streams`) for streammux, primary GIEs and the
  first value of a preprocess ``network-input-shape``; ``auto`` on a secondary is an error.
* every rendered ``gpu-id`` is 0: the container sees only the instance's GPU.
* ``ccm`` layout: secondary batches default to 12 (MOT) and 32 (face); the align file's ``network-input-shape``
  is the face secondary's batch + its ``infer-dims``, its ``target-unique-ids`` the face secondary's
  ``gie-unique-id``, its ``input-object-max-width/height`` the streammux size; a GIE with
  ``engine-create-func-name`` and no ``model-engine-file`` gets ``../build/model_b<batch>_gpu0_<prec>.engine``.
* ``model-engine-file: auto`` or a ``{batch}``/``{gpu}``/``{precision}`` template (both layouts, after the
  values above): the engine name nvinfer builds for the resolved settings (:mod:`dsfleet.resolution.tensorrt`).
* ``deepstream-app`` layout: GIE ids chained (primary 1, secondaries next free ids operating on the primary);
  the app's own [primary-gie]/[secondary-gieN] groups set process-mode.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from dsfleet.resolution.tensorrt import MODEL_KEYS, batch_streams, engine_file, is_engine_template
from dsfleet.schemas.deepstream import (
    CcmAlignProperties,
    GieFormat,
    NvinferProperties,
    PreprocessProperties,
    keys_of,
)
from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.manifests import (
    CcmInstanceSpec,
    DeepstreamAppInstanceSpec,
    DsInstance,
    GieRole,
    InferenceProfile,
    NvinferGie,
    PreprocessGie,
    StreammuxSettings,
)

CCM_MOT_PRIMARY = "mot_primary.txt"
CCM_FACE_PRIMARY = "faceid_primary.txt"
CCM_MOT_SECONDARY = "mot_sgie.txt"
CCM_FACE_SECONDARY = "faceid_secondary.txt"
CCM_ALIGN = "faceid_align_config.txt"
CCM_GIE_FILES = (CCM_MOT_PRIMARY, CCM_FACE_PRIMARY, CCM_MOT_SECONDARY, CCM_FACE_SECONDARY, CCM_ALIGN)
CCM_SECONDARY_BATCH_DEFAULTS = {CCM_MOT_SECONDARY: 12, CCM_FACE_SECONDARY: 32}
DEFAULT_DEEPSTREAM_VERSION = "7.0"
PRECISIONS = {0: "fp32", 1: "int8", 2: "fp16", 3: "best"}

_PROPERTY_MODELS: dict[GieFormat, type[BaseModel]] = {
    GieFormat.NVINFER: NvinferProperties,
    GieFormat.NVDSPREPROCESS: PreprocessProperties,
    GieFormat.CCM_ALIGN: CcmAlignProperties,
}


@dataclass(frozen=True)
class Problem:
    """Something wrong found while resolving; ``path`` is inside the instance (or profile) document."""

    rule: str
    message: str
    kind: str = "DsInstance"
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class EffectiveGie:
    name: str
    role: GieRole
    format: GieFormat
    file: str
    index: int
    """Position in the profile (for locating findings)."""
    properties: dict[str, Any]
    declared: dict[str, Any]
    """The properties as written in the profile + overrides, before derived values (``auto`` unresolved)."""
    class_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: tuple[dict[str, Any], ...] = ()
    user_configs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedInstance:
    name: str
    instance: DsInstance
    cameras: tuple[str, ...]
    image: str | None
    deepstream_version: str
    streammux_batch: int
    gies: tuple[EffectiveGie, ...]
    problems: tuple[Problem, ...] = ()

    @property
    def layout(self) -> str:
        return self.instance.spec.layout


def selected_cameras(fleet: Fleet, match_labels: Mapping[str, str]) -> list[str]:
    """Names of the cameras carrying every label, sorted; through the fleet's label index (cost ∝ matches)."""
    index = fleet.camera_labels
    sets = sorted((index.get(item, frozenset()) for item in match_labels.items()), key=len)
    if not sets:
        return sorted(fleet.cameras)
    found = set(sets[0])
    for other in sets[1:]:
        found &= other
    return sorted(found)


def instance_cameras(fleet: Fleet, instance: DsInstance) -> tuple[str, ...]:
    """Explicit cameras in their order, then selector matches by name (no repeats)."""
    names = list(instance.spec.cameras)
    selector = instance.spec.cameraSelector
    if selector is not None:
        explicit = set(names)
        names.extend(n for n in selected_cameras(fleet, selector.matchLabels) if n not in explicit)
    return tuple(names)


def instance_image(fleet: Fleet, instance: DsInstance) -> str | None:
    if instance.spec.image:
        return instance.spec.image
    node = fleet.nodes.get(instance.spec.node) if instance.spec.node else None
    return node.spec.image if node is not None else None


def deepstream_version(profile: InferenceProfile | None, image: str | None) -> str:
    if profile is not None and profile.spec.deepstreamVersion:
        return profile.spec.deepstreamVersion
    if image and ":" in image.rsplit("/", 1)[-1]:
        tag = image.rsplit(":", 1)[-1]
        head = tag.split("-", 1)[0]
        parts = head.split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return f"{parts[0]}.{parts[1]}"
    return DEFAULT_DEEPSTREAM_VERSION


def resolve_batch(value: Any, cameras: int) -> Any:
    return max(cameras, 1) if value == "auto" else value


def _validated(
    fmt: GieFormat, props: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """Check merged properties with the format's model → (dump, [(key, message)])."""
    model = _PROPERTY_MODELS[fmt]
    try:
        return model.model_validate(dict(props)).model_dump(by_alias=True, exclude_none=True), []
    except ValidationError as exc:
        known = sorted(keys_of(model))
        errors: list[tuple[str, str]] = []
        for err in exc.errors(include_url=False, include_input=False):
            key = str(err["loc"][0]) if err["loc"] else ""
            if err["type"] == "extra_forbidden":
                hint = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
                msg = "unknown key" + (f"; did you mean {hint[0]}?" if hint else "")
            else:
                msg = err["msg"].removeprefix("Value error, ")
            errors.append((key, msg))
        return None, errors


@dataclass(frozen=True)
class GieValues:
    """A profile GIE's keys as plain dicts (dumped once per profile, shared by every instance using it)."""

    declared: dict[str, Any]
    class_attrs: dict[str, dict[str, Any]]
    groups: tuple[dict[str, Any], ...]
    user_configs: dict[str, Any]


def profile_values(profile: InferenceProfile) -> tuple[GieValues, ...]:
    out = []
    for gie in profile.spec.gies:
        class_attrs: dict[str, dict[str, Any]] = {}
        groups: tuple[dict[str, Any], ...] = ()
        user_configs: dict[str, Any] = {}
        if isinstance(gie, NvinferGie):
            class_attrs = {
                k: v.model_dump(by_alias=True, exclude_none=True) for k, v in gie.classAttrs.items()
            }
        elif isinstance(gie, PreprocessGie):
            groups = tuple(g.model_dump(by_alias=True, exclude_none=True) for g in gie.groups)
            user_configs = dict(gie.userConfigs)
        out.append(
            GieValues(
                gie.properties.model_dump(by_alias=True, exclude_none=True), class_attrs, groups, user_configs
            )
        )
    return tuple(out)


def all_profile_values(fleet: Fleet) -> dict[str, tuple[GieValues, ...]]:
    return {name: profile_values(profile) for name, profile in fleet.profiles.items()}


GieMemo = dict[tuple[str, int], tuple[tuple[EffectiveGie, ...], tuple[Problem, ...]]]
"""(profile, number of cameras) → the GIEs (and their problems) of a deepstream-app instance without overrides:
such instances of one fleet that share a profile and a camera count resolve to the same GIEs."""


def resolve_instance(
    fleet: Fleet,
    instance: DsInstance,
    values: Mapping[str, tuple[GieValues, ...]] | None = None,
    memo: GieMemo | None = None,
) -> ResolvedInstance:
    """``values``: the fleet's ``all_profile_values`` when resolving many instances (computed once); ``memo``:
    one :data:`GieMemo` for the instances of one fleet (never across fleets)."""
    spec = instance.spec
    name = instance.metadata.name
    problems: list[Problem] = []
    cameras = instance_cameras(fleet, instance)
    n = len(cameras)
    image = instance_image(fleet, instance)
    profile = fleet.profiles.get(spec.profile) if spec.profile else None
    version = deepstream_version(profile, image)
    streammux: StreammuxSettings = spec.app.streammux
    source_list = spec.app.source_list if isinstance(spec, DeepstreamAppInstanceSpec) else None
    n = batch_streams(n, source_list.values_by_key() if source_list is not None else None)
    mux_batch = int(resolve_batch(streammux.batch_size, n))
    memo_key = None
    if (
        memo is not None
        and profile is not None
        and not spec.overrides
        and not isinstance(spec, CcmInstanceSpec)
    ):
        memo_key = (profile.metadata.name, n)
    hit = memo.get(memo_key) if memo is not None and memo_key is not None else None
    if hit is not None:
        gies, shared = hit
        problems.extend(shared)
    else:
        gies = _resolve_gies(spec, profile, values, n, problems)
        if memo is not None and memo_key is not None:
            memo[memo_key] = (gies, tuple(problems))  # no overrides: every problem so far is the profile's
    return ResolvedInstance(
        name=name,
        instance=instance,
        cameras=cameras,
        image=image,
        deepstream_version=version,
        streammux_batch=mux_batch,
        gies=gies,
        problems=tuple(problems),
    )


def _resolve_gies(
    spec: CcmInstanceSpec | DeepstreamAppInstanceSpec,
    profile: InferenceProfile | None,
    values: Mapping[str, tuple[GieValues, ...]] | None,
    n: int,
    problems: list[Problem],
) -> tuple[EffectiveGie, ...]:
    """The profile's GIEs with the instance's overrides and the derived values (batch size, ids, engine)."""
    gies: list[EffectiveGie] = []
    if profile is not None:
        known = {g.name for g in profile.spec.gies}
        for gie_name in spec.overrides:
            if gie_name not in known:
                problems.append(
                    Problem(
                        "override-unknown-gie",
                        f"overrides: profile {profile.metadata.name!r} has no GIE named {gie_name!r}"
                        + "".join(
                            f"; did you mean {m!r}?"
                            for m in difflib.get_close_matches(gie_name, sorted(known), 1)
                        ),
                        path=("spec", "overrides", gie_name),
                    )
                )
        dumped = values.get(profile.metadata.name) if values is not None else None
        if dumped is None:
            dumped = profile_values(profile)
        for index, gie in enumerate(profile.spec.gies):
            gv = dumped[index]
            declared = gv.declared
            override = spec.overrides.get(gie.name, {})
            if override:
                merged = dict(declared)
                for key, value in override.items():
                    if value is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                checked, errors = _validated(GieFormat(gie.format), merged)
                for key, message in errors:
                    problems.append(
                        Problem(
                            "override-invalid",
                            f"spec.overrides.{gie.name}.{key}: {message}",
                            path=("spec", "overrides", gie.name, key),
                        )
                    )
                if checked is not None:
                    declared = checked
            gies.append(
                EffectiveGie(
                    name=gie.name,
                    role=gie.role,
                    format=GieFormat(gie.format),
                    file=gie.file,
                    index=index,
                    properties=dict(declared),
                    declared=dict(declared),
                    class_attrs=gv.class_attrs,
                    groups=gv.groups,
                    user_configs=gv.user_configs,
                    extra=dict(gie.extraProperties),
                )
            )

    gies = [_common_derived(g, n, problems) for g in gies]
    gies = _ccm_derived(gies, spec, problems) if isinstance(spec, CcmInstanceSpec) else _chain_ids(gies)
    gies = [_engine_derived(g, problems) for g in gies]
    return tuple(gies)


def _replace(gie: EffectiveGie, **props: Any) -> EffectiveGie:
    merged = dict(gie.properties)
    merged.update(props)
    return _replace_all(gie, merged)


def _replace_all(gie: EffectiveGie, merged: dict[str, Any]) -> EffectiveGie:
    return EffectiveGie(
        name=gie.name,
        role=gie.role,
        format=gie.format,
        file=gie.file,
        index=gie.index,
        properties=merged,
        declared=gie.declared,
        class_attrs=gie.class_attrs,
        groups=gie.groups,
        user_configs=gie.user_configs,
        extra=gie.extra,
    )


def _common_derived(gie: EffectiveGie, cameras: int, problems: list[Problem]) -> EffectiveGie:
    props = gie.properties
    updates: dict[str, Any] = {}
    if props.get("batch-size") == "auto":
        if gie.role is GieRole.SECONDARY:
            problems.append(
                Problem(
                    "batch-auto-secondary",
                    f"GIE {gie.name!r}: batch-size: auto is only for primary GIEs (a secondary batches objects)",
                    kind="InferenceProfile",
                    path=("spec", "gies", gie.index, "properties", "batch-size"),
                )
            )
            updates["batch-size"] = 1
        else:
            updates["batch-size"] = max(cameras, 1)
    shape = props.get("network-input-shape")
    if isinstance(shape, tuple) and shape and shape[0] == "auto":
        updates["network-input-shape"] = (max(cameras, 1), *shape[1:])
    if "gpu-id" in props:
        updates["gpu-id"] = 0  # the container sees its one GPU as 0 (the host id goes in the device request)
    return _replace(gie, **updates) if updates else gie


def _engine_derived(gie: EffectiveGie, problems: list[Problem]) -> EffectiveGie:
    """``model-engine-file: auto`` / a template → the engine name nvinfer builds for the resolved settings."""
    value = gie.properties.get("model-engine-file")
    if gie.format is not GieFormat.NVINFER or not is_engine_template(value):
        return gie
    assert isinstance(value, str)
    name = engine_file(value, gie.properties)
    if name is None:
        problems.append(
            Problem(
                "engine-auto-no-model",
                f"GIE {gie.name!r}: model-engine-file: auto needs a model file to name the engine after "
                f"({', '.join(MODEL_KEYS)}) or engine-create-func-name",
                kind="InferenceProfile",
                path=("spec", "gies", gie.index, "properties", "model-engine-file"),
            )
        )
        merged = dict(gie.properties)
        merged.pop("model-engine-file")
        return _replace_all(gie, merged)
    return _replace(gie, **{"model-engine-file": name})


def _chain_ids(gies: list[EffectiveGie]) -> list[EffectiveGie]:
    """deepstream-app: every nvinfer GIE gets a unique id; secondaries operate on the primary by default."""
    used = {g.properties["gie-unique-id"] for g in gies if "gie-unique-id" in g.properties}
    next_id = 1
    out: list[EffectiveGie] = []
    primary_id: int | None = None
    for gie in gies:
        if gie.format is not GieFormat.NVINFER:
            out.append(gie)
            continue
        updates: dict[str, Any] = {}
        gid = gie.properties.get("gie-unique-id")
        if gid is None:
            while next_id in used:
                next_id += 1
            gid = next_id
            used.add(gid)
            updates["gie-unique-id"] = gid
        if gie.role is GieRole.PRIMARY and primary_id is None:
            primary_id = gid
        if (
            gie.role is GieRole.SECONDARY
            and "operate-on-gie-id" not in gie.properties
            and primary_id is not None
        ):
            updates["operate-on-gie-id"] = primary_id
        out.append(_replace(gie, **updates) if updates else gie)
    return out


def engine_name(batch: int, network_mode: int) -> str:
    return f"model_b{batch}_gpu0_{PRECISIONS.get(network_mode, 'fp32')}.engine"


def _ccm_derived(
    gies: list[EffectiveGie], spec: CcmInstanceSpec, problems: list[Problem]
) -> list[EffectiveGie]:
    out: list[EffectiveGie] = []
    for gie in gies:
        updates: dict[str, Any] = {}
        if gie.file in CCM_SECONDARY_BATCH_DEFAULTS and "batch-size" not in gie.properties:
            updates["batch-size"] = CCM_SECONDARY_BATCH_DEFAULTS[gie.file]
        props = {**gie.properties, **updates}
        if (
            gie.format is GieFormat.NVINFER
            and "engine-create-func-name" in props
            and "model-engine-file" not in props
        ):
            updates["model-engine-file"] = "../build/" + engine_name(
                int(props.get("batch-size", 1)), int(props.get("network-mode", 0))
            )
        out.append(_replace(gie, **updates) if updates else gie)
    by_file = {g.file: g for g in out}
    align = by_file.get(CCM_ALIGN)
    face2 = by_file.get(CCM_FACE_SECONDARY)
    if align is not None and align.format is GieFormat.CCM_ALIGN:
        updates = {}
        if face2 is not None:
            dims = face2.properties.get("infer-dims")
            batch = face2.properties.get("batch-size", CCM_SECONDARY_BATCH_DEFAULTS[CCM_FACE_SECONDARY])
            if "network-input-shape" not in align.declared:
                if isinstance(dims, tuple) and len(dims) == 3:
                    updates["network-input-shape"] = (batch, *dims)
                else:
                    problems.append(
                        Problem(
                            "ccm-derived",
                            f"{CCM_ALIGN}: network-input-shape is derived from {CCM_FACE_SECONDARY}'s infer-dims, "
                            "which is not set",
                            kind="InferenceProfile",
                            path=("spec", "gies", face2.index, "properties"),
                        )
                    )
            gid = face2.properties.get("gie-unique-id")
            if "target-unique-ids" not in align.declared and gid is not None:
                updates["target-unique-ids"] = (gid,)
        mux = spec.app.streammux
        if "input-object-max-width" not in align.declared and mux.width is not None:
            updates["input-object-max-width"] = mux.width
        if "input-object-max-height" not in align.declared and mux.height is not None:
            updates["input-object-max-height"] = mux.height
        out = [_replace(g, **updates) if g is align and updates else g for g in out]
    return out


def image_allowed(image: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(image, p) for p in patterns)
