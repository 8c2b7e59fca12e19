"""Pure: what the agent reports — instance status from observations, crash-loop detection, the ``**PERF:`` parser.

**FPS** (docs/operating/status.md). deepstream-app prints, every ``perf-measurement-interval-sec``::

    **PERF:  FPS 0 (Avg)\tFPS 1 (Avg)\t          ← a header, every 20 lines: ignored
    **PERF:  30.02 (29.87)\t0.00 (12.50)\t        ← current (average) per source, in source order
    **PERF(cam-a):  30.02 (29.87)\t               ← several configs in one process: keys "cam-a/0", …

and the Python samples print ``**PERF:  {'stream0': 30.0, 'stream1': 0.0}``. :func:`parse_perf_line` returns the
current FPS per source (keys ``"0"``, ``"1"``, … or the sample's own stream names), :func:`newest_fps` the values
of the newest data line of a chunk of log. A source at 0 FPS makes the instance *degraded*
(:data:`DEGRADED_PREFIX` in ``InstanceStatus.error``: the wire model has no health field yet).

**Crash loops.** Docker restarts a crashing container by its restart policy; the agent does not fight it. It
samples Docker's restart count (:func:`observe_restarts`) and reports ``backoff`` when the count rose by
:data:`BACKOFF_RESTARTS` or more within :data:`BACKOFF_WINDOW_SECONDS` (:func:`in_backoff`; the clock is passed in).

**Only what runs now** (kubelet reports a container's own run, Argo CD's health what is live): FPS come from the
``**PERF:`` lines of the container's *current* run (printed at or after its ``startedAt``; the log lines carry
the engine's timestamps) and only while they are fresh — printed within :func:`fps_stale_after` (three perf
intervals, at least twice the period the agent reads logs at, 30 s when the interval is unknown). A container
that is not ``running`` (restarting, exited, in ``backoff``) reports no FPS at all; ``fpsAt`` says when the values
were printed.

**Last log line**: the newest non-empty line that is not a ``**PERF:`` line (those become ``fps``); for an instance
that is ``exited``, ``restarting`` or in ``backoff``, the newest *error* line (``ERROR``, ``App run failed``,
``Failed …``) when there is one, since the lines a restarted container prints first say nothing about its crash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from dsfleet.agent.containers import RUNNING_STATES, ObservedContainer
from dsfleet.agent.drift import SIGNAL_EXIT_CODES
from dsfleet.schemas.nodeconfigs import InstanceConfig, instance_hash
from dsfleet.schemas.wire import CameraStatus, Drift, InstanceCondition, InstanceState, InstanceStatus

__all__ = [
    "BACKOFF_RESTARTS",
    "BACKOFF_WINDOW_SECONDS",
    "DEGRADED_PREFIX",
    "FPS_STALE_SECONDS",
    "LogDigest",
    "RestartHistory",
    "applied_config_hash",
    "digest_log",
    "fps_stale_after",
    "fresh_fps",
    "in_backoff",
    "instance_state",
    "instance_status",
    "is_perf_line",
    "newest_fps",
    "observe_restarts",
    "parse_perf_line",
    "parse_time",
]

BACKOFF_WINDOW_SECONDS = 120.0
BACKOFF_RESTARTS = 3
DEGRADED_PREFIX = "degraded: "
MAX_LINE = 2000
FPS_STALE_SECONDS = 30.0
"""How long FPS values count as current when the perf interval is not known."""

_PERF_RE = re.compile(r"^\s*\*\*PERF(?:\((?P<name>[^)]*)\))?:\s*(?P<body>.*?)\s*$")
_PAIR_RE = re.compile(r"(\d+(?:\.\d+)?)\s*\(\s*\d+(?:\.\d+)?\s*\)")
_DATA_RE = re.compile(r"^(?:\d+(?:\.\d+)?\s*\(\s*\d+(?:\.\d+)?\s*\)\s*)+$")
_DICT_ITEM_RE = re.compile(r"""['"]([^'"]+)['"]\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)""")


def is_perf_line(line: str) -> bool:
    return _PERF_RE.match(line) is not None


def parse_perf_line(line: str) -> dict[str, float] | None:
    """Current FPS per source of one ``**PERF:`` data line; None for a header or any other line."""
    m = _PERF_RE.match(line)
    if m is None:
        return None
    body = m.group("body")
    prefix = f"{m.group('name')}/" if m.group("name") else ""
    if body.startswith("{"):
        items = _DICT_ITEM_RE.findall(body)
        if not items:
            return None
        return {f"{prefix}{k}": float(v) for k, v in items}
    if not _DATA_RE.match(body):
        return None  # the header ("FPS 0 (Avg) ...") or something else
    return {f"{prefix}{i}": float(v) for i, v in enumerate(_PAIR_RE.findall(body))}


def newest_fps(lines: Iterable[str]) -> dict[str, float] | None:
    """FPS of the newest ``**PERF:`` data line among ``lines`` (None when there is none)."""
    newest = None
    for line in lines:
        parsed = parse_perf_line(line)
        if parsed is not None:
            newest = parsed
    return newest


_ERROR_RE = re.compile(r"\bERROR\b|App run failed|\bFailed\b|\berror:", re.IGNORECASE)


def parse_time(text: str | None) -> float | None:
    """RFC 3339 with up to nanoseconds (``2026-12-01T09:00:00.123456789Z``, Docker's) → epoch seconds."""
    if not text:
        return None
    base, _, rest = text.partition(".")
    frac = ""
    zone = ""
    if rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, zone = rest[:digits], rest[digits:]
    else:
        for sep in ("Z", "+", "-"):
            pos = base.find(sep, 10)
            if pos != -1:
                base, zone = base[:pos], base[pos:]
                break
    zone = "+00:00" if zone in ("", "Z") else zone
    try:
        seconds = datetime.fromisoformat(base + zone).timestamp()
    except ValueError:
        return None
    return seconds + (float("0." + frac) if frac else 0.0)


@dataclass(frozen=True)
class LogDigest:
    """What the agent keeps of a container's log: the newest FPS (and when they were printed), the last other line,
    the last error line, and the interval between ``**PERF:`` lines."""

    fps: Mapping[str, float] | None = None
    last_line: str | None = None
    last_error: str | None = None
    fps_at: float | None = None
    """Epoch seconds the newest ``**PERF:`` data line was printed."""
    perf_interval: float | None = None


_BURST = 0.2
"""``**PERF(name):`` lines of several configs in one process come together: closer than this is one print."""


def digest_log(
    previous: LogDigest,
    lines: Sequence[str],
    times: Sequence[float | None] = (),
    read_at: float | None = None,
) -> LogDigest:
    """``previous`` updated with new log ``lines`` (read incrementally); ``times``: each line's timestamp (epoch
    seconds; ``read_at`` stands in for a missing one)."""
    fps = previous.fps
    last = previous.last_line
    error = previous.last_error
    fps_at = previous.fps_at
    interval = previous.perf_interval
    for index, raw in enumerate(lines):
        line = raw.rstrip("\r\n")
        stamp = times[index] if index < len(times) and times[index] is not None else read_at
        parsed = parse_perf_line(line)
        if parsed is not None:
            if stamp is not None and fps_at is not None and stamp - fps_at > _BURST:
                interval = stamp - fps_at
            fps = parsed
            fps_at = stamp
        elif is_perf_line(line):
            continue  # a header
        elif line.strip():
            last = line.strip()[:MAX_LINE]
            if _ERROR_RE.search(last):
                error = last
    return LogDigest(fps, last, error, fps_at, interval)


def fps_stale_after(perf_interval: float | None, read_period: float) -> float:
    """Seconds after which FPS values no longer count: three perf intervals, but at least two log reads plus one
    interval (the agent reads logs every ``read_period``); :data:`FPS_STALE_SECONDS` without a known interval."""
    if perf_interval is None or perf_interval <= 0:
        return max(FPS_STALE_SECONDS, 2 * read_period)
    return max(3 * perf_interval, 2 * read_period + perf_interval)


def fresh_fps(
    log: LogDigest,
    container: ObservedContainer | None,
    state: InstanceState,
    *,
    now: float,
    read_period: float,
) -> tuple[dict[str, float], float | None]:
    """The FPS to report and when they were printed: only for a running container, only from its current run
    (printed at or after its ``startedAt``), only while fresh (:func:`fps_stale_after`)."""
    if container is None or state is not InstanceState.RUNNING or not log.fps or log.fps_at is None:
        return {}, None
    started = parse_time(container.started_at)
    if started is not None and log.fps_at < started:
        return {}, None
    if now - log.fps_at > fps_stale_after(log.perf_interval, read_period):
        return {}, None
    return dict(log.fps), log.fps_at


@dataclass(frozen=True)
class RestartHistory:
    """Samples ``(time, restart count)`` of one container within the window."""

    samples: tuple[tuple[float, int], ...] = ()


def observe_restarts(
    history: RestartHistory, restart_count: int, now: float, window: float = BACKOFF_WINDOW_SECONDS
) -> RestartHistory:
    kept = tuple(s for s in history.samples if s[0] >= now - window)
    if not kept or kept[-1][1] != restart_count:
        kept = (*kept, (now, restart_count))
    return RestartHistory(kept)


def in_backoff(
    history: RestartHistory,
    now: float,
    window: float = BACKOFF_WINDOW_SECONDS,
    threshold: int = BACKOFF_RESTARTS,
) -> bool:
    """Did the restart count rise by ``threshold`` or more within ``window`` seconds before ``now``?"""
    recent = [count for t, count in history.samples if t >= now - window]
    if len(recent) < 2:
        return False
    return max(recent) - min(recent) >= threshold


def instance_state(container: ObservedContainer | None, paused: bool, backoff: bool) -> InstanceState:
    if container is None:
        return InstanceState.MISSING
    if backoff:
        return InstanceState.BACKOFF
    state = container.state
    if state == "running":
        return InstanceState.RUNNING
    if state == "created":
        return InstanceState.STOPPED if paused else InstanceState.CREATED
    if state == "restarting":
        return InstanceState.RESTARTING
    if paused or container.exit_code in SIGNAL_EXIT_CODES or state == "paused":
        return InstanceState.STOPPED
    return InstanceState.EXITED


def _degraded(fps: Mapping[str, float] | None) -> str | None:
    if not fps:
        return None
    zero = sorted(k for k, v in fps.items() if v <= 0.0)
    if not zero:
        return None
    return f"{DEGRADED_PREFIX}source{'s' if len(zero) > 1 else ''} {', '.join(zero)} at 0 FPS"


def applied_config_hash(
    inst: InstanceConfig, container: ObservedContainer | None, files_hash: str | None
) -> str | None:
    """The instance config hash of what runs: the container's spec hash, the files hash applied to it, the pause
    as it is honoured (a paused instance whose container still runs is not paused yet) and the instance's other
    settings (they take effect at once). Equal to the desired ``configHash`` exactly when the desired config runs."""
    if container is None or not container.spec_hash or not files_hash:
        return None
    paused = inst.paused and container.state not in RUNNING_STATES
    return instance_hash(container.spec_hash, files_hash, paused, inst.selfHeal, inst.strategy)


def instance_status(
    name: str,
    container: ObservedContainer | None,
    *,
    paused: bool,
    backoff: bool,
    log: LogDigest,
    drift: Sequence[Drift] = (),
    generation: int | None = None,
    spec_hash: str | None = None,
    files_hash: str | None = None,
    config_hash: str | None = None,
    error: str | None = None,
    conditions: Sequence[InstanceCondition] = (),
    now: float | None = None,
    read_period: float = 5.0,
    cameras: Sequence[CameraStatus] = (),
) -> InstanceStatus:
    """The reported status of one instance. ``files_hash`` is the one applied (recorded), ``spec_hash`` the
    container's label, ``config_hash`` the config hash of what runs (:func:`applied_config_hash`); ``error`` a
    problem found by the plan (clash, missing secret) or an apply failure; ``conditions`` the agent's problems with
    the instance (:mod:`dsfleet.agent.retries`); ``now`` (epoch seconds) judges how fresh the FPS are (None: as
    fresh as the log read)."""
    state = instance_state(container, paused, backoff)
    fps, fps_at = fresh_fps(
        log, container, state, now=now if now is not None else (log.fps_at or 0.0), read_period=read_period
    )
    last_line = log.last_line
    if state in (InstanceState.BACKOFF, InstanceState.EXITED, InstanceState.RESTARTING) and log.last_error:
        last_line = log.last_error
    exit_code = None
    if container is not None and (container.state != "running" or backoff):
        exit_code = container.exit_code
    problem = error or (_degraded(fps) if state is InstanceState.RUNNING else None)
    return InstanceStatus(
        name=name,
        state=state,
        containerId=container.id if container else None,
        generation=generation,
        specHash=spec_hash,
        filesHash=files_hash,
        configHash=config_hash,
        restarts=container.restart_count if container else 0,
        exitCode=exit_code,
        lastLogLine=last_line,
        error=problem[:MAX_LINE] if problem else None,
        drift=tuple(drift)[-100:],
        fps=fps,
        fpsAt=datetime.fromtimestamp(fps_at, UTC).isoformat() if fps_at is not None else None,
        startedAt=container.started_at if container else None,
        conditions=tuple(conditions)[:20],
        cameras=tuple(cameras)[:1024],
    )
