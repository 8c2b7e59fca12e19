"""DeepStream's stream REST API (``nvmultiurisrcbin``) as a rendered deepstream-app config declares it: pure helpers
shared by the planning side (is a camera change ``hot``?) and the agent (where to send it).

- :func:`read_keyfile`: a GLib key file's groups and keys, in order (comments and blank lines dropped).
- :func:`stream_api`: the REST settings and the camera list of an app config with ``[source-list]
  use-nvmultiurisrcbin=1`` and an ``http-port`` above 0; None otherwise.
- :func:`same_but_cameras`: two app configs differ only in the camera list (``list``, ``num-source-bins``,
  ``sensor-id-list``, ``sensor-name-list`` of ``[source-list]``).
- :func:`max_batch_size`: the streams nvmultiurisrcbin batches, from ``[source-list]`` settings (None without it).
- :func:`hot_swappable`: two instances' rendered files differ only in the cameras of such an app config, the new
  count within ``max-batch-size``: a camera change applied through the REST API, no restart.
- :func:`max_batch_size`, :func:`rest_port`: the same from a manifest's ``spec.app.source-list`` values
  (validation and ``batch-size: auto``).
- :func:`api_prefix`: the path prefix by DeepStream version (``/api/v1`` from 7.0 on, none for 6.2/6.3) and
  :func:`image_version`: the version an image tag names (``deepstream:6.3-triton-multiarch`` → (6, 3)).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CAMERA_LIST_KEYS",
    "DEFAULT_MAX_BATCH_SIZE",
    "StreamApi",
    "StreamSource",
    "api_prefix",
    "hot_swappable",
    "image_version",
    "max_batch_size",
    "read_keyfile",
    "rest_port",
    "same_but_cameras",
    "stream_api",
]

SOURCE_LIST = "source-list"
CAMERA_LIST_KEYS = frozenset({"list", "num-source-bins", "sensor-id-list", "sensor-name-list"})
"""``[source-list]`` keys that follow the cameras: a change of these alone is a hot camera change."""
DEFAULT_MAX_BATCH_SIZE = 30
"""nvmultiurisrcbin's ``max-batch-size`` when the config does not set it."""

Keyfile = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]


@dataclass(frozen=True)
class StreamSource:
    """One camera as nvmultiurisrcbin knows it: ``camera_id`` (``sensor-id-list``), ``camera_name``
    (``sensor-name-list``, else the id) and its URL (credentials filled in when read from a written file)."""

    camera_id: str
    camera_name: str
    url: str = ""

    def __repr__(self) -> str:  # never show a URL: it may carry credentials
        return f"StreamSource(camera_id={self.camera_id!r}, camera_name={self.camera_name!r})"


@dataclass(frozen=True)
class StreamApi:
    port: int
    max_batch_size: int
    sources: tuple[StreamSource, ...]


def read_keyfile(text: str) -> Keyfile:
    """Groups in order, each with its ``key=value`` entries in order (values stripped)."""
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            groups.append((line[1:-1].strip(), []))
            continue
        key, sep, value = line.partition("=")
        if sep and groups:
            groups[-1][1].append((key.strip(), value.strip()))
    return tuple((name, tuple(entries)) for name, entries in groups)


def _group(keyfile: Keyfile, name: str) -> dict[str, str] | None:
    for group, entries in keyfile:
        if group == name:
            return dict(entries)
    return None


def _items(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(";") if v.strip()]


def _int(value: str | None) -> int | None:
    try:
        return int((value or "").strip())
    except ValueError:
        return None


def stream_api(text: str) -> StreamApi | None:
    """The REST settings and cameras of an app config served by nvmultiurisrcbin with a REST port; else None."""
    group = _group(read_keyfile(text), SOURCE_LIST)
    if group is None or group.get("use-nvmultiurisrcbin", "").lower() not in ("1", "true"):
        return None
    port = _int(group.get("http-port"))
    if port is None or not 0 < port < 65536:
        return None
    urls = _items(group.get("list"))
    ids = _items(group.get("sensor-id-list"))
    names = _items(group.get("sensor-name-list"))
    sources = []
    for i, url in enumerate(urls):
        camera_id = ids[i] if i < len(ids) else str(i)
        sources.append(StreamSource(camera_id, names[i] if i < len(names) else camera_id, url))
    limit = _int(group.get("max-batch-size"))
    return StreamApi(port, limit if limit and limit > 0 else DEFAULT_MAX_BATCH_SIZE, tuple(sources))


def same_but_cameras(old: str, new: str) -> bool:
    """Whether two app configs differ at most in the keys that follow the cameras (:data:`CAMERA_LIST_KEYS`)."""

    def strip(keyfile: Keyfile) -> Keyfile:
        return tuple(
            (g, tuple((k, v) for k, v in entries if g != SOURCE_LIST or k not in CAMERA_LIST_KEYS))
            for g, entries in keyfile
        )

    return strip(read_keyfile(old)) == strip(read_keyfile(new))


_VERSION_RE = re.compile(r"(?<![0-9])([0-9]+)\.([0-9]+)")


def image_version(image: str) -> tuple[int, int] | None:
    """The DeepStream version an image's tag names (``nvcr.io/nvidia/deepstream:7.1-triton-multiarch`` → (7, 1));
    None when the tag names none (``latest``, a digest)."""
    ref = image.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return None
    match = _VERSION_RE.search(tag)
    return (int(match.group(1)), int(match.group(2))) if match else None


def api_prefix(version: tuple[int, int]) -> str:
    """``/api/v1`` from DeepStream 7.0 on; no prefix for 6.2/6.3."""
    return "/api/v1" if version >= (7, 0) else ""


class _File(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def content(self) -> str: ...


def hot_swappable(old: Sequence[_File], new: Sequence[_File]) -> bool:
    """Whether going from files ``old`` to ``new`` only adds/removes cameras of an app config served by
    nvmultiurisrcbin with a REST port (same port, same ``max-batch-size``, the new cameras within it), every other
    file and key unchanged, and something actually changed."""
    before = {f.path: f.content for f in old}
    after = {f.path: f.content for f in new}
    if before.keys() != after.keys():
        return False
    changed = [p for p in after if before[p] != after[p]]
    if len(changed) != 1:
        return False
    path = changed[0]
    was, now = stream_api(before[path]), stream_api(after[path])
    if was is None or now is None or (was.port, was.max_batch_size) != (now.port, now.max_batch_size):
        return False
    return len(now.sources) <= now.max_batch_size and same_but_cameras(before[path], after[path])


def _multi(settings: Mapping[str, object]) -> bool:
    return settings.get("use-nvmultiurisrcbin") in (True, 1, "1", "true")


def max_batch_size(settings: Mapping[str, object]) -> int | None:
    """``max-batch-size`` of a manifest's ``source-list`` values with nvmultiurisrcbin (its default when unset);
    None without nvmultiurisrcbin."""
    if not _multi(settings):
        return None
    value = settings.get("max-batch-size")
    limit = value if isinstance(value, int) and not isinstance(value, bool) else _int(str(value or ""))
    return limit if limit and limit > 0 else DEFAULT_MAX_BATCH_SIZE


def rest_port(settings: Mapping[str, object]) -> int | None:
    """The REST port of a manifest's ``source-list`` values: None without nvmultiurisrcbin or without an
    ``http-port`` above 0 (only an explicit port counts)."""
    if not _multi(settings):
        return None
    value = settings.get("http-port")
    port = value if isinstance(value, int) and not isinstance(value, bool) else _int(str(value or ""))
    return port if port is not None and 0 < port < 65536 else None
