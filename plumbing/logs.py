"""Logging of both long-running sides: stdlib ``logging`` configured once per process, text or JSON, one line per
decision with key=value context, and a redaction filter so a credential never reaches a log line.

- :func:`configure_logging` (``--log-level``, ``--log-format text|json``) installs one stderr handler on the root
  logger (calling it again replaces it, never stacks a second one).
- Context: ``logger.info("published", extra={"ctx": {"node": "gpu-node-1", "generation": 3}})`` or
  ``log(logger, "published", node="gpu-node-1", generation=3)``. Text: ``… published node=gpu-node-1
  generation=3``; JSON: one object per line with the context as fields.
- :class:`RedactingFilter` masks what looks like a credential in the message, the context and tracebacks with the
  one redaction of dsfleet (:func:`dsfleet.schemas.redaction.redact`: URL user-info, ``password=…``/``token=…``
  pairs, JSON ``"password": "…"``, ``Bearer …``), and any context value whose key names a credential.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

from dsfleet.schemas.redaction import MASK, names_credential, redact

__all__ = [
    "LEVELS",
    "MASK",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "log",
    "redact",
]

LEVELS: Final = ("debug", "info", "warning", "error", "critical")
_QUIET: Final = ("alembic", "alembic.runtime.migration", "urllib3", "docker", "watchfiles")
"""Libraries that are chatty at INFO; they log at WARNING and above only."""


def _redact_value(key: str, value: Any) -> Any:
    if names_credential(key):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Rewrites each record in place: message (with its arguments merged), context and exception text redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can, redacted
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        ctx = getattr(record, "ctx", None)
        if isinstance(ctx, Mapping):
            record.ctx = {str(k): _redact_value(str(k), v) for k, v in ctx.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # the text is what gets printed, and it is redacted
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _context(record: logging.LogRecord) -> dict[str, Any]:
    ctx = getattr(record, "ctx", None)
    return dict(ctx) if isinstance(ctx, Mapping) else {}


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """``2026-01-01T12:00:00.000Z INFO dsfleet.coordinator: published node=gpu-node-1 generation=3``."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        line = f"{when} {record.levelname} {record.name}: {record.getMessage()}"
        ctx = _context(record)
        if ctx:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in ctx.items())
        if record.exc_text:
            line += "\n" + record.exc_text
        elif record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, the context fields, ``exc`` if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _context(record).items():
            out.setdefault(key, value)
        if record.exc_text:
            out["exc"] = record.exc_text
        elif record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


_HANDLER_NAME: Final = "dsfleet"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (test runners swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(
    level: str = "info", fmt: Literal["text", "json"] = "text", *, stream: TextIO | None = None
) -> logging.Handler:
    """Install the process's one log handler (stderr unless ``stream``) on the root logger; returns it.
    Calling it again replaces the handler it installed before."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
    if fmt not in ("text", "json"):
        raise ValueError("log format must be text or json")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    return handler


def log(logger: logging.Logger, msg: str, /, *, level: int = logging.INFO, **ctx: Any) -> None:
    """``log(logger, "published", node="gpu-node-1", generation=3)``: one line with key=value context."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"ctx": ctx}, stacklevel=2)
