"""Adapter: the agent's state directory on the host (the only module of the writer that touches files).

Layout of ``<state-dir>``::

    desired.json                 last desired config received (the fail-static copy), mode 0600
    applied.json                 per instance: container id, spec hash (= its config-hash label) and the files
                                 hash the agent last (re)started it with (``dsfleet.agent.drift.Applied``), mode 0600
    binding.json                 the fleet the agent is bound to, the generation and config hash it last accepted,
                                 the highest leadership epoch it accepted
                                 (``dsfleet.agent.desiredconfigs.AppliedMark``), mode 0600
    node-name                    the name the coordinator gave this agent (when it has no --node-name)
    instances/<name>/<file>      an instance's rendered files, bind-mounted read-only at /workspace/configs
    envsecrets/<name>/<VAR>      the values of an instance's secret env variables, one file each (0400, directories
                                 0700), bind-mounted read-only at /run/secrets; the container gets VAR_FILE=
                                 /run/secrets/VAR instead of the value (``dsfleet.agent.containerrequests.container_request``)
    secrets/<ref>/{username,password}   the local secret store (``dsfleet.agent.secrets``), managed by the operator

Decisions:

- Every write is atomic: a temp file ``.<name>.<random>.tmp`` in the same directory, mode set with ``fchmod``
  before any byte is written, data ``fsync``ed, ``os.replace``d over the target, then the directory is
  ``fsync``ed. A reader (the container) sees the old file or the new one, never a mix; a crash leaves at most a
  hidden temp file, which the next write removes as stale (rendered names never start with ``.``).
- Files carrying secrets are 0600, the others 0644; instance directories are 0755 (enforced on every write:
  the container must traverse them). ``instances/`` and the state directory are created 0755 if missing.
  The 0600 files are readable by the agent's user (and root) only, so the container must run as that user or
  as root, as DeepStream images do.
- ``desired.json`` is written 0600. It holds no secret values (only refs and placeholders), but it is the whole
  node's config (topology, addresses, environment) and only the agent reads it: least privilege costs nothing.
- Everything in an instance directory that is not one of the instance's files is removed (regular files and
  symlinks); subdirectories are left alone. Directories of instances no longer desired are not removed here:
  that belongs with removing their containers (the live loop).
- Secrets are resolved before the directory is touched: a missing secret writes nothing.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsfleet.agent.configfiles import FilePlan, instance_refs, plan_files
from dsfleet.agent.credentials import SecretStore
from dsfleet.agent.desiredconfigs import AppliedMark, DesiredConfig, parse_config
from dsfleet.agent.drift import Applied
from dsfleet.agent.errors import ConfigError, FileWriteError
from dsfleet.agent.secrets import resolve_secrets
from dsfleet.schemas.nodeconfigs import InstanceConfig

__all__ = [
    "APPLIED_FILE",
    "BINDING_FILE",
    "DESIRED_FILE",
    "DESIRED_MODE",
    "DIR_MODE",
    "ENV_SECRETS_DIR",
    "INSTANCES_DIR",
    "WriteResult",
    "apply_file_plan",
    "atomic_write",
    "env_secrets_dir",
    "instance_dir",
    "instance_file_plan",
    "load_applied",
    "load_binding",
    "load_desired",
    "load_node_name",
    "read_directory",
    "remove_env_secrets",
    "remove_instance_dir",
    "save_applied",
    "save_binding",
    "save_desired",
    "save_node_name",
    "write_env_secrets",
    "write_instance_files",
    "write_node_files",
]

DESIRED_FILE = "desired.json"
APPLIED_FILE = "applied.json"
BINDING_FILE = "binding.json"
NODE_NAME_FILE = "node-name"
DESIRED_MODE = 0o600
INSTANCES_DIR = "instances"
DIR_MODE = 0o755
ENV_SECRETS_DIR = "envsecrets"
SECRET_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o400
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_UNREADABLE_MODE = -1  # the mode reported for a symlink: never a desired mode, so it is replaced


@dataclass(frozen=True)
class WriteResult:
    """Files written (new, changed or re-moded) and stale files removed, by name, sorted."""

    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def instance_dir(state_dir: str | os.PathLike[str], name: str) -> Path:
    """``<state-dir>/instances/<name>``; ``name`` must be a DNS label (it can never leave ``instances/``)."""
    if not _NAME_RE.fullmatch(name) or len(name) > 63:
        raise ConfigError(f"instance name {name!r} is not a DNS label")
    return Path(state_dir) / INSTANCES_DIR / name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int, *, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically, the file having ``mode`` from its first byte on."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        _fsync_dir(path.parent)


def read_directory(directory: Path) -> tuple[dict[str, bytes], dict[str, int]]:
    """The files of ``directory`` (not recursive): contents and permission bits by name.

    A symlink is reported with empty content and an impossible mode, so a plan replaces or removes it (the link
    itself, never its target); other non-regular entries (subdirectories, sockets) are ignored.
    """
    contents: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                contents[entry.name], modes[entry.name] = b"", _UNREADABLE_MODE
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as fh:
                    contents[entry.name] = fh.read()
                modes[entry.name] = stat.S_IMODE(st.st_mode)
    return contents, modes


def _ensure_dir(path: Path, mode: int | None = None) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if mode is not None and stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)


def _apply(directory: Path, plan: FilePlan) -> None:
    for write in plan.writes:
        atomic_write(directory / write.path, write.content, write.mode, sync_dir=False)
    for name in plan.removals:
        (directory / name).unlink(missing_ok=True)
    if not plan.empty:
        _fsync_dir(directory)


def _write_instance(state_dir: Path, instance: InstanceConfig, store: SecretStore) -> WriteResult:
    """Write one instance's files with a store that already holds its secrets (a snapshot)."""
    directory = instance_dir(state_dir, instance.name)
    try:
        _ensure_dir(directory.parent)
        _ensure_dir(directory, DIR_MODE)
        existing, modes = read_directory(directory)
    except OSError as exc:
        raise FileWriteError(
            f"{exc.filename or directory}: cannot prepare the directory: {exc.strerror}"
        ) from None
    return apply_file_plan(state_dir, instance.name, plan_files(instance, existing, store, modes=modes))


def apply_file_plan(state_dir: str | os.PathLike[str], name: str, plan: FilePlan) -> WriteResult:
    """Carry out a file plan of :func:`instance_file_plan` (placeholders already filled: nothing is resolved
    again) in ``<state-dir>/instances/<name>/``. Raises ``FileWriteError``."""
    directory = instance_dir(Path(state_dir), name)
    try:
        _ensure_dir(directory.parent)
        _ensure_dir(directory, DIR_MODE)
        _apply(directory, plan)
    except OSError as exc:
        raise FileWriteError(f"{exc.filename or directory}: cannot write: {exc.strerror}") from None
    return WriteResult(tuple(w.path for w in plan.writes), plan.removals)


def write_instance_files(
    state_dir: str | os.PathLike[str], instance: InstanceConfig, store: SecretStore
) -> WriteResult:
    """Make ``<state-dir>/instances/<name>/`` hold exactly the instance's files, secrets filled in.

    Raises ``SecretError`` (nothing written), ``ConfigError`` or ``FileWriteError``.
    """
    snapshot = resolve_secrets(instance_refs(instance), store)
    return _write_instance(Path(state_dir), instance, snapshot)


def write_node_files(
    state_dir: str | os.PathLike[str], instances: Iterable[InstanceConfig], store: SecretStore
) -> list[tuple[str, WriteResult]]:
    """Write several instances; every secret of every instance is resolved first (one error lists all)."""
    instances = list(instances)
    refs = {ref for inst in instances for ref in instance_refs(inst)}
    snapshot = resolve_secrets(refs, store)
    return [(inst.name, _write_instance(Path(state_dir), inst, snapshot)) for inst in instances]


def save_desired(state_dir: str | os.PathLike[str], config: DesiredConfig) -> Path:
    """Keep ``config`` as ``<state-dir>/desired.json`` (atomic, 0600) for fail-static restarts."""
    path = Path(state_dir) / DESIRED_FILE
    text = config.model_dump_json(by_alias=True, indent=2) + "\n"
    try:
        _ensure_dir(path.parent)
        atomic_write(path, text.encode("utf-8"), DESIRED_MODE)
    except OSError as exc:
        raise FileWriteError(f"{exc.filename or path}: cannot write: {exc.strerror}") from None
    return path


def load_desired(state_dir: str | os.PathLike[str]) -> DesiredConfig | None:
    """The config kept by ``save_desired``, or None when there is none yet (``ConfigError`` if unreadable)."""
    path = Path(state_dir) / DESIRED_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(data, str(path))


def instance_file_plan(
    state_dir: str | os.PathLike[str], instance: InstanceConfig, store: SecretStore
) -> tuple[FilePlan, tuple[str, ...]]:
    """The file plan of ``instance`` against its directory (nothing written) and the names found there.

    Raises ``SecretError`` or ``ConfigError`` like :func:`write_instance_files`.
    """
    directory = instance_dir(state_dir, instance.name)
    snapshot = resolve_secrets(instance_refs(instance), store)
    try:
        existing, modes = read_directory(directory)
    except FileNotFoundError:
        existing, modes = {}, {}
    except OSError as exc:
        raise FileWriteError(f"{exc.filename or directory}: cannot read: {exc.strerror}") from None
    return plan_files(instance, existing, snapshot, modes=modes), tuple(sorted(existing))


def env_secrets_dir(state_dir: str | os.PathLike[str], name: str) -> Path:
    """``<state-dir>/envsecrets/<name>``: the instance's secret env files (``name`` a DNS label)."""
    return Path(state_dir) / ENV_SECRETS_DIR / instance_dir(state_dir, name).name


def write_env_secrets(state_dir: str | os.PathLike[str], name: str, values: Mapping[str, str]) -> Path:
    """Make ``<state-dir>/envsecrets/<name>/`` hold exactly one file per variable of ``values`` (its value, mode
    0400, the directories 0700), rewriting only what differs; stale files are removed (the directory too when
    there is no variable). Returns the directory (bind-mounted read-only at ``/run/secrets``). Raises ``ConfigError`` for a variable name that is not one,
    ``FileWriteError`` when it cannot write."""
    for var in values:
        if not _ENV_NAME_RE.fullmatch(var) or len(var) > 255:
            raise ConfigError(f"instance {name!r}: secret env {var!r} is not a variable name")
    directory = env_secrets_dir(state_dir, name)
    if not values:
        remove_env_secrets(state_dir, name)
        return directory
    try:
        _ensure_dir(directory.parent, SECRET_DIR_MODE)
        _ensure_dir(directory, SECRET_DIR_MODE)
        existing, modes = read_directory(directory)
        changed = False
        for var, value in sorted(values.items()):
            data = value.encode("utf-8")
            if existing.get(var) != data or modes.get(var) != SECRET_FILE_MODE:
                atomic_write(directory / var, data, SECRET_FILE_MODE, sync_dir=False)
                changed = True
        for stale in sorted(set(existing) - set(values)):
            (directory / stale).unlink(missing_ok=True)
            changed = True
        if changed:
            _fsync_dir(directory)
    except OSError as exc:
        raise FileWriteError(f"{exc.filename or directory}: cannot write: {exc.strerror}") from None
    return directory


def remove_env_secrets(state_dir: str | os.PathLike[str], name: str) -> None:
    """Remove ``<state-dir>/envsecrets/<name>/`` and its files; absent is fine."""
    directory = env_secrets_dir(state_dir, name)
    try:
        for entry in list(os.scandir(directory)):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        directory.rmdir()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileWriteError(f"{exc.filename or directory}: cannot remove: {exc.strerror}") from None


def remove_instance_dir(state_dir: str | os.PathLike[str], name: str) -> None:
    """Remove ``<state-dir>/instances/<name>/`` (an instance no longer desired) and its secret env files;
    absent is fine."""
    remove_env_secrets(state_dir, name)
    directory = instance_dir(state_dir, name)
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileWriteError(f"{directory}: cannot read: {exc.strerror}") from None
    try:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                continue
            os.unlink(entry.path)
        if not any(True for _ in os.scandir(directory)):
            directory.rmdir()
    except OSError as exc:
        raise FileWriteError(f"{exc.filename or directory}: cannot remove: {exc.strerror}") from None


def save_applied(state_dir: str | os.PathLike[str], applied: Mapping[str, Applied]) -> None:
    """Keep the agent's record of what it applied as ``<state-dir>/applied.json`` (atomic, 0600)."""
    path = Path(state_dir) / APPLIED_FILE
    body = {
        name: {
            "containerId": a.container_id,
            "specHash": a.spec_hash,
            "filesHash": a.files_hash,
            "generation": a.generation,
            **({"previousImage": a.previous_image} if a.previous_image else {}),
            **({"paused": True} if a.paused else {}),
        }
        for name, a in sorted(applied.items())
    }
    try:
        _ensure_dir(path.parent)
        atomic_write(path, (json.dumps(body, indent=2) + "\n").encode("utf-8"), DESIRED_MODE)
    except OSError as exc:
        raise FileWriteError(f"{exc.filename or path}: cannot write: {exc.strerror}") from None


def load_applied(state_dir: str | os.PathLike[str]) -> dict[str, Applied]:
    """The record kept by :func:`save_applied`; empty when absent or unreadable (the agent then adopts)."""
    path = Path(state_dir) / APPLIED_FILE
    try:
        body: Any = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(body, dict):
        return {}
    result: dict[str, Applied] = {}
    for name, item in body.items():
        try:
            result[str(name)] = Applied(
                container_id=str(item["containerId"]),
                spec_hash=str(item["specHash"]),
                files_hash=str(item["filesHash"]),
                generation=int(item["generation"]) if item.get("generation") is not None else None,
                previous_image=str(item["previousImage"]) if item.get("previousImage") else None,
                paused=item.get("paused") is True,
            )
        except (KeyError, TypeError, ValueError):
            continue
    return result


def save_binding(state_dir: str | os.PathLike[str], mark: AppliedMark) -> None:
    """Keep the fleet binding, the last accepted generation and the highest accepted leadership epoch as
    ``<state-dir>/binding.json`` (atomic, 0600)."""
    path = Path(state_dir) / BINDING_FILE
    body = {
        "fleet": mark.fleet,
        "generation": mark.generation,
        "configHash": mark.config_hash,
        "epoch": mark.epoch,
    }
    try:
        _ensure_dir(path.parent)
        atomic_write(path, (json.dumps(body, indent=2) + "\n").encode("utf-8"), DESIRED_MODE)
    except OSError as exc:
        raise FileWriteError(f"{exc.filename or path}: cannot write: {exc.strerror}") from None


def load_binding(state_dir: str | os.PathLike[str]) -> AppliedMark | None:
    """The mark kept by :func:`save_binding`; None when absent or unreadable (a file of an earlier release,
    without ``epoch``, reads as epoch 0)."""
    path = Path(state_dir) / BINDING_FILE
    try:
        body: Any = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    fleet, generation, config_hash = body.get("fleet"), body.get("generation"), body.get("configHash")
    epoch = body.get("epoch")
    return AppliedMark(
        fleet=str(fleet) if isinstance(fleet, str) and fleet else None,
        generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else None,
        config_hash=str(config_hash) if isinstance(config_hash, str) and config_hash else None,
        epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch > 0 else 0,
    )


def save_node_name(state_dir: str | os.PathLike[str], name: str) -> None:
    """Persist the name the coordinator gave this agent (``<state-dir>/node-name``)."""
    path = Path(state_dir) / NODE_NAME_FILE
    try:
        _ensure_dir(path.parent)
        atomic_write(path, (name + "\n").encode("utf-8"), 0o644)
    except OSError as exc:
        raise FileWriteError(f"{exc.filename or path}: cannot write: {exc.strerror}") from None


def load_node_name(state_dir: str | os.PathLike[str]) -> str | None:
    path = Path(state_dir) / NODE_NAME_FILE
    try:
        text = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _NAME_RE.fullmatch(text) and len(text) <= 63 else None
