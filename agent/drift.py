"""Pure: drift, the differences between what the agent applied and what it finds on the host.

The agent knows what it applied from its record in ``<state-dir>/applied.json`` (:class:`Applied`: the container
id it created or adopted, the spec hash of that container's labels, the files hash it last (re)started it with).
Drift is what changed *behind its back*, as opposed to a new desired config:

========================  ===========================================================  ======================
kind                      when                                                          heal (self-heal on)
========================  ===========================================================  ======================
``stopped``               the container exited although nothing asked (a ``docker stop``  start it
                          or ``kill``: exit 137/143, or any exit under ``unless-stopped``)
``removed``               the agent applied a container for the instance; none is there  create it
``relabelled``            the instance's container carries another spec hash than the    recreate it
                          one the agent applied it with (replaced by someone else)
``file-edited``           a rendered file on disk differs from the desired one while     rewrite + restart
                          the agent applied these very files
``file-missing``          a rendered file is gone (same condition)                       rewrite + restart
========================  ===========================================================  ======================

A crash is not drift: a container that exits with another code under ``on-failure``/``no`` is Docker's to
restart, and the status reports it (``exited``/``backoff``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "SIGNAL_EXIT_CODES",
    "Applied",
    "DriftFinding",
    "DriftKind",
    "file_drift",
    "stopped_by_hand",
]

SIGNAL_EXIT_CODES = frozenset({137, 143})
"""128 + SIGKILL, 128 + SIGTERM: what ``docker kill`` and ``docker stop`` leave."""


class DriftKind(StrEnum):
    STOPPED = "stopped"
    REMOVED = "removed"
    RELABELLED = "relabelled"
    FILE_EDITED = "file-edited"
    FILE_MISSING = "file-missing"


@dataclass(frozen=True)
class Applied:
    """What the agent last applied for one instance (kept in ``<state-dir>/applied.json``)."""

    container_id: str
    spec_hash: str
    files_hash: str
    generation: int | None = None
    previous_image: str | None = None
    """The image of the container this one replaced (another image): its engine volume is kept for a rollback."""
    paused: bool = False
    """The agent stopped this container itself because its instance is paused: it starts it again (no drift)
    when the instance is no longer paused, whatever the exit code."""


@dataclass(frozen=True)
class DriftFinding:
    instance: str
    kind: DriftKind
    detail: str = ""


def stopped_by_hand(state: str, exit_code: int | None, restart_policy: str) -> bool:
    """True when an exited container was stopped from outside rather than crashing on its own.

    Under ``unless-stopped`` Docker restarts every crash itself, so an ``exited`` container was stopped on purpose;
    under the other policies only the signal exit codes of ``docker stop``/``docker kill`` say so.
    """
    if state not in ("exited", "dead"):
        return False
    return restart_policy == "unless-stopped" or exit_code in SIGNAL_EXIT_CODES


def file_drift(
    instance: str, writes: Collection[str], removals: Collection[str], existing: Collection[str]
) -> list[DriftFinding]:
    """Findings for the file plan of an instance whose desired files the agent already applied.

    ``writes``: desired files that differ on disk (content or mode); ``removals``: stray files; ``existing``: the
    names found on disk. A desired file not on disk is ``file-missing``; any other difference ``file-edited``.
    """
    findings = []
    missing = sorted(w for w in writes if w not in existing)
    edited = sorted([w for w in writes if w in existing] + list(removals))
    if missing:
        findings.append(DriftFinding(instance, DriftKind.FILE_MISSING, ", ".join(missing)))
    if edited:
        findings.append(DriftFinding(instance, DriftKind.FILE_EDITED, ", ".join(edited)))
    return findings
