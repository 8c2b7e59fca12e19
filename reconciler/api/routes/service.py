"""The service's own endpoints: ``/healthz`` (liveness), ``/metrics`` (Prometheus text, a read), the
dashboard at ``/`` and the interactive docs at ``/docs`` (Swagger UI from the package)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from dsfleet.reconciler.api.dashboard import DOCS_PAGE, page
from dsfleet.reconciler.api.dependencies import Context, require_read
from dsfleet.reconciler.api.metrics import metrics_text
from dsfleet.reconciler.api.models import Healthz

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz", response_model=Healthz, tags=["status"])
def healthz() -> dict[str, str]:
    """Answers while the server runs (reads nothing)."""
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(require_read)])
def get_metrics(ctx: Context) -> Response:
    text, content_type = metrics_text(ctx)
    return Response(text, media_type=content_type)


@router.get("/", include_in_schema=False)
def dashboard(ctx: Context) -> HTMLResponse:
    """The page; Apply and Refresh only when the server has a token and something to send them to."""
    writes = bool(ctx.token)
    sends = ctx.send is not None
    return HTMLResponse(
        page(apply=writes and (sends or ctx.coordinator is not None), refresh=writes and sends)
    )


@router.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    """Swagger UI on this server's OpenAPI document, its script and styles served from the package."""
    return HTMLResponse(DOCS_PAGE)
