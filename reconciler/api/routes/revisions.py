"""``GET /revisions``, ``GET /revisions/{id}``, ``GET /revisions/{a}/diff/{b}`` (what changed from one revision to
another) and ``GET /diff`` (what applying the manifests would change)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.dependencies import Context
from dsfleet.reconciler.api.errors import ApiError, error_responses
from dsfleet.reconciler.api.models import (
    DiffDocument,
    InvalidDiffDocument,
    RevisionDiffDocument,
    RevisionView,
)
from dsfleet.reconciler.views import revision_view

__all__ = ["diff_json", "router"]

router = APIRouter(tags=["revisions"], responses=error_responses({503: "the store cannot be read now"}))


@router.get("/revisions", response_model=list[RevisionView], responses=error_responses({422: "bad limit"}))
def list_revisions(ctx: Context, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
    """The newest revisions, newest first (commit, author, subject, accepted, errors with file:line)."""
    return [revision_view(r) for r in ctx.store().revisions(limit=limit)]


@router.get(
    "/revisions/{revision_id}",
    response_model=RevisionView,
    responses=error_responses({404: "no such revision", 422: "not a revision id"}),
)
def get_revision(ctx: Context, revision_id: Annotated[int, Path(ge=1, le=2**62)]) -> dict[str, Any]:
    rec = ctx.store().revision(revision_id)
    if rec is None:
        raise ApiError(404, f"revision {revision_id} not found")
    return revision_view(rec)


@router.get(
    "/revisions/{a}/diff/{b}",
    response_model=RevisionDiffDocument,
    responses=error_responses({404: "no such accepted revision", 422: "not a revision id"}),
)
def get_revision_diff(
    ctx: Context,
    a: Annotated[int, Path(ge=1, le=2**62)],
    b: Annotated[int, Path(ge=1, le=2**62)],
) -> dict[str, Any]:
    """What changed from revision ``a`` to revision ``b``: their node configs compared as ``dsfleet diff`` does
    (``dsfleet history diff A B``)."""
    return revision_diff_json(ctx, a, b)


def revision_diff_json(ctx: ApiContext, a: int, b: int) -> dict[str, Any]:
    from dsfleet.reconciler.applying import configs_at
    from dsfleet.reconciler.planning.plans import compute_plan
    from dsfleet.reconciler.planning.reports import plan_json

    store = ctx.store()
    for rid in (a, b):
        rec = store.revision(rid)
        if rec is None or not rec.accepted:
            raise ApiError(404, f"no accepted revision {rid} (a rejected one stored no configs)")
    plan = compute_plan(configs_at(store, b), configs_at(store, a))
    return {**plan_json(plan), "fromRevision": a, "toRevision": b}


@router.get(
    "/diff",
    response_model=DiffDocument | InvalidDiffDocument,
    responses=error_responses({503: "no manifests directory, or the store cannot be read now"}),
)
def get_diff(ctx: Context) -> dict[str, Any]:
    """What applying the manifests directory now would change (the ``dsfleet.diff/v1`` shape)."""
    return diff_json(ctx)


def diff_json(ctx: ApiContext) -> dict[str, Any]:
    if ctx.manifests is None:
        raise ApiError(503, "this server has no manifests directory")
    from dsfleet.reconciler.applying import stored_configs
    from dsfleet.reconciler.compiling.desired import desired_state
    from dsfleet.reconciler.planning.plans import compute_plan
    from dsfleet.reconciler.planning.reports import plan_json
    from dsfleet.reconciler.views import finding_json

    desired = desired_state([ctx.manifests], limits=ctx.limits)
    findings = [finding_json(f) for f in desired.loaded.findings]
    if desired.configs is None:
        return {"schema": "dsfleet.diff/v1", "valid": False, "findings": findings}
    plan = compute_plan(desired.configs, stored_configs(ctx.store(), desired.configs))
    return {**plan_json(plan), "valid": True, "findings": findings}
