"""The coordinator's directory watcher on a real file system (inotify through watchfiles): it names the files
that changed, which the loader then reads alone (``tests/unit/test_incremental.py``)."""

from __future__ import annotations

import time
from pathlib import Path

from dsfleet.reconciler.coordinator.watcher import Watcher


def _taken(watcher: Watcher, deadline: float) -> frozenset[str]:
    seen: set[str] = set()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        seen |= watcher.take()
        if seen:
            # the debounce may split one burst: collect what follows within a short quiet spell
            quiet = time.monotonic() + 0.6
            while time.monotonic() < quiet:
                more = watcher.take()
                if more:
                    seen |= more
                    quiet = time.monotonic() + 0.6
                time.sleep(0.02)
            return frozenset(seen)
        time.sleep(0.02)
    return frozenset(seen)


def test_the_watcher_names_the_manifest_files_that_changed(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    (root / "cameras").mkdir(parents=True)
    cameras = root / "cameras" / "gate.yaml"
    cameras.write_text("apiVersion: dsfleet/v1\n")
    watcher = Watcher(root, step_ms=20, debounce_ms=100)
    watcher.start()
    try:
        assert watcher.ready.wait(10)
        assert watcher.take() == frozenset()
        cameras.write_text("apiVersion: dsfleet/v1\nkind: Camera\n")
        (root / "cameras" / ".gate.yaml.swp").write_text("x")  # an editor's swap file: never a change
        (root / "notes.txt").write_text("x")
        assert _taken(watcher, 10) == {str(cameras.resolve())}
        assert watcher.take() == frozenset(), "taken once"
        added = root / "nodes.yaml"
        added.write_text("apiVersion: dsfleet/v1\n")
        cameras.unlink()
        assert _taken(watcher, 10) == {str(added.resolve()), str(cameras.resolve())}
    finally:
        watcher.stop()
