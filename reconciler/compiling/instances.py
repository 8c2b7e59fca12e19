"""Compile a validated fleet into one NodeConfig per node (pure).

Every node gets a config, an empty one when nothing is placed on it, so its agent prunes. Unplaced instances
(no ``spec.node``) compile to nothing. Container specs: docs/manifests/index.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dsfleet.policies.engine import resolve_all
from dsfleet.policies.syncs import FleetSync, fleet_sync, instance_self_heal
from dsfleet.reconciler.compiling.rendering import render_instance
from dsfleet.resolution.files import APP_CONFIG
from dsfleet.resolution.instances import ResolvedInstance
from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.labels import instance_labels
from dsfleet.schemas.manifests import CameraType, CcmInstanceSpec, EnvSecretRef, RestartPolicy
from dsfleet.schemas.nodeconfigs import (
    CONFIGS_DIR,
    ENGINE_DIR,
    ContainerSpec,
    DeviceSpec,
    EnvSecret,
    InstanceConfig,
    MountSpec,
    NodeConfig,
    RestartPolicySpec,
    build_instance,
    build_node,
)

RESTART_POLICIES = {
    RestartPolicy.ALWAYS: RestartPolicySpec(name="unless-stopped"),
    RestartPolicy.ON_FAILURE: RestartPolicySpec(name="on-failure", maximumRetryCount=5),
    RestartPolicy.NEVER: RestartPolicySpec(name="no"),
}
DEFAULT_ENV = {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility,video"}
CONFIGS_MOUNT = MountSpec(type="configs", target=CONFIGS_DIR, readOnly=True)
"""The same for every instance (the models are frozen, so one is shared)."""


ARGUS_SOCKET = "/tmp/argus_socket"
"""Jetson's Argus camera daemon socket: a CSI camera is read through it (mounted into the container)."""


def camera_devices(
    fleet: Fleet | None, res: ResolvedInstance
) -> tuple[tuple[DeviceSpec, ...], tuple[MountSpec, ...]]:
    """The host devices a USB camera needs (its V4L2 node, at the same path) and the mount a CSI camera needs
    (the Argus socket), for the instance's cameras."""
    devices: dict[str, DeviceSpec] = {}
    mounts: list[MountSpec] = []
    for name in res.cameras:
        camera = fleet.cameras.get(name) if fleet is not None else None
        if camera is None:
            continue
        if camera.spec.source_type is CameraType.USB and camera.spec.device is not None:
            device = camera.spec.device
            devices.setdefault(device, DeviceSpec(pathOnHost=device, pathInContainer=device))
        elif camera.spec.source_type is CameraType.CSI and not mounts:
            mounts.append(MountSpec(type="bind", source=ARGUS_SOCKET, target=ARGUS_SOCKET, readOnly=False))
    return tuple(devices[d] for d in sorted(devices)), tuple(mounts)


def container_spec(res: ResolvedInstance, fleet: Fleet | None = None) -> ContainerSpec:
    spec = res.instance.spec
    name = res.name
    env = dict(DEFAULT_ENV)
    env_secrets: dict[str, EnvSecret] = {}
    for key, value in sorted(spec.env.items()):
        if isinstance(value, EnvSecretRef):
            env_secrets[key] = EnvSecret(secretRef=value.secretRef, key=value.key)
            env.pop(key, None)
        else:
            env[key] = value
    if isinstance(spec, CcmInstanceSpec):
        command = spec.command
    else:
        command = spec.command or ("deepstream-app", "-c", f"{CONFIGS_DIR}/{APP_CONFIG}")
    # The working directory is the (writable) engine volume: engine-create-func-name writes $CWD/model_b…, and
    # the ccm configs expect it at ../build/model_b… relative to /workspace/configs
    # (docs/architecture/decisions/0013-engine-volume-per-instance.md).
    working_dir = spec.workingDir or ENGINE_DIR
    mounts = [
        CONFIGS_MOUNT,
        MountSpec(type="volume", source=f"{name}_engine", target=ENGINE_DIR, readOnly=False),
    ]
    mounts.extend(
        MountSpec(type=m.type, source=m.source, target=m.target, readOnly=m.readOnly) for m in spec.mounts
    )
    devices, camera_mounts = camera_devices(fleet, res)
    mounts.extend(m for m in camera_mounts if m.target not in {existing.target for existing in mounts})
    return ContainerSpec(
        image=res.image or "",
        command=command,
        env=env,
        envSecrets=env_secrets,
        workingDir=working_dir,
        mounts=tuple(mounts),
        engineVolume=f"{name}_engine",
        labels=instance_labels(name, res.instance.metadata.labels),
        restartPolicy=RESTART_POLICIES[spec.restartPolicy],
        gpus=(str(spec.gpu),),
        shmSize=spec.shmSize,
        networkMode=spec.networkMode,
        ipc=spec.ipc,
        privileged=spec.privileged,
        securityOpt=spec.securityOpt,
        healthCheck=spec.healthCheck,
        devices=devices,
    )


def camera_secrets(fleet: Fleet, res: ResolvedInstance) -> dict[str, str]:
    """Camera → the secret ref of its credentials, for the instance's cameras that have some (so the agent can
    name the camera a missing secret leaves out)."""
    found: dict[str, str] = {}
    for name in res.cameras:
        camera = fleet.cameras.get(name)
        credentials = camera.spec.credentials if camera is not None else None
        if credentials is not None:
            found[name] = credentials.secretRef
    return found


def compile_instance(fleet: Fleet, res: ResolvedInstance, sync: FleetSync | None = None) -> InstanceConfig:
    """One instance's config; ``sync`` is the fleet's merged sync settings (merged here when not given)."""
    return build_instance(
        name=res.name,
        layout=res.layout,
        paused=res.instance.spec.paused,
        cameras=res.cameras,
        container=container_spec(res, fleet),
        files=render_instance(fleet, res),
        self_heal=instance_self_heal(sync or fleet_sync(fleet), res.instance),
        strategy=res.instance.spec.updateStrategy,
        camera_secrets=camera_secrets(fleet, res),
    )


def compile_fleet(
    fleet: Fleet,
    resolved: Mapping[str, ResolvedInstance] | None = None,
    compile_one: Callable[[Fleet, ResolvedInstance, FleetSync], InstanceConfig] = compile_instance,
    sync: FleetSync | None = None,
) -> dict[str, NodeConfig]:
    """Fleet → {node name: NodeConfig}. Call only on a fleet without errors. ``compile_one`` may be a caching
    version of :func:`compile_instance`; the Policies' sync settings are merged once (or given)."""
    resolved = resolved if resolved is not None else resolve_all(fleet)
    sync = sync or fleet_sync(fleet)
    per_node: dict[str, list[InstanceConfig]] = {name: [] for name in fleet.nodes}
    for name in sorted(resolved):
        res = resolved[name]
        node = res.instance.spec.node
        if node is None or node not in per_node:
            continue
        per_node[node].append(compile_one(fleet, res, sync))
    return {node: build_node(node, instances, sync.prune) for node, instances in sorted(per_node.items())}
