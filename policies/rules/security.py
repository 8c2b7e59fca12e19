"""Security rules: what an instance may ask of its host (privileges, host paths, devices, security options,
namespaces) and where secret placeholders may appear.

These are the repository's side of a two-sided check: each GPU host also refuses, on its own, what its
``[agent.admission]`` settings do not allow (docs/operating/agent.md). The defaults here are on: errors for what
hands the host over (privileged, a bind of ``/`` or of a container engine's socket, a confinement switched off),
warnings for what widens the container's reach (system paths, host devices, host IPC, host networking).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dsfleet.policies.registry import INSTANCE, PARTITIONED, Context, Hit, each_document, rule
from dsfleet.schemas.hostaccess import (
    SECRET_FILE_SUFFIX,
    SECRETS_TARGET,
    UNCONFINED_OPTIONS,
    engine_path,
    normal_path,
    under,
)
from dsfleet.schemas.manifests import CameraType, EnvSecretRef, RuleSeverity
from dsfleet.schemas.placeholders import ANY_PLACEHOLDER_RE

E, W = RuleSeverity.ERROR, RuleSeverity.WARNING
SECURITY = "security"

SENSITIVE_PATHS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/home", "/usr", "/bin", "/sbin", "/lib",
                   "/var/log", "/var/lib")  # fmt: skip
"""Host system paths a bind mount of which gives the container more than its app needs (rule
``host-mount-sensitive``; its ``paths`` parameter replaces the list)."""


def _binds(ctx: Context) -> Iterator[tuple[str, int, str, bool]]:
    """Every bind mount of every instance: instance, index in ``spec.mounts``, normalised source, read-only."""
    for name, inst in ctx.instances:
        for i, mount in enumerate(inst.spec.mounts):
            if mount.type == "bind":
                yield name, i, normal_path(mount.source), mount.readOnly


@rule(
    "forbid-privileged",
    E,
    "no instance runs privileged (Policy forbidPrivileged; agents refuse it too unless their [agent.admission] "
    "privileged allows it)",
    category=SECURITY,
    scope=INSTANCE,
)
def forbid_privileged(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        if inst.spec.privileged:
            yield Hit(
                "spec.privileged: a privileged container has every device and capability of the host; agents "
                "refuse it unless their [agent.admission] privileged allows it",
                ctx.fleet.source("DsInstance", name, "spec", "privileged"),
            )


@rule(
    "host-mount-forbidden",
    E,
    "no bind mount of the host's root or of a container engine's socket or state (docker.sock, /var/lib/docker, "
    "/run/containerd, or a directory above one): agents refuse them whatever their settings",
    category=SECURITY,
    scope=INSTANCE,
)
def host_mount_forbidden(ctx: Context) -> Iterator[Hit]:
    for name, i, source, _read_only in _binds(ctx):
        what = "the host's root directory" if source == "/" else engine_path(source)
        if what is None:
            continue
        yield Hit(
            f"spec.mounts[{i}].source: {source} is {what}; agents refuse this mount whatever their settings",
            ctx.fleet.source("DsInstance", name, "spec", "mounts", i, "source"),
        )


@rule(
    "host-mount-sensitive",
    W,
    "bind mounts of host system paths (/etc, /proc, /sys, /dev, /root, /usr, /var/lib, …) or of a socket (*.sock); "
    "agents refuse any bind outside their [agent.admission] bind_sources",
    params={"paths": list(SENSITIVE_PATHS)},
    category=SECURITY,
    scope=INSTANCE,
)
def host_mount_sensitive(ctx: Context) -> Iterator[Hit]:
    paths = [normal_path(str(p)) for p in ctx.param("host-mount-sensitive", "paths", SENSITIVE_PATHS) or ()]
    for name, i, source, read_only in _binds(ctx):
        if source == "/" or engine_path(source) is not None:
            continue  # host-mount-forbidden
        if source.endswith(".sock"):
            what = "a socket on the host"
        elif any(under(source, p) or under(p, source) for p in paths):
            what = "a host system path"
        else:
            continue
        mode = "read-only" if read_only else "read-write"
        yield Hit(
            f"spec.mounts[{i}].source: {source} ({mode}) is {what}; the node's agent must allow it "
            "([agent.admission] bind_sources)",
            ctx.fleet.source("DsInstance", name, "spec", "mounts", i, "source"),
        )


@rule(
    "security-opt-unconfined",
    E,
    "no security option switches a confinement off (seccomp=unconfined, apparmor=unconfined, label=disable, "
    "systempaths=unconfined, no-new-privileges=false)",
    category=SECURITY,
    scope=INSTANCE,
)
def security_opt_unconfined(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        for i, option in enumerate(inst.spec.securityOpt):
            if option.replace(" ", "") in UNCONFINED_OPTIONS:
                yield Hit(
                    f"spec.securityOpt[{i}]: {option} switches a confinement off; agents refuse it unless their "
                    "[agent.admission] security_opt lists it",
                    ctx.fleet.source("DsInstance", name, "spec", "securityOpt", i),
                )


@rule(
    "host-ipc",
    W,
    "ipc: host shares the host's IPC namespace (agents refuse it unless their [agent.admission] ipc_modes allows "
    "it)",
    category=SECURITY,
    scope=INSTANCE,
)
def host_ipc(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        if inst.spec.ipc == "host":
            yield Hit(
                "spec.ipc: host shares the host's shared memory and semaphores with the container; agents refuse "
                "it unless their [agent.admission] ipc_modes allows it",
                ctx.fleet.source("DsInstance", name, "spec", "ipc"),
            )


@rule(
    "host-network",
    W,
    "networkMode host (the default) gives the container the host's network: every port and loopback service of "
    "the host; choose bridge or none where the app needs neither",
    category=SECURITY,
    scope=INSTANCE,
)
def host_network(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        if inst.spec.networkMode == "host":
            explicit = "networkMode" in inst.spec.model_fields_set
            yield Hit(
                f"spec.networkMode: host{'' if explicit else ' (the default)'} gives the container the host's "
                "network, loopback services included; set bridge or none if the app needs neither host ports nor "
                "the host's loopback, or relax this rule with a reason",
                ctx.fleet.source("DsInstance", name, "spec", *(("networkMode",) if explicit else ())),
            )


@rule(
    "host-devices",
    W,
    "cameras that pass a host device into the container (a USB camera's /dev/videoN, a CSI camera's Argus socket); "
    "the node's agent must allow it ([agent.admission] devices / bind_sources)",
    category=SECURITY,
    scope=INSTANCE,
)
def host_devices(ctx: Context) -> Iterator[Hit]:
    for name, res in ctx.resolved_instances:
        for camera in res.cameras:
            cam = ctx.fleet.cameras.get(camera)
            if cam is None:
                continue
            if cam.spec.source_type is CameraType.USB:
                what, setting = f"host device {cam.spec.device}", "devices"
            elif cam.spec.source_type is CameraType.CSI:
                what, setting = "the host's Argus socket (/tmp/argus_socket, read-write)", "bind_sources"
            else:
                continue
            yield Hit(
                f"instance {name!r}: camera {camera!r} passes {what} into the container; the agent of node "
                f"{res.instance.spec.node or '-'} must allow it ([agent.admission] {setting})",
                ctx.fleet.source("Camera", camera, "spec", "type" if cam.spec.type is not None else "url"),
                instance=name,
            )


def _placeholders(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string leaf of a dumped model that carries a secret placeholder, with its path and first ref."""
    if isinstance(value, str):
        found = ANY_PLACEHOLDER_RE.search(value)
        if found:
            yield path, found.group(1)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _placeholders(v, (*path, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _placeholders(v, (*path, i))


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@rule(
    "secret-scope",
    E,
    "secret placeholders ${secret:…} are written by dsfleet, for the secrets an instance names (its cameras' "
    "credentials.secretRef, its {secretRef: …} values); one written by hand anywhere else is refused",
    relaxable=False,
    category=SECURITY,
    scope=PARTITIONED,
    partitions=each_document(("DsInstance", "InferenceProfile")),
)
def secret_scope(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        dumped = inst.spec.model_dump(mode="json", by_alias=True)
        if "${secret:" not in str(dumped):
            continue
        for path, ref in _placeholders(dumped, ()):
            yield Hit(
                f"spec.{_dotted(path)}: a secret placeholder (of {ref!r}) written by hand; name a secret with "
                "credentials.secretRef (cameras) or {secretRef: NAME} (env, connection strings), and dsfleet "
                "writes the placeholder where it belongs",
                ctx.fleet.source("DsInstance", name, "spec", *path),
            )
    for name, prof in ctx.profiles:
        dumped = prof.spec.model_dump(mode="json", by_alias=True)
        if "${secret:" not in str(dumped):
            continue
        for path, ref in _placeholders(dumped, ()):
            yield Hit(
                f"spec.{_dotted(path)}: a secret placeholder (of {ref!r}) written by hand; a profile names no "
                "secret (its instances' cameras and {secretRef: NAME} values do)",
                ctx.fleet.source("InferenceProfile", name, "spec", *path),
            )


@rule(
    "env-secret-file",
    E,
    "a secret env variable X reaches the container as the file named by X_FILE (/run/secrets/X): X_FILE is not "
    "set as well, and no mount of the instance covers /run/secrets",
    category=SECURITY,
    scope=INSTANCE,
)
def env_secret_file(ctx: Context) -> Iterator[Hit]:
    for name, inst in ctx.instances:
        env = inst.spec.env
        secret_vars = [var for var, value in sorted(env.items()) if isinstance(value, EnvSecretRef)]
        for var in secret_vars:
            if var + SECRET_FILE_SUFFIX in env:
                yield Hit(
                    f"spec.env.{var}{SECRET_FILE_SUFFIX}: set, while {var} comes from a secret and reaches the "
                    f"container as the file {var}{SECRET_FILE_SUFFIX} names ({SECRETS_TARGET}/{var})",
                    ctx.fleet.source("DsInstance", name, "spec", "env", var + SECRET_FILE_SUFFIX),
                )
        if not secret_vars:
            continue
        for i, mount in enumerate(inst.spec.mounts):
            if mount.target.startswith("/") and under(normal_path(mount.target), SECRETS_TARGET):
                yield Hit(
                    f"spec.mounts[{i}].target: {mount.target} covers {SECRETS_TARGET}, where the agent mounts "
                    f"the files of the secret env variables ({', '.join(secret_vars)})",
                    ctx.fleet.source("DsInstance", name, "spec", "mounts", i, "target"),
                )
