"""Which file of the manifests directory a new object goes to (pure).

The rule (documented in the operating guide's editing page):

========================  ==============================================================
kind                      file
========================  ==============================================================
``Camera``                ``cameras/<metadata.labels.zone or "default">.yaml``
``DsInstance``            ``instances/<spec.node or "unplaced">.yaml``
``Node``                  ``nodes/nodes.yaml``
``InferenceProfile``      ``profiles/<metadata.name>.yaml``
``Policy``                ``policies/<metadata.name>.yaml``
========================  ==============================================================

A label or name that cannot be a file name (it must match ``[A-Za-z0-9][A-Za-z0-9._-]*``) falls back to the
default file of the kind. An object that already exists stays in its file, wherever that is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["DEFAULT_STEMS", "FOLDERS", "placement_path"]

FOLDERS: Final = {
    "Camera": "cameras",
    "DsInstance": "instances",
    "Node": "nodes",
    "InferenceProfile": "profiles",
    "Policy": "policies",
}
DEFAULT_STEMS: Final = {
    "Camera": "default",
    "DsInstance": "unplaced",
    "Node": "nodes",
    "InferenceProfile": "profiles",
    "Policy": "policies",
}
_SAFE_STEM: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _stem(kind: str, data: Mapping[str, Any]) -> object:
    metadata = data.get("metadata")
    spec = data.get("spec")
    if kind == "Camera" and isinstance(metadata, Mapping):
        labels = metadata.get("labels")
        return labels.get("zone") if isinstance(labels, Mapping) else None
    if kind == "DsInstance" and isinstance(spec, Mapping):
        return spec.get("node")
    if kind in ("InferenceProfile", "Policy") and isinstance(metadata, Mapping):
        return metadata.get("name")
    return None


def placement_path(kind: str, data: Mapping[str, Any]) -> str:
    """The path, relative to the manifests directory and with ``/`` separators, of a new object of ``kind``."""
    stem = _stem(kind, data)
    if not (isinstance(stem, str) and _SAFE_STEM.match(stem) and not stem.endswith(".")):
        stem = DEFAULT_STEMS[kind]
    return f"{FOLDERS[kind]}/{stem}.yaml"
