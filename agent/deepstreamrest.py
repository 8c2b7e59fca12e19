"""The adapter to DeepStream's stream REST API (``nvmultiurisrcbin``): the only module of the agent that speaks HTTP,
and only to ``127.0.0.1`` (the REST port of an instance on this host; DeepStream has no authentication and no TLS).

- :class:`StreamRest`: ``stream/add``, ``stream/remove`` (outcomes read from the body: the HTTP status is 200 even
  when DeepStream failed), ``stream/get-stream-info``, ``metrics`` (DeepStream 9.1+; absent: no metrics).
- The path prefix is ``/api/v1`` from DeepStream 7.0 on, none for 6.2/6.3 (:func:`dsfleet.agent.hotcameras.
  rest_prefix`); when the image tag does not say, the first call asks ``/api/v1`` and then the bare path.
- :class:`RestUnreachable`: no answer, an HTTP error status, or an answer that is not DeepStream's: the caller
  falls back to restarting the container.

Camera URLs (credentials filled in) go only into request bodies; errors carry camera ids and ports, never URLs.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime

from dsfleet.agent.hotcameras import (
    ActiveStream,
    Outcome,
    StreamMetrics,
    parse_metrics,
    parse_outcome,
    parse_stream_info,
)
from dsfleet.schemas.errors import TemporaryError
from dsfleet.schemas.streamapi import StreamSource

__all__ = ["RestUnreachable", "StreamRest"]

log = logging.getLogger("dsfleet.agent")

HOST = "127.0.0.1"
PREFIXES = ("/api/v1", "")


class RestUnreachable(TemporaryError):
    """DeepStream's REST server did not answer (or not as DeepStream does)."""


class _NotFound(Exception):
    pass


class StreamRest:
    def __init__(self, port: int, prefix: str | None = None, timeout: float = 3.0) -> None:
        self.port = port
        self.prefix = prefix
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy

    def _call(self, path: str, body: bytes | None = None) -> str:
        prefixes = (self.prefix,) if self.prefix is not None else PREFIXES
        last: Exception | None = None
        for prefix in prefixes:
            try:
                text = self._request(f"{prefix}{path}", body)
            except _NotFound as exc:
                last = exc
                continue
            self.prefix = prefix
            return text
        raise RestUnreachable(f"127.0.0.1:{self.port}: {path.lstrip('/')} not found ({last})")

    def _request(self, path: str, body: bytes | None) -> str:
        request = urllib.request.Request(
            f"http://{HOST}:{self.port}{path}",
            data=body,
            method="POST" if body is not None else "GET",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return str(answer.read(1 << 20).decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise _NotFound(f"HTTP {exc.code}") from None
            raise RestUnreachable(f"127.0.0.1:{self.port}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RestUnreachable(f"127.0.0.1:{self.port}: {reason}") from None

    @staticmethod
    def _body(source: StreamSource, change: str) -> bytes:
        return json.dumps(
            {
                "key": "sensor",
                "value": {
                    "camera_id": source.camera_id,
                    "camera_name": source.camera_name,
                    "camera_url": source.url,
                    "change": change,
                },
                "headers": {"source": "dsfleet", "created_at": datetime.now(UTC).isoformat()},
            }
        ).encode()

    def add(self, source: StreamSource) -> Outcome:
        return parse_outcome(self._call("/stream/add", self._body(source, "camera_add")))

    def remove(self, source: StreamSource) -> Outcome:
        return parse_outcome(self._call("/stream/remove", self._body(source, "camera_remove")))

    def streams(self) -> tuple[ActiveStream, ...]:
        text = self._call("/stream/get-stream-info")
        streams = parse_stream_info(text)
        if streams is None:
            raise RestUnreachable(f"127.0.0.1:{self.port}: get-stream-info: {parse_outcome(text).reason}")
        return streams

    def metrics(self) -> dict[str, StreamMetrics]:
        """Per-stream metrics where DeepStream serves them (9.1+); empty otherwise."""
        try:
            return parse_metrics(self._call("/metrics"))
        except RestUnreachable:
            return {}
