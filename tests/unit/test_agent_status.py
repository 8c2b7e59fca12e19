"""The **PERF: parser, crash-loop detection with an injected clock, instance states, drift of files."""

from __future__ import annotations

import pytest

from dsfleet.agent.containers import ObservedContainer
from dsfleet.agent.drift import DriftKind, file_drift, stopped_by_hand
from dsfleet.agent.observations import (
    LogDigest,
    RestartHistory,
    applied_config_hash,
    digest_log,
    fps_stale_after,
    in_backoff,
    instance_state,
    instance_status,
    newest_fps,
    observe_restarts,
    parse_perf_line,
    parse_time,
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
    fresh = LogDigest({"0": 30.0, "1": 0.0}, "hello", fps_at=100.0)
    s = instance_status("x", c, paused=False, backoff=False, log=fresh, now=101.0)
    assert s.error == "degraded: source 1 at 0 FPS" and s.exitCode is None and s.restarts == 4
    assert s.fpsAt == "1970-01-01T00:01:40+00:00"
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


START = "2026-01-01T00:00:10.500000000Z"
T0 = 1_767_225_610.5  # START as epoch seconds


def test_parse_time_reads_docker_timestamps() -> None:
    assert parse_time(START) == pytest.approx(T0)
    assert parse_time("2026-01-01T00:00:10Z") == pytest.approx(T0 - 0.5)
    assert parse_time("2026-01-01T01:00:10.5+01:00") == pytest.approx(T0)
    assert parse_time("garbage") is None and parse_time(None) is None


def _running(started: str = START, state: str = "running") -> ObservedContainer:
    return ObservedContainer("c1", "dsfleet-x", {}, state, started_at=started)


def test_digest_keeps_when_fps_were_printed_and_the_interval() -> None:
    d = digest_log(
        LogDigest(), ["**PERF:  30.00 (30.00)\t", "x", "**PERF:  29.00 (29.50)\t"], [T0 + 1, T0 + 1.5, T0 + 2]
    )
    assert d.fps == {"0": 29.0} and d.fps_at == T0 + 2 and d.perf_interval == pytest.approx(1.0)
    # lines without a timestamp take the time they were read
    d = digest_log(LogDigest(), ["**PERF:  30.00 (30.00)\t"], read_at=T0 + 9)
    assert d.fps_at == T0 + 9


@pytest.mark.parametrize(
    ("fps_at", "now", "state", "started", "reported"),
    [
        (T0 + 5, T0 + 6, "running", START, True),
        (T0 - 5, T0 + 6, "running", START, False),  # printed by the previous run of the container
        (T0 + 5, T0 + 5 + 31, "running", START, False),  # stale: nothing printed for longer than the limit
        (T0 + 5, T0 + 6, "restarting", START, False),
        (T0 + 5, T0 + 6, "exited", START, False),
    ],
)
def test_fps_come_only_from_the_current_run_while_fresh(
    fps_at: float, now: float, state: str, started: str, reported: bool
) -> None:
    log = LogDigest({"0": 30.0}, fps_at=fps_at)
    s = instance_status("x", _running(started, state), paused=False, backoff=False, log=log, now=now)
    assert (s.fps == {"0": 30.0}) is reported
    assert (s.fpsAt is not None) is reported


def test_a_crash_looping_instance_shows_no_fps() -> None:
    log = LogDigest({"0": 30.0}, fps_at=T0 + 5)
    s = instance_status("x", _running(), paused=False, backoff=True, log=log, now=T0 + 6)
    assert s.state is InstanceState.BACKOFF and s.fps == {} and s.fpsAt is None


def test_fps_stale_after_follows_the_perf_interval_and_the_read_period() -> None:
    assert fps_stale_after(None, 5.0) == 30.0
    assert fps_stale_after(1.0, 5.0) == 11.0  # two reads plus an interval
    assert fps_stale_after(20.0, 5.0) == 60.0  # three intervals


def test_applied_config_hash_is_the_hash_of_what_runs() -> None:
    from dsfleet.agent.containers import container_labels
    from dsfleet.schemas.labels import instance_labels
    from dsfleet.schemas.nodeconfigs import ContainerSpec, RenderedFile, RestartPolicySpec, build_instance

    spec = ContainerSpec(
        image="ds:7.0",
        engineVolume="x_engine",
        labels=instance_labels("x"),
        restartPolicy=RestartPolicySpec(name="unless-stopped"),
    )
    files = (RenderedFile(path="a.txt", content="v1"),)
    inst = build_instance("x", "deepstream-app", False, (), spec, files)
    c = ObservedContainer("c1", "dsfleet-x", container_labels(inst, "n", 1), "running")
    assert applied_config_hash(inst, c, inst.filesHash) == inst.configHash
    assert applied_config_hash(inst, c, "other") != inst.configHash  # files not applied yet
    assert applied_config_hash(inst, None, inst.filesHash) is None
    healless = build_instance("x", "deepstream-app", False, (), spec, files, self_heal=False)
    assert applied_config_hash(healless, c, inst.filesHash) == healless.configHash  # a toggle applies at once
    paused = build_instance("x", "deepstream-app", True, (), spec, files)
    assert (
        applied_config_hash(paused, c, inst.filesHash) != paused.configHash
    )  # still running: not paused yet
    stopped = ObservedContainer("c1", "dsfleet-x", c.labels, "exited", exit_code=143)
    assert applied_config_hash(paused, stopped, inst.filesHash) == paused.configHash
