"""Finding the manifest files: a walk of the manifests paths that honours ``.dsfleetignore`` files and exclude
patterns, refuses symlinks that leave a root, and names each file as messages show it (:func:`discover`). A kept
walk (:class:`Discovered`) is taken again while no directory it listed changed."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsfleet.reconciler.loading.ignores import IGNORE_FILE, Pattern, compile_patterns, ignored
from dsfleet.schemas.findings import Finding, Location, Severity, SourceRef

if TYPE_CHECKING:
    from dsfleet.reconciler.loading.manifestsets import ManifestCache

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ManifestFile:
    path: Path
    display: str
    """The name used in messages (relative to the working directory when possible)."""
    relative: str = ""
    """The name relative to the path it was found under (the file's own name for a file given as such): what
    the manifests hash covers, so ``apply /x/fleet`` and ``apply ./`` from ``/x/fleet`` hash alike."""
    real: str = ""
    """The file's real path (symlinks resolved): how a file watcher names it."""


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("../../") else str(path)


def _display_child(dir_display: str | None, path: Path) -> str:
    """``_display(path)`` for a file ``path`` directly in a directory whose ``os.path.relpath`` is ``dir_display``
    (``None``: none): one ``relpath`` per directory instead of one per file."""
    if dir_display is None:
        return str(path)
    rel = path.name if dir_display == "." else os.path.join(dir_display, path.name)
    return rel if not rel.startswith("../../") else str(path)


def _ignore_rules(
    root: Path, here: Path, rules: list[tuple[str, tuple[Pattern, ...]]], findings: list[Finding]
) -> None:
    """Add the patterns of ``here/.dsfleetignore`` (relative to ``here``) to ``rules``."""
    ignore = here / IGNORE_FILE
    if not ignore.is_file():
        return
    try:
        lines = ignore.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        findings.append(file_finding(_display(ignore), "manifest-read", f"cannot read: {exc}"))
        return
    base = here.relative_to(root).as_posix()
    rules.append(("" if base == "." else base + "/", compile_patterns(lines)))


RACY_NS = 2_000_000_000
"""A file or directory changed this recently may change again within the same tick of the file system's clock
without its mtime moving, so its stat vouches for nothing yet (git's "racy" entries): it is looked at again next
time."""
UNTRUSTED = (-1, -1, -1)


def _stat_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def _trusted(key: tuple[int, int, int] | None, now_ns: int) -> tuple[int, int, int] | None:
    return UNTRUSTED if key is not None and now_ns - key[0] < RACY_NS else key


@dataclass(frozen=True)
class Discovered:
    """What :func:`discover` found, and what it read to find it: every directory it listed and every
    ``.dsfleetignore`` it read, with their (mtime, inode, size) then. As long as none of those changed, the same
    walk finds the same files (a directory's mtime changes whenever a name in it is added, removed or renamed)."""

    key: tuple[Any, ...]
    files: tuple[ManifestFile, ...]
    findings: tuple[Finding, ...]
    read: tuple[tuple[str, tuple[int, int, int] | None], ...]
    reals: frozenset[str] = frozenset()
    """The real paths of :attr:`files`."""

    @functools.cached_property
    def by_real(self) -> dict[str, ManifestFile]:
        """:attr:`files` by real path."""
        return {f.real: f for f in self.files if f.real}

    def still_valid(self, key: tuple[Any, ...]) -> bool:
        return key == self.key and all(_stat_key(path) == stat for path, stat in self.read)


def discover(
    paths: Sequence[str | os.PathLike[str]],
    exclude: Sequence[str] = (),
    cache: ManifestCache | None = None,
    hint: AbstractSet[str] | None = None,
) -> tuple[list[ManifestFile], list[Finding]]:
    """Every ``*.yaml``/``*.yml`` under ``paths`` (sorted; dot-directories skipped; symlinks leaving a root refused;
    files matched by a ``.dsfleetignore`` (gitignore syntax) or an ``exclude`` pattern left out). With ``cache``,
    the last walk's result is taken when no directory it listed changed (one ``stat`` per directory), or, with a
    ``hint`` (the real paths a file watcher saw change since the last walk through ``cache``) that names only
    files that walk found and that are still files, without looking at any directory: a file's content changing
    changes no listing."""
    key = (tuple(os.fspath(p) for p in paths), tuple(exclude), os.getcwd())
    last = cache.discovered if cache is not None else None
    if (
        last is not None
        and hint is not None
        and key == last.key
        and hint <= last.reals
        and all(os.path.isfile(path) for path in hint)  # none removed (or replaced by a directory)
    ):
        return list(last.files), list(last.findings)
    if last is not None and last.still_valid(key):
        return list(last.files), list(last.findings)
    read: list[str] = []
    files, findings = _discover(paths, exclude, read)
    if cache is not None:
        now = time.time_ns()
        stats = tuple((path, _trusted(_stat_key(path), now)) for path in read)
        reals = frozenset(f.real for f in files if f.real)
        cache.discovered = Discovered(key, tuple(files), tuple(findings), stats, reals)
    return files, findings


def _discover(
    paths: Sequence[str | os.PathLike[str]], exclude: Sequence[str], read: list[str]
) -> tuple[list[ManifestFile], list[Finding]]:
    """:func:`discover`'s walk; ``read`` gets every directory listed and ignore file read."""
    excluded = compile_patterns(exclude)
    files: list[ManifestFile] = []
    findings: list[Finding] = []
    seen: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        read.append(str(root))  # the root itself: a path that appears, or a file given that is replaced
        if not root.exists():
            findings.append(file_finding(str(root), "manifest-path", "no such file or directory"))
            continue
        if root.is_file():
            resolved = root.resolve()
            if resolved not in seen:
                seen.add(resolved)
                files.append(ManifestFile(root, _display(root), root.name, str(resolved)))
            continue
        real_root = root.resolve()
        rules: list[tuple[str, tuple[Pattern, ...]]] = []
        for dirpath, dirnames, filenames, links in _walk(str(root)):
            read.append(dirpath)
            here = Path(dirpath)
            if IGNORE_FILE in filenames:
                read.append(os.path.join(dirpath, IGNORE_FILE))
                _ignore_rules(root, here, rules, findings)
            scoped = [*rules, ("", excluded)]
            prefix = here.relative_to(root).as_posix()
            prefix = "" if prefix == "." else prefix + "/"
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and not ignored(scoped, prefix + d, True)
            )
            filenames = [n for n in filenames if not ignored(scoped, prefix + n, False)]
            for d in list(dirnames):
                if d in links:
                    target = (here / d).resolve()
                    if not target.is_relative_to(real_root):
                        findings.append(
                            file_finding(
                                _display(here / d),
                                "manifest-symlink",
                                "symlink points outside the manifests directory",
                            )
                        )
                        dirnames.remove(d)
            # One realpath and one relpath per directory: a file that is not a symlink resolves to its name in
            # the resolved directory, and its display name is its name in the directory's display name.
            real_here: Path | None = None
            dir_display: str | None = None
            for name in sorted(filenames):
                if name.startswith(".") or not name.endswith(YAML_SUFFIXES):
                    continue
                path = here / name
                if name in links:
                    resolved = path.resolve()
                    if not resolved.is_relative_to(real_root):
                        findings.append(
                            file_finding(
                                _display(path),
                                "manifest-symlink",
                                "symlink points outside the manifests directory",
                            )
                        )
                        continue
                else:
                    if real_here is None:
                        # the walk never enters a symlinked directory: here's real path is the real root's
                        real_here = real_root / prefix if prefix else real_root
                        try:
                            dir_display = os.path.relpath(here)
                        except ValueError:
                            dir_display = None
                    resolved = real_here / name
                if resolved in seen:
                    continue
                seen.add(resolved)
                files.append(
                    ManifestFile(
                        path,
                        _display(path) if real_here is None else _display_child(dir_display, path),
                        prefix + name,
                        str(resolved),
                    )
                )
    return files, findings


def _walk(top: str) -> Iterator[tuple[str, list[str], list[str], set[str]]]:
    """``os.walk(top, followlinks=False)`` (top-down; prune by editing the directory list) that also yields the
    names that are symlinks: one ``scandir`` per directory tells both, where ``islink`` would cost a system call
    per file (most of the time of ``discover`` on a fleet of a thousand directories). Unreadable directories are
    skipped, as ``os.walk`` does."""
    try:
        with os.scandir(top) as it:
            entries = list(it)
    except OSError:
        return
    dirs: list[str] = []
    files: list[str] = []
    links: set[str] = set()
    for entry in entries:
        try:
            is_dir = entry.is_dir()  # a symlink to a directory is listed as one, like os.walk
        except OSError:
            is_dir = False
        if entry.is_symlink():
            links.add(entry.name)
        (dirs if is_dir else files).append(entry.name)
    yield top, dirs, files, links
    for name in dirs:
        if name not in links:  # followlinks=False
            yield from _walk(os.path.join(top, name))


def file_finding(file: str, rule: str, message: str, line: int = 0, column: int = 0) -> Finding:
    return Finding(
        severity=Severity.ERROR,
        rule=rule,
        message=message,
        source=SourceRef(file=file),
        location=Location(file=file, line=line, column=column),
    )
