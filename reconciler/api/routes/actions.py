"""``POST /apply``, ``POST /refresh`` (bearer token) and ``POST /webhooks/git`` (a forge's signed push event).

An apply runs in the coordinator of this process when there is one (the answer carries the revision), else it
is an UpdateConfig request on the bus; a refresh is always a Refresh request on the bus. A webhook delivery is
applied once: one seen before (by its delivery id or its body, :func:`~dsfleet.reconciler.api.webhooks.
delivery_keys`) is answered 200 and ignored; one that failed is forgotten, so the forge's retry applies it."""

from __future__ import annotations

import json
import logging
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse

from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.dependencies import Context, require_write
from dsfleet.reconciler.api.errors import ApiError, error_responses
from dsfleet.reconciler.api.models import Accepted, ApplyRequest, RefreshRequest
from dsfleet.reconciler.api.webhooks import delivery_keys, verify_push
from dsfleet.schemas.errors import DsfleetError, TemporaryError
from dsfleet.schemas.redaction import redact

log = logging.getLogger("dsfleet.api")

__all__ = ["apply_now", "router", "writes"]

router = APIRouter(tags=["actions"])

APPLY_WAIT_SECONDS = 10.0
"""How long a request waits for the coordinator of this process to finish the apply it asked for."""

token = [Depends(require_write)]
writes = error_responses(
    {
        401: "missing or wrong bearer token, or writes are disabled (no API token configured)",
        408: "the request body did not arrive in time",
        413: "the request body is larger than the server takes ([api] max_body_bytes)",
        422: "malformed request",
        503: "no broker configured, or the broker is unreachable now",
    }
)


def _send(ctx: ApiContext, kind: str, key: str | None, value: bytes) -> None:
    if ctx.send is None:
        raise ApiError(503, "no broker configured: start with --bootstrap-servers to send requests")
    try:
        ctx.send(kind, key, value)
    except TemporaryError as exc:
        log.warning("request not sent kind=%s error=%s", kind, exc)
        raise ApiError(503, "the broker is unreachable now; try again") from None


def _fleet(ctx: ApiContext) -> str | None:
    """The id of the store's fleet, which a request names (and its signature covers): a coordinator of another
    fleet ignores it. None while the store cannot say."""
    try:
        return ctx.store().fleet_id()
    except DsfleetError:
        return None


def apply_now(ctx: ApiContext, requested_by: str, source: str) -> Accepted:
    """Ask the coordinator of this process to apply (and wait a little for its outcome), or send UpdateConfig."""
    from dsfleet.schemas.wire import UpdateConfig, encode

    request_id = uuid.uuid4().hex
    coordinator = ctx.coordinator
    if coordinator is not None:
        before = coordinator.last_apply
        coordinator.apply_source = source
        coordinator.apply_requested.set()
        deadline = time.monotonic() + APPLY_WAIT_SECONDS
        while coordinator.last_apply is before and time.monotonic() < deadline:
            time.sleep(0.02)
        result = coordinator.last_apply
        if result is before or result is None:
            return Accepted(requestId=request_id, detail="apply requested; still running")
        revision = result.applied.revision_id if result.applied is not None else result.rejected_revision
        return Accepted(requestId=request_id, revision=revision, detail=result.outcome.value)
    message = UpdateConfig(
        sent_at=datetime.now(UTC).isoformat(),
        requestId=request_id,
        requestedBy=requested_by[:255],
        fleet=_fleet(ctx),
    )
    _send(ctx, "update-config", request_id, encode(message))
    return Accepted(requestId=request_id, detail="UpdateConfig sent")


@router.post("/apply", status_code=202, response_model=Accepted, responses=writes, dependencies=token)
def post_apply(ctx: Context, body: Annotated[ApplyRequest | None, Body()] = None) -> Accepted:
    """Apply the manifests directory now (in manual sync: the pending plan). Answers with the revision when
    the coordinator runs in this process, else with the id of the UpdateConfig request (topic 300)."""
    return apply_now(ctx, (body.requestedBy if body else "") or "api", "api")


@router.post("/refresh", status_code=202, response_model=Accepted, responses=writes, dependencies=token)
def post_refresh(ctx: Context, body: Annotated[RefreshRequest | None, Body()] = None) -> Accepted:
    """Ask every agent (or one node's) to report its status now (a Refresh request, topic 301)."""
    from dsfleet.schemas.wire import Refresh, encode

    request_id = uuid.uuid4().hex
    node = body.node if body else None
    message = Refresh(
        sent_at=datetime.now(UTC).isoformat(),
        requestId=request_id,
        requestedBy=(body.requestedBy if body else "") or "api",
        node=node,
        fleet=_fleet(ctx),
    )
    _send(ctx, "refresh", node or request_id, encode(message))
    return Accepted(requestId=request_id, detail=f"Refresh sent to {node or 'every node'}")


@router.post(
    "/webhooks/git",
    status_code=202,
    response_model=Accepted,
    responses={
        200: {"model": Accepted, "description": "a delivery seen before: ignored"},
        **error_responses(
            {
                401: "webhooks are disabled, or the signature is bad or missing",
                408: "the request body did not arrive in time",
                409: "git pull --ff-only failed (diverged history?)",
                413: "the request body is larger than the server takes ([api] webhook_max_body_bytes)",
                503: "no manifests directory, nothing that could apply, git pull failed to run, or the store "
                "cannot record the delivery now",
            }
        ),
    },
)
async def post_webhook(request: Request, ctx: Context) -> Accepted | JSONResponse:
    """A GitHub, GitLab or Gitea push event: the signature is checked (HMAC-SHA256 with ``[api]
    webhook_secret``; GitLab's token), then ``git pull --ff-only`` runs in the manifests directory and the
    result is applied. A delivery seen before (its delivery id or the same body) is answered 200 and ignored."""
    body = await request.body()
    if not ctx.webhook_secret:
        raise ApiError(401, "webhooks are disabled: no [api] webhook_secret configured")
    verdict = verify_push({k.lower(): v for k, v in request.headers.items()}, body, ctx.webhook_secret)
    if not verdict.ok:
        raise ApiError(401, f"bad or missing webhook signature ({verdict.reason})")
    if ctx.manifests is None:
        raise ApiError(503, "this server has no manifests directory")
    if ctx.coordinator is None and ctx.send is None:
        raise ApiError(503, "no coordinator in this process and no broker configured: nothing could apply")
    event = (
        request.headers.get("x-github-event")
        or request.headers.get("x-gitea-event")
        or request.headers.get("x-gitlab-event")
        or "push"
    )
    if event == "ping":
        return Accepted(requestId=uuid.uuid4().hex, detail="pong")
    import anyio.to_thread

    forge = verdict.forge or "git"
    keys = delivery_keys({k.lower(): v for k, v in request.headers.items()}, body)
    if not await anyio.to_thread.run_sync(_first_delivery, ctx, keys, forge):
        log.info("webhook forge=%s: duplicate delivery ignored", forge)
        duplicate = Accepted(requestId=uuid.uuid4().hex, detail="duplicate delivery, ignored")
        return JSONResponse(duplicate.model_dump(mode="json"), status_code=200)
    try:
        return await anyio.to_thread.run_sync(pull_and_apply, ctx, forge, _pushed_ref(body))
    except ApiError:
        await anyio.to_thread.run_sync(_forget_delivery, ctx, keys)
        raise


def _first_delivery(ctx: ApiContext, keys: list[str], forge: str) -> bool:
    """True when this delivery is new (and is now remembered); 503 when the store cannot say."""
    try:
        if ctx.store().empty_fallback:
            raise ApiError(503, "no store yet: the coordinator has not run on it")
        return ctx.record_delivery(keys, forge, datetime.now(UTC))
    except DsfleetError as exc:
        log.warning("webhook delivery not recorded error=%s", exc)
        raise ApiError(503, "the store cannot record the delivery now; the forge may retry") from None


def _forget_delivery(ctx: ApiContext, keys: list[str]) -> None:
    """A delivery that failed is forgotten, so the forge's retry of it is not a duplicate."""
    try:
        ctx.forget_delivery(keys)
    except DsfleetError as exc:
        log.warning("webhook delivery not forgotten error=%s", exc)


def _pushed_ref(body: bytes) -> str | None:
    """The ``ref`` of a push event (GitHub, Gitea and GitLab all send it), None when the body has none."""
    try:
        ref = json.loads(body).get("ref")
    except (ValueError, AttributeError):
        return None
    return ref if isinstance(ref, str) and ref.startswith("refs/") else None


def _git(ctx: ApiContext, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=ctx.manifests, capture_output=True, text=True, timeout=timeout, check=False
    )


def pull_and_apply(ctx: ApiContext, forge: str, ref: str | None) -> Accepted:
    """``git pull --ff-only`` in the manifests directory (unless the push was to another branch), then apply."""
    branch = _git(ctx, "symbolic-ref", "--quiet", "HEAD", timeout=30).stdout.strip()
    if ref and branch and ref != branch:
        log.info("webhook forge=%s: push to %s ignored (the manifests follow %s)", forge, ref, branch)
        return Accepted(requestId=uuid.uuid4().hex, detail=f"ignored: {ref} is not {branch}")
    try:
        done = _git(ctx, "pull", "--ff-only", "--quiet", timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("webhook git pull failed error=%s", type(exc).__name__)
        raise ApiError(503, "git pull failed (see the server's log)") from None
    if done.returncode != 0:
        log.warning("webhook git pull failed forge=%s stderr=%s", forge, redact(done.stderr.strip()[-500:]))
        raise ApiError(409, "git pull --ff-only failed (diverged history?); see the server's log")
    log.info("webhook forge=%s: pulled; applying", forge)
    return apply_now(ctx, f"webhook:{forge}", "webhook")
