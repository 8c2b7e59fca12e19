"""The FastAPI application: read models under ``/api/v1/`` (with an instance's log, fetched from its node),
``POST apply`` / ``refresh`` / ``webhooks/git``, ``/metrics``, ``/healthz``, the dashboard at ``/`` and the
interactive docs at ``/docs``, their scripts and styles under ``/static/`` (files of the package: nothing is
loaded from elsewhere).

The routes live in :mod:`dsfleet.reconciler.api.routes` (one router per area), their bodies in
:mod:`dsfleet.reconciler.api.models`, errors in :mod:`dsfleet.reconciler.api.errors`. Every request passes the
gate first (:class:`~dsfleet.reconciler.api.middleware.HttpGuard`): ``Host``, the token, body size and time,
requests in hand, security headers. Reads may require the token (``read_requires_token``; the OpenAPI document
then says so); writes always do. Camera URLs are credentials-free in the store and every free text that comes
from a container (log lines, errors) goes through the one redaction (:func:`dsfleet.schemas.redaction.redact`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.dependencies import require_read, require_read_token
from dsfleet.reconciler.api.errors import error_responses, install_error_handlers
from dsfleet.reconciler.api.gates import API_PREFIX
from dsfleet.reconciler.api.middleware import HttpGuard
from dsfleet.reconciler.api.routes import (
    actions,
    inventory,
    logs,
    manifests,
    revisions,
    rollouts,
    service,
    status,
)

__all__ = ["API_VERSION", "STATIC_DIR", "create_app"]

API_VERSION = "v1"
PREFIX = API_PREFIX
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="dsfleet",
        version=API_VERSION,
        description="The dsfleet coordinator's HTTP API: fleet status, inventory, revisions, apply and refresh.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    reads = [Depends(require_read_token if ctx.read_requires_token else require_read)]
    documented = (
        error_responses({401: "missing or wrong bearer token (this server requires it for reads)"})
        if ctx.read_requires_token
        else {}
    )
    for router in (status.router, inventory.router, logs.router, revisions.router, rollouts.router):
        app.include_router(router, prefix=PREFIX, dependencies=reads, responses=documented)
    app.include_router(actions.router, prefix=PREFIX)
    app.include_router(manifests.router, prefix=PREFIX, dependencies=reads, responses=documented)
    manifests.install_edit_errors(app)
    app.include_router(service.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(HttpGuard, ctx=ctx)
    return app
