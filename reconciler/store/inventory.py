"""The inventory tables (nodes, cameras, instances): written as a revision's diff, read as dataclasses."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsfleet.reconciler.store.database import StoreBase
from dsfleet.reconciler.store.schema import CAMERAS, INSTANCES, NODES
from dsfleet.reconciler.store.values import (
    CameraRow,
    InstanceRow,
    InventoryDelta,
    NodeRow,
    StoredInventory,
    _to_utc,
)

Row = TypeVar("Row", NodeRow, InstanceRow, CameraRow)


@dataclass
class _Delta(Generic[Row]):
    added: list[Row]
    updated: list[Row]
    gone: list[str]


def _delta(want: Sequence[Row], have: Sequence[Row]) -> _Delta[Row]:
    """Rows of ``want`` not in ``have`` (by name), rows that differ from their namesake, names only in ``have``."""
    by_name = {row.name: row for row in have}
    added: list[Row] = []
    updated: list[Row] = []
    for row in want:
        old = by_name.pop(row.name, None)
        if old is None:
            added.append(row)
        elif old is not row and old != row:
            updated.append(row)
    return _Delta(added, updated, list(by_name))


def _write(
    conn: Connection,
    table: sa.Table,
    delta: _Delta[Row],
    columns: Callable[[Row], dict[str, Any]],
    defaults: Mapping[str, Any] | None = None,
) -> None:
    if delta.added:
        conn.execute(
            table.insert(), [{"name": r.name, **(defaults or {}), **columns(r)} for r in delta.added]
        )
    for row in delta.updated:
        conn.execute(table.update().where(table.c.name == row.name).values(**columns(row)))


def _upsert(
    conn: Connection,
    table: sa.Table,
    rows: Mapping[str, Row | None],
    columns: Callable[[Row], dict[str, Any]],
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Each row updated by name, or inserted when there is none of that name (rows that are None: skipped)."""
    for name, row in sorted(rows.items()):
        if row is None:
            continue
        values = columns(row)
        if not conn.execute(table.update().where(table.c.name == name).values(**values)).rowcount:
            conn.execute(table.insert().values(name=name, **(defaults or {}), **values))


class InventoryMixin(StoreBase):
    @staticmethod
    def _sync_table(
        conn: Connection,
        table: sa.Table,
        desired: dict[str, dict[str, Any]],
        *,
        soft_delete: bool = False,
        insert_defaults: Mapping[str, Any] | None = None,
        defer_deletes: bool = False,
        current: dict[str, dict[str, Any]] | None = None,
    ) -> list[str]:
        """Make ``table`` (keyed by ``name``) hold ``desired``, writing only the rows that differ.

        With ``defer_deletes`` the rows to delete are returned instead (rows of other tables may still refer to
        them); otherwise an empty list."""
        columns = [table.c[c] for c in next(iter(desired.values()), {})] if desired else []
        if current is None and columns:
            current = {}
            for row in conn.execute(sa.select(table.c.name, *columns)).mappings():
                current[row["name"]] = {c.name: row[c.name] for c in columns}
        elif current is None:
            current = {name: {} for name in conn.execute(sa.select(table.c.name)).scalars()}
        defaults = dict(insert_defaults or {})
        inserts = [
            {"name": name, **defaults, **values} for name, values in desired.items() if name not in current
        ]
        updates = [
            (name, values) for name, values in desired.items() if name in current and current[name] != values
        ]
        gone = [name for name in current if name not in desired]
        if gone and not defer_deletes:
            if soft_delete:
                conn.execute(
                    table.update()
                    .where(table.c.name.in_(gone), table.c.deleted.is_(False))
                    .values(deleted=True)
                )
            else:
                conn.execute(table.delete().where(table.c.name.in_(gone)))
        if inserts:
            conn.execute(table.insert(), inserts)
        for name, values in updates:
            conn.execute(table.update().where(table.c.name == name).values(**values))
        return gone if defer_deletes else []

    @staticmethod
    def _node_columns(n: NodeRow) -> dict[str, Any]:
        return {
            "node_id": n.node_id,
            "hostname": n.hostname or n.name,
            "labels": dict(n.labels),
            "capacity": n.capacity,
            "gpus": list(n.gpus),
            "deleted": False,
        }

    @staticmethod
    def _instance_columns(i: InstanceRow) -> dict[str, Any]:
        return {
            "node": i.node,
            "gpu": i.gpu,
            "image": i.image,
            "layout": i.layout,
            "app_type": i.app_type,
            "profile": i.profile,
            "paused": i.paused,
            "camera_count": i.camera_count,
            "spec_hash": i.spec_hash,
            "files_hash": i.files_hash,
            "config_hash": i.config_hash,
        }

    @staticmethod
    def _camera_columns(c: CameraRow) -> dict[str, Any]:
        return {
            "camera_id": c.camera_id,
            "url": c.url,
            "secret_ref": c.secret_ref,
            "encoding": c.encoding,
            "type": c.type,
            "width": c.width,
            "height": c.height,
            "labels": dict(c.labels),
            "instance": c.instance,
        }

    @classmethod
    def _inventory_tables(cls, rows: StoredInventory) -> dict[str, dict[str, dict[str, Any]]]:
        """Inventory rows as the columns each table stores, by row name."""
        return {
            "nodes": {n.name: cls._node_columns(n) for n in rows.nodes},
            "instances": {i.name: cls._instance_columns(i) for i in rows.instances},
            "cameras": {c.name: cls._camera_columns(c) for c in rows.cameras},
        }

    @classmethod
    def _replace_inventory(
        cls, conn: Connection, rows: StoredInventory, base: StoredInventory | None = None
    ) -> None:
        if base is not None:
            cls._replace_inventory_delta(conn, rows, base)
            return
        want = cls._inventory_tables(rows)
        cls._sync_table(  # always read: soft-deleted nodes stay in the table, unlike in any inventory
            conn,
            NODES,
            want["nodes"],
            soft_delete=True,
            insert_defaults={"online": False},
        )
        # cameras refer to instances: add instances first, drop the old ones only after the cameras moved
        stale_instances = cls._sync_table(conn, INSTANCES, want["instances"], defer_deletes=True)
        cls._sync_table(conn, CAMERAS, want["cameras"])
        if stale_instances:
            conn.execute(INSTANCES.delete().where(INSTANCES.c.name.in_(stale_instances)))

    @classmethod
    def _replace_inventory_delta(cls, conn: Connection, rows: StoredInventory, base: StoredInventory) -> None:
        """:meth:`_replace_inventory` when the tables hold ``base`` (the inventory the last accepted revision
        stored): only the rows that differ from it are turned into columns and written, the rest are compared as
        objects (the caller keeps unchanged rows as the very same objects, so most compare by identity)."""
        nodes = _delta(rows.nodes, base.nodes)
        instances = _delta(rows.instances, base.instances)
        cameras = _delta(rows.cameras, base.cameras)
        if nodes.added:  # a node deleted earlier is still in the table (soft-deleted): it comes back
            names = [n.name for n in nodes.added]
            back = set(conn.execute(sa.select(NODES.c.name).where(NODES.c.name.in_(names))).scalars())
            nodes.updated.extend(n for n in nodes.added if n.name in back)
            nodes.added = [n for n in nodes.added if n.name not in back]
        if nodes.gone:
            conn.execute(
                NODES.update()
                .where(NODES.c.name.in_(nodes.gone), NODES.c.deleted.is_(False))
                .values(deleted=True)
            )
        _write(conn, NODES, nodes, cls._node_columns, {"online": False})
        _write(conn, INSTANCES, instances, cls._instance_columns)
        _write(conn, CAMERAS, cameras, cls._camera_columns)
        if cameras.gone:
            conn.execute(CAMERAS.delete().where(CAMERAS.c.name.in_(cameras.gone)))
        if instances.gone:  # after the cameras that referred to them moved or went
            conn.execute(INSTANCES.delete().where(INSTANCES.c.name.in_(instances.gone)))

    @classmethod
    def _write_inventory_delta(cls, conn: Connection, delta: InventoryDelta) -> None:
        """Write the rows of ``delta`` over the tables, which hold ``delta.base``: each changed row updated, or
        inserted when it is new (a node deleted earlier is still in the table, soft-deleted: it comes back);
        each row that is gone deleted (a node soft-deleted). Instances before cameras (cameras name them), the
        instances that went last."""
        _upsert(conn, NODES, delta.nodes, cls._node_columns, {"online": False})
        _upsert(conn, INSTANCES, delta.instances, cls._instance_columns)
        _upsert(conn, CAMERAS, delta.cameras, cls._camera_columns)
        gone_nodes = sorted(name for name, row in delta.nodes.items() if row is None)
        if gone_nodes:
            conn.execute(
                NODES.update()
                .where(NODES.c.name.in_(gone_nodes), NODES.c.deleted.is_(False))
                .values(deleted=True)
            )
        gone_cameras = sorted(name for name, row in delta.cameras.items() if row is None)
        if gone_cameras:
            conn.execute(CAMERAS.delete().where(CAMERAS.c.name.in_(gone_cameras)))
        gone_instances = sorted(name for name, row in delta.instances.items() if row is None)
        if gone_instances:
            conn.execute(INSTANCES.delete().where(INSTANCES.c.name.in_(gone_instances)))

    # ---- inventory

    def inventory(self, *, cameras: bool = True) -> StoredInventory:
        """The current (not deleted) nodes, cameras and instances, sorted by name; ``cameras=False`` leaves the
        cameras out (status reads so: it shows none, and they are most of a large fleet's rows)."""
        with self._read() as conn:
            nodes = [
                NodeRow(
                    name=r["name"],
                    hostname=r["hostname"],
                    node_id=r["node_id"],
                    labels=dict(r["labels"] or {}),
                    capacity=r["capacity"],
                    gpus=tuple(r["gpus"] or ()),
                )
                for r in conn.execute(
                    sa.select(NODES).where(NODES.c.deleted.is_(False)).order_by(NODES.c.name)
                ).mappings()
            ]
            camera_rows = [
                CameraRow(
                    name=r["name"],
                    camera_id=r["camera_id"],
                    url=r["url"],
                    secret_ref=r["secret_ref"],
                    encoding=r["encoding"],
                    type=r["type"],
                    width=r["width"],
                    height=r["height"],
                    labels=dict(r["labels"] or {}),
                    instance=r["instance"],
                )
                for r in (
                    conn.execute(sa.select(CAMERAS).order_by(CAMERAS.c.name)).mappings() if cameras else ()
                )
            ]
            instances = [
                InstanceRow(**{c: r[c] for c in _INSTANCE_FIELDS})
                for r in conn.execute(sa.select(INSTANCES).order_by(INSTANCES.c.name)).mappings()
            ]
        return StoredInventory(nodes=tuple(nodes), cameras=tuple(camera_rows), instances=tuple(instances))

    def record_node_seen(self, name: str, *, ip: str | None, seen_at: datetime, online: bool = True) -> bool:
        """Record a node's heartbeat (address, time, online); False when the node is unknown."""
        with self._write() as conn:
            result = conn.execute(
                NODES.update()
                .where(NODES.c.name == name)
                .values(ip=ip, last_seen=_to_utc(seen_at), online=online)
            )
            return bool(result.rowcount)


_INSTANCE_FIELDS: Final = (
    "name",
    "node",
    "gpu",
    "image",
    "layout",
    "app_type",
    "profile",
    "paused",
    "camera_count",
    "spec_hash",
    "files_hash",
    "config_hash",
)
