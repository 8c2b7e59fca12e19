"""The project's exception tree: one root, two branches.

``TemporaryError``: worth retrying with capped, jittered backoff (database locked, connection refused, broker
down). ``PermanentError``: retrying cannot help until the input or the setup changes (bad schema version,
constraint violated, unreadable input). Adapters translate library exceptions into these two branches.
"""

from __future__ import annotations


class DsfleetError(Exception):
    """Root of every error dsfleet raises on purpose."""


class TemporaryError(DsfleetError):
    """May succeed when retried later."""


class PermanentError(DsfleetError):
    """Will fail again the same way until something changes."""
