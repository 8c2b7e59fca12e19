"""Compile a validated fleet into one NodeConfig per node (pure).

Every node gets a config, an empty one when nothing is placed on it, so its agent prunes. Unplaced instances
(no ``spec.node``) compile to nothing. Container specs: docs/manifests/index.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dsfleet.policies.engine import resolve_all
from dsfleet.policies.syncs import FleetSync, fleet_sync, instance_self_heal
from dsfleet.reconciler.compiling.rendering import APP_CONFIG, render_instance
from dsfleet.resolution.instances import ResolvedInstance
from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.labels import instance_labels
from dsfleet.schemas.manifests import CcmInstanceSpec, EnvSecretRef, RestartPolicy
from dsfleet.schemas.nodeconfigs import (
    CONFIGS_DIR,
    ENGINE_DIR,
    ContainerSpec,
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


def container_spec(res: ResolvedInstance) -> ContainerSpec:
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
    )


def compile_instance(fleet: Fleet, res: ResolvedInstance, sync: FleetSync | None = None) -> InstanceConfig:
    """One instance's config; ``sync`` is the fleet's merged sync settings (merged here when not given)."""
    return build_instance(
        name=res.name,
        layout=res.layout,
        paused=res.instance.spec.paused,
        cameras=res.cameras,
        container=container_spec(res),
        files=render_instance(fleet, res),
        self_heal=instance_self_heal(sync or fleet_sync(fleet), res.instance),
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
