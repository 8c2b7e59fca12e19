"""The **PERF: parser, crash-loop detection with an injected clock, instance states, drift of files."""

from __future__ import annotations

import pytest

from dsfleet.agent.containers import ObservedContainer
from dsfleet.agent.drift import DriftKind, file_drift, stopped_by_hand
from dsfleet.agent.observations import (
    LogDigest,
    RestartHistory,
    digest_log,
    in_backoff,
    instance_state,
    instance_status,
    newest_fps,
    observe_restarts,
    parse_perf_line,
)
from dsfleet.schemas.wire import InstanceState


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("**PERF:  30.02 (29.87)\t", {"0": 30.02}),
        ("**PERF:  30.02 (29.87)\t0.00 (12.50)\t25.00 (25.00)\t", {"0": 30.02, "1": 0.0, "2": 25.0}),
        ("**PERF:  FPS 0 (Avg)\tFPS 1 (Avg)\t", None),
        ("**PERF(cam-a):  15.00 (14.90)\t", {"cam-a/0": 15.0}),
        ("**PERF:  {'stream0': 30.0, 'stream1': 0.0}", {"stream0": 30.0, "stream1": 0.0}),
        ("**PERF: {}", None),
        ("Quitting", None),
        ("", None),
        ("**PERF:  nonsense", None),
    ],
)
def test_parse_perf_line(line: str, expected: dict[str, float] | None) -> None:
    assert parse_perf_line(line) == expected


def test_newest_fps_and_digest_skip_headers() -> None:
    lines = [
        "",
        "**PERF:  FPS 0 (Avg)\t",
        "**PERF:  10.00 (10.00)\t",
        "ERROR from src: x",
        "**PERF:  20.00 (15.00)\t",
        "",
    ]
    assert newest_fps(lines) == {"0": 20.0}
    d = digest_log(LogDigest(), lines)
    assert d.fps == {"0": 20.0} and d.last_line == "ERROR from src: x" and d.last_error == d.last_line
    d2 = digest_log(d, ["**PERF:  FPS 0 (Avg)\t"])
    assert d2 == d


def test_backoff_with_an_injected_clock() -> None:
    h = RestartHistory()
    for t, count in [(0.0, 0), (2.0, 1), (4.0, 2)]:
        h = observe_restarts(h, count, t)
    assert not in_backoff(h, 4.0)
    h = observe_restarts(h, 3, 6.0)
    assert in_backoff(h, 6.0)
    # quiet for longer than the window: no longer a crash loop
    h = observe_restarts(h, 3, 200.0)
    assert not in_backoff(h, 200.0)
    assert not in_backoff(observe_restarts(RestartHistory(), 40, 0.0), 0.0)  # one sample is no trend


@pytest.mark.parametrize(
    ("state", "exit_code", "paused", "backoff", "expected"),
    [
        ("running", None, False, False, InstanceState.RUNNING),
        ("created", None, False, False, InstanceState.CREATED),
        ("restarting", 1, False, False, InstanceState.RESTARTING),
        ("restarting", 1, False, True, InstanceState.BACKOFF),
        ("exited", 255, False, False, InstanceState.EXITED),
        ("exited", 143, False, False, InstanceState.STOPPED),
        ("exited", 0, True, False, InstanceState.STOPPED),
    ],
)
def test_instance_state(
    state: str, exit_code: int | None, paused: bool, backoff: bool, expected: InstanceState
) -> None:
    c = ObservedContainer("c1", "dsfleet-x", {}, state, exit_code=exit_code)
    assert instance_state(c, paused, backoff) is expected
    assert instance_state(None, paused, backoff) is InstanceState.MISSING


def test_status_reports_degraded_and_backoff_exit_code() -> None:
    c = ObservedContainer("c1", "dsfleet-x", {}, "running", restart_count=4, exit_code=255)
    s = instance_status("x", c, paused=False, backoff=False, log=LogDigest({"0": 30.0, "1": 0.0}, "hello"))
    assert s.error == "degraded: source 1 at 0 FPS" and s.exitCode is None and s.restarts == 4
    s = instance_status(
        "x", c, paused=False, backoff=True, log=LogDigest(None, "Pipeline running", "App run failed")
    )
    assert s.state is InstanceState.BACKOFF and s.exitCode == 255 and s.lastLogLine == "App run failed"
    s = instance_status(
        "x", c, paused=False, backoff=False, log=LogDigest(None, "Pipeline running", "App run failed")
    )
    assert s.lastLogLine == "Pipeline running"


def test_file_drift_and_stopped_by_hand() -> None:
    found = file_drift("x", ["a.txt", "b.txt"], ["stray"], ["a.txt", "stray"])
    assert [(f.kind, f.detail) for f in found] == [
        (DriftKind.FILE_MISSING, "b.txt"),
        (DriftKind.FILE_EDITED, "a.txt, stray"),
    ]
    assert stopped_by_hand("exited", 1, "unless-stopped")
    assert stopped_by_hand("exited", 143, "on-failure")
    assert not stopped_by_hand("exited", 1, "on-failure")
    assert not stopped_by_hand("running", None, "unless-stopped")
