"""Rollback pins: what a rollback holds, and whether the manifests source has moved past it (pure).

``dsfleet rollback`` stores a revision that restores an older one's node configs, and a **pin**: automatic sync
is held while the manifests source still points at what was rolled back from — the git commit for a git work
tree, the manifests hash for a plain directory — and resumes by itself once the source moves past it (a new
commit, or other content). Without it, the next re-read of the source would apply the bad revision again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

__all__ = [
    "DIRTY",
    "Pin",
    "SourceState",
    "apply_held",
    "changed_configs",
    "pin_holds",
    "unpin_condition",
]

DIRTY: Final = "-dirty"
"""The suffix of a commit whose work tree has uncommitted changes (the content may change under it)."""


@dataclass(frozen=True)
class SourceState:
    """Where the manifests source points: its git commit (None: not a git work tree) and its manifests hash."""

    commit: str | None
    manifests_hash: str


@dataclass(frozen=True)
class Pin:
    """A rollback's hold on automatic sync.

    ``revision``: the revision whose configs were restored; ``rollback_revision``: the revision the rollback
    stored; ``from_revision``: the revision rolled back from; ``source``: where the manifests source pointed
    then (what keeps the pin); ``node``: the one node rolled back (None: the fleet)."""

    revision: int
    rollback_revision: int
    from_revision: int | None
    source: SourceState
    since: datetime
    by: str
    node: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "rollbackRevision": self.rollback_revision,
            "fromRevision": self.from_revision,
            "commit": self.source.commit,
            "manifestsHash": self.source.manifests_hash,
            "since": self.since.isoformat(),
            "by": self.by,
            "node": self.node,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Pin | None:
        """The pin of its JSON form; None for None or a malformed value (never raises: it is read each tick)."""
        if not isinstance(data, Mapping):
            return None
        try:
            from_revision = data.get("fromRevision")
            return cls(
                revision=int(data["revision"]),
                rollback_revision=int(data["rollbackRevision"]),
                from_revision=int(from_revision) if from_revision is not None else None,
                source=SourceState(
                    commit=str(data["commit"]) if data.get("commit") else None,
                    manifests_hash=str(data.get("manifestsHash") or ""),
                ),
                since=datetime.fromisoformat(str(data["since"])),
                by=str(data.get("by") or "unknown"),
                node=str(data["node"]) if data.get("node") else None,
            )
        except (KeyError, TypeError, ValueError):
            return None


def pin_holds(pin: Pin, source: SourceState) -> bool:
    """Whether ``pin`` still holds automatic sync with the manifests source at ``source``.

    A git work tree: held while its commit is the pinned one (a new commit, or uncommitted changes appearing,
    moves past it); when the pinned commit itself was ``-dirty``, also while the content is unchanged. A plain
    directory (no commit then or now): held while its manifests hash is the pinned one."""
    pinned = pin.source
    if pinned.commit is not None or source.commit is not None:
        if source.commit != pinned.commit:
            return False
        if pinned.commit is not None and pinned.commit.endswith(DIRTY):
            return source.manifests_hash == pinned.manifests_hash
        return True
    return source.manifests_hash == pinned.manifests_hash


def apply_held(pin: Pin | None, source: SourceState, seen: int | None) -> bool:
    """Whether an apply about to store the manifests source at ``source`` must store nothing, decided on the pin
    read inside the apply's own write transaction (``pin``; None: none is set). ``seen``: the rollback revision of
    the pin the caller read before it planned (None: none was set then).

    Held when the pin holds that source state (:func:`pin_holds`: storing it would undo the rollback), and
    whenever the pin is not the one the caller read: a rollback was stored after the caller planned, so its plan
    was made against configs the rollback has since replaced (the caller plans again and reads the pin anew)."""
    if pin is None:
        return False
    if seen is None or pin.rollback_revision != seen:
        return True
    return pin_holds(pin, source)


def unpin_condition(pin: Pin) -> str:
    """What lifts ``pin``, in an operator's words."""
    commit = pin.source.commit
    if commit is not None:
        moved = f"a new commit in the manifests' git work tree (the pinned commit is {commit[:12]})"
    else:
        moved = f"a change of the manifests (the pinned manifests hash is {pin.source.manifests_hash[:12]})"
    return f"{moved}, or `dsfleet unpin`"


def changed_configs(
    target: Mapping[str, str],
    current: Mapping[str, str],
    *,
    node: str | None = None,
) -> tuple[frozenset[str], frozenset[str]]:
    """Which nodes a rollback changes: ``target`` and ``current`` map node → config hash (the revision
    restored, what the store holds now). Returns (nodes to store the target's config for, nodes to remove:
    they have a config now and none in the target). ``node``: only that node."""
    names = set(target) | set(current)
    if node is not None:
        names &= {node}
    restore = frozenset(n for n in names if n in target and current.get(n) != target[n])
    remove = frozenset(n for n in names if n not in target and n in current)
    return restore, remove
