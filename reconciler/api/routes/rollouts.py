"""``GET /rollout`` (the newest rollout: waves, per-node progress, why it waits) and ``POST /rollout/{action}``
(promote, pause, resume, abort; an operator's token): the same request ``dsfleet rollout ACTION`` leaves in the
store, taken by the coordinator within a second (docs/operating/rollouts.md)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request

from dsfleet.reconciler.api.dependencies import Context, caller, require_write
from dsfleet.reconciler.api.errors import ApiError, error_responses
from dsfleet.reconciler.api.models import RolloutDocument, RolloutRequested
from dsfleet.reconciler.planning.rollouts import FINISHED, Rollout
from dsfleet.reconciler.store.values import ROLLOUT
from dsfleet.reconciler.syncviews import rollout_view

__all__ = ["router"]

log = logging.getLogger("dsfleet.api")

router = APIRouter(tags=["rollouts"])


@router.get("/rollout", response_model=RolloutDocument, responses=error_responses({404: "no rollout yet"}))
def get_rollout(ctx: Context) -> dict[str, Any]:
    """The newest rollout as ``dsfleet rollout status -o json`` shows it (``summary``: one line of it)."""
    view = rollout_view(ctx.store().sync_state(ROLLOUT))
    if view is None:
        raise ApiError(404, "no rollout yet: every revision so far went out at once")
    return {"schema": "dsfleet.rollout/v1", **view}


@router.post(
    "/rollout/{action}",
    status_code=202,
    response_model=RolloutRequested,
    responses=error_responses(
        {
            401: "missing or wrong bearer token",
            403: "the token's role may not do this (viewer)",
            409: "no rollout is running",
            422: "not an action",
        }
    ),
    dependencies=[Depends(require_write)],
)
def post_rollout(
    request: Request,
    ctx: Context,
    action: Annotated[Literal["promote", "pause", "resume", "abort"], Path()],
) -> dict[str, Any]:
    """Ask the coordinator to promote, pause, resume or abort the running rollout (an abort rolls the changed
    nodes back to the last good revision and pins automatic sync)."""
    who = caller(request, ctx)
    rollout = Rollout.from_json(ctx.store().sync_state(ROLLOUT))
    if rollout is None or rollout.state in FINISHED:
        raise ApiError(409, "no rollout is running")
    now = datetime.now(UTC)
    by = f"{who.name} ({who.role.label}) from the API"
    ctx.request_rollout(
        {"action": action, "by": by, "revision": rollout.revision, "at": now.isoformat()}, now
    )
    log.info("rollout %s requested by=%s revision=%d", action, who.name, rollout.revision)
    return {"revision": rollout.revision, "action": action, "by": by, "state": "requested"}
