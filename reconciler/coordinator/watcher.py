"""Watching the manifests directory (the only importer of ``watchfiles``).

Changes are debounced by watchfiles (``step`` ms of quiet, at most ``debounce`` ms) and filtered: editor swap and
backup files (``.swp``, ``.swx``, ``~``, ``.#*``, vim's ``4913`` probe), anything inside a dot-directory (``.git``)
and files that are not ``*.yaml``/``*.yml`` never wake the coordinator. A file still being written may still
make a set invalid: the coordinator then records a rejected revision and keeps the last good one, and applies as
soon as the next change makes the set valid.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import watchfiles

log = logging.getLogger(__name__)

_TEMP_SUFFIXES = (".swp", ".swx", ".swo", "~", ".tmp", ".part", ".crdownload")
MANIFEST_SUFFIXES = (".yaml", ".yml")
IGNORE_FILES = (".dsfleetignore",)


def wanted(path: str, root: Path) -> bool:
    """Whether a change of ``path`` (below ``root``) can change the manifest set."""
    p = Path(path)
    try:
        rel = p.relative_to(root)
    except ValueError:
        return False
    parts = rel.parts
    if not parts:
        return False
    if any(part.startswith(".") for part in parts[:-1]):
        return False  # inside a dot-directory such as .git
    name = parts[-1]
    if name in IGNORE_FILES:
        return True
    if name.startswith((".#", ".")) or name == "4913" or name.endswith(_TEMP_SUFFIXES):
        return False
    # a directory removed or renamed has no suffix: let it through (its manifests went with it)
    return name.endswith(MANIFEST_SUFFIXES) or "." not in name


class Watcher:
    """Runs watchfiles in a thread; ``changed`` is set whenever a wanted change happened, and the paths that
    changed are kept until taken (:meth:`take`)."""

    def __init__(self, root: Path, *, step_ms: int = 50, debounce_ms: int = 300) -> None:
        self.root = root.resolve()
        self.step_ms = step_ms
        self.debounce_ms = max(debounce_ms, step_ms)
        self.changed = threading.Event()
        self._paths: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dsfleet-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        root = self.root
        try:
            for changes in watchfiles.watch(
                root,
                watch_filter=lambda _change, path: wanted(path, root),
                step=self.step_ms,
                debounce=self.debounce_ms,
                stop_event=self._stop,
                yield_on_timeout=True,
                rust_timeout=200,
                raise_interrupt=False,
                ignore_permission_denied=True,
            ):
                self.ready.set()
                if changes:
                    log.debug("manifests changed files=%d", len(changes))
                    with self._lock:
                        self._paths.update(path for _change, path in changes)
                    self.changed.set()
        except Exception as exc:  # the directory vanished, inotify limits: the loop polls instead
            self.error = exc
            log.warning("watcher stopped error=%s; falling back to polling", type(exc).__name__)
        finally:
            self.ready.set()

    def take(self) -> frozenset[str]:
        """The real paths of what changed since the last call (empty: nothing did). The loader may trust them
        to name every file whose content changed meanwhile (the coordinator also reads the whole directory from
        time to time, in case the watcher missed something)."""
        if not self.changed.is_set():
            return frozenset()
        with self._lock:
            self.changed.clear()
            paths, self._paths = frozenset(self._paths), set()
        return paths

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
