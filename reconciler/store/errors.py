"""Store errors: what a SQLAlchemy or driver exception means for the caller (retry or stall)."""

from __future__ import annotations

import sqlite3
from typing import Final

from dsfleet.schemas.errors import DsfleetError, PermanentError, TemporaryError

# --------------------------------------------------------------------------------------------------- errors


class StoreError(DsfleetError):
    """A store operation failed; the subclass says whether retrying may help."""


class TemporaryStoreError(StoreError, TemporaryError):
    """Database locked or busy, connection lost or refused, serialization failure: retry later."""


class PermanentStoreError(StoreError, PermanentError):
    """Schema too new, not a dsfleet database, constraint violated, bad URL: retrying will not help."""


class Deposed(PermanentStoreError):
    """Another coordinator claimed the store's leadership: this one's writes are refused, it must stop."""


_TEMPORARY_SQLSTATE_PREFIXES: Final = ("08", "40", "53", "57P")


def _translate(err: Exception) -> StoreError:
    """Map a SQLAlchemy/driver exception to a StoreError without echoing SQL parameters."""
    from sqlalchemy import exc as sa_exc  # imported by whoever raised it; not needed to name the errors

    orig = getattr(err, "orig", None) or err
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    text = message.lower()
    temporary = False
    if (
        (isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated)
        or isinstance(err, sa_exc.TimeoutError | sa_exc.DisconnectionError)
        or "locked" in text
        or "busy" in text
    ):
        temporary = True
    else:
        sqlstate = getattr(orig, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_TEMPORARY_SQLSTATE_PREFIXES):
            temporary = True
        elif isinstance(err, sa_exc.OperationalError | sa_exc.InterfaceError) and not isinstance(
            orig, sqlite3.Error
        ):
            temporary = True  # server backends: connection refused, server gone, too many clients
    cls = TemporaryStoreError if temporary else PermanentStoreError
    return cls(f"store: {type(orig).__name__}: {message}")
