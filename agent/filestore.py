"""Adapter: the agent's state directory on the host (the only module of the writer that touches files).

Layout of ``<state-dir>``::

    desired.json                 last desired config received (fail-static copy, DESIGN §5), mode 0600
    instances/<name>/<file>      an instance's rendered files, bind-mounted read-only at /workspace/configs
    secrets/<ref>/{username,password}   the local secret store (``agent.secrets``), managed by the operator

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

import os
import re
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.configfiles import FilePlan, instance_refs, plan_files
from agent.desiredconfigs import DesiredConfig, parse_config
from agent.errors import ConfigError, FileWriteError
from agent.secrets import SecretStore, resolve_secrets
from schemas.nodeconfigs import InstanceConfig

__all__ = [
    "DESIRED_FILE",
    "DESIRED_MODE",
    "DIR_MODE",
    "INSTANCES_DIR",
    "WriteResult",
    "atomic_write",
    "instance_dir",
    "load_desired",
    "read_directory",
    "save_desired",
    "write_instance_files",
    "write_node_files",
]

DESIRED_FILE = "desired.json"
DESIRED_MODE = 0o600
INSTANCES_DIR = "instances"
DIR_MODE = 0o755
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
    plan = plan_files(instance, existing, store, modes=modes)
    try:
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
