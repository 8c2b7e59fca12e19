"""Fleet rules: names, references, placement, capacity, images, secrets (what an instance may ask of its host:
:mod:`dsfleet.policies.rules.security`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dsfleet.policies.registry import (
    INSTANCE,
    PARTITIONED,
    Context,
    Hit,
    Partitions,
    by_node,
    did_you_mean,
    each_document,
    rule,
)
from dsfleet.resolution.instances import image_allowed
from dsfleet.schemas.findings import INVALID_TARGET, Note, SourceRef, plural
from dsfleet.schemas.manifests import DeepstreamAppInstanceSpec, RuleSeverity, broker_connection_path
from dsfleet.schemas.placeholders import (
    connection_has_credentials,
    secret_env_name,
    text_has_credentials,
    url_has_credentials,
)

E, W, OFF = RuleSeverity.ERROR, RuleSeverity.WARNING, RuleSeverity.OFF


@rule(
    "unique-camera-id",
    E,
    "cameraId is unique across cameras (the app keys its metadata by it)",
    scope=PARTITIONED,
    partitions=Partitions(frozenset({"Camera"}), lambda _kind, _name, camera: (camera.spec.cameraId,)),
)
def unique_camera_id(ctx: Context) -> Iterator[Hit]:
    by_id: dict[str, list[str]] = {}
    for name, camera in ctx.cameras:
        by_id.setdefault(camera.spec.cameraId, []).append(name)
    reused = [names for names in by_id.values() if len(names) > 1]  # only these need the source order
    hits: list[tuple[tuple[str, int, str], Hit]] = []
    for names in reused:
        names.sort(key=lambda n: _order(ctx, "Camera", n))
        first = names[0]
        for name in names[1:]:
            hit = Hit(
                f"spec.cameraId: camera {name!r} reuses the cameraId of camera {first!r}",
                ctx.fleet.source("Camera", name, "spec", "cameraId"),
                (
                    Note(
                        message="first used here",
                        source=ctx.fleet.source("Camera", first, "spec", "cameraId"),
                    ),
                ),
            )
            hits.append((_order(ctx, "Camera", name), hit))
    for _order_key, hit in sorted(hits, key=lambda pair: pair[0]):
        yield hit


def _order(ctx: Context, kind: str, name: str) -> tuple[str, int, str]:
    src = ctx.fleet.sources.get((kind, name))
    return (src.file, src.document, name) if src else ("", 0, name)


@rule("instance-camera-exists", E, "every camera an instance names is defined", scope=INSTANCE)
def instance_camera_exists(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        for i, cam in enumerate(inst.spec.cameras):
            if cam not in ctx.fleet.cameras:
                yield Hit(
                    f"spec.cameras[{i}]: {_missing(ctx, 'Camera', cam)}",
                    ctx.fleet.source("DsInstance", name, "spec", "cameras", i),
                    _invalid_note(ctx, "Camera", cam),
                )


def _missing(ctx: Context, kind: str, name: str) -> str:
    """Why a reference fails: its target is defined in an invalid document, or not at all (with the nearest
    names)."""
    if ctx.fleet.defined_invalid(kind, name):
        return f"{kind} {name!r} {INVALID_TARGET}"
    known = {"Camera": ctx.fleet.cameras, "Node": ctx.fleet.nodes, "InferenceProfile": ctx.fleet.profiles}[
        kind
    ]
    return f"no {kind} named {name!r}" + did_you_mean(
        name, [*known, *(n for k, n in ctx.fleet.invalid if k == kind)]
    )


def _invalid_note(ctx: Context, kind: str, name: str) -> tuple[Note, ...]:
    src = ctx.fleet.invalid.get((kind, name))
    return (
        (Note(message=f"{kind} {name!r} is defined here", source=src.at("metadata", "name")),) if src else ()
    )


def _depends_on_invalid(ctx: Context, instance: str) -> bool:
    """True when what an instance resolves to depends on a document that failed its schema (its node, its
    profile, a camera it names, or any invalid camera when it selects cameras by label): findings about its
    image, cameras or batches would be consequences, not causes."""
    spec = ctx.fleet.instances[instance].spec
    fleet = ctx.fleet
    if spec.node is not None and fleet.defined_invalid("Node", spec.node):
        return True
    if spec.profile is not None and fleet.defined_invalid("InferenceProfile", spec.profile):
        return True
    if any(fleet.defined_invalid("Camera", c) for c in spec.cameras):
        return True
    return spec.cameraSelector is not None and any(k == "Camera" for k, _ in fleet.invalid)


@rule(
    "camera-single-instance",
    E,
    "a camera belongs to at most one instance",
    scope=PARTITIONED,
    partitions=Partitions(frozenset({"DsInstance"}), lambda _kind, _name, res: res.cameras),  # by camera
)
def camera_single_instance(ctx: Context) -> Iterator[Hit]:
    owner: dict[str, str] = {}
    for name in sorted(ctx.resolved, key=lambda n: _order(ctx, "DsInstance", n)):
        for cam in ctx.resolved[name].cameras:
            if ctx.part is not None and cam != ctx.part:
                continue  # another camera's part
            if cam in owner and owner[cam] != name:
                yield Hit(
                    f"camera {cam!r} is already used by instance {owner[cam]!r}",
                    _camera_ref(ctx, name, cam),
                    (Note(message="first used here", source=_camera_ref(ctx, owner[cam], cam)),),
                )
            else:
                owner.setdefault(cam, name)


def _camera_ref(ctx: Context, instance: str, camera: str) -> SourceRef | None:
    inst = ctx.fleet.instances[instance]
    if camera in inst.spec.cameras:
        return ctx.fleet.source("DsInstance", instance, "spec", "cameras", inst.spec.cameras.index(camera))
    return ctx.fleet.source("DsInstance", instance, "spec", "cameraSelector")


@rule("instance-node-exists", E, "an instance's node is defined", scope=INSTANCE)
def instance_node_exists(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        node = inst.spec.node
        if node is not None and node not in ctx.fleet.nodes:
            yield Hit(
                f"spec.node: {_missing(ctx, 'Node', node)}",
                ctx.fleet.source("DsInstance", name, "spec", "node"),
                _invalid_note(ctx, "Node", node),
            )


@rule("instance-unplaced", W, "an instance without a node is defined but runs nowhere", scope=INSTANCE)
def instance_unplaced(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        if inst.spec.node is None:
            yield Hit(
                f"instance {name!r} has no spec.node: it is defined but not placed (status unassigned)",
                ctx.fleet.source("DsInstance", name, "spec"),
            )


@rule("instance-gpu-exists", E, "an instance's gpu is one of its node's gpus", scope=INSTANCE)
def instance_gpu_exists(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        node = ctx.fleet.nodes.get(inst.spec.node or "")
        if node is not None and inst.spec.gpu not in node.spec.gpus:
            gpus = ", ".join(str(g) for g in node.spec.gpus)
            yield Hit(
                f"spec.gpu: node {node.name!r} has no GPU {inst.spec.gpu} (its gpus: {gpus})",
                ctx.fleet.source("DsInstance", name, "spec", "gpu"),
            )


@rule(
    "node-capacity",
    E,
    "the cameras placed on a node do not exceed its capacity",
    scope=PARTITIONED,
    partitions=by_node(("Node", "DsInstance")),
)
def node_capacity(ctx: Context) -> Iterator[Hit]:
    load: dict[str, int] = {}
    for res in ctx.resolved.values():
        placed = res.instance.spec.node
        if placed:
            load[placed] = load.get(placed, 0) + len(res.cameras)
    for name, node in ctx.nodes:
        cap = node.spec.capacity
        if cap is not None and load.get(name, 0) > cap:
            yield Hit(
                f"spec.capacity: node {name!r} is given {plural(load[name], 'camera')}, more than its capacity {cap}",
                ctx.fleet.source("Node", name, "spec", "capacity"),
            )


@rule("instance-profile-exists", E, "an instance's profile is defined", scope=INSTANCE)
def instance_profile_exists(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        if inst.spec.profile is not None and inst.spec.profile not in ctx.fleet.profiles:
            yield Hit(
                f"spec.profile: {_missing(ctx, 'InferenceProfile', inst.spec.profile)}",
                ctx.fleet.source("DsInstance", name, "spec", "profile"),
                _invalid_note(ctx, "InferenceProfile", inst.spec.profile),
            )
        elif inst.spec.profile is None:
            yield Hit(
                "spec.profile: an instance needs an InferenceProfile (its GIEs)",
                ctx.fleet.source("DsInstance", name, "spec"),
            )


@rule(
    "instance-no-cameras",
    W,
    "an instance with no cameras runs with batch size 1 and does nothing",
    scope=INSTANCE,
)
def instance_no_cameras(ctx: Context) -> Iterator[Hit]:
    for name, res in ctx.resolved_instances:
        if not res.cameras and not _depends_on_invalid(ctx, name):
            yield Hit(
                f"instance {name!r} has no cameras (batch-size: auto resolves to 1)",
                ctx.fleet.source("DsInstance", name, "spec"),
            )


@rule(
    "instance-image-missing", E, "every instance has an image (its own or its node's default)", scope=INSTANCE
)
def instance_image_missing(ctx: Context) -> Iterator[Hit]:
    for name, res in ctx.resolved_instances:
        node = res.instance.spec.node
        if node is not None and node not in ctx.fleet.nodes:
            continue  # the missing node is the finding (instance-node-exists)
        if res.image is None and not _depends_on_invalid(ctx, name):
            yield Hit(
                f"spec.image: no image, and Node {node!r} sets no default image (spec.image)"
                if node in ctx.fleet.nodes
                else "spec.image: no image (an instance without a node takes no default image)",
                ctx.fleet.source("DsInstance", name, "spec"),
            )


@rule(
    "allowed-images",
    OFF,
    "instance images match one of the allowed patterns (Policy allowedImages)",
    params={"patterns": []},
    scope=INSTANCE,
)
def allowed_images(ctx: Context) -> Iterator[Hit]:
    patterns = tuple(ctx.param("allowed-images", "patterns", []) or [])
    if not patterns:
        return
    for name, res in ctx.resolved_instances:
        if res.image is not None and not image_allowed(res.image, patterns):
            own = res.instance.spec.image is not None
            where = ("spec", "image") if own else ("spec",)
            origin = "" if own else f" (from Node {res.instance.spec.node}'s image)"
            yield Hit(
                f"image {res.image!r}{origin} is not in the Policy's allowedImages",
                ctx.fleet.source("DsInstance", name, *where),
            )


@rule(
    "max-cameras-per-instance",
    OFF,
    "an instance has at most this many cameras (Policy maxCamerasPerInstance)",
    params={"max": None},
    scope=INSTANCE,
)
def max_cameras_per_instance(ctx: Context) -> Iterator[Hit]:
    limit = ctx.param("max-cameras-per-instance", "max")
    if not isinstance(limit, int):
        return
    for name, res in ctx.resolved_instances:
        if len(res.cameras) > limit:
            yield Hit(
                f"instance {name!r} has {plural(len(res.cameras), 'camera')}, more than the Policy's limit {limit}",
                ctx.fleet.source("DsInstance", name, "spec", "cameras"),
            )


@rule(
    "camera-url-credentials",
    E,
    "URLs and connection strings carry no credentials (user-info or ?password=...); use credentials.secretRef "
    "/ env secretRef",
    relaxable=False,
    scope=PARTITIONED,
    partitions=each_document(("Camera", "DsInstance", "InferenceProfile")),
)
def camera_url_credentials(ctx: Context) -> Iterator[Hit]:
    fleet = ctx.fleet
    for name, cam in ctx.cameras:
        if not fleet.credential_free("Camera", name) and url_has_credentials(cam.spec.url):
            yield Hit(
                "spec.url: the URL carries credentials (not shown); move them to a secret and set "
                "spec.credentials.secretRef",
                ctx.fleet.source("Camera", name, "spec", "url"),
            )
    for name, inst in ctx.instances:
        if fleet.credential_free("DsInstance", name):
            continue
        spec = inst.spec
        for key, value in spec.env.items():
            if isinstance(value, str) and text_has_credentials(value):
                yield Hit(
                    f"spec.env.{key}: the value carries credentials (not shown); move them to a secret and "
                    "use {secretRef: ...}",
                    ctx.fleet.source("DsInstance", name, "spec", "env", key),
                )
        if not _may_carry_credentials(spec.model_dump_json(by_alias=True, exclude={"env"})):
            continue
        dumped = spec.model_dump(mode="json", by_alias=True, exclude={"env"})
        app_layout = isinstance(spec, DeepstreamAppInstanceSpec)
        for path, value in _strings(dumped, ()):
            if app_layout and broker_connection_path(path):
                continue  # one finding per value: broker-credentials reports it, at the same place
            leaf = str(path[-1]).lower()
            connection = "conn" in leaf or leaf.endswith("servers")
            if (connection and connection_has_credentials(value)) or text_has_credentials(value):
                yield Hit(
                    f"spec.{_dotted(path)}: carries credentials (not shown); move them to a secret and use an "
                    "env secretRef",
                    ctx.fleet.source("DsInstance", name, "spec", *path),
                )
    for name, prof in ctx.profiles:
        if fleet.credential_free("InferenceProfile", name):
            continue
        if not _may_carry_credentials(prof.spec.model_dump_json(by_alias=True)):
            continue
        for path, value in _strings(prof.spec.model_dump(mode="json", by_alias=True), ()):
            if text_has_credentials(value):
                yield Hit(
                    f"spec.{_dotted(path)}: carries credentials (not shown); move them to a secret",
                    ctx.fleet.source("InferenceProfile", name, "spec", *path),
                )


def _may_carry_credentials(dumped_json: str) -> bool:
    """False when no string of a dumped model can carry credentials: every form the checks of
    ``dsfleet.schemas.placeholders`` find has user-info (``@``) or a query string (``?``). Walking every string of every
    instance is most of this rule's time on a large fleet, and most specs have neither character."""
    return "@" in dumped_json or "?" in dumped_json


def _strings(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string leaf of a dumped model, with its path."""
    if isinstance(value, str):
        if path:
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@rule(
    "env-secret-literal",
    E,
    "an env variable whose name looks secret (*PASSWORD*, *TOKEN*, *SECRET*, *API_KEY*, ...) takes its value "
    "from a secretRef (a *_FILE variable may name a file by its absolute path)",
    scope=INSTANCE,
)
def env_secret_literal(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        for key, value in sorted(inst.spec.env.items()):
            if isinstance(value, str) and value and secret_env_name(key) and not _file_reference(key, value):
                yield Hit(
                    f"spec.env.{key}: a secret-looking variable with a literal value (not shown); move the "
                    "value to a secret and write {secretRef: NAME, key: KEY}",
                    ctx.fleet.source("DsInstance", name, "spec", "env", key),
                )


def _file_reference(key: str, value: str) -> bool:
    """``DB_PASSWORD_FILE: /run/secrets/db``: a variable that names the file holding a secret, not the secret."""
    return key.upper().endswith("_FILE") and value.startswith("/") and "\n" not in value


@rule(
    "camera-credentials-required",
    OFF,
    "RTSP cameras name their credentials by secretRef",
    scope=PARTITIONED,
    partitions=each_document(("Camera",)),
)
def camera_credentials_required(ctx: Context) -> Iterator[Hit]:
    for name, cam in ctx.cameras:
        if cam.spec.source_type.value == "rtsp" and cam.spec.credentials is None:
            yield Hit(
                "spec.credentials.secretRef: required by policy for RTSP cameras",
                ctx.fleet.source("Camera", name, "spec"),
            )
