"""What a container may be given of its host: the facts both sides check alike — the repository's security rules
(:mod:`dsfleet.policies.rules.security`, at ``validate``) and each host's admission (:mod:`dsfleet.agent.admission`,
before the agent acts) — and how a secret env variable reaches a container.

- A bind mount of ``/``, or of a container engine's socket or state (:data:`ENGINE_PATHS`, any
  :data:`ENGINE_SOCKETS` name) or a directory holding one, hands the host over: :func:`engine_path` says why.
- :data:`UNCONFINED_OPTIONS`: the security options that switch a confinement off.
- A secret env variable ``X`` (``envSecrets``) reaches the container as a file under :data:`SECRETS_TARGET`, and
  the variable ``X_FILE`` (:data:`SECRET_FILE_SUFFIX`) names it: ``docker inspect`` shows no secret value.
"""

from __future__ import annotations

import posixpath

__all__ = [
    "ENGINE_PATHS",
    "ENGINE_SOCKETS",
    "SECRETS_TARGET",
    "SECRET_FILE_SUFFIX",
    "UNCONFINED_OPTIONS",
    "engine_path",
    "normal_path",
    "under",
]

ENGINE_PATHS = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run/docker",
    "/run/docker",
    "/var/lib/docker",
    "/run/containerd",
    "/var/run/containerd",
    "/var/lib/containerd",
    "/run/podman",
    "/var/run/podman",
    "/var/lib/containers",
    "/run/crio",
    "/var/run/crio",
)
"""Container engines' sockets and state."""
ENGINE_SOCKETS = ("docker.sock", "containerd.sock", "podman.sock", "crio.sock", "dockershim.sock")
"""Socket names that are an engine wherever they are (a socket moved or linked elsewhere is still the engine)."""
UNCONFINED_OPTIONS = frozenset(
    {
        "seccomp=unconfined",
        "seccomp:unconfined",
        "apparmor=unconfined",
        "apparmor:unconfined",
        "label=disable",
        "label:disable",
        "systempaths=unconfined",
        "no-new-privileges=false",
        "no-new-privileges:false",
    }
)
"""Security options that switch a confinement off."""
SECRETS_TARGET = "/run/secrets"
"""Where an instance's secret env files are mounted (read-only) in its container, as Docker secrets are."""
SECRET_FILE_SUFFIX = "_FILE"
"""A secret env variable ``X`` reaches the container as a file, whose path the variable ``X_FILE`` holds."""


def normal_path(path: str) -> str:
    """``path`` normalised (``..`` and ``//`` folded; POSIX keeps a leading ``//``, Docker does not)."""
    folded = posixpath.normpath(path)
    return "/" + folded.lstrip("/") if folded.startswith("//") else folded


def under(path: str, root: str) -> bool:
    """``path`` is ``root`` or inside it (both normalised, absolute)."""
    return root in (path, "/") or path.startswith(root.rstrip("/") + "/")


def engine_path(path: str) -> str | None:
    """Why a bind of ``path`` (normalised) hands the host over — a container engine's socket or state, or a
    directory holding one — else None."""
    if posixpath.basename(path) in ENGINE_SOCKETS or any(under(path, engine) for engine in ENGINE_PATHS):
        return "a container engine's socket or state (whoever holds it runs anything as root on the host)"
    held = next((engine for engine in ENGINE_PATHS if under(engine, path)), None)
    if held is not None:
        return f"a directory holding a container engine's socket or state ({held})"
    return None
