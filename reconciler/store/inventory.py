"""The inventory tables (nodes, cameras, instances): written as a revision's diff, read as dataclasses."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsfleet.reconciler.store.database import StoreBase
from dsfleet.reconciler.store.schema import CAMERAS, INSTANCES, NODES
from dsfleet.reconciler.store.values import CameraRow, InstanceRow, NodeRow, StoredInventory, _to_utc


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
    def _inventory_tables(rows: StoredInventory) -> dict[str, dict[str, dict[str, Any]]]:
        """Inventory rows as the columns each table stores, by row name."""
        return {
            "nodes": {
                n.name: {
                    "node_id": n.node_id,
                    "hostname": n.hostname or n.name,
                    "labels": dict(n.labels),
                    "capacity": n.capacity,
                    "gpus": list(n.gpus),
                    "deleted": False,
                }
                for n in rows.nodes
            },
            "instances": {
                i.name: {
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
                for i in rows.instances
            },
            "cameras": {
                c.name: {
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
                for c in rows.cameras
            },
        }

    @classmethod
    def _replace_inventory(
        cls, conn: Connection, rows: StoredInventory, base: StoredInventory | None = None
    ) -> None:
        want = cls._inventory_tables(rows)
        have = cls._inventory_tables(base) if base is not None else None
        cls._sync_table(  # always read: soft-deleted nodes stay in the table, unlike in any inventory
            conn,
            NODES,
            want["nodes"],
            soft_delete=True,
            insert_defaults={"online": False},
        )
        # cameras refer to instances: add instances first, drop the old ones only after the cameras moved
        stale_instances = cls._sync_table(
            conn,
            INSTANCES,
            want["instances"],
            current=have["instances"] if have else None,
            defer_deletes=True,
        )
        cls._sync_table(conn, CAMERAS, want["cameras"], current=have["cameras"] if have else None)
        if stale_instances:
            conn.execute(INSTANCES.delete().where(INSTANCES.c.name.in_(stale_instances)))

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
