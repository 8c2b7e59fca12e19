"""Ordered camera moves (pure): which cameras move between nodes, which source configs are held, what a target's
report decides (done, blocked, waiting, timed out), and the words status shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings

from dsfleet.reconciler.compiling.instances import compile_fleet
from dsfleet.reconciler.planning.handovers import (
    Decision,
    HandoverState,
    Hold,
    Move,
    TargetCondition,
    TargetInstance,
    TargetReport,
    camera_moves,
    carry_moves,
    describe_hold,
    handover_decision,
    refresh_moves,
    unordered_sources,
)
from dsfleet.schemas.nodeconfigs import NodeConfig
from tests.support.fleets import PROFILE, camera, fleet_of, fleets, instance, node

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=5)


def configs(*instances: dict[str, Any], nodes: tuple[str, ...] = ("n1", "n2", "n3")) -> dict[str, NodeConfig]:
    docs = [node(n) for n in nodes]
    docs += [camera(f"c{i}", str(i)) for i in range(1, 7)]
    docs += [PROFILE, *instances]
    return dict(compile_fleet(fleet_of(docs)))


BEFORE = configs(instance("a", "n1", ["c1", "c2"]), instance("b", "n2", ["c3"]))


def moved(**changes: list[str]) -> dict[str, NodeConfig]:
    """BEFORE with instance a and b holding these cameras (``a=[...]``, ``b=[...]``)."""
    a = changes.get("a", ["c1", "c2"])
    b = changes.get("b", ["c3"])
    return configs(instance("a", "n1", a), instance("b", "n2", b))


# --- moves ----------------------------------------------------------------------------------------------------


def test_a_camera_given_to_another_node_is_a_move_of_its_source() -> None:
    after = moved(a=["c1"], b=["c3", "c2"])
    got = camera_moves(BEFORE, after)
    assert list(got) == ["n1"]
    (move,) = got["n1"]
    target = after["n2"].instance("b")
    assert target is not None
    assert move == Move("c2", "n1", "a", "n2", "b", target.configHash, "c2")


@pytest.mark.parametrize(
    ("after", "why"),
    [
        (BEFORE, "nothing changed"),
        (moved(a=["c2", "c1"]), "order within an instance"),
        (moved(a=["c1"]), "a camera removed, not moved"),
        (moved(b=["c3", "c4"]), "a camera added"),
        (
            configs(instance("a", "n1", ["c1"]), instance("a2", "n1", ["c2"]), instance("b", "n2", ["c3"])),
            "moved between instances of one node",
        ),
        (
            configs(instance("a", "n1", ["c1"]), instance("b", "n2", ["c3", "c2"], paused=True)),
            "the target instance is paused: nothing would run it",
        ),
    ],
)
def test_what_is_not_a_move(after: dict[str, NodeConfig], why: str) -> None:
    assert camera_moves(BEFORE, after) == {}, why


def test_a_paused_source_ran_nothing_to_hand_over() -> None:
    before = configs(instance("a", "n1", ["c1", "c2"], paused=True), instance("b", "n2", ["c3"]))
    assert camera_moves(before, moved(a=["c1"], b=["c3", "c2"])) == {}


def test_a_moved_instance_moves_its_cameras_and_a_removed_node_is_still_a_source() -> None:
    after = configs(instance("a", "n2", ["c1", "c2"]), instance("b", "n2", ["c3"]), nodes=("n2",))
    got = camera_moves(BEFORE, after)
    assert [(m.camera, m.source_node, m.target_node, m.target_instance) for m in got["n1"]] == [
        ("c1", "n1", "n2", "a"),
        ("c2", "n1", "n2", "a"),
    ]


@settings(max_examples=40, deadline=None)
@given(fleets())
def test_a_fleet_against_itself_moves_nothing(docs: list[dict[str, Any]]) -> None:
    compiled = compile_fleet(fleet_of(docs))
    assert camera_moves(compiled, compiled) == {}


def _m(camera: str, source: str, target: str) -> Move:
    return Move(camera, source, "i", target, "j", "h")


@pytest.mark.parametrize(
    ("moves", "unordered"),
    [
        ({"n1": [_m("c1", "n1", "n2")]}, set()),
        ({"n1": [_m("c1", "n1", "n2")], "n2": [_m("c2", "n2", "n3")]}, set()),  # a chain resolves
        ({"n1": [_m("c1", "n1", "n2")], "n2": [_m("c2", "n2", "n1")]}, {"n1", "n2"}),  # a swap
        (
            {"n1": [_m("c1", "n1", "n2")], "n2": [_m("c2", "n2", "n3")], "n3": [_m("c3", "n3", "n1")]},
            {"n1", "n2", "n3"},
        ),
        (
            {"n1": [_m("c1", "n1", "n2")], "n2": [_m("c2", "n2", "n3")], "n3": [_m("c3", "n3", "n2")]},
            {"n2", "n3"},
        ),
    ],
)
def test_sources_waiting_on_each_other_in_a_cycle_are_not_held(
    moves: dict[str, list[Move]], unordered: set[str]
) -> None:
    assert unordered_sources(moves) == unordered


def test_refresh_follows_the_target_and_ends_moves_that_are_over() -> None:
    after = moved(a=["c1"], b=["c3", "c2"])
    (move,) = camera_moves(BEFORE, after)["n1"]
    # the target changed again (another camera): the move follows its new config hash
    later = moved(a=["c1"], b=["c3", "c2", "c4"])
    (again,) = refresh_moves([move], later)
    b = later["n2"].instance("b")
    assert b is not None and again.target_config_hash == b.configHash != move.target_config_hash
    # moved back to its source, gone from the target, or the target paused: over
    assert refresh_moves([move], BEFORE) == ()
    assert refresh_moves([move], moved(a=["c1"], b=["c3"])) == ()
    paused = configs(instance("a", "n1", ["c1"]), instance("b", "n2", ["c3", "c2"], paused=True))
    assert refresh_moves([move], paused) == ()


def test_a_new_config_of_a_held_source_carries_the_moves_still_under_way() -> None:
    after = moved(a=["c1"], b=["c3", "c2"])
    (move,) = camera_moves(BEFORE, after)["n1"]
    held = Hold((move,), T0, T0 + TIMEOUT, HandoverState.WAITING, "waiting for n2 to run it")
    now = T0 + timedelta(minutes=1)
    # the source changed again without a move: the old move goes on, with its start and deadline
    carried = carry_moves((), held, after, now, TIMEOUT)
    assert carried is not None
    assert (carried.moves, carried.since, carried.deadline) == ((move,), T0, T0 + TIMEOUT)
    assert carried.reason == ""  # to be decided again
    # a fresh move starts the clock again, and both are waited for
    fresh = Move("c1", "n1", "a", "n2", "b", "x")
    both = carry_moves((fresh,), held, after, now, TIMEOUT)
    assert both is not None and [m.camera for m in both.moves] == ["c1", "c2"]
    assert (both.since, both.deadline) == (now, now + TIMEOUT)
    # the camera came back: nothing to wait for
    assert carry_moves((), held, BEFORE, now, TIMEOUT) is None
    assert carry_moves((), None, after, now, TIMEOUT) is None


def test_a_hold_travels_as_json() -> None:
    hold = Hold(
        (Move("c2", "n1", "a", "n2", "b", "h", None),), T0, T0 + TIMEOUT, HandoverState.BLOCKED, "why"
    )
    assert Hold.from_json(hold.to_json()) == hold
    for broken in (None, {}, {"since": "x", "deadline": "y"}, {**hold.to_json(), "state": "lost"}):
        assert Hold.from_json(broken) is None
    naive = {**hold.to_json(), "since": "2026-03-01T12:00:00"}
    assert Hold.from_json(naive) is None


# --- decisions ------------------------------------------------------------------------------------------------

MOVE = Move("lobby-2", "gpu-node-1", "ccm-lobby", "gpu-node-2", "traffic-parking", "new", "lobby-2")
DEADLINE = T0 + TIMEOUT
BEFORE_DEADLINE = T0 + timedelta(minutes=1)


def report(
    state: str = "running",
    config_hash: str | None = "new",
    conditions: tuple[TargetCondition, ...] = (),
    *,
    online: bool = True,
    received: bool = True,
    refusals: tuple[tuple[str, str], ...] = (),
    instance_reported: bool = True,
) -> dict[str, TargetReport]:
    instances = (
        {"traffic-parking": TargetInstance("traffic-parking", state, config_hash, conditions)}
        if instance_reported
        else {}
    )
    return {
        "gpu-node-2": TargetReport(
            "gpu-node-2",
            online=online,
            connection="online" if online else "offline",
            received=received,
            instances=instances,
            refusals=refusals,
        )
    }


SECRET = TargetCondition("SecretMissing", "secret 'lobby-2' not found", ("lobby-2",))
IMAGE = TargetCondition("ImageNotFound", "image x:1 not found")
PULLING = TargetCondition("Pulling", "pulling image x:1")
OTHER_CAMERA = TargetCondition("SecretMissing", "secret 'lobby-3' not found", ("lobby-3",))


@pytest.mark.parametrize(
    ("reports", "now", "expected"),
    [
        # done: the target runs its new config, nothing names the camera
        (report(), BEFORE_DEADLINE, (True, "done", "camera lobby-2 running on gpu-node-2/traffic-parking")),
        (
            report(),
            DEADLINE + TIMEOUT,
            (True, "done", "camera lobby-2 running on gpu-node-2/traffic-parking"),
        ),
        # waiting: not there yet
        (report(config_hash="old"), BEFORE_DEADLINE, (False, "waiting", "waiting for gpu-node-2 to run it")),
        (report(state="created"), BEFORE_DEADLINE, (False, "waiting", "waiting for gpu-node-2 to run it")),
        (
            report(instance_reported=False),
            BEFORE_DEADLINE,
            (False, "waiting", "waiting for gpu-node-2 to run it"),
        ),
        ({}, BEFORE_DEADLINE, (False, "waiting", "waiting for gpu-node-2 to run it")),
        (
            report(config_hash="old", online=False),
            BEFORE_DEADLINE,
            (False, "waiting", "waiting for gpu-node-2 (offline) to run it"),
        ),
        (
            report(config_hash="old", conditions=(PULLING,)),
            BEFORE_DEADLINE,
            (False, "waiting", "waiting for gpu-node-2 to run it"),
        ),
        # a condition of the config before (the node has not received the new one): not a verdict yet
        (
            report(config_hash="old", conditions=(IMAGE,), received=False),
            BEFORE_DEADLINE,
            (False, "waiting", "waiting for gpu-node-2 to run it"),
        ),
        # blocked: the target says it cannot take the camera
        (
            report(config_hash="old", conditions=(SECRET,)),
            BEFORE_DEADLINE,
            (False, "blocked", "secret lobby-2 missing on gpu-node-2"),
        ),
        (
            report(config_hash="old", conditions=(IMAGE,)),
            BEFORE_DEADLINE,
            (
                False,
                "blocked",
                "gpu-node-2/traffic-parking cannot run its new config: ImageNotFound: image x:1 not found",
            ),
        ),
        (
            report(config_hash="old", refusals=(("admission-denied", "GPU 0 not allowed"),)),
            BEFORE_DEADLINE,
            (False, "blocked", "gpu-node-2 refused its new config: admission-denied: GPU 0 not allowed"),
        ),
        (
            report(config_hash="old", refusals=(("stale-generation", ""),)),
            BEFORE_DEADLINE,
            (False, "waiting", "waiting for gpu-node-2 to run it"),
        ),
        # blocked wins over the deadline: the source keeps the camera
        (
            report(config_hash="old", conditions=(SECRET,)),
            DEADLINE + timedelta(hours=1),
            (False, "blocked", "secret lobby-2 missing on gpu-node-2"),
        ),
        # running the new hash but a condition names the camera: not done (blocked)
        (
            report(conditions=(SECRET,)),
            BEFORE_DEADLINE,
            (False, "blocked", "secret lobby-2 missing on gpu-node-2"),
        ),
        # another camera's problem, the new config running: done
        (
            report(conditions=(OTHER_CAMERA,)),
            BEFORE_DEADLINE,
            (True, "done", "camera lobby-2 running on gpu-node-2/traffic-parking"),
        ),
        # timed out: the deadline passed without a word
        (
            report(config_hash="old", online=False),
            DEADLINE,
            (True, "timed-out", "gpu-node-2 (offline) did not report running it by the deadline"),
        ),
        ({}, DEADLINE, (True, "timed-out", "gpu-node-2 did not report running it by the deadline")),
    ],
)
def test_decisions(reports: dict[str, TargetReport], now: datetime, expected: tuple[bool, str, str]) -> None:
    release, state, reason = expected
    assert handover_decision((MOVE,), DEADLINE, reports, now) == Decision(
        release, HandoverState(state), reason
    )


def test_every_move_must_be_done_and_one_blocked_keeps_them_all() -> None:
    second = Move("gate-1", "gpu-node-1", "ccm-gate", "gpu-node-3", "ccm-x", "h3")
    node3_done = TargetReport(
        "gpu-node-3", True, "online", True, {"ccm-x": TargetInstance("ccm-x", "running", "h3")}
    )
    moves = (MOVE, second)
    waiting = handover_decision(moves, DEADLINE, {**report(config_hash="old"), "gpu-node-3": node3_done}, T0)
    assert (waiting.release, waiting.state, waiting.reason) == (
        False,
        HandoverState.WAITING,
        "waiting for gpu-node-2 to run it",
    )
    blocked = handover_decision(
        moves, DEADLINE, {**report(config_hash="old", conditions=(SECRET,)), "gpu-node-3": node3_done}, T0
    )
    assert (blocked.release, blocked.state) == (False, HandoverState.BLOCKED)
    done = handover_decision(moves, DEADLINE, {**report(), "gpu-node-3": node3_done}, T0)
    assert (done.release, done.state) == (True, HandoverState.DONE)
    assert done.reason == "cameras gate-1, lobby-2 running on gpu-node-2/traffic-parking, gpu-node-3/ccm-x"
    assert handover_decision((), DEADLINE, {}, T0).release  # nothing left to wait for


def test_the_words_status_shows() -> None:
    waiting = Hold((MOVE,), T0, DEADLINE, HandoverState.WAITING, "waiting for gpu-node-2 to run it")
    assert describe_hold(waiting) == (
        "camera lobby-2 moving to gpu-node-2/traffic-parking: waiting for gpu-node-2 to run it, "
        "since 2026-03-01 12:00:00 UTC, released at 2026-03-01 12:05:00 UTC at the latest"
    )
    undecided = Hold((MOVE,), T0, DEADLINE)
    assert "waiting for gpu-node-2 to run it, since" in describe_hold(undecided)
    blocked = Hold((MOVE,), T0, DEADLINE, HandoverState.BLOCKED, "secret lobby-2 missing on gpu-node-2")
    assert describe_hold(blocked) == (
        "camera lobby-2 moving to gpu-node-2/traffic-parking: blocked: secret lobby-2 missing on gpu-node-2; "
        "since 2026-03-01 12:00:00 UTC; the source keeps it until the manifests change or the target can take it"
    )
