"""The values the store takes and returns (frozen dataclasses; no SQLAlchemy types leak out)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from dsfleet.reconciler.store.errors import PermanentStoreError
from dsfleet.schemas.placeholders import url_has_credentials

# --------------------------------------------------------------------------------------------------- values

SOURCES: Final = frozenset({"watch", "cli", "api", "webhook", "rollback"})


@dataclass(frozen=True)
class NewRevision:
    """A revision about to be stored. ``created_at`` must be timezone-aware (stored as UTC)."""

    source: str
    created_at: datetime
    manifests_hash: str
    git_commit: str | None = None
    git_author: str | None = None
    git_message: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"revision source must be one of {sorted(SOURCES)}")
        _to_utc(self.created_at)


@dataclass(frozen=True)
class NodeChange:
    """One node whose config hash changed. ``payload=None`` (and ``config_hash=None``) deletes the node."""

    node: str
    config_hash: str | None
    payload: Mapping[str, Any] | None

    def __post_init__(self) -> None:
        if (self.payload is None) != (self.config_hash is None):
            raise ValueError(f"node {self.node}: config_hash and payload must both be set or both be None")


@dataclass(frozen=True)
class NodeRow:
    name: str
    hostname: str | None = None
    node_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    capacity: int | None = None
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class CameraRow:
    name: str
    camera_id: str
    url: str
    secret_ref: str | None = None
    encoding: str | None = None
    type: str | None = None
    width: int | None = None
    height: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    instance: str | None = None


@dataclass(frozen=True)
class InstanceRow:
    name: str
    node: str | None = None
    gpu: int = 0
    image: str | None = None
    layout: str = "ccm"
    app_type: str | None = None
    profile: str | None = None
    paused: bool = False
    camera_count: int = 0
    spec_hash: str | None = None
    files_hash: str | None = None
    config_hash: str | None = None


@dataclass(frozen=True)
class Inventory:
    """The desired nodes, cameras and instances of a revision (rows as dataclasses or plain mappings)."""

    nodes: Sequence[NodeRow | Mapping[str, Any]] = ()
    cameras: Sequence[CameraRow | Mapping[str, Any]] = ()
    instances: Sequence[InstanceRow | Mapping[str, Any]] = ()
    delta: InventoryDelta | None = None
    """How these rows differ from another inventory (a caller that knows it: the coordinator)."""


@dataclass(frozen=True)
class InventoryDelta:
    """The rows of an inventory that differ from :attr:`base`'s, by name (None: the row is gone); every other
    row is :attr:`base`'s. The store writes just these when its tables hold :attr:`base`."""

    base: Inventory
    nodes: Mapping[str, NodeRow | None]
    cameras: Mapping[str, CameraRow | None]
    instances: Mapping[str, InstanceRow | None]


@dataclass(frozen=True)
class StoredNodeConfig:
    node: str
    generation: int
    config_hash: str
    payload: dict[str, Any]
    revision_id: int


@dataclass(frozen=True)
class AppliedRevision:
    revision_id: int
    generations: Mapping[str, int]
    outbox_ids: tuple[int, ...]


@dataclass(frozen=True)
class RevisionRecord:
    id: int
    created_at: datetime
    source: str
    git_commit: str | None
    git_author: str | None
    git_message: str | None
    manifests_hash: str
    accepted: bool
    errors: tuple[dict[str, Any], ...]
    nodes_changed: int


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: str
    value: bytes | None
    headers: dict[str, str]
    created_at: datetime
    published_at: datetime | None
    attempts: int
    held: bool = False
    """Held back until a camera handover is decided (``hold`` says what it waits for): not sent meanwhile."""
    hold: Mapping[str, Any] | None = None
    """What a held row waits for (JSON: ``moves``, ``since``, ``deadline``, ``state``, ``reason``); kept after its
    release."""


@dataclass(frozen=True)
class LegacyCamera:
    """A camera as the older system showed it; never a user name or password."""

    name: str
    camera_id: str
    ip_address: str | None
    encode_type: str | None
    type: str | None
    width: int | None
    height: int | None
    instance_name: str | None
    agent_name: str | None


@dataclass(frozen=True)
class LegacyAgent:
    agent_name: str
    ip_address: str | None
    hostname: str | None
    node_id: str | None
    connected: bool


@dataclass(frozen=True)
class LegacyDsInstance:
    instance_name: str
    agent_name: str
    cameras: tuple[str, ...]
    app_type: str


Encoder = Callable[[str, int, dict[str, Any] | None], tuple[str, str, bytes | str | None, Mapping[str, str]]]
"""``encode(node, generation, payload)`` → ``(topic, key, value, headers)``; ``value=None`` is a tombstone."""


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps passed to the store must be timezone-aware")
    return value.astimezone(UTC)


def _from_db(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _from_db_required(value: datetime) -> datetime:
    result = _from_db(value)
    assert result is not None
    return result


_T = TypeVar("_T")


def _coerce(cls: type[_T], row: _T | Mapping[str, Any]) -> _T:
    if isinstance(row, cls):
        return row
    if isinstance(row, Mapping):
        return cls(**row)
    raise TypeError(f"expected {cls.__name__} or a mapping, got {type(row).__name__}")


@dataclass(frozen=True)
class StoredInventory:
    """Inventory rows as dataclasses (what :meth:`Store.inventory` returns)."""

    nodes: tuple[NodeRow, ...] = ()
    cameras: tuple[CameraRow, ...] = ()
    instances: tuple[InstanceRow, ...] = ()

    @classmethod
    def of(
        cls, inventory: Inventory, checked: StoredInventory | None = None, *, trusted: bool = False
    ) -> StoredInventory:
        """Coerce mapping rows to dataclasses; refuse a camera URL that carries credentials (``checked``: an
        inventory already checked so, whose very camera rows are not checked again; ``trusted``: check none, the
        inventory was checked when it was stored)."""
        nodes = tuple(_coerce(NodeRow, r) for r in inventory.nodes)
        cameras = tuple(_coerce(CameraRow, r) for r in inventory.cameras)
        instances = tuple(_coerce(InstanceRow, r) for r in inventory.instances)
        known = {id(c) for c in checked.cameras} if checked is not None else set()
        for camera in () if trusted else cameras:
            if id(camera) not in known and url_has_credentials(camera.url):
                raise PermanentStoreError(
                    f"camera {camera.name}: url carries credentials; the store keeps credentials-free URLs "
                    "only (use credentials.secretRef)"
                )
        return cls(nodes, cameras, instances)


ROLLBACK_PIN = "rollback_pin"
"""The sync-state key of a rollback's pin (:class:`dsfleet.reconciler.planning.pins.Pin` as JSON; None: none)."""


@dataclass(frozen=True)
class HeldByPin:
    """What :meth:`dsfleet.reconciler.store.revisions.RevisionsMixin.apply_revision` returns when a rollback pin held it: nothing was stored."""

    pin: Mapping[str, Any]
    """The pin (JSON, :data:`ROLLBACK_PIN`) read inside the apply's transaction."""


ROLLOUT = "rollout"
"""The sync-state key of the newest rollout (:class:`dsfleet.reconciler.planning.rollouts.Rollout` as JSON)."""
ROLLOUT_HISTORY = "rollout_history"
"""The sync-state key of the finished rollouts, newest first (a list of summaries, at most 50)."""
ROLLOUT_REQUEST = "rollout_request"
"""The sync-state key of an operator's rollout command waiting for the coordinator (promote, pause, ...)."""
CORDONED = "cordoned"
"""The sync-state key of the cordoned nodes: node → {by, since, reason}."""
