"""``GET /instances/{name}/logs``: the newest lines of an instance's container, fetched from its node on request.

The API sends an ``AgentCommand`` ``logs`` to the node the instance is placed on (or, for an instance no longer
desired, the node that still reports it) and waits up to :data:`REPLY_SECONDS` for the agent's ``AgentLogs``
reply (:mod:`dsfleet.reconciler.coordinator.logreplies`). The text is redacted on the host and again here. 404: no
such instance; 409: the instance is on no node; 503: no broker, or it cannot take the command; 504: the agent did
not answer in time (node offline, agent too old to know the command).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.exceptions import RequestValidationError

from dsfleet.reconciler.api.dependencies import Context
from dsfleet.reconciler.api.errors import ApiError, error_responses
from dsfleet.reconciler.api.models import InstanceLogs
from dsfleet.schemas.errors import DsfleetError, TemporaryError
from dsfleet.schemas.redaction import redact
from dsfleet.schemas.wire import LOG_REPLY_BYTES

__all__ = ["REPLY_SECONDS", "log_node", "router", "since_time"]

REPLY_SECONDS = 10.0
"""How long the API waits for the agent's reply."""

router = APIRouter(tags=["logs"])

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_time(text: str, now: datetime) -> datetime:
    """``since`` as a time: a duration back from ``now`` (``90s``, ``10m``, ``2h``, ``1d``) or an ISO 8601 time
    (UTC when it has no offset). Raises ValueError with what is accepted."""
    duration = _DURATION.match(text)
    if duration:
        return now - timedelta(seconds=float(duration[1]) * _UNIT[duration[2].lower()])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError("since: expected a duration (90s, 10m, 2h, 1d) or an ISO 8601 time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def log_node(
    name: str, placed: Sequence[tuple[str, str | None]], reported: Sequence[tuple[str, str]]
) -> tuple[str | None, int, str]:
    """The node to ask for instance ``name``'s log: ``(node, 200, "")``, or ``(None, status, why)``.
    ``placed``: the desired instances and their nodes; ``reported``: ``(node, instance)`` of what agents report."""
    for instance, node in placed:
        if instance == name:
            if node is None:
                return None, 409, f"instance {name!r} is not placed on a node: it has no container to read"
            return node, 200, ""
    nodes = sorted({node for node, instance in reported if instance == name})
    if len(nodes) == 1:
        return nodes[0], 200, ""
    if nodes:
        return None, 409, f"instance {name!r} is no longer desired and reported by {len(nodes)} nodes"
    return None, 404, f"instance {name!r} not found"


@router.get(
    "/instances/{name}/logs",
    response_model=InstanceLogs,
    responses=error_responses(
        {
            404: "no such instance",
            409: "the instance is placed on no node",
            422: "malformed request",
            503: "the store cannot be read, or no broker can take the request",
            504: "the node's agent did not answer in time",
        }
    ),
)
def get_instance_logs(
    ctx: Context,
    name: Annotated[str, Path(max_length=63)],
    tail: Annotated[int, Query(ge=1, le=10_000, description="the newest N lines")] = 200,
    since: Annotated[
        str | None,
        Query(max_length=64, description="only newer lines: a duration (10m, 2h) or an ISO 8601 time"),
    ] = None,
) -> dict[str, Any]:
    """The newest lines (both streams) of the instance's container, read by its node's agent now: at most
    ``tail`` lines and 64 KB, credentials masked."""
    now = datetime.now(UTC)
    try:
        since_at = since_time(since, now).isoformat() if since else None
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "since"), "msg": str(exc), "type": "value_error"}]
        ) from None
    try:
        snapshot = ctx.store().status_snapshot()
    except DsfleetError:
        raise ApiError(503, "the store cannot be read now") from None
    node, status, why = log_node(
        name,
        [(i.name, i.node) for i in snapshot.instances],
        [(o.node, o.instance) for o in snapshot.observed],
    )
    if node is None:
        raise ApiError(status, why)
    if ctx.logs is None:
        raise ApiError(503, "no broker configured: the API cannot ask a node for its log")
    try:
        reply = ctx.logs.fetch(node, name, tail=tail, since=since_at, timeout=REPLY_SECONDS)
    except TemporaryError as exc:
        raise ApiError(503, f"the request cannot be sent to node {node!r} now: {exc}") from None
    if reply is None:
        raise ApiError(
            504,
            f"node {node!r} did not answer within {REPLY_SECONDS:g} s (is its agent running and connected?)",
        )
    text = redact(reply.text)
    return {
        "instance": name,
        "node": node,
        "text": text.encode("utf-8")[-LOG_REPLY_BYTES:].decode("utf-8", "ignore"),
        "truncated": reply.truncated or len(text.encode("utf-8")) > LOG_REPLY_BYTES,
        "error": redact(reply.error),
        "requestId": reply.requestId,
        "fetchedAt": datetime.now(UTC).isoformat(),
    }
