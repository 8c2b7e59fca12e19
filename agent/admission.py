"""Pure: host-side admission — what this host lets an instance's desired config run, whoever sent it.

The coordinator signs what it sends, and the repository's rules (``dsfleet validate``) refuse dangerous
manifests; both belong to whoever can commit to the repository or hold the coordinator's key. The host owns the
last word: its ``[agent.admission]`` settings (:class:`dsfleet.plumbing.settings.AdmissionSettings`) say which
images, privileges, host paths, devices, security options, network and IPC modes a container may have here.

:func:`admit` checks one instance's config against them and returns the rules it breaks (:class:`Denial`, in the
order below); any denial refuses the instance as a whole: the agent writes none of its files and touches none of
its containers, so the last good container keeps running, and the instance reports the condition
``AdmissionDenied`` with the rules (:func:`denial_message`). Rules (``Denial.rule``):

- ``image``: the image matches none of ``images`` (globs, matched against the reference as written and as Docker
  completes it, :func:`full_image_name`); ``image-digest``: ``require_digest`` and the image is not pinned.
- ``privileged``: a privileged container when ``privileged`` is off.
- ``bind-source``: a bind mount whose source is not absolute, or is outside every ``bind_sources`` entry; checked
  as written (normalised) and as the host resolves it (symlinks followed: ``realpath``, passed in).
- ``host-root``, ``engine-socket``, ``state-dir`` (whatever the settings say): a bind of ``/``; of a container
  engine's socket or state (``docker.sock``, ``containerd.sock``, ``/var/lib/docker``, … or a directory that holds
  one: ``/run``, ``/var/run``; :func:`dsfleet.schemas.hostaccess.engine_path`); of the agent's state directory or
  anything in or above it (its secrets, its keys, other instances' files).
- ``volume-source``: a volume mount whose source is not a volume name (a path).
- ``device``: a host device that matches none of ``devices``.
- ``security-opt``: an option that matches none of ``security_opt``; the unconfined forms
  (:data:`dsfleet.schemas.hostaccess.UNCONFINED_OPTIONS`) and custom seccomp profiles only when listed word for word.
- ``network-mode`` / ``ipc-mode``: a mode that matches none of ``network_modes`` / ``ipc_modes`` (an unset IPC mode
  is Docker's default).
- ``secret-scope``: a file carries a ``${secret:…}`` placeholder of a ref it does not declare
  (``RenderedFile.secrets``); a camera credential placeholder (``${secret:REF}``, a URL's user-info) names a ref
  that is not the credentials of one of the instance's cameras (``InstanceConfig.cameraSecrets``, whose cameras
  must be the instance's own); or a plain env value carries one (secrets reach env only as ``envSecrets``). The
  secrets an instance may reach are thus those its config names for itself: its cameras' credentials, the refs its
  files declare for connection strings (``${secret:REF:FIELD}``), its ``envSecrets``.
  ``secret-env``: a secret env variable whose name is not a variable name (it names a file), ``X`` whose file
  reference ``X_FILE`` the plain env sets too, or a mount of the spec at or under ``/run/secrets``, where the
  secret env files go.

Capabilities are not checked: the wire format (``ContainerSpec``) carries none, so the agent never adds any
(Docker's default set; only ``privileged`` gives more).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from dsfleet.agent.conditions import ADMISSION_DENIED
from dsfleet.plumbing.settings import AdmissionSettings
from dsfleet.schemas.hostaccess import (
    SECRET_FILE_SUFFIX,
    SECRETS_TARGET,
    UNCONFINED_OPTIONS,
    engine_path,
    normal_path,
    under,
)
from dsfleet.schemas.nodeconfigs import InstanceConfig
from dsfleet.schemas.placeholders import ANY_PLACEHOLDER_RE, PLACEHOLDER_RE

__all__ = [
    "ADMISSION_DENIED",
    "Denial",
    "admit",
    "denial_message",
    "full_image_name",
]


_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VOLUME_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Docker's volume names: a volume source that is not one (a path) is refused."""


@dataclass(frozen=True)
class Denial:
    """One rule an instance's config breaks: ``rule`` (see the module docstring) and what, in words."""

    rule: str
    message: str


def full_image_name(image: str) -> str:
    """The reference as Docker completes it: ``busybox`` → ``docker.io/library/busybox:latest``,
    ``team/app:1`` → ``docker.io/team/app:1``; a registry host (with a dot, a port or ``localhost``) is kept."""
    name, at, digest = image.partition("@")
    first, slash, _rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}" if slash else f"docker.io/library/{name}"
    if not at and ":" not in name.rpartition("/")[2]:
        name += ":latest"
    return f"{name}{at}{digest}"


def _image_allowed(image: str, patterns: Sequence[str]) -> bool:
    forms = {image, full_image_name(image)}
    return any(fnmatchcase(form, pattern) for form in forms for pattern in patterns)


def _bind_denials(
    source: str, target: str, settings: AdmissionSettings, state_dir: str, realpath: Callable[[str], str]
) -> list[Denial]:
    where = f"bind mount {source} -> {target}"
    if not source.startswith("/"):
        return [Denial("bind-source", f"{where}: the source is not an absolute host path")]
    written = normal_path(source)
    resolved = normal_path(realpath(written))
    state = normal_path(state_dir)
    state_real = realpath(state)
    for path in dict.fromkeys((written, resolved)):
        if path == "/":
            return [Denial("host-root", f"{where}: the host's root directory is never mounted")]
        if engine_path(path) is not None:
            return [
                Denial("engine-socket", f"{where}: a container engine's socket or state is never mounted")
            ]
        if any(under(path, s) or under(s, path) for s in (state, state_real)):
            return [Denial("state-dir", f"{where}: the agent's state directory is never mounted")]
    roots = [normal_path(r) for r in settings.bind_sources]
    real_roots = [realpath(r) for r in roots]
    if not any(under(written, r) for r in roots) or not any(
        under(resolved, r) for r in (*roots, *real_roots)
    ):
        shown = written if resolved == written else f"{written} (resolves to {resolved})"
        return [
            Denial(
                "bind-source",
                f"bind mount {shown} -> {target}: not under an allowed host path ([agent.admission] bind_sources)",
            )
        ]
    return []


def _security_opt_allowed(option: str, patterns: Sequence[str]) -> bool:
    if option in UNCONFINED_OPTIONS or option.replace(" ", "") in UNCONFINED_OPTIONS:
        return option in patterns
    if option.startswith(("seccomp=", "seccomp:")):
        return option in patterns  # a custom profile may allow every system call: only when listed
    return any(fnmatchcase(option, pattern) for pattern in patterns)


def _secret_denials(inst: InstanceConfig) -> list[Denial]:
    found: list[Denial] = []
    strangers = sorted(set(inst.cameraSecrets) - set(inst.cameras))
    if strangers:
        found.append(
            Denial(
                "secret-scope", f"camera credentials of cameras not in the instance: {', '.join(strangers)}"
            )
        )
    camera_refs = {ref for camera, ref in inst.cameraSecrets.items() if camera in inst.cameras}
    for file in inst.files:
        declared = set(file.secrets)
        used = dict.fromkeys(m.group(1) for m in ANY_PLACEHOLDER_RE.finditer(file.content))
        for ref in (r for r in used if r not in declared):
            found.append(
                Denial(
                    "secret-scope", f"file {file.path}: a placeholder of secret {ref!r} it does not declare"
                )
            )
        credentials = dict.fromkeys(m.group(1) for m in PLACEHOLDER_RE.finditer(file.content))
        for ref in (r for r in credentials if r in declared and r not in camera_refs):
            found.append(
                Denial(
                    "secret-scope",
                    f"file {file.path}: camera credentials of secret {ref!r}, which no camera of the instance "
                    "names",
                )
            )
    spec = inst.container
    for var, value in sorted(spec.env.items()):
        if ANY_PLACEHOLDER_RE.search(value):
            found.append(
                Denial(
                    "secret-scope",
                    f"env {var}: a secret placeholder in a plain value (secrets come as envSecrets)",
                )
            )
    for var in sorted(spec.envSecrets):
        if not _ENV_NAME_RE.fullmatch(var):
            found.append(Denial("secret-env", f"env {var!r}: not a variable name (it names a file)"))
        elif var + SECRET_FILE_SUFFIX in spec.env:
            found.append(
                Denial(
                    "secret-env",
                    f"env {var}{SECRET_FILE_SUFFIX} is set, and {var} comes from a secret (its file)",
                )
            )
    if spec.envSecrets:
        for mount in spec.mounts:
            if mount.target.startswith("/") and under(normal_path(mount.target), SECRETS_TARGET):
                found.append(
                    Denial(
                        "secret-env",
                        f"mount -> {mount.target}: {SECRETS_TARGET} holds the secret env files",
                    )
                )
    return found


def admit(
    inst: InstanceConfig,
    settings: AdmissionSettings,
    *,
    state_dir: str,
    realpath: Callable[[str], str] | None = None,
) -> tuple[Denial, ...]:
    """The rules ``inst`` breaks on this host (none: admitted). ``state_dir``: the agent's state directory;
    ``realpath``: how the host resolves a path (symlinks followed; default: as written)."""
    resolve = realpath or (lambda p: p)
    spec = inst.container
    found: list[Denial] = []
    if not _image_allowed(spec.image, settings.images):
        found.append(Denial("image", f"image {spec.image} is not allowed ([agent.admission] images)"))
    elif settings.require_digest and "@sha256:" not in spec.image:
        found.append(
            Denial(
                "image-digest",
                f"image {spec.image} is not pinned by digest ([agent.admission] require_digest)",
            )
        )
    if spec.privileged and not settings.privileged:
        found.append(Denial("privileged", "a privileged container ([agent.admission] privileged)"))
    for mount in spec.mounts:
        if mount.type == "bind":
            found.extend(_bind_denials(mount.source, mount.target, settings, state_dir, resolve))
        elif mount.type == "volume" and not _VOLUME_NAME_RE.fullmatch(mount.source):
            found.append(
                Denial("volume-source", f"volume {mount.source!r} -> {mount.target}: not a volume name")
            )
    for device in spec.devices:
        path = normal_path(device.pathOnHost)
        if (
            not path.startswith("/")
            or any(c in device.pathOnHost for c in ":,")
            or not any(fnmatchcase(path, pattern) for pattern in settings.devices)
        ):
            found.append(Denial("device", f"host device {device.pathOnHost} ([agent.admission] devices)"))
    for option in spec.securityOpt:
        if not _security_opt_allowed(option, settings.security_opt):
            found.append(Denial("security-opt", f"security option {option} ([agent.admission] security_opt)"))
    if not any(fnmatchcase(spec.networkMode, pattern) for pattern in settings.network_modes):
        found.append(
            Denial("network-mode", f"network mode {spec.networkMode} ([agent.admission] network_modes)")
        )
    if spec.ipc is not None and not any(fnmatchcase(spec.ipc, pattern) for pattern in settings.ipc_modes):
        found.append(Denial("ipc-mode", f"IPC mode {spec.ipc} ([agent.admission] ipc_modes)"))
    found.extend(_secret_denials(inst))
    return tuple(found)


def denial_message(denials: Sequence[Denial]) -> str:
    """One line for the instance's condition and the log: every rule broken, in order."""
    return "refused by this host's admission: " + "; ".join(f"{d.rule}: {d.message}" for d in denials)
