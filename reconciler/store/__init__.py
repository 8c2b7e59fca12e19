"""The coordinator's store: revisions, inventory, per-node configs, outbox (SQLAlchemy 2 Core).

An adapter: the only package that imports ``sqlalchemy`` (and ``alembic``). It stores what the pure core computed (plans, node
configs, hashes are passed in) and never calls a clock (callers pass ``now``). SQLite is the default
(``./.dsfleet/state.db``); PostgreSQL works with the same code and another URL
(``postgresql+psycopg://user@host/db``).

Secrets never get here: camera rows carry a credentials-free URL and a ``secret_ref``; a URL with user-info is
refused before anything is written.

``schema`` holds the current tables; ``migrations`` is their one history of Alembic revisions (the baseline also
upgrades a store of the release before Alembic in place), run programmatically in one transaction. Opening an
older database for writing upgrades it (so does ``dsfleet db upgrade``); a newer one is an error.
``readonly=True`` never creates or migrates anything: a missing SQLite file reads as an empty store, and an older
SQLite file is read through an upgraded in-memory copy.

One module per concern: ``schema`` (tables), ``database`` (URL → engine, migrations, transactions), ``values``
(dataclasses in and out), ``revisions``, ``inventory``, ``outbox``, ``observed`` (observed state and events),
``legacyviews`` (the older system's read views), ``coordinators`` (the fleet id and the coordinator's heartbeat),
``snapshots`` (what status shows, read in one transaction);
``stores`` composes their mixins into :class:`Store`. This package hands out the store (and everything else that
needs SQLAlchemy) lazily, so the values the apply path builds come without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dsfleet.reconciler.store.errors import PermanentStoreError, StoreError, TemporaryStoreError
from dsfleet.reconciler.store.values import (
    SOURCES,
    AppliedRevision,
    CameraRow,
    Encoder,
    InstanceRow,
    Inventory,
    InventoryDelta,
    LegacyAgent,
    LegacyCamera,
    LegacyDsInstance,
    NewRevision,
    NodeChange,
    NodeRow,
    OutboxRow,
    RevisionRecord,
    StoredInventory,
    StoredNodeConfig,
)

if TYPE_CHECKING:
    from dsfleet.reconciler.store.coordinators import CoordinatorBeat
    from dsfleet.reconciler.store.database import BUSY_TIMEOUT_MS, default_url
    from dsfleet.reconciler.store.migrations import SchemaState, head_revision
    from dsfleet.reconciler.store.nodekeys import EnrollmentTokenRow, KeySighting, NodeKeyRow
    from dsfleet.reconciler.store.nodestates import KnownNodeRow, NodeLive, NodeStatusRow, RetiringNode
    from dsfleet.reconciler.store.observed import EventRecord, ObservedRow
    from dsfleet.reconciler.store.snapshots import HeldConfig, ObservedDetail, OutboxWait, StatusSnapshot
    from dsfleet.reconciler.store.stores import Store

__all__ = [
    "BUSY_TIMEOUT_MS",
    "SOURCES",
    "AppliedRevision",
    "CameraRow",
    "CoordinatorBeat",
    "Encoder",
    "EnrollmentTokenRow",
    "EventRecord",
    "HeldConfig",
    "InstanceRow",
    "Inventory",
    "InventoryDelta",
    "KeySighting",
    "KnownNodeRow",
    "LegacyAgent",
    "LegacyCamera",
    "LegacyDsInstance",
    "NewRevision",
    "NodeChange",
    "NodeKeyRow",
    "NodeLive",
    "NodeRow",
    "NodeStatusRow",
    "ObservedDetail",
    "ObservedRow",
    "OutboxRow",
    "OutboxWait",
    "PermanentStoreError",
    "RetiringNode",
    "RevisionRecord",
    "SchemaState",
    "StatusSnapshot",
    "Store",
    "StoreError",
    "StoredInventory",
    "StoredNodeConfig",
    "TemporaryStoreError",
    "default_url",
    "head_revision",
]

_LAZY = {
    "BUSY_TIMEOUT_MS": "database",
    "CoordinatorBeat": "coordinators",
    "default_url": "database",
    "SchemaState": "migrations",
    "head_revision": "migrations",
    "EnrollmentTokenRow": "nodekeys",
    "KeySighting": "nodekeys",
    "NodeKeyRow": "nodekeys",
    "KnownNodeRow": "nodestates",
    "NodeLive": "nodestates",
    "NodeStatusRow": "nodestates",
    "RetiringNode": "nodestates",
    "EventRecord": "observed",
    "ObservedRow": "observed",
    "HeldConfig": "snapshots",
    "ObservedDetail": "snapshots",
    "OutboxWait": "snapshots",
    "StatusSnapshot": "snapshots",
    "Store": "stores",
}
"""What needs SQLAlchemy is imported when first asked for: the values above (what the apply path builds) come
without it."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
