"""Paths in DeepStream configs as DeepStream opens them, and the names dsfleet renders imported files under (pure).

DeepStream resolves most relative paths against the directory of the config file that names them
(deepstream-app's ``get_absolute_file_path``, nvinfer's and nvdspreprocess's parsers); a few it passes on as they
are, relative to the working directory (``KeySpec.cwd_relative``: ``output-file``, a broker adapter given by
library name, ``custom-network-config``). dsfleet renders every file of an instance into one directory, so an
importer resolves each relative path against the original file's directory in the container
(:func:`resolve_path`) and either imports the file it names (small text configs) or keeps the absolute path.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Final

from dsfleet.schemas.deepstream import KeySpec, PathKind

__all__ = ["FileNames", "is_relative", "resolve_file_uri", "resolve_path"]

_FILE_NAME_BAD: Final = re.compile(r"[^A-Za-z0-9_.-]+")


def is_relative(value: str) -> bool:
    return bool(value) and not value.startswith("/")


def _join(base: PurePosixPath, value: str) -> str:
    return posixpath.normpath(posixpath.join(str(base), value))


def resolve_path(value: str, base: PurePosixPath, spec: KeySpec, cwd: PurePosixPath | None = None) -> str:
    """The path DeepStream opens for ``value`` of ``spec``, named in a config file in directory ``base``.

    Absolute paths are kept as written. A path DeepStream resolves against the config's directory is joined to
    ``base`` and normalised; a working-directory input is joined to ``cwd`` when given (a bare library name such
    as ``libnvds_kafka_proto.so`` is searched for by ``dlopen``, and an output is written relative to the working
    directory wherever it is: both kept)."""
    if not is_relative(value):
        return value
    if spec.cwd_relative:
        library = spec.path_kind is PathKind.MODEL and "/" not in value
        if cwd is None or library or spec.path_kind is PathKind.OUTPUT:
            return value
        return _join(cwd, value)
    return _join(base, value)


def resolve_file_uri(uri: str, base: PurePosixPath) -> str:
    """A ``file://`` URI as deepstream-app opens it: the part after ``file://`` relative to ``base`` when it is
    relative (``file://../../streams/a.mp4``); every other URI as it is (``file:/x`` too: GStreamer's form)."""
    if not uri.startswith("file://"):
        return uri
    rest = uri[len("file://") :]
    return uri if not is_relative(rest) else "file://" + _join(base, rest)


class FileNames:
    """Unique names in an instance's configs directory, one per original file (the same file always gets the
    same name): the original base name, else its directory's name joined to it, else a numbered one."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._by_path: dict[str, str] = {}
        self._taken: set[str] = set(reserved)

    @staticmethod
    def clean(name: str) -> str:
        cleaned = _FILE_NAME_BAD.sub("_", name).lstrip(".-") or "file"
        return cleaned[:120]

    def reserve(self, name: str) -> None:
        self._taken.add(name)

    def name_for(self, path: str, name: str | None = None) -> str:
        """The name of the file at ``path`` (``name``: the preferred one, default its base name)."""
        found = self._by_path.get(path)
        if found is not None:
            return found
        pure = PurePosixPath(path)
        wanted = self.clean(name or pure.name)
        candidates = [wanted]
        if pure.parent.name:
            candidates.append(self.clean(f"{pure.parent.name}_{wanted}"))
        stem, dot, suffix = wanted.rpartition(".")
        candidates.extend(f"{stem}-{n}{dot}{suffix}" if dot else f"{wanted}-{n}" for n in range(2, 1000))
        chosen = next(c for c in candidates if c not in self._taken)
        self._taken.add(chosen)
        self._by_path[path] = chosen
        return chosen
