"""The FastAPI application: read models under ``/api/v1/`` (with an instance's log, fetched from its node),
``POST apply`` / ``refresh`` / ``webhooks/git``, ``/metrics``, ``/healthz`` and the dashboard at ``/``.

The routes live in :mod:`dsfleet.reconciler.api.routes` (one router per area), their bodies in
:mod:`dsfleet.reconciler.api.models`, errors in :mod:`dsfleet.reconciler.api.errors`. Reads may require the token
(``read_requires_token``; the OpenAPI document then says so); writes always do. Camera URLs are credentials-free
in the store and every free text that comes from a container (log lines, errors) goes through the one redaction
(:func:`dsfleet.schemas.redaction.redact`).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.dependencies import require_read, require_read_token
from dsfleet.reconciler.api.errors import error_responses, install_error_handlers
from dsfleet.reconciler.api.routes import actions, inventory, logs, revisions, service, status

__all__ = ["API_VERSION", "create_app"]

API_VERSION = "v1"
PREFIX = f"/api/{API_VERSION}"


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="dsfleet",
        version=API_VERSION,
        description="The dsfleet coordinator's HTTP API: fleet status, inventory, revisions, apply and refresh.",
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    reads = [Depends(require_read_token if ctx.read_requires_token else require_read)]
    documented = (
        error_responses({401: "missing or wrong bearer token (this server requires it for reads)"})
        if ctx.read_requires_token
        else {}
    )
    for router in (status.router, inventory.router, logs.router, revisions.router):
        app.include_router(router, prefix=PREFIX, dependencies=reads, responses=documented)
    app.include_router(actions.router, prefix=PREFIX)
    app.include_router(service.router)
    return app
