"""What one node must run: the compiled, rendered desired state the coordinator sends to that node's agent.

``NodeConfig`` is pure data (no generation: the store assigns generations); the ``AgentConfig`` Kafka message
(topic 210, :class:`dsfleet.schemas.wire.AgentConfig`) is a NodeConfig plus generation, schema version and send time.
Hashes (docs/architecture/decisions/0003-hashes.md): ``specHash`` over the container spec (a change → recreate),
``filesHash`` over the rendered files (a change → rewrite + restart), the instance ``configHash`` over both, ``paused`` and self-heal
(a container's spec-hash label carries ``specHash``: :mod:`dsfleet.schemas.labels`), the node ``configHash`` over its instances' names and hashes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    model_serializer,
)

from dsfleet.schemas.hashing import canonical_hash, sha256_hex

CONFIGS_DIR = "/workspace/configs"
ENGINE_DIR = "/workspace/build"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class MountSpec(_Wire):
    """``configs`` = the instance's rendered-files directory on the host (read-only), chosen by the agent."""

    type: Literal["configs", "volume", "bind"]
    source: str = ""
    target: str
    readOnly: bool = True


class EnvSecret(_Wire):
    secretRef: str
    key: str = "password"


class RestartPolicySpec(_Wire):
    name: Literal["unless-stopped", "on-failure", "no"]
    maximumRetryCount: int = 0


class HealthCheck(_Wire):
    """A container health check in seconds (Docker's, which the agent converts to nanoseconds). One model for the
    manifest's ``spec.healthCheck`` and the wire: the compiler passes it through as it is."""

    test: tuple[StrictStr, ...] = Field(min_length=1)
    intervalSeconds: Annotated[StrictInt, Field(ge=1)] = 15
    timeoutSeconds: Annotated[StrictInt, Field(ge=1)] = 5
    retries: Annotated[StrictInt, Field(ge=1)] = 3
    startPeriodSeconds: Annotated[StrictInt, Field(ge=0)] = 600
    """Long by default: TensorRT engines build slowly on a first start."""


class DeviceSpec(_Wire):
    """A host device passed into the container (Docker's ``--device``): a USB camera's V4L2 node."""

    pathOnHost: str
    pathInContainer: str
    cgroupPermissions: str = "rwm"


class ContainerSpec(_Wire):
    image: str
    command: tuple[str, ...] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    envSecrets: dict[str, EnvSecret] = Field(default_factory=dict)
    workingDir: str | None = None
    mounts: tuple[MountSpec, ...] = ()
    engineVolume: str
    """Named volume for TensorRT engines; the agent recreates it when the image changes."""
    labels: dict[str, str] = Field(default_factory=dict)
    restartPolicy: RestartPolicySpec
    gpus: tuple[str, ...] = ()
    """Host GPU ids for the device request (none when the host has no NVIDIA runtime)."""
    shmSize: str = "1g"
    networkMode: str = "host"
    ipc: str | None = None
    privileged: bool = False
    securityOpt: tuple[str, ...] = ()
    healthCheck: HealthCheck | None = None
    devices: tuple[DeviceSpec, ...] = ()
    """Host devices passed in (USB cameras). Left out of the serialised spec when empty, so the specs (and spec
    hashes) of instances without devices are what they were before the field existed."""

    @model_serializer(mode="wrap")
    def _without_empty_devices(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        if not data.get("devices"):
            data.pop("devices", None)
        return data


class RenderedFile(_Wire):
    path: str
    """Name inside the configs directory."""
    content: str
    secrets: tuple[str, ...] = ()
    """Secret refs whose placeholders the agent fills in (the file is then written 0600)."""

    @property
    def digest(self) -> str:
        return sha256_hex(self.content)


UpdateStrategy = Literal["CreateBeforeStop", "StartBeforeStop", "Recreate"]
"""How the agent replaces an instance's container when its spec changes (``DsInstance.spec.updateStrategy``):

- ``CreateBeforeStop`` (default): the new image is present and the new container created before the old one is
  stopped; the new one is started after; if it cannot be created the old one keeps running, if it cannot start
  the old one is started again. The two never run at once (no second RTSP session, no GPU memory overlap).
- ``StartBeforeStop``: the new container runs (and is healthy, when it has a health check) before the old one
  is stopped: no gap, but both ingest the cameras and hold GPU memory for a moment, and they must not compete for
  a host port (host networking).
- ``Recreate``: the old container is removed before the new one is created (for hosts that cannot hold both).
"""

DEFAULT_STRATEGY: UpdateStrategy = "CreateBeforeStop"


class InstanceConfig(_Wire):
    name: str
    layout: str
    paused: bool = False
    cameras: tuple[str, ...] = ()
    container: ContainerSpec
    files: tuple[RenderedFile, ...]
    specHash: str
    filesHash: str
    configHash: str
    selfHeal: bool = True
    """Heal drift on the host (the fleet's ``Policy.spec.sync.selfHeal``, overridable per instance)."""
    strategy: UpdateStrategy = DEFAULT_STRATEGY
    cameraSecrets: dict[str, str] = Field(default_factory=dict)
    """Camera name → the secret ref of its credentials (so the agent can name the camera a missing secret
    leaves out). Informational: what it describes is already in the files, whose hash covers it."""


class NodeConfig(_Wire):
    node: str
    configHash: str
    instances: tuple[InstanceConfig, ...] = ()
    prune: bool = True
    """Remove managed containers of instances that are no longer desired (``Policy.spec.sync.prune``)."""

    def instance(self, name: str) -> InstanceConfig | None:
        for inst in self.instances:
            if inst.name == name:
                return inst
        return None


def spec_hash(container: ContainerSpec) -> str:
    return canonical_hash(container.model_dump(mode="json", by_alias=True))


def files_hash(files: tuple[RenderedFile, ...]) -> str:
    return canonical_hash(sorted([f.path, f.digest, list(f.secrets)] for f in files))


def instance_hash(
    spec: str, files: str, paused: bool, self_heal: bool = True, strategy: UpdateStrategy = DEFAULT_STRATEGY
) -> str:
    """Non-default settings enter the hash only when set, so hashes of fleets that never set them stay."""
    value: dict[str, object] = {"spec": spec, "files": files, "paused": paused}
    if not self_heal:
        value["selfHeal"] = False
    if strategy != DEFAULT_STRATEGY:
        value["strategy"] = strategy
    return canonical_hash(value)


def node_hash(instances: tuple[InstanceConfig, ...], prune: bool = True) -> str:
    parts: list[object] = [[name, h] for name, h in sorted((i.name, i.configHash) for i in instances)]
    if not prune:
        parts.append({"prune": False})
    return canonical_hash(parts)


def build_instance(
    name: str,
    layout: str,
    paused: bool,
    cameras: tuple[str, ...],
    container: ContainerSpec,
    files: tuple[RenderedFile, ...],
    self_heal: bool = True,
    strategy: UpdateStrategy = DEFAULT_STRATEGY,
    camera_secrets: dict[str, str] | None = None,
) -> InstanceConfig:
    s, f = spec_hash(container), files_hash(files)
    return InstanceConfig(
        name=name,
        layout=layout,
        paused=paused,
        cameras=cameras,
        container=container,
        files=files,
        specHash=s,
        filesHash=f,
        configHash=instance_hash(s, f, paused, self_heal, strategy),
        selfHeal=self_heal,
        strategy=strategy,
        cameraSecrets=dict(camera_secrets or {}),
    )


def build_node(node: str, instances: list[InstanceConfig], prune: bool = True) -> NodeConfig:
    ordered = tuple(sorted(instances, key=lambda i: i.name))
    return NodeConfig(node=node, configHash=node_hash(ordered, prune), instances=ordered, prune=prune)
