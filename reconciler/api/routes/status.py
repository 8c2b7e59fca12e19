"""``GET /status`` (the ``dsfleet.status/v1`` document), ``GET /cameras`` (``dsfleet.cameras/v1``) and
``GET /events``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from dsfleet.reconciler.api.dependencies import Context, read_status
from dsfleet.reconciler.api.errors import error_responses
from dsfleet.reconciler.api.models import CamerasDocument, EventView, StatusDocument
from dsfleet.reconciler.views import cameras_document, event_json

__all__ = ["router"]

router = APIRouter(tags=["status"], responses=error_responses({503: "the store cannot be read now"}))


@router.get("/status", response_model=StatusDocument)
def get_status(ctx: Context) -> dict[str, Any]:
    """The ``dsfleet.status/v1`` document: nodes, instances (sync, health), last revision, pending plan."""
    return read_status(ctx).document


@router.get("/status/cameras", response_model=CamerasDocument)
def get_cameras(ctx: Context) -> dict[str, Any]:
    """Per camera of the instances served by DeepStream's stream REST API: state (streaming, added, failed,
    removed), reason, fps, frame number and latency, as their agents last reported them."""
    return cameras_document(read_status(ctx).document)


@router.get("/events", response_model=list[EventView], responses=error_responses({422: "malformed request"}))
def list_events(ctx: Context, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """The newest events, newest first (online/offline, state changes, drift)."""
    return [event_json(e) for e in ctx.store().events(limit=limit)]
