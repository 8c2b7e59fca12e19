"""The rollout's pure decisions: waves, the health gate with its soak and deadline, maxUnavailable, the abort rule,
pause/promote, cordoned nodes, and the JSON form the store keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dsfleet.reconciler.planning.rollouts import (
    Command,
    InstanceReading,
    NodeReading,
    NodeState,
    Rollout,
    RolloutState,
    assign_waves,
    start_rollout,
    step,
)
from dsfleet.schemas.rollouts import RolloutStrategy

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
NODES = [f"n{i}" for i in range(1, 7)]


def strategy(**extra: object) -> RolloutStrategy:
    spec: dict[str, object] = {
        "waves": [{"nodes": 1}, {"nodes": "50%"}, {}],
        "maxUnavailable": 2,
        "gate": {"soakSeconds": 10, "deadlineSeconds": 60},
    }
    spec.update(extra)
    return RolloutStrategy.model_validate(spec)


def healthy(restarts: int = 0, fps: dict[str, float] | None = None) -> NodeReading:
    return NodeReading(
        online=True,
        received=True,
        desired={"ds": "h2"},
        instances={"ds": InstanceReading("running", "h2", restarts, (), fps or {})},
    )


def started(s: RolloutStrategy | None = None) -> Rollout:
    return start_rollout(7, 6, s or strategy(), dict.fromkeys(NODES, ("ds",)), {}, T0, commit="abc")


def test_waves_by_count_percentage_and_rest() -> None:
    waves = assign_waves(strategy(), NODES, {})
    assert waves == [("wave-1", ["n1"]), ("wave-2", ["n2", "n3", "n4"]), ("wave-3", ["n5", "n6"])]


def test_waves_by_label_leave_the_unselected_to_a_last_wave() -> None:
    s = RolloutStrategy.model_validate({"waves": [{"name": "canary", "selector": {"site": "a"}, "nodes": 1}]})
    labels = {"n1": {"site": "b"}, "n2": {"site": "a"}, "n3": {"site": "a"}}
    assert assign_waves(s, ["n1", "n2", "n3"], labels) == [("canary", ["n2"]), ("rest", ["n1", "n3"])]


def test_a_good_change_goes_wave_by_wave_after_each_soak() -> None:
    r = started()
    first = step(r, {}, T0)
    assert first.release == ("n1",) and first.rollout.state is RolloutState.PROGRESSING
    # healthy, but not for the soak time yet: nothing else goes out
    at = T0 + timedelta(seconds=5)
    second = step(first.rollout, {"n1": healthy()}, at)
    assert second.release == () and second.rollout.progress("n1").state is NodeState.SOAKING  # type: ignore[union-attr]
    third = step(second.rollout, {"n1": healthy()}, at + timedelta(seconds=10))
    assert third.rollout.progress("n1").state is NodeState.PASSED  # type: ignore[union-attr]
    assert third.release == ("n2", "n3"), "wave 2 starts, two instances at a time (maxUnavailable 2)"
    r = third.rollout
    now = at + timedelta(seconds=10)
    for _ in range(10):
        now += timedelta(seconds=11)
        out = step(r, {n: healthy() for n in NODES}, now)
        r = out.rollout
        if r.state is RolloutState.SUCCEEDED:
            break
    assert r.state is RolloutState.SUCCEEDED, r.reason
    assert all(p.state is NodeState.PASSED for p in r.nodes)
    released = sorted((p.released_at, p.node) for p in r.nodes)
    assert [n for _at, n in released][:3] == ["n1", "n2", "n3"]


def test_a_crash_loop_in_wave_one_aborts() -> None:
    r = step(started(), {}, T0).rollout
    r = step(r, {"n1": healthy(restarts=0)}, T0 + timedelta(seconds=1)).rollout  # the baseline
    out = step(r, {"n1": healthy(restarts=2)}, T0 + timedelta(seconds=2))
    assert out.rollout.state is RolloutState.ABORTING and out.release == ()
    assert "crash loop" in out.rollout.progress("n1").reason  # type: ignore[union-attr]
    assert "1 of 1 released nodes failed" in out.rollout.reason
    assert all(p.released_at is None for p in out.rollout.nodes if p.node != "n1")


def test_the_deadline_fails_a_node_that_never_gets_healthy() -> None:
    r = step(started(), {}, T0).rollout
    waiting = NodeReading(True, False, {"ds": "h2"})
    out = step(r, {"n1": waiting}, T0 + timedelta(seconds=59))
    assert out.rollout.state is RolloutState.PROGRESSING
    out = step(out.rollout, {"n1": waiting}, T0 + timedelta(seconds=60))
    assert out.rollout.state is RolloutState.ABORTING
    assert "not healthy 60 s after its release" in out.rollout.progress("n1").reason  # type: ignore[union-attr]


def test_a_refused_config_or_backoff_fails_at_once() -> None:
    r = step(started(), {}, T0).rollout
    refused = NodeReading(True, False, {"ds": "h2"}, refused="admission: image not allowed")
    assert step(r, {"n1": refused}, T0 + timedelta(seconds=1)).rollout.state is RolloutState.ABORTING
    backoff = NodeReading(
        True, True, {"ds": "h2"}, {"ds": InstanceReading("backoff", "h2", error="image not found")}
    )
    out = step(r, {"n1": backoff}, T0 + timedelta(seconds=1))
    assert "image not found" in out.rollout.progress("n1").reason  # type: ignore[union-attr]


def test_percent_rule_waits_for_enough_released_nodes() -> None:
    s = strategy(waves=[{"nodes": 3}, {}], maxUnavailable=3, abort={"failures": 5, "percent": 50, "after": 3})
    r = step(started(s), {}, T0).rollout
    assert [p.node for p in r.released] == ["n1", "n2", "n3"]
    bad = NodeReading(True, False, {"ds": "h2"}, refused="bad")
    out = step(r, {"n1": bad}, T0 + timedelta(seconds=1))
    assert out.rollout.state is RolloutState.PROGRESSING, "1 of 3 failed: under 50 %"
    out = step(out.rollout, {"n1": bad, "n2": bad}, T0 + timedelta(seconds=2))
    assert out.rollout.state is RolloutState.ABORTING


def test_fps_below_the_ratio_keeps_the_gate_closed() -> None:
    s = strategy(gate={"soakSeconds": 0, "deadlineSeconds": 30, "minFpsRatio": 0.8})
    first = step(started(s), {}, T0, fps_now={"n1": {"ds": {"0": 30.0}}})
    assert first.rollout.progress("n1").fps_before == {"ds": {"0": 30.0}}  # type: ignore[union-attr]
    slow = step(first.rollout, {"n1": healthy(fps={"0": 12.0})}, T0 + timedelta(seconds=1))
    assert slow.release == () and "12.0 FPS < 0.8 of 30.0" in slow.rollout.reason
    fast = step(slow.rollout, {"n1": healthy(fps={"0": 29.0})}, T0 + timedelta(seconds=2))
    assert fast.rollout.progress("n1").state is NodeState.PASSED  # type: ignore[union-attr]


def test_pause_resume_promote_and_abort_commands() -> None:
    s = strategy(waves=[{"nodes": 1, "pause": True}, {}], gate={"soakSeconds": 0, "deadlineSeconds": 60})
    r = step(started(s), {}, T0).rollout
    out = step(r, {"n1": healthy()}, T0 + timedelta(seconds=1))
    assert out.rollout.state is RolloutState.WAITING_PROMOTE and out.release == ()
    again = step(out.rollout, {"n1": healthy()}, T0 + timedelta(seconds=2))
    assert again.rollout.state is RolloutState.WAITING_PROMOTE and again.release == ()
    promoted = step(
        again.rollout, {"n1": healthy()}, T0 + timedelta(seconds=3), command=(Command.PROMOTE, "ann")
    )
    assert promoted.release == ("n2", "n3") and promoted.rollout.by == "ann"
    paused = step(promoted.rollout, {}, T0 + timedelta(seconds=4), command=(Command.PAUSE, "bo"))
    assert paused.rollout.state is RolloutState.PAUSED
    aborted = step(paused.rollout, {}, T0 + timedelta(seconds=5), command=(Command.ABORT, "bo"))
    assert aborted.rollout.state is RolloutState.ABORTING and aborted.rollout.reason == "aborted by bo"


def test_cordoned_nodes_are_left_out_and_released_once_uncordoned() -> None:
    s = strategy(waves=[{}], maxUnavailable=10, gate={"soakSeconds": 0, "deadlineSeconds": 60})
    r = start_rollout(3, 2, s, {"a": ("ds",), "b": ("ds",)}, {}, T0)
    out = step(r, {}, T0, cordoned=frozenset({"b"}))
    assert out.release == ("a",) and out.rollout.progress("b").state is NodeState.CORDONED  # type: ignore[union-attr]
    done = step(out.rollout, {"a": healthy()}, T0 + timedelta(seconds=1), cordoned=frozenset({"b"}))
    assert done.rollout.state is RolloutState.SUCCEEDED
    still = step(done.rollout, {}, T0 + timedelta(seconds=2), cordoned=frozenset({"b"}))
    assert still.release == ()
    freed = step(still.rollout, {}, T0 + timedelta(seconds=3))
    assert freed.release == ("b",)


def test_json_round_trip_and_malformed_values() -> None:
    r = step(started(), {}, T0, fps_now={"n1": {"ds": {"0": 25.0}}}).rollout
    assert Rollout.from_json(r.to_json()) == r
    assert Rollout.from_json(None) is None
    assert Rollout.from_json({"revision": "x"}) is None
    assert Rollout.from_json({**r.to_json(), "since": "2026-12-07T12:00:00"}) is None


def test_the_status_view_says_where_the_rollout_is_and_what_each_held_node_waits_for() -> None:
    from dsfleet.reconciler.store.snapshots import HeldConfig
    from dsfleet.reconciler.syncviews import rollout_view, rollout_waits

    assert rollout_view(None) is None and rollout_view({"garbage": 1}) is None
    r = step(started(), {}, T0, cordoned=frozenset()).rollout
    view = rollout_view(r.to_json())
    assert view is not None
    assert view["summary"].startswith("ROLLOUT of revision 7 progressing, wave wave-1 (0/6 nodes passed)")
    assert "strategy" not in view and view["gate"]["soakSeconds"] == 10
    held = [
        HeldConfig(1, "n2", T0, {"kind": "rollout"}),
        HeldConfig(2, "n9", T0, {"kind": "rollout"}),
        HeldConfig(3, "n3", T0, {"moves": []}),  # a camera handover's hold: not the rollout's
    ]
    waits = rollout_waits(r.to_json(), held)
    assert set(waits) == {"n2", "n9"}
    assert (
        waits["n2"].text == "held by the rollout of revision 7 until wave wave-2" and not waits["n2"].blocked
    )
    assert "no longer running" in waits["n9"].text
    aborted = rollout_view({**r.to_json(), "state": "aborted", "reason": "1 of 1 released nodes failed"})
    assert aborted is not None and aborted["summary"].startswith(
        "ROLLOUT of revision 7 ABORTED: revision 7 failed, the changed nodes returned to revision 6"
    )
