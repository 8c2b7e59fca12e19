"""Adapter: the files a deepstream-app config names, read from this host for the importer
(:func:`dsfleet.reconciler.importers.deepstreamapp.import_app`, which itself reads nothing)."""

from __future__ import annotations

import posixpath
from pathlib import Path, PurePosixPath

from dsfleet.reconciler.importers.deepstreamapp import ReadFile

__all__ = ["read_gie_near"]


def read_gie_near(app_file: Path, origin: str | PurePosixPath | None = None) -> ReadFile:
    """A ``read_file`` for :func:`import_app`: a container path under ``origin`` (default: ``app_file``'s own
    directory, absolute) is read from the same place relative to ``app_file``'s directory on this host; in a
    folder of flattened copies (``<repo>__<dir>__<name>``, like the shared samples) the copy with the app file's
    prefix."""
    here = app_file.resolve().parent
    root = PurePosixPath(origin) if origin is not None else PurePosixPath(here)
    prefix = app_file.name.rsplit("__", 1)[0] if "__" in app_file.name else None

    def read(path: str) -> tuple[str, str] | None:
        relative = posixpath.relpath(path, str(root)) if path.startswith("/") else path
        candidates = [here / relative]
        if prefix is not None and not relative.startswith(".."):
            candidates.append(here / f"{prefix}__{relative.replace('/', '__')}")
        for candidate in candidates:
            if candidate.is_file():
                return candidate.read_bytes().decode("utf-8"), str(candidate)
        return None

    return read
