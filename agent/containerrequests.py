"""What the runtime is asked to create for an instance (pure): the container's name, image, labels, mounts (the
rendered files and the secret env files read-only), restart policy, health check and devices, from its
:class:`~dsfleet.schemas.nodeconfigs.ContainerSpec`. No secret value is put in the environment: a secret variable
``X`` becomes ``X_FILE=/run/secrets/X``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from dsfleet.agent.containers import container_labels, container_name
from dsfleet.schemas.hostaccess import SECRET_FILE_SUFFIX, SECRETS_TARGET
from dsfleet.schemas.nodeconfigs import InstanceConfig

__all__ = ["ContainerRequest", "MountRequest", "container_request", "secret_env_files"]


@dataclass(frozen=True)
class MountRequest:
    type: Literal["bind", "volume"]
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerRequest:
    """Everything the runtime needs to create one container. ``env`` holds no secret value (secret variables come
    as files), but it is hidden from repr all the same: a literal value may still be sensitive."""

    name: str
    image: str
    command: tuple[str, ...] | None
    env: Mapping[str, str] = field(repr=False)
    labels: Mapping[str, str]
    mounts: tuple[MountRequest, ...]
    restart_policy: Mapping[str, str | int]
    network_mode: str
    shm_size: str
    working_dir: str | None
    ipc_mode: str | None
    privileged: bool
    security_opt: tuple[str, ...]
    gpu_ids: tuple[str, ...]
    """Device request ids; empty when the host has no NVIDIA runtime."""
    healthcheck: Mapping[str, object] | None
    devices: tuple[str, ...] = ()
    """Host devices passed in, as Docker's ``--device`` takes them (``/dev/video0:/dev/video0:rwm``)."""


_NS = 1_000_000_000


def secret_env_files(inst: InstanceConfig) -> dict[str, str]:
    """The variables that point a container at its secret env files: ``{"DB_PASSWORD_FILE":
    "/run/secrets/DB_PASSWORD"}`` for ``envSecrets`` ``DB_PASSWORD``."""
    return {var + SECRET_FILE_SUFFIX: f"{SECRETS_TARGET}/{var}" for var in sorted(inst.container.envSecrets)}


def container_request(
    inst: InstanceConfig,
    node: str,
    generation: int | None,
    configs_dir: str,
    secrets_dir: str | None,
    *,
    nvidia: bool,
    name: str | None = None,
    engine_volume: str | None = None,
) -> ContainerRequest:
    """The container of ``inst``; ``configs_dir`` is the host directory of its rendered files (bind-mounted
    read-only), ``secrets_dir`` the host directory of its secret env files (one per ``envSecrets`` variable,
    written by the agent; bind-mounted read-only at ``/run/secrets``, each variable ``X`` becoming
    ``X_FILE=/run/secrets/X``: no secret value is in the container's environment, so ``docker inspect`` shows
    none). ``name``: the container's name (default ``dsfleet-<instance>``; a replacement is created as
    :func:`next_name`); ``engine_volume``: the volume the spec's ``engineVolume`` mount is pointed at
    (:func:`engine_volume_for`; default: the spec's own name)."""
    spec = inst.container
    if spec.envSecrets and secrets_dir is None:
        raise ValueError(f"instance {inst.name!r} has secret env variables: their directory is needed")
    mounts: list[MountRequest] = []
    for m in spec.mounts:
        if m.type == "configs":
            mounts.append(MountRequest("bind", configs_dir, m.target, True))
        elif m.type == "volume" and m.source == spec.engineVolume and engine_volume:
            mounts.append(MountRequest("volume", engine_volume, m.target, m.readOnly))
        else:
            mounts.append(MountRequest(m.type, m.source, m.target, m.readOnly))
    if spec.envSecrets and secrets_dir is not None:
        mounts.append(MountRequest("bind", secrets_dir, SECRETS_TARGET, True))
    policy: dict[str, str | int] = {"Name": spec.restartPolicy.name}
    if spec.restartPolicy.name == "on-failure" and spec.restartPolicy.maximumRetryCount:
        policy["MaximumRetryCount"] = spec.restartPolicy.maximumRetryCount
    health: dict[str, object] | None = None
    if spec.healthCheck is not None:
        h = spec.healthCheck
        health = {
            "test": list(h.test),
            "interval": h.intervalSeconds * _NS,
            "timeout": h.timeoutSeconds * _NS,
            "retries": h.retries,
            "start_period": h.startPeriodSeconds * _NS,
        }
    return ContainerRequest(
        name=name or container_name(inst.name),
        image=spec.image,
        command=spec.command,
        env={**spec.env, **secret_env_files(inst)},
        labels=container_labels(inst, node, generation),
        mounts=tuple(mounts),
        restart_policy=policy,
        network_mode=spec.networkMode,
        shm_size=spec.shmSize,
        working_dir=spec.workingDir,
        ipc_mode=spec.ipc,
        privileged=spec.privileged,
        security_opt=spec.securityOpt,
        gpu_ids=spec.gpus if nvidia else (),
        healthcheck=health,
        devices=tuple(f"{d.pathOnHost}:{d.pathInContainer}:{d.cgroupPermissions}" for d in spec.devices),
    )
