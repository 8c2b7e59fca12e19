"""Revisions and per-node configs: storing an accepted/rejected revision, generations, reading them back."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, overload

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from dsfleet.reconciler.store.database import _inserted_id
from dsfleet.reconciler.store.errors import PermanentStoreError
from dsfleet.reconciler.store.inventory import InventoryMixin
from dsfleet.reconciler.store.schema import (
    EVENTS,
    INSTANCES,
    NODE_CONFIGS,
    NODE_GENERATIONS,
    OUTBOX,
    REVISIONS,
    SYNC_STATE,
)
from dsfleet.reconciler.store.values import (
    ROLLBACK_PIN,
    AppliedRevision,
    Encoder,
    HeldByPin,
    Inventory,
    InventoryDelta,
    NewRevision,
    NodeChange,
    RevisionRecord,
    StoredInventory,
    StoredNodeConfig,
    _from_db_required,
    _to_utc,
)
from dsfleet.schemas.hashing import canonical_json
from dsfleet.schemas.placeholders import url_has_credentials

MAX_GENERATION = 2**31 - 1
"""Generations are 32-bit integers in the store (PostgreSQL's ``integer``): a report above is never followed."""
IN_LIST_CHUNK = 500
"""Names per ``IN (...)`` list (well under SQLite's and PostgreSQL's bind-parameter limits)."""
PINNED_EVENT = "pinned"
UNPINNED_EVENT = "unpinned"
PG_PIN_LOCK: Final = 0x647366_70696E  # "dsf" "pin"
"""PostgreSQL's transaction-level advisory lock that orders the writes of the pin and the applies that read it
(SQLite's writers are serialized by ``BEGIN IMMEDIATE`` already)."""

PinGuard = Callable[[Mapping[str, Any]], bool]
"""Given the rollback pin (JSON) read inside an apply's transaction: True when the apply must store nothing."""


def _lock_pin(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_PIN_LOCK)))


class RevisionsMixin(InventoryMixin):
    # ---- revisions

    @overload
    def apply_revision(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        inventory: Inventory | None,
        encode: Encoder,
        *,
        inventory_base: tuple[int, Inventory] | None = None,
        holds: Mapping[str, Mapping[str, Any]] | None = None,
        unless_pinned: None = None,
        states: Mapping[str, Callable[[int], Any]] | None = None,
    ) -> AppliedRevision: ...

    @overload
    def apply_revision(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        inventory: Inventory | None,
        encode: Encoder,
        *,
        inventory_base: tuple[int, Inventory] | None = None,
        holds: Mapping[str, Mapping[str, Any]] | None = None,
        unless_pinned: PinGuard,
        states: Mapping[str, Callable[[int], Any]] | None = None,
    ) -> AppliedRevision | HeldByPin: ...

    def apply_revision(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        inventory: Inventory | None,
        encode: Encoder,
        *,
        inventory_base: tuple[int, Inventory] | None = None,
        holds: Mapping[str, Mapping[str, Any]] | None = None,
        unless_pinned: PinGuard | None = None,
        states: Mapping[str, Callable[[int], Any]] | None = None,
    ) -> AppliedRevision | HeldByPin:
        """Store an accepted revision, its node config changes, their outbox messages and the inventory.

        One transaction: if anything fails (``encode`` raising included) nothing is stored. Each changed node
        gets its next generation (1, 2, 3, …; never reused, also after the node was deleted).
        ``inventory=None`` leaves the inventory tables as they are. ``inventory_base`` = (revision id, the
        inventory that revision stored), from a caller that keeps it (the coordinator): when that revision is
        still the last accepted one, only the rows that differ from it are written, without reading the tables.
        ``holds``: node → hold (JSON-ready): that node's outbox row is written held (an ordered camera handover).
        A node's new row settles its older rows still held (they will never be sent: a newer config exists).
        ``unless_pinned``: the rollback pin (:data:`ROLLBACK_PIN`) is read first inside this transaction, after
        every write of a pin that committed before it (a rollback stored while the caller planned included); when
        one is set and ``unless_pinned(pin)`` says so, nothing is stored and :class:`HeldByPin` is returned.
        ``states``: sync-state key → ``value(revision id)``, written in the same transaction (a rollout's state).
        """
        seen: set[str] = set()
        for change in changes:
            if change.node in seen:
                raise ValueError(f"node {change.node} changed twice in one revision")
            seen.add(change.node)
        # the base was checked when it was stored; its rows given again are the same objects
        delta = inventory.delta if inventory is not None else None
        if delta is not None and (inventory_base is None or delta.base is not inventory_base[1]):
            delta = None
        if delta is not None:  # only the rows that differ are looked at (and checked for credentials)
            _check_delta(delta)
            known = rows = None
        else:
            known = (
                StoredInventory.of(inventory_base[1], trusted=True) if inventory_base is not None else None
            )
            rows = StoredInventory.of(inventory, checked=known) if inventory is not None else None
        created_at = _to_utc(rev.created_at)
        generations: dict[str, int] = {}
        outbox_ids: list[int] = []
        with self._write() as conn:
            if unless_pinned is not None:
                _lock_pin(conn)
                pin = conn.execute(
                    sa.select(SYNC_STATE.c.value).where(SYNC_STATE.c.key == ROLLBACK_PIN)
                ).scalar()
                if pin is not None and unless_pinned(pin):
                    return HeldByPin(dict(pin))
            revision_id = self._insert_revision(conn, rev, accepted=True, errors=[], changed=len(changes))
            for change in changes:
                generation, outbox_id = self._store_change(
                    conn, change, revision_id, created_at, encode, (holds or {}).get(change.node)
                )
                generations[change.node] = generation
                outbox_ids.append(outbox_id)
            if inventory is not None:
                base = None
                if inventory_base is not None:
                    last = conn.execute(
                        sa.select(sa.func.max(REVISIONS.c.id)).where(
                            REVISIONS.c.accepted.is_(True), REVISIONS.c.id < revision_id
                        )
                    ).scalar()
                    if last == inventory_base[0]:
                        base = known
                    if delta is not None and last == inventory_base[0]:
                        self._write_inventory_delta(conn, delta)
                    elif delta is not None:  # the tables hold another inventory: compare every row
                        delta = None
                if delta is None:
                    rows = rows or StoredInventory.of(inventory)
                    self._replace_inventory(conn, rows, base)
            for key, make in (states or {}).items():
                self._put_sync_state(conn, key, make(revision_id), created_at)
        return AppliedRevision(revision_id, generations, tuple(outbox_ids))

    def record_rejected(self, rev: NewRevision, errors: Sequence[Mapping[str, Any]]) -> int:
        """Store a rejected revision with its findings (JSON-ready dicts); nothing else changes."""
        errors_json = [dict(e) for e in errors]
        json.dumps(errors_json)  # fail before the transaction when a finding is not JSON-ready
        with self._write() as conn:
            return self._insert_revision(conn, rev, accepted=False, errors=errors_json, changed=0)

    def store_rollback(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        encode: Encoder,
        pin: Callable[[int], Mapping[str, Any]],
        message: str,
        *,
        states: Mapping[str, Callable[[int], Any]] | None = None,
    ) -> AppliedRevision:
        """Store a rollback in one transaction: the revision (source ``rollback``), the restored node configs
        under new generations with their outbox rows, the instances' hashes the restored configs carry, the pin
        (``pin(revision id)``, under :data:`ROLLBACK_PIN`) and a ``pinned`` event. A coordinator running on the
        store picks it all up at its next read: the outbox rows go out, the pin holds its automatic sync, and an
        apply it has planned meanwhile reads the pin inside its own transaction and stores nothing."""
        created_at = _to_utc(rev.created_at)
        generations: dict[str, int] = {}
        outbox_ids: list[int] = []
        with self._write() as conn:
            _lock_pin(conn)
            revision_id = self._insert_revision(conn, rev, accepted=True, errors=[], changed=len(changes))
            for change in changes:
                generation, outbox_id = self._store_change(
                    conn, change, revision_id, created_at, encode, None
                )
                generations[change.node] = generation
                outbox_ids.append(outbox_id)
                for instance in (change.payload or {}).get("instances", ()):
                    conn.execute(
                        INSTANCES.update()
                        .where(INSTANCES.c.name == instance["name"])
                        .values(
                            config_hash=instance.get("configHash"),
                            spec_hash=instance.get("specHash"),
                            files_hash=instance.get("filesHash"),
                            image=(instance.get("container") or {}).get("image"),
                            paused=bool(instance.get("paused", False)),
                        )
                    )
            self._put_sync_state(conn, ROLLBACK_PIN, dict(pin(revision_id)), created_at)
            # an aborted rollout's state, with the rollback it ended in
            for key, make in (states or {}).items():
                self._put_sync_state(conn, key, make(revision_id), created_at)
            conn.execute(
                EVENTS.insert().values(
                    at=created_at, kind=PINNED_EVENT, message=message[:1000], node=None, instance=None
                )
            )
        return AppliedRevision(revision_id, generations, tuple(outbox_ids))

    def clear_pin(self, at: datetime, message: str) -> bool:
        """Remove the rollback pin and record an ``unpinned`` event, in one transaction; False: none was set."""
        with self._write() as conn:
            _lock_pin(conn)
            current = conn.execute(
                sa.select(SYNC_STATE.c.value).where(SYNC_STATE.c.key == ROLLBACK_PIN)
            ).scalar()
            if current is None:
                return False
            self._put_sync_state(conn, ROLLBACK_PIN, None, _to_utc(at))
            conn.execute(
                EVENTS.insert().values(
                    at=_to_utc(at), kind=UNPINNED_EVENT, message=message[:1000], node=None, instance=None
                )
            )
            return True

    def pin_events(self, limit: int = 50) -> list[tuple[datetime, str, str]]:
        """The newest ``pinned``/``unpinned`` events, newest first: (time, kind, message)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(EVENTS.c.at, EVENTS.c.kind, EVENTS.c.message)
                .where(EVENTS.c.kind.in_((PINNED_EVENT, UNPINNED_EVENT)))
                .order_by(EVENTS.c.id.desc())
                .limit(limit)
            ).all()
        return [(_from_db_required(at), str(kind), str(message)) for at, kind, message in rows]

    def _store_change(
        self,
        conn: Connection,
        change: NodeChange,
        revision_id: int,
        created_at: datetime,
        encode: Encoder,
        hold: Mapping[str, Any] | None,
    ) -> tuple[int, int]:
        """One node's config under its next generation and its outbox row (held when ``hold`` is given); the
        node's older rows still held are settled (a newer config exists). Returns (generation, outbox id)."""
        generation = self._next_generation(conn, change.node)
        payload = dict(change.payload) if change.payload is not None else None
        conn.execute(
            NODE_CONFIGS.insert().values(
                node=change.node,
                generation=generation,
                config_hash=change.config_hash,
                payload=canonical_json(payload) if payload is not None else None,
                revision_id=revision_id,
                deleted=payload is None,
            )
        )
        topic, key, value, headers = encode(change.node, generation, payload)
        if isinstance(value, str):
            value = value.encode("utf-8")
        conn.execute(
            OUTBOX.update()
            .where(
                OUTBOX.c.topic == topic,
                OUTBOX.c.key == key,
                OUTBOX.c.held.is_(True),
                OUTBOX.c.published_at.is_(None),
            )
            .values(published_at=created_at)
        )
        result = conn.execute(
            OUTBOX.insert().values(
                topic=topic,
                key=key,
                value=value,
                headers={str(k): str(v) for k, v in headers.items()},
                created_at=created_at,
                published_at=None,
                attempts=0,
                held=hold is not None,
                hold=dict(hold) if hold is not None else None,
            )
        )
        return generation, _inserted_id(result)

    @staticmethod
    def _put_sync_state(conn: Connection, key: str, value: Any, at: datetime) -> None:
        exists = conn.execute(sa.select(SYNC_STATE.c.key).where(SYNC_STATE.c.key == key)).first()
        if exists:
            conn.execute(
                SYNC_STATE.update().where(SYNC_STATE.c.key == key).values(value=value, updated_at=at)
            )
        else:
            conn.execute(SYNC_STATE.insert().values(key=key, value=value, updated_at=at))

    @staticmethod
    def _insert_revision(
        conn: Connection, rev: NewRevision, *, accepted: bool, errors: list[dict[str, Any]], changed: int
    ) -> int:
        result = conn.execute(
            REVISIONS.insert().values(
                created_at=_to_utc(rev.created_at),
                source=rev.source,
                git_commit=rev.git_commit,
                git_author=rev.git_author,
                git_message=rev.git_message,
                manifests_hash=rev.manifests_hash,
                accepted=accepted,
                errors=errors,
                nodes_changed=changed,
            )
        )
        return _inserted_id(result)

    @staticmethod
    def _next_generation(conn: Connection, node: str) -> int:
        current = conn.execute(
            sa.select(NODE_GENERATIONS.c.generation).where(NODE_GENERATIONS.c.node == node).with_for_update()
        ).scalar()
        if current is None:
            conn.execute(NODE_GENERATIONS.insert().values(node=node, generation=1))
            return 1
        generation = int(current) + 1
        conn.execute(
            NODE_GENERATIONS.update().where(NODE_GENERATIONS.c.node == node).values(generation=generation)
        )
        return generation

    def revisions(self, limit: int = 50) -> list[RevisionRecord]:
        """The newest ``limit`` revisions, newest first."""
        with self._read() as conn:
            result = conn.execute(sa.select(REVISIONS).order_by(REVISIONS.c.id.desc()).limit(limit))
            return [_revision_record(r) for r in result.mappings()]

    def revision(self, revision_id: int) -> RevisionRecord | None:
        with self._read() as conn:
            row = conn.execute(sa.select(REVISIONS).where(REVISIONS.c.id == revision_id)).mappings().first()
            return _revision_record(row) if row is not None else None

    def revision_counts(self) -> dict[str, int]:
        """How many revisions were accepted and rejected (``{"accepted": n, "rejected": m}``)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(REVISIONS.c.accepted, sa.func.count()).group_by(REVISIONS.c.accepted)
            ).all()
        counts = {"accepted": 0, "rejected": 0}
        for accepted, n in rows:
            counts["accepted" if accepted else "rejected"] += int(n)
        return counts

    def last_accepted_revision(self) -> RevisionRecord | None:
        with self._read() as conn:
            row = (
                conn.execute(
                    sa.select(REVISIONS)
                    .where(REVISIONS.c.accepted.is_(True))
                    .order_by(REVISIONS.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            return _revision_record(row) if row is not None else None

    # ---- node configs

    def latest_node_configs(self, at_revision: int | None = None) -> dict[str, StoredNodeConfig]:
        """The last config of each node whose last change was not a deletion (what ``diff`` compares with);
        ``at_revision``: as of that revision (``render --db --revision N``)."""
        with self._read() as conn:
            return self._configs(conn, self._latest_configs(at_revision))

    def latest_node_changes(
        self, known: Mapping[str, str]
    ) -> tuple[frozenset[str], dict[str, StoredNodeConfig]]:
        """``known``: node → config hash the caller already has. Returns the nodes whose last config has that
        hash, and the last config of every other node (as :meth:`latest_node_configs`), from one snapshot: only
        the payloads that differ are read and parsed (the others are most of a large fleet's stored bytes)."""
        heads = self._latest_configs(None, NODE_CONFIGS.c.node, NODE_CONFIGS.c.config_hash)
        with self._read() as conn:
            rows = conn.execute(heads).all()
            same = frozenset(str(node) for node, digest in rows if known.get(node) == digest)
            others = [str(node) for node, _digest in rows if node not in same]
            configs: dict[str, StoredNodeConfig] = {}
            for start in range(0, len(others), IN_LIST_CHUNK):
                chunk = others[start : start + IN_LIST_CHUNK]
                configs.update(
                    self._configs(conn, self._latest_configs(None).where(NODE_CONFIGS.c.node.in_(chunk)))
                )
            return same, configs

    @staticmethod
    def _latest_configs(at_revision: int | None, *columns: Any) -> sa.Select[Any]:
        newest = sa.select(NODE_CONFIGS.c.node, sa.func.max(NODE_CONFIGS.c.generation).label("generation"))
        if at_revision is not None:
            newest = newest.where(NODE_CONFIGS.c.revision_id <= at_revision)
        last = newest.group_by(NODE_CONFIGS.c.node).subquery()
        return (
            sa.select(*(columns or (NODE_CONFIGS,)))
            .join(
                last,
                sa.and_(NODE_CONFIGS.c.node == last.c.node, NODE_CONFIGS.c.generation == last.c.generation),
            )
            .where(NODE_CONFIGS.c.deleted.is_(False))
            .order_by(NODE_CONFIGS.c.node)
        )

    @staticmethod
    def _configs(conn: Connection, query: sa.Select[Any]) -> dict[str, StoredNodeConfig]:
        out: dict[str, StoredNodeConfig] = {}
        for row in conn.execute(query).mappings():
            out[row["node"]] = StoredNodeConfig(
                node=row["node"],
                generation=int(row["generation"]),
                config_hash=str(row["config_hash"]),
                payload=json.loads(row["payload"]),
                revision_id=int(row["revision_id"]),
            )
        return out

    def latest_node_heads(self) -> dict[str, tuple[int, str, datetime]]:
        """Like :meth:`latest_node_configs` without the payloads: ``{node: (generation, config hash, time the
        revision was stored)}`` (what status and metrics read every second)."""
        last = (
            sa.select(NODE_CONFIGS.c.node, sa.func.max(NODE_CONFIGS.c.generation).label("generation"))
            .group_by(NODE_CONFIGS.c.node)
            .subquery()
        )
        query = (
            sa.select(
                NODE_CONFIGS.c.node,
                NODE_CONFIGS.c.generation,
                NODE_CONFIGS.c.config_hash,
                REVISIONS.c.created_at,
            )
            .join(
                last,
                sa.and_(NODE_CONFIGS.c.node == last.c.node, NODE_CONFIGS.c.generation == last.c.generation),
            )
            .join(REVISIONS, REVISIONS.c.id == NODE_CONFIGS.c.revision_id)
            .where(NODE_CONFIGS.c.deleted.is_(False))
            .order_by(NODE_CONFIGS.c.node)
        )
        with self._read() as conn:
            return {r[0]: (int(r[1]), str(r[2]), _from_db_required(r[3])) for r in conn.execute(query).all()}

    def reissue_config(
        self, node: str, above: int, encode: Encoder, now: datetime
    ) -> StoredNodeConfig | None:
        """Store ``node``'s current config again under a generation above both the node's counter and ``above`` —
        a generation its agent reported that this store never handed out (a store restored from a backup, or a
        forged report) — with its outbox row, in one transaction, so the agent takes it and the generation counter
        goes on from there. None (nothing written) when the node has no config or ``above`` is not above the
        counter."""
        with self._write() as conn:
            counter = conn.execute(
                sa.select(NODE_GENERATIONS.c.generation)
                .where(NODE_GENERATIONS.c.node == node)
                .with_for_update()
            ).scalar()
            if counter is None or above <= int(counter) or above >= MAX_GENERATION:
                return None
            current = self._configs(conn, self._latest_configs(None).where(NODE_CONFIGS.c.node == node))
            stored = current.get(node)
            if stored is None:
                return None
            generation = above + 1
            conn.execute(
                NODE_GENERATIONS.update().where(NODE_GENERATIONS.c.node == node).values(generation=generation)
            )
            conn.execute(
                NODE_CONFIGS.insert().values(
                    node=node,
                    generation=generation,
                    config_hash=stored.config_hash,
                    payload=canonical_json(stored.payload),
                    revision_id=stored.revision_id,
                    deleted=False,
                )
            )
            topic, key, value, headers = encode(node, generation, stored.payload)
            if isinstance(value, str):
                value = value.encode("utf-8")
            conn.execute(
                OUTBOX.insert().values(
                    topic=topic,
                    key=key,
                    value=value,
                    headers={str(k): str(v) for k, v in headers.items()},
                    created_at=_to_utc(now),
                    published_at=None,
                    attempts=0,
                )
            )
        return StoredNodeConfig(node, generation, stored.config_hash, stored.payload, stored.revision_id)

    def config_hashes(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str | None]:
        """The config hash of each (node, generation) this store handed out (None for a removal); keys it never
        handed out are absent."""
        wanted = set(keys)
        nodes = sorted({node for node, _ in wanted})
        out: dict[tuple[str, int], str | None] = {}
        with self._read() as conn:
            for start in range(0, len(nodes), IN_LIST_CHUNK):
                chunk = nodes[start : start + IN_LIST_CHUNK]
                rows = conn.execute(
                    sa.select(
                        NODE_CONFIGS.c.node, NODE_CONFIGS.c.generation, NODE_CONFIGS.c.config_hash
                    ).where(NODE_CONFIGS.c.node.in_(chunk))
                ).all()
                for node, generation, digest in rows:
                    if (node, int(generation)) in wanted:
                        out[(node, int(generation))] = digest
        return out

    def node_generation(self, node: str) -> int:
        """The last generation assigned to ``node`` (0 if none yet), deletions included."""
        with self._read() as conn:
            value = conn.execute(
                sa.select(NODE_GENERATIONS.c.generation).where(NODE_GENERATIONS.c.node == node)
            ).scalar()
            return int(value) if value is not None else 0


def _revision_record(row: RowMapping) -> RevisionRecord:
    return RevisionRecord(
        id=int(row["id"]),
        created_at=_from_db_required(row["created_at"]),
        source=row["source"],
        git_commit=row["git_commit"],
        git_author=row["git_author"],
        git_message=row["git_message"],
        manifests_hash=row["manifests_hash"],
        accepted=bool(row["accepted"]),
        errors=tuple(dict(e) for e in (row["errors"] or ())),
        nodes_changed=int(row["nodes_changed"]),
    )


def _check_delta(delta: InventoryDelta) -> None:
    """Refuse a changed camera row whose URL carries credentials (as :meth:`StoredInventory.of` does)."""
    for camera in delta.cameras.values():
        if camera is not None and url_has_credentials(camera.url):
            raise PermanentStoreError(
                f"camera {camera.name}: url carries credentials; the store keeps credentials-free URLs only "
                "(use credentials.secretRef)"
            )
