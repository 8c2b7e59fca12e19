"""Errors of the HTTP API: every one is ``{"error": {"status": N, "message": "..."}}``.

Unknown names 404, malformed requests 422 (with the offending fields, never their values), a missing or wrong
token 401 (with ``WWW-Authenticate: Bearer``), an unreadable store or no broker 503, anything unexpected 500 with
no detail (the traceback goes to the server's log only). :func:`error_responses` documents them in the OpenAPI
document with the models of :mod:`dsfleet.reconciler.api.models`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dsfleet.reconciler.api.gates import security_headers
from dsfleet.reconciler.api.models import ErrorResponse, ValidationErrorResponse
from dsfleet.schemas.errors import DsfleetError

log = logging.getLogger("dsfleet.api")

__all__ = ["ApiError", "error_body", "error_responses", "install_error_handlers"]


class ApiError(Exception):
    """Answer with this status and message (raised by routes and dependencies)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str, **extra: Any) -> JSONResponse:
    """The error body, with the security headers (an answer of the server's last resort, a 500, does not pass
    the gate that adds them to the others)."""
    body: dict[str, Any] = {"status": status, "message": message, **extra}
    headers = {name.decode(): value.decode() for name, value in security_headers("")}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": body}, status_code=status, headers=headers)


_CHALLENGE = {"WWW-Authenticate": {"description": "``Bearer``", "schema": {"type": "string"}}}


def error_responses(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route (or a router) for these status codes, each with its description."""
    out: dict[int | str, dict[str, Any]] = {}
    for status, description in described.items():
        model = ValidationErrorResponse if status == 422 else ErrorResponse
        doc: dict[str, Any] = {"model": model, "description": description}
        if status == 401:
            doc["headers"] = _CHALLENGE
        out[status] = doc
    return out


async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return error_body(exc.status, exc.message)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "error"
    if exc.status_code == 404 and message == "Not Found":
        message = "no such resource"
    return error_body(exc.status_code, message)


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [
        {"loc": [str(p) for p in e.get("loc", ())], "message": str(e.get("msg", ""))} for e in exc.errors()
    ]
    first = fields[0] if fields else {"loc": [], "message": "invalid"}
    return error_body(422, f"invalid request: {'.'.join(first['loc'])}: {first['message']}", fields=fields)


async def _unavailable(_request: Request, exc: DsfleetError) -> JSONResponse:
    log.warning("request failed error=%s", type(exc).__name__)
    return error_body(503, "the store cannot be read now (see the server's log)")


async def _internal(_request: Request, exc: Exception) -> JSONResponse:
    log.error("request failed error=%s", type(exc).__name__, exc_info=exc)
    return error_body(500, "internal error (see the server's log)")


def install_error_handlers(app: FastAPI) -> None:
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(DsfleetError)(_unavailable)
    app.exception_handler(Exception)(_internal)
