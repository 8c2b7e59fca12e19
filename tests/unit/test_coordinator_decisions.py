"""Pure decisions of the coordinator: offline detection, naming agents, anti-entropy, the topic view, ingest,
retiring nodes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dsfleet.reconciler.coordinator.identities import KnownNode, name_agent, normalize_machine_id
from dsfleet.reconciler.coordinator.ingest import Inbound, read_batch
from dsfleet.reconciler.coordinator.liveness import (
    Liveness,
    is_fresh,
    offline_transitions,
    online_transitions,
)
from dsfleet.reconciler.coordinator.resyncs import (
    NodeSync,
    Reason,
    Timing,
    TopicView,
    backoff,
    jitter_of,
    resync_decisions,
    track_behind,
)
from dsfleet.reconciler.coordinator.retirements import Retirement, retirements
from dsfleet.schemas.wire import AgentInfo, AgentResponse, RejectReason, UpdateConfig, encode

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


# ---- liveness


@pytest.mark.parametrize(
    ("age", "online", "expect_offline"),
    [(0, True, False), (14.9, True, False), (15, True, True), (60, True, True), (60, False, False)],
)
def test_offline_after_three_missed_heartbeats(age: float, online: bool, expect_offline: bool) -> None:
    node = Liveness("n1", online, T0 - s(age), heartbeat_seconds=5)
    got = offline_transitions([node], T0, misses=3)
    assert [t.node for t in got] == (["n1"] if expect_offline else [])


def test_never_seen_is_never_marked_offline_and_online_on_next_beat() -> None:
    assert offline_transitions([Liveness("n1", True, None)], T0) == []
    assert [t.node for t in online_transitions({"n1": False, "n2": True}, ["n1", "n2", "n3"], T0)] == [
        "n1",
        "n3",
    ]


def test_a_restart_gives_silent_nodes_their_beats_again() -> None:
    """Heartbeats sent while the coordinator was down (or its broker was) could not be heard: not missed."""
    node = Liveness("n1", True, T0 - s(60), heartbeat_seconds=5)
    assert [t.node for t in offline_transitions([node], T0, misses=3)] == ["n1"]
    assert offline_transitions([node], T0 + s(14), misses=3, heard_since=T0) == []
    assert [t.node for t in offline_transitions([node], T0 + s(15), misses=3, heard_since=T0)] == ["n1"]


def test_old_heartbeat_read_back_does_not_mark_online() -> None:
    assert is_fresh(T0 - s(2), T0, 5)
    assert not is_fresh(T0 - s(3600), T0, 5)
    assert not is_fresh(T0 + s(3600), T0, 5)


# ---- naming


NODES = [
    KnownNode("gpu-node-1", "host-a", "0123456789abcdef0123456789abcdef"),
    KnownNode("gpu-node-2", "host-b", None),
    KnownNode("gpu-node-3", None, None),
    KnownNode("twin-1", "twin", None),
    KnownNode("twin-2", "twin", None),
]


@pytest.mark.parametrize(
    ("machine_id", "hostname", "node", "reason"),
    [
        ("01234567-89ab-cdef-0123-456789abcdef", "whatever", "gpu-node-1", "machine id"),
        ("0123456789ABCDEF0123456789ABCDEF", None, "gpu-node-1", "machine id"),
        (None, "HOST-B", "gpu-node-2", "hostname"),
        ("ffffffffffffffffffffffffffffffff", "gpu-node-3", "gpu-node-3", "hostname"),
        (None, "twin", None, "ambiguous"),
        ("not-an-id", "nowhere", None, "unknown agent"),
    ],
)
def test_name_agent(machine_id: str | None, hostname: str | None, node: str | None, reason: str) -> None:
    got = name_agent(machine_id, hostname, NODES)
    assert got.node == node
    assert reason in got.reason


def test_machine_id_normalized() -> None:
    assert (
        normalize_machine_id(" 01234567-89AB-cdef-0123-456789abcdef\n") == "0123456789abcdef0123456789abcdef"
    )
    assert normalize_machine_id("xyz") is None


# ---- anti-entropy


def test_agent_behind_past_grace_is_republished_with_jitter() -> None:
    timing = Timing(grace=s(10), jitter=s(2))
    node = NodeSync(
        "n1",
        3,
        online=True,
        observed_generation=2,
        behind_since=T0,
        desired_hash="h3",
        observed_hash="h2",
        topic_generation=3,
        topic_caught_up=True,
    )
    assert resync_decisions([node], T0 + s(9), timing=timing) == []
    due = T0 + s(10) + jitter_of("n1", s(2))
    assert resync_decisions([node], due + s(0.01), timing=timing)[0].reason is Reason.AGENT_BEHIND


def test_behind_is_by_hash_not_generation() -> None:
    """A node that runs the desired config is in sync whatever generation it reports."""
    same = NodeSync(
        "n1",
        3,
        online=True,
        observed_generation=2,
        behind_since=T0,
        desired_hash="h3",
        observed_hash="h3",
        topic_generation=3,
        topic_caught_up=True,
    )
    assert resync_decisions([same], T0 + s(100), timing=Timing(grace=s(1), jitter=s(0))) == []
    other = NodeSync(
        "n1",
        3,
        online=True,
        observed_generation=3,
        behind_since=T0,
        desired_hash="h3",
        observed_hash="forged",
        topic_generation=3,
        topic_caught_up=True,
    )
    got = resync_decisions([other], T0 + s(100), timing=Timing(grace=s(1), jitter=s(0)))
    assert [r.reason for r in got] == [Reason.AGENT_BEHIND]


@pytest.mark.parametrize(
    ("ahead", "expected"),
    [(None, []), (3, []), (2, []), (99, [Reason.GENERATION_AHEAD])],
)
def test_a_generation_reported_above_the_stored_one_is_reissued(
    ahead: int | None, expected: list[Reason]
) -> None:
    node = NodeSync(
        "n1",
        3,
        online=True,
        observed_generation=ahead,
        desired_hash="h3",
        observed_hash="h3",
        reported_ahead=ahead,
        topic_generation=3,
        topic_caught_up=True,
    )
    assert [r.reason for r in resync_decisions([node], T0)] == expected
    pending = NodeSync("n1", 3, reported_ahead=ahead, outbox_pending=True)
    assert resync_decisions([pending], T0) == []


def test_offline_or_never_announced_nodes_get_nothing_beyond_the_topic() -> None:
    timing = Timing(grace=s(1), jitter=s(0))
    offline = NodeSync(
        "n1",
        3,
        online=False,
        observed_generation=1,
        behind_since=T0,
        topic_generation=3,
        topic_caught_up=True,
    )
    assert resync_decisions([offline], T0 + s(100), timing=timing) == []


def test_topic_lost_is_repaired_first_even_for_offline_nodes_and_respects_budget() -> None:
    nodes = [NodeSync(f"n{i}", 2, topic_generation=None, topic_caught_up=True) for i in range(5)]
    nodes.append(
        NodeSync(
            "b",
            2,
            online=True,
            observed_generation=1,
            behind_since=T0 - s(100),
            desired_hash="h2",
            observed_hash="h1",
            topic_generation=2,
            topic_caught_up=True,
        )
    )
    got = resync_decisions(nodes, T0, timing=Timing(jitter=s(0)), budget=3)
    assert [(r.node, r.reason) for r in got] == [(f"n{i}", Reason.TOPIC_LOST) for i in range(3)]


def test_nothing_while_outbox_pending_or_view_not_caught_up_or_just_published() -> None:
    base: dict[str, Any] = {"desired_generation": 2, "topic_generation": None}
    assert resync_decisions([NodeSync("a", **base, topic_caught_up=True, outbox_pending=True)], T0) == []
    assert resync_decisions([NodeSync("a", **base, topic_caught_up=False)], T0) == []
    recent = NodeSync("a", **base, topic_caught_up=True, last_published=T0 - s(1))
    assert resync_decisions([recent], T0, timing=Timing(settle=s(2))) == []
    assert resync_decisions([recent], T0 + s(1.5), timing=Timing(settle=s(2)))[0].reason is Reason.TOPIC_LOST


def test_backoff_doubles_and_caps() -> None:
    t = Timing(min_interval=s(10), max_interval=s(60))
    assert [backoff(a, t).total_seconds() for a in (1, 2, 3, 4, 10)] == [10, 20, 40, 60, 60]


def test_track_behind_keeps_first_time_and_drops_caught_up() -> None:
    first = track_behind({}, {"a": "h1", "b": "h2"}, {"a": "h2", "b": "h2"}, {"a": True, "b": True}, T0)
    assert first == {"a": T0}
    later = track_behind(first, {"a": "h1"}, {"a": "h2"}, {"a": True}, T0 + s(5))
    assert later == {"a": T0}
    assert track_behind(later, {"a": "h2"}, {"a": "h2"}, {"a": True}, T0 + s(6)) == {}
    assert track_behind(later, {"a": "h1"}, {"a": "h2"}, {"a": False}, T0 + s(6)) == {}
    assert track_behind({}, {}, {"a": "h2"}, {"a": True}, T0) == {"a": T0}  # reported nothing yet


def test_topic_view_detects_truncation() -> None:
    view = TopicView.empty()
    assert not view.record(0, 0, "n1", 1)
    assert not view.record(0, 1, "n1", 2)
    assert not view.end_of_partition(0, 2)
    assert view.holds("n1", 0) == (True, 2)
    assert view.end_of_partition(0, 0)  # a new, empty broker: the end went backwards
    assert view.holds("n1", 0) == (True, None)
    assert not view.record(0, 0, "n1", 2)
    assert view.holds("n1", 0) == (True, 2)


# ---- ingest


def test_batch_keeps_newest_per_node_and_counts_rejections() -> None:
    def info(sent: datetime, gen: int) -> bytes:
        return encode(AgentInfo(sent_at=sent.isoformat(), node="n1", hostname="h", observedGeneration=gen))

    records = [
        Inbound("p.AgentInfo", b"n1", info(T0 + s(1), 2)),
        Inbound("p.AgentInfo", b"n1", info(T0, 1)),
        Inbound(
            "p.AgentInfo", b"ghost", encode(AgentInfo(sent_at=T0.isoformat(), node="ghost", hostname="h"))
        ),
        Inbound("p.AgentInfo", b"n2", encode(AgentInfo(sent_at=T0.isoformat(), hostname="host-b"))),
        Inbound("p.AgentResponse", b"n1", encode(AgentResponse(sent_at=T0.isoformat(), node="n1"))),
        Inbound("p.AgentResponse", b"n1", b"\x00garbage"),
        Inbound("p.UpdateConfig", None, encode(UpdateConfig(sent_at=T0.isoformat(), requestId="r1"))),
        Inbound("other", None, b"{}"),
    ]
    batch = read_batch(records, prefix="p.", known_nodes={"n1": 1, "n2": 1}, max_bytes=10_000)
    assert batch.infos["n1"].observedGeneration == 2
    assert set(batch.unnamed) == {"host-b"}
    assert set(batch.responses) == {"n1"}
    assert [u.requestId for u in batch.updates] == ["r1"]
    reasons = sorted(r.reason for r in batch.rejected)
    assert reasons == sorted([RejectReason.INVALID, RejectReason.NOT_JSON, RejectReason.UNKNOWN_TOPIC])
    assert batch.consumed["AgentInfo"] == 4


# ---- retiring nodes the manifests no longer declare


@dataclass(frozen=True)
class Gone:
    node: str
    removed_at: datetime | None
    instances: int
    reported_at: datetime | None
    last_seen: datetime | None = None


@pytest.mark.parametrize(
    ("case", "node", "retired"),
    [
        ("agent reported its instances gone", Gone("a", T0, 0, T0 + s(3)), True),
        ("still runs instances", Gone("a", T0, 2, T0 + s(3)), False),
        ("empty report from before the removal", Gone("a", T0, 0, T0 - s(3)), False),
        ("agent silent past the timeout", Gone("a", T0 - s(601), 1, T0 - s(700)), True),
        ("agent silent, within the timeout", Gone("a", T0 - s(599), 1, T0 - s(700)), False),
        ("never configured, not heard for long", Gone("a", None, 1, None, T0 - s(601)), True),
        ("never configured, empty report", Gone("a", None, 0, T0 - s(1)), True),
    ],
)
def test_retirements(case: str, node: Gone, retired: bool) -> None:
    got = retirements([node], T0, timeout=s(600))
    assert [r.node for r in got] == (["a"] if retired else []), case
    assert all(isinstance(r, Retirement) and r.reason for r in got)
