"""``apply --wait``'s pure decisions: what a rollout must reach, and why a node or instance is not there yet."""

from __future__ import annotations

import io

import pytest

from dsfleet.reconciler.cli.waiting import (
    InstanceSeen,
    Lag,
    NodeSeen,
    Target,
    laggards,
    targets_of,
    wait_for_rollout,
)
from dsfleet.reconciler.planning.plans import Action, InstanceChange, NodeChange, Plan

T = Target("n1", 3, {"a": "h-a2", "b": "h-b2"})


def _ok(**over: InstanceSeen) -> NodeSeen:
    inst = {"a": InstanceSeen("running", "h-a2", 3), "b": InstanceSeen("running", "h-b2", 3)}
    inst.update(over)
    return NodeSeen(True, 3, inst)


def test_done_when_every_changed_instance_runs_its_new_config() -> None:
    assert laggards([T], {"n1": _ok()}) == []


@pytest.mark.parametrize(
    ("seen", "reason"),
    [
        (None, "no report from its agent yet"),
        (NodeSeen(False, 3, {}), "offline"),
        (NodeSeen(True, 2, {}), "at generation 2 of 3"),
        (NodeSeen(True, None, {}, "docker unreachable"), "at generation - of 3: docker unreachable"),
        (
            _ok(a=InstanceSeen("backoff", "h-a2", 3, "App run failed")),
            "backoff (crash loop); last log line: App run failed",
        ),
        (_ok(a=InstanceSeen("created", "h-a2", 3)), "created: still pulling/creating"),
        (_ok(a=InstanceSeen("missing", None, 3)), "missing: still pulling/creating"),
        (_ok(a=InstanceSeen("running", "h-a1", 2)), "running with the previous config"),
        (
            _ok(a=InstanceSeen("stopped", "h-a2", 3, error="secret cam-1 missing")),
            "stopped: secret cam-1 missing",
        ),
    ],
)
def test_laggards_say_why(seen: NodeSeen | None, reason: str) -> None:
    lags = laggards([T], {"n1": seen} if seen is not None else {})
    assert lags and lags[0].reason == reason
    assert str(lags[0]).endswith(reason)


def test_unchanged_instances_are_not_waited_for() -> None:
    seen = NodeSeen(
        True, 3, {"a": InstanceSeen("running", "h-a2", 3), "b": InstanceSeen("running", "h-b2", 3)}
    )
    assert laggards([Target("n1", 3, {"a": "h-a2"})], {"n1": seen}) == []


def test_targets_of_a_plan_skip_removed_nodes_and_instances() -> None:
    plan = Plan(
        nodes=(
            NodeChange(
                "n1",
                Action.UPDATE,
                "old",
                "new",
                (
                    InstanceChange("a", Action.UPDATE),
                    InstanceChange("gone", Action.DELETE),
                ),
            ),
            NodeChange("n2", Action.DELETE, "old", None),
        )
    )
    payloads = {
        "n1": {"instances": [{"name": "a", "configHash": "h-a2"}, {"name": "b", "configHash": "h-b"}]}
    }
    assert targets_of(plan, {"n1": 3, "n2": 2}, payloads) == [Target("n1", 3, {"a": "h-a2"})]


def test_wait_prints_progress_then_succeeds() -> None:
    states = iter([{}, {"n1": NodeSeen(True, 2, {})}, {"n1": _ok()}])
    now = iter(range(100))
    out = io.StringIO()
    code = wait_for_rollout(
        [T], lambda: next(states), timeout=10, out=out, interval=0, clock=lambda: next(now)
    )
    assert code == 0
    text = out.getvalue()
    assert "no report from its agent yet" in text and "at generation 2 of 3" in text and "rolled out" in text


def test_wait_times_out_naming_the_laggards(capsys: pytest.CaptureFixture[str]) -> None:
    now = iter(range(100))
    code = wait_for_rollout(
        [T],
        lambda: {"n1": NodeSeen(False, 2, {})},
        timeout=3,
        out=io.StringIO(),
        interval=0,
        clock=lambda: next(now),
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "timed out after 3 s" in err and "n1: offline" in err


def test_lag_text() -> None:
    assert str(Lag("n1", None, "offline")) == "n1: offline"
    assert str(Lag("n1", "a", "x")) == "a (node n1): x"
