"""Pure: the reply to a ``logs`` command — an instance's recent log, redacted and capped, as an ``AgentLogs``.

The coordinator (``dsfleet logs``, ``GET /api/v1/instances/{name}/logs``, the dashboard) asks with an
``AgentCommand`` ``logs`` (``requestId``, ``instance``, ``tail`` lines, ``since``); the agent reads the instance's
container log through the runtime port (stdout and stderr, as ``docker logs`` does) and answers on the
AgentResponse topic, keyed by its node:

- ``since``: an ISO 8601 time (``2026-12-07T10:00:00Z``), epoch seconds, or a duration back from now (``90s``,
  ``10m``, ``2h``, ``1d``) — :func:`parse_since`; ``tail`` defaults to :data:`DEFAULT_TAIL` lines;
- every line is led by its time as ``docker logs --timestamps`` prints it (RFC 3339, UTC, nine fraction digits:
  ``2026-12-07T10:00:00.123456000Z <line>``; :func:`stamp`), so a follower can ask for what came after the newest
  line it printed;
- every line goes through :func:`dsfleet.schemas.redaction.redact` with the secret values the agent knows (its
  secret store's values for the refs of its instances), then the text is capped at
  :data:`dsfleet.schemas.wire.LOG_REPLY_BYTES` of UTF-8, keeping the newest lines (``truncated`` says so; a single
  line longer than the cap keeps its end);
- a request the agent cannot serve (no such instance or container, a bad ``since``, the engine failing) is
  answered with ``error`` and no text, so the asker never waits for a timeout.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from dsfleet.schemas.redaction import redact
from dsfleet.schemas.wire import LOG_REPLY_BYTES, AgentCommand, AgentLogs

__all__ = ["DEFAULT_TAIL", "cap_log", "logs_reply", "parse_since", "stamp"]

DEFAULT_TAIL = 200
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str | None, now: float) -> float | None:
    """``since`` as epoch seconds (None: not given); ``ValueError`` when it is none of the accepted forms."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    m = _DURATION.match(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2).lower()]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"since: {text[:64]!r} is not a time (ISO 8601, epoch seconds, or a duration like 10m)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def stamp(time: float) -> str:
    """Epoch seconds as Docker's log timestamps spell them (microseconds kept, nanoseconds zero)."""
    moment = datetime.fromtimestamp(round(time, 6), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def cap_log(lines: Sequence[str], limit: int = LOG_REPLY_BYTES) -> tuple[str, bool]:
    """The newest ``lines`` joined by newlines within ``limit`` bytes of UTF-8, and whether some were left out."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        encoded = len(line.encode("utf-8")) + (1 if kept else 0)
        if size + encoded > limit:
            if not kept:
                tail = line.encode("utf-8")[-limit:].decode("utf-8", "ignore")
                return tail, True
            return "\n".join(reversed(kept)), True
        kept.append(line)
        size += encoded
    return "\n".join(reversed(kept)), False


def logs_reply(
    node: str,
    command: AgentCommand,
    *,
    sent_at: str,
    lines: Sequence[str] = (),
    times: Sequence[float] = (),
    error: str | None = None,
    secrets: Iterable[str] = (),
) -> AgentLogs:
    """The ``AgentLogs`` answering ``command``: ``lines`` (oldest first) redacted, led by their ``times`` (when
    there is one per line) and capped, or ``error``."""
    values = tuple(secrets)
    if error is not None:
        return AgentLogs(
            sent_at=sent_at,
            node=node,
            requestId=command.requestId or "",
            instance=command.instance or "",
            error=redact(error, values)[:2000],
        )
    masked = [redact(line, values) for line in lines]
    if len(times) == len(lines):
        masked = [f"{stamp(t)} {line}" for t, line in zip(times, masked, strict=True)]
    text, truncated = cap_log(masked)
    return AgentLogs(
        sent_at=sent_at,
        node=node,
        requestId=command.requestId or "",
        instance=command.instance or "",
        text=text,
        truncated=truncated,
    )
