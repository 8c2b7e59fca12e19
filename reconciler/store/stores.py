"""The store: the concern mixins composed into one class."""

from __future__ import annotations

from dsfleet.reconciler.store.coordinators import CoordinatorMixin
from dsfleet.reconciler.store.database import StoreBase
from dsfleet.reconciler.store.deliveries import DeliveriesMixin
from dsfleet.reconciler.store.legacyviews import LegacyViewsMixin
from dsfleet.reconciler.store.nodekeys import KeysMixin
from dsfleet.reconciler.store.nodestates import LiveMixin
from dsfleet.reconciler.store.observed import ObservedMixin
from dsfleet.reconciler.store.outbox import OutboxMixin
from dsfleet.reconciler.store.revisions import RevisionsMixin
from dsfleet.reconciler.store.snapshots import SnapshotsMixin


class Store(
    SnapshotsMixin,
    RevisionsMixin,
    OutboxMixin,
    ObservedMixin,
    LiveMixin,
    CoordinatorMixin,
    LegacyViewsMixin,
    KeysMixin,
    DeliveriesMixin,
    StoreBase,
):
    """The coordinator's database. Create with :meth:`open`; close with :meth:`close` (or ``with``)."""
