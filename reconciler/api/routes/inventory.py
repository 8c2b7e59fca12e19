"""``GET /nodes``, ``/nodes/{name}``, ``/cameras``, ``/instances``, ``/instances/{name}`` and ``/agents``: the
status document's nodes and instances with what the inventory holds of them (from the same snapshot), cameras
with credentials-free URLs, and the older system's records (``legacy=true``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.dependencies import Context, FleetStatus, read_status
from dsfleet.reconciler.api.errors import ApiError, error_responses
from dsfleet.reconciler.api.models import (
    CameraView,
    InstanceView,
    LegacyAgentView,
    LegacyCameraView,
    LegacyDsInstanceView,
    NodeDetail,
    NodeListItem,
)
from dsfleet.reconciler.views import record_json, records_json
from dsfleet.schemas.redaction import redact

__all__ = ["camera_sources", "instances_json", "node_json", "nodes_json", "router"]

router = APIRouter(tags=["inventory"], responses=error_responses({503: "the store cannot be read now"}))

Name = Annotated[str, Path(max_length=255)]
Legacy = Annotated[bool, Query(description="the older system's records instead")]


def nodes_json(status: FleetStatus) -> list[dict[str, Any]]:
    labels = {n.name: dict(n.labels) for n in status.snapshot.nodes}
    return [{**n, "labels": labels.get(n["name"], {})} for n in status.document["nodes"]]


def node_json(status: FleetStatus, name: str) -> dict[str, Any] | None:
    node = next((n for n in status.document["nodes"] if n["name"] == name), None)
    if node is None:
        return None
    inv = next((n for n in status.snapshot.nodes if n.name == name), None)
    return {
        **node,
        "labels": dict(inv.labels) if inv else {},
        "nodeId": inv.node_id if inv else None,
        "instanceList": [i for i in status.document["instances"] if i["node"] == name],
    }


def instances_json(
    status: FleetStatus, sources: Mapping[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """The status document's instances; those still desired with their image, layout, app type, spec hash (and
    their cameras in source order, when ``sources`` has them)."""
    inv = {i.name: i for i in status.snapshot.instances}
    out = []
    for i in status.document["instances"]:
        row = inv.get(i["name"])
        extra: dict[str, Any] = (
            {"image": row.image, "layout": row.layout, "appType": row.app_type, "specHash": row.spec_hash}
            if row
            else {}
        )
        if row and sources is not None and i["name"] in sources:
            extra["sources"] = sources[i["name"]]
        out.append({**i, **extra})
    return out


def camera_sources(payloads: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Each instance's cameras in source order (the order of the compiled config), from node config payloads."""
    return {
        str(i["name"]): [str(c) for c in i.get("cameras", ())]
        for payload in payloads
        for i in payload.get("instances", ())
    }


def _sources(ctx: ApiContext) -> dict[str, list[str]]:
    return camera_sources(c.payload for c in ctx.store().latest_node_configs().values())


@router.get("/nodes", response_model=list[NodeListItem])
def list_nodes(ctx: Context) -> list[dict[str, Any]]:
    """Every node (desired or announced): online, last seen, GPUs, generations, sync, labels."""
    return nodes_json(read_status(ctx))


@router.get(
    "/nodes/{name}",
    response_model=NodeDetail,
    responses=error_responses({404: "no such node", 422: "not a node name"}),
)
def get_node(ctx: Context, name: Name) -> dict[str, Any]:
    """One node, with its node id and its instances."""
    node = node_json(read_status(ctx), name)
    if node is None:
        raise ApiError(404, f"node {name!r} not found")
    return node


@router.get(
    "/cameras",
    response_model=list[CameraView] | list[LegacyCameraView],
    responses=error_responses({422: "malformed request"}),
)
def list_cameras(ctx: Context, legacy: Legacy = False) -> list[dict[str, Any]]:
    """Cameras (credentials-free URL and the name of their secret); ``legacy=true``: the older system's
    record (name, cameraId, IP, encode type, instance, agent)."""
    store = ctx.store()
    if legacy:
        return records_json(store.legacy_cameras())
    return [{**record_json(c), "url": redact(c.url)} for c in store.inventory().cameras]


@router.get(
    "/instances",
    response_model=list[InstanceView] | list[LegacyDsInstanceView],
    response_model_exclude_unset=True,
    responses=error_responses({422: "malformed request"}),
)
def list_instances(ctx: Context, legacy: Legacy = False) -> list[dict[str, Any]]:
    """Instances with sync, health, state, generations, restarts, FPS, drift; ``legacy=true``: the older
    system's DsInstance records."""
    if legacy:
        return records_json(ctx.store().legacy_ds_instances())
    return instances_json(read_status(ctx), _sources(ctx))


@router.get(
    "/instances/{name}",
    response_model=InstanceView,
    response_model_exclude_unset=True,
    responses=error_responses({404: "no such instance", 422: "not an instance name"}),
)
def get_instance(ctx: Context, name: Name) -> dict[str, Any]:
    for i in instances_json(read_status(ctx), _sources(ctx)):
        if i["name"] == name:
            return i
    raise ApiError(404, f"instance {name!r} not found")


@router.get("/agents", response_model=list[LegacyAgentView], tags=["legacy"])
def list_agents(ctx: Context) -> list[dict[str, Any]]:
    """The older system's Agent records (name, IP, hostname, node id, connected)."""
    return records_json(ctx.store().legacy_agents())
