"""The older system's read views (``Camera``, ``Agent``, ``DsInstance``) over the store: never a password."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import sqlalchemy as sa

from dsfleet.reconciler.store.database import StoreBase
from dsfleet.reconciler.store.schema import CAMERAS, INSTANCES, NODES
from dsfleet.reconciler.store.values import LegacyAgent, LegacyCamera, LegacyDsInstance

NOT_ASSIGNED: Final = "Not assigned"


def _url_host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


class LegacyViewsMixin(StoreBase):
    # ---- the older system's read views (never a password)

    def legacy_cameras(self) -> list[LegacyCamera]:
        query = (
            sa.select(CAMERAS, INSTANCES.c.node)
            .select_from(CAMERAS.outerjoin(INSTANCES, CAMERAS.c.instance == INSTANCES.c.name))
            .order_by(CAMERAS.c.name)
        )
        with self._read() as conn:
            return [
                LegacyCamera(
                    name=r["name"],
                    camera_id=r["camera_id"],
                    ip_address=_url_host(r["url"]),
                    encode_type=r["encoding"],
                    type=r["type"],
                    width=r["width"],
                    height=r["height"],
                    instance_name=r["instance"],
                    agent_name=r["node"],
                )
                for r in conn.execute(query).mappings()
            ]

    def legacy_agents(self) -> list[LegacyAgent]:
        with self._read() as conn:
            return [
                LegacyAgent(
                    agent_name=r["name"],
                    ip_address=r["ip"],
                    hostname=r["hostname"],
                    node_id=r["node_id"],
                    connected=bool(r["online"]),
                )
                for r in conn.execute(
                    sa.select(NODES).where(NODES.c.deleted.is_(False)).order_by(NODES.c.name)
                ).mappings()
            ]

    def legacy_ds_instances(self) -> list[LegacyDsInstance]:
        with self._read() as conn:
            members: dict[str, list[str]] = {}
            for name, instance in conn.execute(
                sa.select(CAMERAS.c.name, CAMERAS.c.instance)
                .where(CAMERAS.c.instance.is_not(None))
                .order_by(CAMERAS.c.name)
            ):
                members.setdefault(instance, []).append(name)
            return [
                LegacyDsInstance(
                    instance_name=r["name"],
                    agent_name=r["node"] or NOT_ASSIGNED,
                    cameras=tuple(members.get(r["name"], ())),
                    app_type=r["app_type"] or ("NORMAL" if r["layout"] == "ccm" else r["layout"]),
                )
                for r in conn.execute(sa.select(INSTANCES).order_by(INSTANCES.c.name)).mappings()
            ]
