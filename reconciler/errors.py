"""The coordinator side uses the one tree of :mod:`schemas.errors` (re-exported for its modules)."""

from __future__ import annotations

from schemas.errors import DsfleetError, ExitCode, PermanentError, TemporaryError

__all__ = ["DsfleetError", "ExitCode", "PermanentError", "TemporaryError"]
