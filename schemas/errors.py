"""The one exception tree of both sides, and the exit codes of every command.

``DsfleetError`` is the root. ``TemporaryError``: worth retrying with capped, jittered backoff (database locked,
broker down, a write that hit a full disk). ``PermanentError``: fails again the same way until the input or the
setup changes (bad schema version, invalid config, missing secret). Adapters translate library exceptions into
these two branches; loops retry the first and stall on the second (kopf, controller-runtime).

Messages name the place (a path, ``FILE:LINE:COL``, a topic) and never carry a secret's value.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of ``dsfleet`` and ``dsfleet-agent`` (kubectl / ``argocd app diff`` conventions)."""

    OK = 0
    """Success; for ``diff``: no changes."""
    FAILED = 1
    """Invalid manifests, a rejected or refused apply; for ``diff``: there are changes; a timed-out ``--wait``."""
    ERROR = 2
    """Usage error, unreadable input, unusable store or settings, an internal error, a lock held by another."""


class DsfleetError(Exception):
    """Root of every error dsfleet raises on purpose."""


class TemporaryError(DsfleetError):
    """May succeed when retried later."""


class PermanentError(DsfleetError):
    """Will fail again the same way until something changes."""
