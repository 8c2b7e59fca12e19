"""The pure connection/sync/health derivation of ``dsfleet status`` (table cases): every state has a case that makes
it true and one that makes it false."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dsfleet.reconciler.planning.conditions import (
    Condition,
    Connection,
    CoordinatorFacts,
    Health,
    InstanceDesired,
    InstanceObserved,
    NodeDesired,
    NodeFacts,
    Sync,
    age_text,
    connection_of,
    coordinator_running,
    derive_instances,
    derive_nodes,
    fresh_fps,
    health_of,
    redact,
    sync_of,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


ONLINE = NodeFacts("n1", online=True, last_seen=NOW, observed_generation=3)
OFFLINE = NodeFacts(
    "n1",
    online=False,
    last_seen=NOW - timedelta(minutes=5),
    observed_generation=3,
    connection=Connection.OFFLINE,
    connection_reason="offline: no heartbeat for 5 min",
)
UNKNOWN = NodeFacts(
    "n1",
    online=False,
    last_seen=NOW - s(40),
    connection=Connection.UNKNOWN,
    connection_reason="unknown: coordinator not running, last seen 40 s ago",
)
RETIRING = NodeFacts("n1", online=True, last_seen=NOW, retiring=True)
FRESH = NodeDesired("n1", 3, "nh", published_at=NOW - s(5))
STALE = NodeDesired("n1", 3, "nh", published_at=NOW - timedelta(minutes=10))
UNPUBLISHED = NodeDesired("n1", 3, "nh", stored_at=NOW - s(5))
WAITING = NodeDesired("n1", 3, "nh", pending_since=NOW - s(40))
WANT = InstanceDesired("cam", "n1", "h1")
PAUSED = InstanceDesired("cam", "n1", "h1", paused=True)
BROKER_DOWN = CoordinatorFacts(
    running=True, seen_at=NOW, started_at=NOW - s(600), broker_reachable=False, broker_since=NOW - s(90)
)
DEAD = CoordinatorFacts(running=False, seen_at=NOW - s(120), started_at=NOW - s(900), broker_reachable=True)
RUNNING = CoordinatorFacts(
    running=True, seen_at=NOW, started_at=NOW - s(600), broker_reachable=True, broker_since=NOW - s(600)
)


def obs(state: str = "running", h: str | None = "h1", gen: int | None = 3, **kw: object) -> InstanceObserved:
    return InstanceObserved("cam", "n1", state, generation=gen, config_hash=h, **kw)  # type: ignore[arg-type]


# ---- sync: the reported config hash against the desired one, whatever the generation

SYNC_CASES = [
    ("same hash, generation reached", WANT, obs(), ONLINE, FRESH, None, Sync.SYNCED, "applied"),
    ("same hash, later generation", WANT, obs(gen=4), ONLINE, STALE, None, Sync.SYNCED, "applied"),
    # another instance of the node changed: its generation moved on, this one's did not, and it is in sync
    ("same hash, generation behind", WANT, obs(gen=2), ONLINE, STALE, None, Sync.SYNCED, "applied"),
    ("same hash, offline node", WANT, obs(), OFFLINE, STALE, None, Sync.SYNCED, "applied"),
    (
        "paused and stopped",
        PAUSED,
        obs("stopped", gen=1),
        ONLINE,
        STALE,
        None,
        Sync.SYNCED,
        "paused as declared",
    ),
    ("paused and exited", PAUSED, obs("exited"), ONLINE, STALE, None, Sync.SYNCED, "paused"),
    ("paused but running", PAUSED, obs(), ONLINE, STALE, None, Sync.OUT_OF_SYNC, "paused, but its container"),
    ("paused, running, recent", PAUSED, obs(), ONLINE, FRESH, None, Sync.PROGRESSING, "published 5 s ago"),
    ("hash differs, online, published lately", WANT, obs(h="old"), ONLINE, FRESH, None, Sync.PROGRESSING, ""),
    (
        "hash differs, published long ago",
        WANT,
        obs(h="old"),
        ONLINE,
        STALE,
        None,
        Sync.OUT_OF_SYNC,
        "not applied",
    ),
    (
        "hash differs, stored not published",
        WANT,
        obs(h="old"),
        ONLINE,
        UNPUBLISHED,
        None,
        Sync.OUT_OF_SYNC,
        "",
    ),
    ("hash differs, offline", WANT, obs(h="old"), OFFLINE, FRESH, None, Sync.OUT_OF_SYNC, "node offline"),
    (
        "hash differs, coordinator dead",
        WANT,
        obs(h="old"),
        UNKNOWN,
        FRESH,
        DEAD,
        Sync.OUT_OF_SYNC,
        "coordinator not running",
    ),
    (
        "waiting in the outbox, broker down",
        WANT,
        obs(h="old"),
        ONLINE,
        WAITING,
        BROKER_DOWN,
        Sync.OUT_OF_SYNC,
        "waiting in the outbox for 40 s: broker unreachable since 2026-01-01 11:58:30 UTC (90 s ago)",
    ),
    (
        "waiting in the outbox, coordinator dead",
        WANT,
        None,
        ONLINE,
        WAITING,
        DEAD,
        Sync.OUT_OF_SYNC,
        "waiting in the outbox for 40 s: coordinator not running (last seen 2 min ago)",
    ),
    (
        "waiting in the outbox, no coordinator ever",
        WANT,
        None,
        ONLINE,
        WAITING,
        None,
        Sync.OUT_OF_SYNC,
        "no coordinator has run on this store",
    ),
    ("not reported yet, recent", WANT, None, ONLINE, FRESH, RUNNING, Sync.PROGRESSING, "not reported"),
    ("not reported, never seen node", WANT, None, None, FRESH, None, Sync.OUT_OF_SYNC, "never reported"),
    ("not desired, still reported, recent", None, obs(), ONLINE, FRESH, None, Sync.PROGRESSING, "no longer"),
    ("not desired, still reported, stale", None, obs(), ONLINE, STALE, None, Sync.OUT_OF_SYNC, "no longer"),
    ("not desired, node retiring", None, obs(), RETIRING, None, None, Sync.PROGRESSING, "removed from the"),
    ("not desired, not reported", None, None, ONLINE, STALE, None, Sync.SYNCED, "removed"),
]


@pytest.mark.parametrize(
    ("case", "desired", "observed", "node", "node_desired", "coordinator", "want", "why"), SYNC_CASES
)
def test_sync(
    case: str,
    desired: InstanceDesired | None,
    observed: InstanceObserved | None,
    node: NodeFacts | None,
    node_desired: NodeDesired | None,
    coordinator: CoordinatorFacts | None,
    want: Sync,
    why: str,
) -> None:
    got, reason = sync_of(desired, observed, node, node_desired, NOW, coordinator=coordinator)
    assert got is want, f"{case}: {reason}"
    assert why in reason, f"{case}: {reason}"


# ---- health

IMAGE = Condition("ImageNotFound", "image ds:7.1 not found", attempts=2, next_retry_at=NOW + s(40))
SECRET = Condition("SecretMissing", "secret gate-2 not found", cameras=("gate-2",))

HEALTH_CASES = [
    ("running", WANT, obs(), ONLINE, Health.HEALTHY, "running"),
    ("all sources flowing", WANT, obs(fps={"0": 30.0}, fps_at=NOW - s(3)), ONLINE, Health.HEALTHY, "running"),
    ("a source at 0 FPS", WANT, obs(fps={"0": 30.0, "1": 0.0}, fps_at=NOW), ONLINE, Health.DEGRADED, "0 FPS"),
    (
        "0 FPS long ago: not counted",
        WANT,
        obs(fps={"0": 0.0}, fps_at=NOW - s(300)),
        ONLINE,
        Health.HEALTHY,
        "",
    ),
    ("agent says degraded", WANT, obs(error="degraded: no frames"), ONLINE, Health.DEGRADED, "no frames"),
    (
        "image not found, old one runs",
        WANT,
        obs(conditions=(IMAGE,)),
        ONLINE,
        Health.DEGRADED,
        "ImageNotFound: image ds:7.1 not found; next retry in 40 s (attempt 3)",
    ),
    (
        "a secret missing",
        WANT,
        obs(conditions=(SECRET,)),
        ONLINE,
        Health.DEGRADED,
        "SecretMissing: secret gate-2 not found; cameras left out: gate-2",
    ),
    (
        "never created: missing",
        WANT,
        obs("missing", conditions=(IMAGE,)),
        ONLINE,
        Health.FAILED,
        "ImageNotFound",
    ),
    ("restarting", WANT, obs("restarting"), ONLINE, Health.DEGRADED, "restarting"),
    ("created", WANT, obs("created"), ONLINE, Health.DEGRADED, "created"),
    ("crash loop", WANT, obs("backoff", restarts=7, fps={"0": 30.0}), ONLINE, Health.FAILED, "crash loop (7"),
    ("exited", WANT, obs("exited", exit_code=1), ONLINE, Health.FAILED, "exited with code 1"),
    ("missing", WANT, obs("missing"), ONLINE, Health.FAILED, "container missing"),
    ("stopped but should run", WANT, obs("stopped"), ONLINE, Health.FAILED, "stopped"),
    ("stopped and paused", PAUSED, obs("stopped"), ONLINE, Health.HEALTHY, "paused"),
    ("node offline", WANT, obs(), OFFLINE, Health.UNKNOWN, "node offline"),
    ("coordinator dead", WANT, obs(), UNKNOWN, Health.UNKNOWN, "coordinator not running"),
    ("node never reported", WANT, None, None, Health.UNKNOWN, "never reported"),
    ("no report for the instance", WANT, None, ONLINE, Health.UNKNOWN, "no report"),
]


@pytest.mark.parametrize(("case", "desired", "observed", "node", "want", "why"), HEALTH_CASES)
def test_health(
    case: str,
    desired: InstanceDesired | None,
    observed: InstanceObserved | None,
    node: NodeFacts | None,
    want: Health,
    why: str,
) -> None:
    got, reason = health_of(desired, observed, node, NOW)
    assert got is want, f"{case}: {reason}"
    assert why in reason, f"{case}: {reason}"


# ---- FPS: fresh only, never for a crash loop


@pytest.mark.parametrize(
    ("case", "observed", "want"),
    [
        ("printed lately", obs(fps={"0": 30.0}, fps_at=NOW - s(5)), {"0": 30.0}),
        ("printed long ago", obs(fps={"0": 30.0}, fps_at=NOW - s(31)), {}),
        ("no print time, reported lately", obs(fps={"0": 30.0}, updated_at=NOW - s(2)), {"0": 30.0}),
        ("no print time, old report", obs(fps={"0": 30.0}, updated_at=NOW - s(60)), {}),
        ("no time at all", obs(fps={"0": 30.0}), {}),
        ("crash loop", obs("backoff", fps={"0": 30.0}, fps_at=NOW), {}),
        ("exited", obs("exited", fps={"0": 30.0}, fps_at=NOW), {}),
    ],
)
def test_fresh_fps(case: str, observed: InstanceObserved, want: dict[str, float]) -> None:
    assert fresh_fps(observed, NOW) == want, case


# ---- connection, computed when read


@pytest.mark.parametrize(
    ("case", "last_seen", "coordinator", "want", "why"),
    [
        ("heard lately", NOW - s(4), RUNNING, Connection.ONLINE, "online"),
        ("heard lately, no coordinator ever", NOW - s(4), None, Connection.ONLINE, "online"),
        ("silent for three beats", NOW - s(16), RUNNING, Connection.OFFLINE, "no heartbeat for 16 s"),
        ("never heard", None, RUNNING, Connection.OFFLINE, "never heard"),
        ("coordinator dead, heard before", NOW - s(4), DEAD, Connection.UNKNOWN, "coordinator not running"),
        ("broker unreachable", NOW - s(60), BROKER_DOWN, Connection.UNKNOWN, "cannot reach its broker"),
        (
            "no broker configured",
            NOW - s(1),
            CoordinatorFacts(running=True, seen_at=NOW, started_at=NOW - s(60)),
            Connection.UNKNOWN,
            "no broker configured",
        ),
        (
            "coordinator just restarted",
            NOW - s(30),
            CoordinatorFacts(running=True, seen_at=NOW, started_at=NOW - s(3), broker_reachable=True),
            Connection.UNKNOWN,
            "coordinator started 3 s ago",
        ),
        (
            "restarted long enough ago",
            NOW - s(30),
            CoordinatorFacts(running=True, seen_at=NOW, started_at=NOW - s(20), broker_reachable=True),
            Connection.OFFLINE,
            "no heartbeat",
        ),
        (
            "broker just back",
            NOW - s(300),
            CoordinatorFacts(
                running=True,
                seen_at=NOW,
                started_at=NOW - s(900),
                broker_reachable=True,
                broker_since=NOW - s(2),
            ),
            Connection.UNKNOWN,
            "broker back 2 s ago",
        ),
    ],
)
def test_connection(
    case: str,
    last_seen: datetime | None,
    coordinator: CoordinatorFacts | None,
    want: Connection,
    why: str,
) -> None:
    got, reason = connection_of(last_seen, 5.0, NOW, coordinator=coordinator)
    assert got is want, f"{case}: {reason}"
    assert why in reason, f"{case}: {reason}"


@pytest.mark.parametrize(
    ("seen", "stopped", "running"),
    [(NOW - s(9), None, True), (NOW - s(11), None, False), (NOW, NOW, False), (None, None, False)],
)
def test_coordinator_running(seen: datetime | None, stopped: datetime | None, running: bool) -> None:
    assert coordinator_running(seen, stopped, 2.0, NOW) is running


# ---- views of the whole fleet


def test_derive_instances_joins_desired_and_observed() -> None:
    other = InstanceObserved("gone", "n1", "running", generation=2, config_hash="x")
    flowing = obs(fps={"0": 0.0}, fps_at=NOW)
    views = derive_instances([WANT], [flowing, other], {"n1": ONLINE}, {"n1": STALE}, NOW)
    assert [(v.name, v.sync, v.health) for v in views] == [
        ("cam", Sync.SYNCED, Health.DEGRADED),
        ("gone", Sync.OUT_OF_SYNC, Health.HEALTHY),
    ]
    assert "0 FPS on source 0" in views[0].reason
    assert "no longer desired" in views[1].reason


def test_two_instances_on_a_node_one_changed_both_synced() -> None:
    """The false OutOfSync of a node's unchanged instance: its generation stays, the node's moves on."""
    gate = InstanceDesired("gate", "n1", "g2")
    lobby = InstanceDesired("lobby", "n1", "l1")
    reports = [
        InstanceObserved("gate", "n1", "running", generation=3, config_hash="g2"),
        InstanceObserved("lobby", "n1", "running", generation=2, config_hash="l1"),
    ]
    facts = NodeFacts("n1", online=True, last_seen=NOW, observed_generation=3, observed_config_hash="nh")
    views = derive_instances([gate, lobby], reports, {"n1": facts}, {"n1": STALE}, NOW)
    assert [(v.name, v.sync) for v in views] == [("gate", Sync.SYNCED), ("lobby", Sync.SYNCED)]
    [node] = derive_nodes(["n1"], {"n1": facts}, {"n1": STALE}, NOW, instances=views)
    assert node.sync is Sync.SYNCED


def test_a_moved_instance_shows_once() -> None:
    moved = InstanceDesired("cam", "n2", "h2")
    old = InstanceObserved("cam", "n1", "running", generation=3, config_hash="h1")
    new = InstanceObserved("cam", "n2", "running", generation=1, config_hash="h2")
    facts = {n: NodeFacts(n, online=True, last_seen=NOW) for n in ("n1", "n2")}
    desired = {"n2": NodeDesired("n2", 1, "n2h", published_at=NOW - s(2))}
    [moving] = derive_instances([moved], [old], facts, desired, NOW)
    assert (moving.node, moving.sync, moving.moving_from) == ("n2", Sync.PROGRESSING, ("n1",))
    assert "still reported by n1 (moving away)" in moving.reason
    [there] = derive_instances([moved], [old, new], facts, desired, NOW)
    assert (there.node, there.sync, there.observed) == ("n2", Sync.SYNCED, new)


def test_node_sync_follows_its_instances_and_its_hash() -> None:
    facts = NodeFacts("n1", online=True, last_seen=NOW, observed_generation=3, observed_config_hash="nh")
    views = derive_instances([WANT], [obs(h="old")], {"n1": facts}, {"n1": STALE}, NOW)
    [node] = derive_nodes(["n1"], {"n1": facts}, {"n1": STALE}, NOW, instances=views)
    assert node.sync is Sync.OUT_OF_SYNC and "instance cam OutOfSync" in node.reason
    other = NodeFacts("n1", online=True, last_seen=NOW, observed_config_hash="zz")
    [empty] = derive_nodes(["n1"], {"n1": other}, {"n1": FRESH}, NOW)
    assert empty.sync is Sync.PROGRESSING
    [late] = derive_nodes(["n1"], {"n1": other}, {"n1": STALE}, NOW)
    assert late.sync is Sync.OUT_OF_SYNC
    [none] = derive_nodes(["n1"], {}, {"n1": FRESH}, NOW)
    assert none.sync is Sync.OUT_OF_SYNC and "never reported" in none.reason
    [retiring] = derive_nodes(["n1"], {"n1": RETIRING}, {}, NOW)
    assert (retiring.sync, retiring.retiring) == (Sync.PROGRESSING, True)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("open rtsp://admin:s3cret@10.0.0.1/main failed", "open rtsp://***@10.0.0.1/main failed"),
        ("rtsp://10.0.0.1/main", "rtsp://10.0.0.1/main"),
        (None, None),
    ],
)
def test_redact(text: str | None, want: str | None) -> None:
    assert redact(text) == want


def test_reasons_say_each_thing_once() -> None:
    [offline] = derive_instances([WANT], [], {"n1": OFFLINE}, {"n1": STALE}, NOW)
    assert offline.reason == "desired; not reported by its node yet; node offline: no heartbeat for 5 min"
    [never] = derive_instances([WANT], [], {}, {"n1": FRESH}, NOW)
    assert never.reason == "desired; not reported by its node yet; node never reported"
    [behind] = derive_instances(
        [WANT], [obs("backoff", h="old", restarts=4)], {"n1": ONLINE}, {"n1": FRESH}, NOW
    )
    assert behind.reason.endswith("; crash loop (4 restarts)") and behind.sync is Sync.PROGRESSING


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0 s"), (119, "119 s"), (120, "2 min"), (7200, "2 h"), (200_000, "2 d")]
)
def test_age_text(seconds: float, text: str) -> None:
    assert age_text(seconds) == text
