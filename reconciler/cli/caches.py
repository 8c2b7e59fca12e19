"""The persisted cache of ``dsfleet validate`` and ``dsfleet diff``: the last run's parsed files and compiled
instances, so the next run over the same manifests parses and compiles only what changed.

What is kept is the pair the coordinator keeps in memory across watch ticks (``ManifestCache``, ``CompileCache``),
written with one ``pickle.dump`` so the parsed documents and the compile cache's last fleet stay the very same
objects after loading (the incremental path compares documents by identity). A cache never changes a result:

* a file is taken from the cache only when its (size, mtime, inode) is unchanged (and its stat was not too fresh
  to vouch for its content), else it is read and looked up by its content hash; a directory walk is reused only
  while none of the directories it listed changed: the same rules as the coordinator's in-memory caches;
* the file is keyed by the code that wrote it: a digest of every ``.py`` file of the installed ``dsfleet``
  package, the Python and pydantic versions, the loader limits, the manifest paths (absolute), the exclude
  patterns and the working directory. Any difference is a different key: the file is ignored (and replaced);
* a file that is not the user's own, is writable by group or others, is truncated, fails its checksum or does not
  unpickle into the two caches is ignored, never trusted; the run then starts cold.

A run writes the file again only when it changed more than a little (``SMALL_CHANGE``): otherwise the next run
starts from the same file and redoes that little work, which costs less than rewriting the whole cache.

Location: ``$XDG_CACHE_HOME/dsfleet/`` (default ``~/.cache/dsfleet/``; directory 0700, files 0600, written to a
temporary file and renamed), one file per key, the ``MAX_FILES`` newest kept. ``--no-cache`` or
``DSFLEET_NO_CACHE=1`` turns it off. The file
holds what the manifests hold (their text and what is derived from it), which carries no secret: credentials are
``secretRef`` names, and a URL with credentials in it is an error finding.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import platform
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from dsfleet.reconciler.compiling.desired import CompileCache, DesiredState, desired_state
from dsfleet.reconciler.loading.manifestsets import ManifestCache
from dsfleet.reconciler.loading.yamlfiles import Limits
from dsfleet.schemas.fleet import Fleet

log = logging.getLogger(__name__)

NO_CACHE_ENV = "DSFLEET_NO_CACHE"
FORMAT = b"dsfleet-cli-cache 1"
"""First line of a cache file; the second is the key digest, the third the payload's length and blake2b digest."""
MAX_BYTES = 1 << 30
"""A cache larger than this is not written (the run's results are unaffected)."""
SUFFIX = ".pickle"
MAX_FILES = 8
"""Cache files kept in the directory (the newest; one per manifest set and code version)."""


def cache_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "dsfleet"


def disabled(no_cache: bool, environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return no_cache or env.get(NO_CACHE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@functools.cache
def code_digest() -> str:
    """sha256 over the bytes of every ``.py`` file of the installed ``dsfleet`` package (with its path), the
    Python version and the pydantic version: a cache written by other code is never read."""
    import dsfleet

    root = Path(dsfleet.__file__).resolve().parent
    h = hashlib.sha256()
    h.update(f"{sys.version}\0{platform.python_implementation()}\0{pydantic.VERSION}\0".encode())
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        here = Path(dirpath)
        files.extend(
            ((here / n).relative_to(root).as_posix(), here / n) for n in filenames if n.endswith(".py")
        )
    for rel, path in sorted(files):
        data = path.read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def cache_key(paths: Sequence[str | os.PathLike[str]], limits: Limits, code: str | None = None) -> str:
    """The key digest of a run: the code's digest, the loader limits (with the exclude patterns), the manifest
    paths made absolute and the working directory (names in findings are relative to it)."""
    parts = [
        FORMAT.decode(),
        code if code is not None else code_digest(),
        repr(limits),
        os.getcwd(),
        *(os.path.abspath(p) for p in paths),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass
class Loaded:
    """The caches a run starts from, and what tells the end of the run whether they changed."""

    manifests: ManifestCache
    compiled: CompileCache
    digest: str | None = None
    """The manifests hash of the run that wrote the file (None: started cold)."""
    discovered: object = None
    """The directory walk the file held (a different object at the end: the directories were walked again)."""


def _payload_digest(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=32).hexdigest()


def _trusted(st: os.stat_result) -> str | None:
    """Why a cache file or directory is not to be trusted (None: it is)."""
    if st.st_uid != os.geteuid():
        return "not owned by this user"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "writable by group or others"
    return None


def _by_new_ids(memo: dict[int, Any]) -> dict[int, Any]:
    """A memo keyed by ``id(value[0])`` (looked up by id, checked by identity), keyed by the loaded objects' ids."""
    return {id(value[0]): value for value in memo.values()}


def _rekey(compiled: CompileCache, manifests: ManifestCache) -> None:
    """Objects have new ids after loading: the memos kept by id (each checks identity on a hit, so a stale key
    only misses) are keyed again, so their entries are found."""
    compiled.fingerprints = _by_new_ids(compiled.fingerprints)
    hits = compiled.rule_hits
    if isinstance(getattr(hits, "findings", None), dict):
        hits.findings = _by_new_ids(hits.findings)
    if isinstance(getattr(manifests, "located", None), dict):
        manifests.located = _by_new_ids(manifests.located)


def read_cache(directory: Path, key: str) -> tuple[Loaded | None, str]:
    """The caches of ``key`` from ``directory`` and ``"hit"``, or None and why not (a missing, foreign, unsafe,
    stale or broken file is ignored)."""
    path = directory / (key[:32] + SUFFIX)
    try:
        dir_problem = _trusted(os.stat(directory, follow_symlinks=False))
        if dir_problem is not None:
            return None, f"directory {dir_problem}"
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None, "none"
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        problem = _trusted(st) or (None if stat.S_ISREG(st.st_mode) else "not a regular file")
        if problem is not None:
            return None, f"file {problem}"
        if f.readline().rstrip(b"\n") != FORMAT:
            return None, "other format"
        if f.readline().rstrip(b"\n") != key.encode():
            return None, "other key"
        length, _, digest = f.readline().rstrip(b"\n").partition(b" ")
        payload = f.read()
    if not length.isdigit() or int(length) != len(payload):
        return None, "truncated"
    if _payload_digest(payload).encode() != digest:
        return None, "checksum mismatch"
    try:
        value = pickle.loads(payload)  # our own file: owner, mode, key and checksum checked
    except Exception as exc:  # any failure: a broken file, start cold
        return None, f"broken: {type(exc).__name__}"
    if not (
        isinstance(value, tuple)
        and len(value) == 3
        and isinstance(value[0], ManifestCache)
        and isinstance(value[1], CompileCache)
        and (value[2] is None or isinstance(value[2], str))
    ):
        return None, "unexpected content"
    manifests, compiled, digest_of_run = value
    _rekey(compiled, manifests)
    return Loaded(manifests, compiled, digest_of_run, manifests.discovered), "hit"


def write_cache(
    directory: Path, key: str, manifests: ManifestCache, compiled: CompileCache, digest: str
) -> str:
    """Write the caches of ``key`` into ``directory`` (created 0700); ``"saved"`` or why not (never raises for
    the file system's reasons: a cache that cannot be written is a slower next run, not an error)."""
    try:
        payload = pickle.dumps((manifests, compiled, digest), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        return f"not picklable: {type(exc).__name__}"
    if len(payload) > MAX_BYTES:
        return f"too large ({len(payload)} bytes)"
    path = directory / (key[:32] + SUFFIX)
    tmp = directory / f".{key[:32]}.{os.getpid()}.tmp"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        problem = _trusted(os.stat(directory, follow_symlinks=False))
        if problem is not None:
            return f"directory {problem}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(
                    b"%s\n%s\n%d %s\n"
                    % (FORMAT, key.encode(), len(payload), _payload_digest(payload).encode())
                )
                f.write(payload)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        _prune(directory)
    except OSError as exc:
        return f"not written: {exc.strerror or exc}"
    return "saved"


def _prune(directory: Path) -> None:
    """Remove all but the ``MAX_FILES`` newest cache files (older code versions, manifest sets gone)."""
    files = []
    for path in directory.glob("*" + SUFFIX):
        try:
            files.append((path.stat().st_mtime_ns, path))
        except FileNotFoundError:
            continue
    for _, path in sorted(files, reverse=True)[MAX_FILES:]:
        path.unlink(missing_ok=True)


SMALL_CHANGE = 32
"""Documents changed (or instances affected) since the cache file was written, up to which it is not written
again: the next run redoes that little work from the same file instead of paying for a rewrite."""


def _moved_on(loaded: Loaded, last: Fleet | None, desired: DesiredState) -> str | None:
    """Why the file need not be written again (None: write it): the run changed nothing in the caches, or so
    little since the file was written that starting from it again costs less than rewriting it. Either way the
    next run's result is the same: it starts from a state the caches held, and redoes what changed since."""
    if loaded.digest is None or last is None:
        return None  # started cold
    if loaded.manifests.discovered is not loaded.discovered:
        return None  # the directories were walked again: keep the new walk
    changes = desired.changes  # relative to the fleet the file held
    if changes is None or desired.since is not last or len(changes.instances) > SMALL_CHANGE:
        return None  # a Policy, an invalid document, or many instances: all of that would be redone
    documents = sum(len(names) for names in changes.documents.values())
    if documents > SMALL_CHANGE:
        return None
    if desired.loaded.digest == loaded.digest:
        return "unchanged"
    return f"{documents} document(s) changed since it was written"


def cached_desired_state(
    paths: Sequence[str | os.PathLike[str]], limits: Limits, *, directory: Path | None = None
) -> DesiredState:
    """:func:`desired_state` through the persisted caches: started from the file of this key when there is a
    usable one, which is then written back when anything in it changed."""
    directory = cache_dir() if directory is None else directory
    key = cache_key(paths, limits)
    loaded, why = read_cache(directory, key)
    log.debug("cli cache read: %s key=%s", why, key[:12])
    if loaded is None:
        loaded = Loaded(ManifestCache(), CompileCache())
    last = loaded.compiled.last
    desired = desired_state(paths, loaded.manifests, loaded.compiled, limits)
    moved = _moved_on(loaded, last, desired)
    if moved is not None:
        log.debug("cli cache not written: %s", moved)
    else:
        why = write_cache(directory, key, loaded.manifests, loaded.compiled, desired.loaded.digest)
        log.debug("cli cache write: %s", why)
    return desired


def desired_for(
    paths: Sequence[str | os.PathLike[str]], limits: Limits, *, no_cache: bool = False
) -> DesiredState:
    """The CLI's desired state: through the persisted cache unless it is turned off."""
    if disabled(no_cache):
        return desired_state(paths, limits=limits)
    return cached_desired_state(paths, limits)
