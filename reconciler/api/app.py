"""The FastAPI application: read models under ``/api/v1/``, ``POST apply`` / ``refresh`` / ``webhooks/git``,
``/metrics``, and the dashboard at ``/``.

Every error is ``{"error": {"status": N, "message": "..."}}``: unknown names 404, malformed bodies 422 (with the
offending fields, never their values), missing or wrong token 401, no broker 503, anything unexpected 500 with
no detail (the traceback goes to the server's log only). Camera URLs are credentials-free in the store and every
free text that comes from a container (log lines, errors) has URL user-info removed.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from dsfleet.reconciler.api.context import ApiContext, token_matches
from dsfleet.reconciler.api.dashboard import PAGE
from dsfleet.reconciler.api.metrics import metrics_text
from dsfleet.reconciler.api.webhooks import verify_push
from dsfleet.reconciler.planning.conditions import redact
from dsfleet.reconciler.views import event_json, revision_view, status_document
from dsfleet.schemas.errors import DsfleetError, TemporaryError

log = logging.getLogger("dsfleet.api")

__all__ = ["ApiError", "create_app"]

API_VERSION = "v1"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requestedBy: str = Field("", max_length=255, description="who asks (shown in the coordinator's log)")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str | None = Field(None, max_length=63, description="one node, or every node when absent")
    requestedBy: str = Field("", max_length=255)


class Accepted(BaseModel):
    accepted: bool = True
    requestId: str
    revision: int | None = None
    detail: str = ""


class ErrorBody(BaseModel):
    status: int
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong bearer token"},
    422: {"model": ErrorResponse, "description": "malformed request"},
    503: {"model": ErrorResponse, "description": "no broker configured"},
}


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "message": message, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _record(row: Any) -> dict[str, Any]:
    return {k: _plain(v) for k, v in dataclasses.asdict(row).items()}


def _pushed_ref(body: bytes) -> str | None:
    """The ``ref`` of a push event (GitHub, Gitea and GitLab all send it), None when the body has none."""
    import json

    try:
        ref = json.loads(body).get("ref")
    except (ValueError, AttributeError):
        return None
    return ref if isinstance(ref, str) and ref.startswith("refs/") else None


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="dsfleet",
        version=API_VERSION,
        description="The dsfleet coordinator's HTTP API: fleet status, inventory, revisions, apply and refresh.",
    )

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such resource"
        return _error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"loc": [str(p) for p in e.get("loc", ())], "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = fields[0] if fields else {"loc": [], "message": "invalid"}
        return _error(422, f"invalid request: {'.'.join(first['loc'])}: {first['message']}", fields=fields)

    @app.exception_handler(DsfleetError)
    async def _unavailable(_request: Request, exc: DsfleetError) -> JSONResponse:
        log.warning("request failed error=%s", type(exc).__name__)
        return _error(503, "the store cannot be read now (see the server's log)")

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed error=%s", type(exc).__name__, exc_info=exc)
        return _error(500, "internal error (see the server's log)")

    def reader(request: Request) -> None:
        if ctx.read_requires_token and not token_matches(ctx.token, request.headers.get("authorization")):
            raise ApiError(401, "this server requires a bearer token for reads (Authorization: Bearer …)")

    def writer(request: Request) -> None:
        if not ctx.token:
            raise ApiError(401, "writes are disabled: the server has no API token configured")
        if not token_matches(ctx.token, request.headers.get("authorization")):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer …)")

    read = [Depends(reader)]
    write = [Depends(writer)]
    v1 = f"/api/{API_VERSION}"

    def status_now() -> dict[str, Any]:
        try:
            return status_document(ctx.store(), datetime.now(UTC))
        except DsfleetError as exc:
            log.warning("store unreadable error=%s", exc)
            raise ApiError(503, "the store cannot be read now") from None

    # ------------------------------------------------------------------------------------------ reads

    @app.get(f"{v1}/status", dependencies=read, tags=["status"])
    def get_status() -> dict[str, Any]:
        """The ``dsfleet.status/v1`` document: nodes, instances (sync, health), last revision, pending plan."""
        return status_now()

    @app.get(f"{v1}/nodes", dependencies=read, tags=["inventory"])
    def list_nodes() -> list[dict[str, Any]]:
        """Every node (desired or announced): online, last seen, GPUs, generations, sync."""
        labels = {n.name: dict(n.labels) for n in ctx.store().inventory().nodes}
        return [{**n, "labels": labels.get(n["name"], {})} for n in status_now()["nodes"]]

    @app.get(f"{v1}/nodes/{{name}}", dependencies=read, tags=["inventory"], responses={404: _ERRORS[401]})
    def get_node(name: Annotated[str, Path(max_length=255)]) -> dict[str, Any]:
        doc = status_now()
        for n in doc["nodes"]:
            if n["name"] == name:
                inv = {x.name: x for x in ctx.store().inventory().nodes}.get(name)
                return {
                    **n,
                    "labels": dict(inv.labels) if inv else {},
                    "nodeId": inv.node_id if inv else None,
                    "instanceList": [i for i in doc["instances"] if i["node"] == name],
                }
        raise ApiError(404, f"node {name!r} not found")

    @app.get(f"{v1}/cameras", dependencies=read, tags=["inventory"])
    def list_cameras(legacy: bool = False) -> list[dict[str, Any]]:
        """Cameras (credentials-free URL and the name of their secret); ``legacy=true``: the older system's
        record (name, cameraId, IP, encode type, instance, agent)."""
        store = ctx.store()
        if legacy:
            return [_record(c) for c in store.legacy_cameras()]
        return [{**_record(c), "url": redact(c.url)} for c in store.inventory().cameras]

    def _instances() -> list[dict[str, Any]]:
        inv = {i.name: i for i in ctx.store().inventory().instances}
        out = []
        for i in status_now()["instances"]:
            row = inv.get(i["name"])
            extra = (
                {"image": row.image, "layout": row.layout, "appType": row.app_type, "specHash": row.spec_hash}
                if row
                else {}
            )
            out.append({**i, **extra})
        return out

    @app.get(f"{v1}/instances", dependencies=read, tags=["inventory"])
    def list_instances(legacy: bool = False) -> list[dict[str, Any]]:
        """Instances with sync, health, state, generations, restarts, FPS, drift; ``legacy=true``: the older
        system's DsInstance records."""
        if legacy:
            return [_record(r) for r in ctx.store().legacy_ds_instances()]
        return _instances()

    @app.get(f"{v1}/instances/{{name}}", dependencies=read, tags=["inventory"])
    def get_instance(name: Annotated[str, Path(max_length=255)]) -> dict[str, Any]:
        for i in _instances():
            if i["name"] == name:
                return i
        raise ApiError(404, f"instance {name!r} not found")

    @app.get(f"{v1}/agents", dependencies=read, tags=["legacy"])
    def list_agents() -> list[dict[str, Any]]:
        """The older system's Agent records (name, IP, hostname, node id, connected)."""
        return [_record(a) for a in ctx.store().legacy_agents()]

    @app.get(f"{v1}/revisions", dependencies=read, tags=["revisions"])
    def list_revisions(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
        """The newest revisions, newest first (commit, author, subject, accepted, errors with file:line)."""
        return [revision_view(r) for r in ctx.store().revisions(limit=limit)]

    @app.get(f"{v1}/revisions/{{revision_id}}", dependencies=read, tags=["revisions"])
    def get_revision(revision_id: Annotated[int, Path(ge=1, le=2**62)]) -> dict[str, Any]:
        rec = ctx.store().revision(revision_id)
        if rec is None:
            raise ApiError(404, f"revision {revision_id} not found")
        return revision_view(rec)

    @app.get(f"{v1}/events", dependencies=read, tags=["status"])
    def list_events(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        return [event_json(e) for e in ctx.store().events(limit=limit)]

    @app.get(f"{v1}/diff", dependencies=read, tags=["revisions"], responses={503: _ERRORS[503]})
    def get_diff() -> dict[str, Any]:
        """What applying the manifests directory now would change (the ``dsfleet.diff/v1`` shape)."""
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

    # ------------------------------------------------------------------------------------------ writes

    def _send(kind: str, key: str | None, value: bytes) -> None:
        if ctx.send is None:
            raise ApiError(503, "no broker configured: start with --bootstrap-servers to send requests")
        try:
            ctx.send(kind, key, value)
        except TemporaryError as exc:
            log.warning("request not sent kind=%s error=%s", kind, exc)
            raise ApiError(503, "the broker is unreachable now; try again") from None

    def _apply(requested_by: str, source: str) -> Accepted:
        from dsfleet.schemas.wire import UpdateConfig, encode

        request_id = uuid.uuid4().hex
        coordinator = ctx.coordinator
        if coordinator is not None:
            before = coordinator.last_apply
            coordinator.apply_source = source
            coordinator.apply_requested.set()
            deadline = time.monotonic() + 10.0
            while coordinator.last_apply is before and time.monotonic() < deadline:
                time.sleep(0.02)
            result = coordinator.last_apply
            if result is before or result is None:
                return Accepted(requestId=request_id, detail="apply requested; still running")
            revision = result.applied.revision_id if result.applied is not None else result.rejected_revision
            return Accepted(requestId=request_id, revision=revision, detail=result.outcome.value)
        message = UpdateConfig(
            sent_at=datetime.now(UTC).isoformat(), requestId=request_id, requestedBy=requested_by[:255]
        )
        _send("update-config", request_id, encode(message))
        return Accepted(requestId=request_id, detail="UpdateConfig sent")

    @app.post(f"{v1}/apply", dependencies=write, status_code=202, tags=["actions"], responses=_ERRORS)
    def post_apply(body: Annotated[ApplyRequest | None, Body()] = None) -> Accepted:
        """Apply the manifests directory now (in manual sync: the pending plan). Answers with the revision when
        the coordinator runs in this process, else with the id of the UpdateConfig request (topic 300)."""
        return _apply((body.requestedBy if body else "") or "api", "api")

    @app.post(f"{v1}/refresh", dependencies=write, status_code=202, tags=["actions"], responses=_ERRORS)
    def post_refresh(body: Annotated[RefreshRequest | None, Body()] = None) -> Accepted:
        """Ask every agent (or one node's) to report its status now (a Refresh request, topic 301)."""
        from dsfleet.schemas.wire import Refresh, encode

        request_id = uuid.uuid4().hex
        node = body.node if body else None
        message = Refresh(
            sent_at=datetime.now(UTC).isoformat(),
            requestId=request_id,
            requestedBy=(body.requestedBy if body else "") or "api",
            node=node,
        )
        _send("refresh", node or request_id, encode(message))
        return Accepted(requestId=request_id, detail=f"Refresh sent to {node or 'every node'}")

    @app.post(f"{v1}/webhooks/git", status_code=202, tags=["actions"], responses=_ERRORS)
    async def post_webhook(request: Request) -> Accepted:
        """A GitHub, GitLab or Gitea push event: the signature is checked (HMAC-SHA256 with ``[api]
        webhook_secret``; GitLab's token), then ``git pull --ff-only`` runs in the manifests directory and the
        result is applied."""
        body = await request.body()
        if not ctx.webhook_secret:
            raise ApiError(401, "webhooks are disabled: no [api] webhook_secret configured")
        verdict = verify_push({k.lower(): v for k, v in request.headers.items()}, body, ctx.webhook_secret)
        if not verdict.ok:
            raise ApiError(401, f"bad or missing webhook signature ({verdict.reason})")
        if ctx.manifests is None:
            raise ApiError(503, "this server has no manifests directory")
        if ctx.coordinator is None and ctx.send is None:
            raise ApiError(
                503, "no coordinator in this process and no broker configured: nothing could apply"
            )
        event = (
            request.headers.get("x-github-event")
            or request.headers.get("x-gitea-event")
            or request.headers.get("x-gitlab-event")
            or "push"
        )
        if event == "ping":
            return Accepted(requestId=uuid.uuid4().hex, detail="pong")
        import anyio.to_thread

        return await anyio.to_thread.run_sync(_pull_and_apply, verdict.forge or "git", _pushed_ref(body))

    def _pull_and_apply(forge: str, ref: str | None) -> Accepted:
        assert ctx.manifests is not None
        branch = subprocess.run(
            ["git", "symbolic-ref", "--quiet", "HEAD"],
            cwd=ctx.manifests,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
        if ref and branch and ref != branch:
            log.info("webhook forge=%s: push to %s ignored (the manifests follow %s)", forge, ref, branch)
            return Accepted(requestId=uuid.uuid4().hex, detail=f"ignored: {ref} is not {branch}")
        try:
            done = subprocess.run(
                ["git", "pull", "--ff-only", "--quiet"],
                cwd=ctx.manifests,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("webhook git pull failed error=%s", type(exc).__name__)
            raise ApiError(503, "git pull failed (see the server's log)") from None
        if done.returncode != 0:
            log.warning(
                "webhook git pull failed forge=%s stderr=%s", forge, redact(done.stderr.strip()[-500:])
            )
            raise ApiError(409, "git pull --ff-only failed (diverged history?); see the server's log")
        log.info("webhook forge=%s: pulled; applying", forge)
        return _apply(f"webhook:{forge}", "webhook")

    # ------------------------------------------------------------------------------------------ other

    @app.get("/metrics", include_in_schema=False, dependencies=read)
    def get_metrics() -> Response:
        text, content_type = metrics_text(ctx)
        return Response(text, media_type=content_type)

    @app.get("/healthz", tags=["status"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse(PAGE)

    return app
