"""The desired state of a whole fleet: every accepted manifest by kind and name, with where it came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from dsfleet.schemas.findings import SourceRef
from dsfleet.schemas.manifests import Camera, DsInstance, InferenceProfile, Node, Policy


@dataclass(frozen=True)
class Fleet:
    nodes: Mapping[str, Node] = field(default_factory=dict)
    cameras: Mapping[str, Camera] = field(default_factory=dict)
    instances: Mapping[str, DsInstance] = field(default_factory=dict)
    profiles: Mapping[str, InferenceProfile] = field(default_factory=dict)
    policies: Mapping[str, Policy] = field(default_factory=dict)
    sources: Mapping[tuple[str, str], SourceRef] = field(default_factory=dict)
    """(kind, name) → the document that defined it."""
    invalid: Mapping[tuple[str, str], SourceRef] = field(default_factory=dict)
    """(kind, name) → a document that names it but fails its schema (reported there; references to it are not
    reported as missing)."""
    credential_free_files: frozenset[str] = frozenset()
    """Files whose text holds no ``@``, no ``?`` and no backslash (so no escape can spell either): no value read
    from them can carry URL user-info or a query string, the forms every credential check looks for, so those
    checks may skip their manifests (the loader fills it; empty means check everything)."""

    def credential_free(self, kind: str, name: str) -> bool:
        """Whether the manifest's file is credential-free (see :attr:`credential_free_files`)."""
        ref = self.sources.get((kind, name))
        return ref is not None and ref.file in self.credential_free_files

    def defined_invalid(self, kind: str, name: str) -> bool:
        return (kind, name) in self.invalid

    def source(self, kind: str, name: str, *path: str | int) -> SourceRef | None:
        ref = self.sources.get((kind, name))
        return ref.at(*path) if ref is not None else None

    @cached_property
    def camera_labels(self) -> Mapping[tuple[str, str], frozenset[str]]:
        """(label key, value) → names of the cameras carrying it: built once per fleet, on first use, so label
        selectors cost their matches, not a scan of every camera (the fleet is frozen, so it never goes stale)."""
        index: dict[tuple[str, str], set[str]] = {}
        for name, camera in self.cameras.items():
            for item in camera.metadata.labels.items():
                index.setdefault(item, set()).add(name)
        return {item: frozenset(names) for item, names in index.items()}

    def __len__(self) -> int:
        return (
            len(self.nodes)
            + len(self.cameras)
            + len(self.instances)
            + len(self.profiles)
            + len(self.policies)
        )
