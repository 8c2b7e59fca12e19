"""What routes depend on: the :class:`~dsfleet.reconciler.api.context.ApiContext` of the app, the token checks of
reads and writes, and the fleet's status read in one snapshot of the store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.errors import ApiError
from dsfleet.reconciler.api.gates import Access, refusal
from dsfleet.reconciler.api.roles import Identity, identify, required_role
from dsfleet.reconciler.views import PUBLISHED_WINDOW, status_document
from dsfleet.schemas.errors import DsfleetError

if TYPE_CHECKING:
    from dsfleet.reconciler.store import StatusSnapshot

log = logging.getLogger("dsfleet.api")

__all__ = [
    "Context",
    "FleetStatus",
    "api_context",
    "caller",
    "read_status",
    "require_read",
    "require_read_token",
    "require_write",
]


async def api_context(request: Request) -> ApiContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, ApiContext)
    return ctx


Context = Annotated[ApiContext, Depends(api_context)]

_BEARER = HTTPBearer(
    scheme_name="token",
    description="The API token (``[api] token``, ``DSFLEET_API_TOKEN`` or ``--token-file``).",
    auto_error=False,
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
"""Declares the bearer scheme in the OpenAPI document; the token itself is checked on the raw header."""


def _check(access: Access, request: Request, ctx: ApiContext) -> None:
    refused = refusal(
        access,
        token=ctx.token,
        read_requires_token=ctx.read_requires_token,
        authorization=request.headers.get("authorization"),
        tokens=ctx.tokens,
        needed=required_role(request.method, request.url.path),
    )
    if refused is not None:
        raise ApiError(*refused)


def caller(request: Request, ctx: ApiContext) -> Identity:
    """Who sent this write (its token's name and role); 401 without a known token (the gate refused it
    already: this re-checks)."""
    who = identify(request.headers.get("authorization"), ctx.token, ctx.tokens)
    if who is None:
        raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer …)")
    return who


async def require_read(request: Request, ctx: Context) -> None:
    """Reads answer 401 without the right token when the server requires one for reads (the gate in front of
    the app refuses them first: :mod:`dsfleet.reconciler.api.middleware`; this declares and re-checks it)."""
    _check(Access.READ, request, ctx)


async def require_read_token(request: Request, ctx: Context, _bearer: Bearer) -> None:
    """:func:`require_read` on a server that requires the token for reads (documented as such)."""
    await require_read(request, ctx)


async def require_write(request: Request, ctx: Context, _bearer: Bearer) -> None:
    """Writes answer 401 without the right token, and always when the server has none configured."""
    _check(Access.WRITE, request, ctx)


@dataclass(frozen=True)
class FleetStatus:
    """The store's status snapshot and the ``dsfleet.status/v1`` document built from it."""

    snapshot: StatusSnapshot
    document: dict[str, Any]


def read_status(ctx: ApiContext) -> FleetStatus:
    """One read of the store (503 when it cannot be read), then the document as of now."""
    now = datetime.now(UTC)
    try:
        snapshot = ctx.store().status_snapshot(since=now - PUBLISHED_WINDOW)
    except DsfleetError as exc:
        log.warning("store unreadable error=%s", exc)
        raise ApiError(503, "the store cannot be read now") from None
    return FleetStatus(snapshot, status_document(snapshot, now))
