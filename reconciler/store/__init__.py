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
``legacyviews`` (the older system's read views), ``snapshots`` (what status shows, read in one transaction).
:class:`Store` composes their mixins.
"""

from __future__ import annotations

from dsfleet.reconciler.store.database import BUSY_TIMEOUT_MS, StoreBase, default_url
from dsfleet.reconciler.store.errors import PermanentStoreError, StoreError, TemporaryStoreError
from dsfleet.reconciler.store.legacyviews import LegacyViewsMixin
from dsfleet.reconciler.store.migrations import SchemaState, head_revision
from dsfleet.reconciler.store.nodestates import KnownNodeRow, LiveMixin, NodeLive, NodeStatusRow
from dsfleet.reconciler.store.observed import EventRecord, ObservedMixin, ObservedRow
from dsfleet.reconciler.store.outbox import OutboxMixin
from dsfleet.reconciler.store.revisions import RevisionsMixin
from dsfleet.reconciler.store.snapshots import ObservedDetail, SnapshotsMixin, StatusSnapshot
from dsfleet.reconciler.store.values import (
    SOURCES,
    AppliedRevision,
    CameraRow,
    Encoder,
    InstanceRow,
    Inventory,
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

__all__ = [
    "BUSY_TIMEOUT_MS",
    "SOURCES",
    "AppliedRevision",
    "CameraRow",
    "Encoder",
    "EventRecord",
    "InstanceRow",
    "Inventory",
    "KnownNodeRow",
    "LegacyAgent",
    "LegacyCamera",
    "LegacyDsInstance",
    "NewRevision",
    "NodeChange",
    "NodeLive",
    "NodeRow",
    "NodeStatusRow",
    "ObservedDetail",
    "ObservedRow",
    "OutboxRow",
    "PermanentStoreError",
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


class Store(
    SnapshotsMixin, RevisionsMixin, OutboxMixin, ObservedMixin, LiveMixin, LegacyViewsMixin, StoreBase
):
    """The coordinator's database. Create with :meth:`open`; close with :meth:`close` (or ``with``)."""
