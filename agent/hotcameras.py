"""Hitless camera changes: the pure decisions for instances whose cameras DeepStream's stream REST API
(``nvmultiurisrcbin``) adds and removes in the running pipeline.

- :func:`hot_change`: whether a pending file change of a running instance is only cameras added/removed (then the
  files are written and the streams changed through the API, the container kept), and which.
- :func:`parse_outcome`, :func:`parse_stream_info`, :func:`parse_metrics`: DeepStream's answers. The HTTP status is
  200 even when an operation failed: the outcome is the body's ``status``.
- :func:`reconcile_cameras`: one tick of the continuous reconcile: the desired cameras against the streams
  DeepStream lists; a desired camera it dropped by itself is ``failed`` and re-added with backoff, an unexpected
  stream is removed (self-heal) when its URL is known; returns the calls to make and the per-camera status.

No I/O: :mod:`dsfleet.agent.deepstreamrest` makes the calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from dsfleet.schemas.streamapi import (
    StreamApi,
    StreamSource,
    api_prefix,
    image_version,
    same_but_cameras,
    stream_api,
)
from dsfleet.schemas.wire import CameraState, CameraStatus

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "DROPPED",
    "ActiveStream",
    "CameraPlan",
    "CameraTrack",
    "HotChange",
    "Outcome",
    "StreamMetrics",
    "hot_change",
    "parse_metrics",
    "parse_outcome",
    "parse_stream_info",
    "reconcile_cameras",
    "rest_prefix",
]

BACKOFF_BASE = 2.0
BACKOFF_MAX = 60.0
DROPPED = "dropped by DeepStream (not in its stream list)"


@dataclass(frozen=True)
class HotChange:
    """Cameras to add and remove through the REST API of the app config ``path`` (port, max-batch-size)."""

    path: str
    api: StreamApi
    adds: tuple[StreamSource, ...]
    removes: tuple[StreamSource, ...]


def hot_change(
    old: Mapping[str, bytes], writes: Mapping[str, bytes], removals: Sequence[str] = ()
) -> HotChange | None:
    """The camera adds/removes when the only pending change is the camera list of one app config served by
    nvmultiurisrcbin with a REST port (same port and ``max-batch-size``, the new list within it); else None.
    ``old``: the instance's files on disk; ``writes``: the files to write (both with credentials filled in)."""
    if removals or len(writes) != 1:
        return None
    ((path, data),) = writes.items()
    if path not in old:
        return None
    try:
        before, after = old[path].decode(), data.decode()
    except UnicodeDecodeError:
        return None
    was, now = stream_api(before), stream_api(after)
    if was is None or now is None or (was.port, was.max_batch_size) != (now.port, now.max_batch_size):
        return None
    if len(now.sources) > now.max_batch_size or not same_but_cameras(before, after):
        return None
    old_by_id = {s.camera_id: s for s in was.sources}
    new_by_id = {s.camera_id: s for s in now.sources}
    removes = tuple(s for s in was.sources if new_by_id.get(s.camera_id) != s)
    adds = tuple(s for s in now.sources if old_by_id.get(s.camera_id) != s)
    return HotChange(path, now, adds, removes)


def rest_prefix(image: str, setting: str | None = None) -> str | None:
    """The REST path prefix: ``setting`` (a DeepStream version such as ``6.3``) first, else the image tag's
    version; None when neither says (the adapter then asks the server)."""
    version = image_version(f"x:{setting}") if setting else image_version(image)
    return api_prefix(version) if version is not None else None


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: str
    reason: str


_STATUS_RE = re.compile(r"HTTP/1\.[01]\s+([0-9]{3})")


def parse_outcome(body: str) -> Outcome:
    """The outcome in a REST answer's body: ``{"status": "HTTP/1.1 <code> <text>", "reason": "..."}``; success is
    a 2xx code in ``status``. A body that is not such an object is a failure."""
    try:
        data = json.loads(body)
    except ValueError:
        return Outcome(False, "", f"not a DeepStream answer: {body.strip()[:120]!r}")
    if not isinstance(data, dict):
        return Outcome(False, "", "not a DeepStream answer")
    status = str(data.get("status", ""))
    reason = str(data.get("reason", ""))
    match = _STATUS_RE.search(status)
    ok = match is not None and match.group(1).startswith("2")
    return Outcome(ok, status, reason or status)


@dataclass(frozen=True)
class ActiveStream:
    camera_id: str
    camera_name: str
    source_id: int | None


def parse_stream_info(body: str) -> tuple[ActiveStream, ...] | None:
    """The streams ``get-stream-info`` lists; None when the body is not such an answer."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    info = data.get("stream-info") if isinstance(data, dict) else None
    if isinstance(info, dict):
        info = info.get("stream-info")
    if not isinstance(info, list):
        return None
    streams = []
    for item in info:
        if not isinstance(item, dict) or "camera_id" not in item:
            continue
        sid = item.get("source_id")
        streams.append(
            ActiveStream(
                str(item["camera_id"]),
                str(item.get("camera_name") or item["camera_id"]),
                int(sid) if isinstance(sid, int | str) and str(sid).lstrip("-").isdigit() else None,
            )
        )
    return tuple(streams)


@dataclass(frozen=True)
class StreamMetrics:
    fps: float | None = None
    frame_number: int | None = None
    latency_ms: float | None = None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def parse_metrics(body: str) -> dict[str, StreamMetrics]:
    """Per-stream metrics by camera id (``sensor_id``/``camera_id``) or, lacking one, ``source:<n>``; every list of
    objects carrying ``fps``/``frame_number``/``latency_ms`` is read. Unreadable: empty."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    found: dict[str, StreamMetrics] = {}

    def walk(node: object) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if any(k in node for k in ("fps", "frame_number", "latency_ms")):
                key = node.get("sensor_id") or node.get("camera_id")
                if key is None and node.get("source_id") is not None:
                    key = f"source:{node['source_id']}"
                if key is not None:
                    frame = _number(node.get("frame_number"))
                    found[str(key)] = StreamMetrics(
                        _number(node.get("fps")),
                        int(frame) if frame is not None else None,
                        _number(node.get("latency_ms")),
                    )
                return
            for value in node.values():
                walk(value)

    walk(data)
    return found


@dataclass(frozen=True)
class CameraTrack:
    """What the agent knows of one camera of one instance between ticks."""

    source: StreamSource
    state: CameraState
    since: float
    """Wall time (epoch seconds) it entered ``state``."""
    reason: str | None = None
    attempts: int = 0
    retry_at: float = 0.0
    """Monotonic time of the next re-add (``failed``)."""


@dataclass(frozen=True)
class CameraPlan:
    adds: tuple[StreamSource, ...] = ()
    removes: tuple[StreamSource, ...] = ()
    tracks: Mapping[str, CameraTrack] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    """One line per decision, for the log (camera ids only, never URLs)."""


def backoff(attempts: int) -> float:
    return float(min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(attempts - 1, 0)))


def reconcile_cameras(
    desired: Sequence[StreamSource],
    active: Sequence[ActiveStream],
    tracks: Mapping[str, CameraTrack],
    *,
    now: float,
    wall: float,
    self_heal: bool,
) -> CameraPlan:
    """One reconcile tick of an instance's cameras (``now``: monotonic, ``wall``: epoch seconds)."""
    listed = {s.camera_id for s in active}
    wanted = {s.camera_id: s for s in desired}
    out: dict[str, CameraTrack] = {}
    adds: list[StreamSource] = []
    removes: list[StreamSource] = []
    events: list[str] = []
    for source in desired:
        track = tracks.get(source.camera_id)
        if track is not None and track.source != source:
            track = None  # another URL or name: a new camera
        if source.camera_id in listed:
            if track is None or track.state is not CameraState.STREAMING:
                track = CameraTrack(source, CameraState.STREAMING, wall)
            out[source.camera_id] = track
            continue
        if track is None:
            adds.append(source)
            out[source.camera_id] = CameraTrack(source, CameraState.ADDED, wall, attempts=1)
            events.append(f"camera add camera={source.camera_id} reason=missing")
            continue
        if track.state in (CameraState.STREAMING, CameraState.ADDED):
            attempts = max(track.attempts, 1)
            out[source.camera_id] = CameraTrack(
                source, CameraState.FAILED, wall, DROPPED, attempts, now + backoff(attempts)
            )
            events.append(
                f"camera failed camera={source.camera_id} reason={DROPPED!r} retry_in={backoff(attempts):.0f}s"
            )
            continue
        if now >= track.retry_at:
            adds.append(source)
            out[source.camera_id] = replace(
                track, attempts=track.attempts + 1, retry_at=now + backoff(track.attempts + 1)
            )
            events.append(f"camera re-add camera={source.camera_id} attempt={track.attempts + 1}")
        else:
            out[source.camera_id] = track
    for stream in active:
        if stream.camera_id in wanted:
            continue
        known = tracks.get(stream.camera_id)
        if not self_heal:
            continue
        if known is not None and known.source.url:
            removes.append(known.source)
            out[stream.camera_id] = CameraTrack(known.source, CameraState.REMOVED, wall)
            events.append(f"camera remove camera={stream.camera_id} reason=unexpected")
        else:
            unknown = StreamSource(stream.camera_id, stream.camera_name)
            if known is None:
                events.append(f"camera unexpected camera={stream.camera_id} (URL unknown: not removed)")
            out[stream.camera_id] = CameraTrack(
                unknown,
                CameraState.FAILED,
                wall,
                "unexpected stream; its URL is unknown, so it cannot be removed",
            )
    return CameraPlan(tuple(adds), tuple(removes), out, tuple(events))


def camera_statuses(
    tracks: Mapping[str, CameraTrack],
    active: Sequence[ActiveStream],
    metrics: Mapping[str, StreamMetrics],
    iso: object,
) -> tuple[CameraStatus, ...]:
    """The reported per-camera status (``iso``: a callable epoch seconds → ISO text)."""
    source_ids = {s.camera_id: s.source_id for s in active}
    result = []
    for camera_id, track in sorted(tracks.items()):
        sid = source_ids.get(camera_id)
        m = (
            metrics.get(camera_id)
            or (metrics.get(f"source:{sid}") if sid is not None else None)
            or StreamMetrics()
        )
        result.append(
            CameraStatus(
                name=(track.source.camera_name or camera_id)[:63],
                state=track.state,
                reason=track.reason[:500] if track.reason else None,
                sourceId=sid,
                fps=m.fps,
                frameNumber=m.frame_number,
                latencyMs=m.latency_ms,
                since=iso(track.since) if callable(iso) else None,
            )
        )
    return tuple(result)
