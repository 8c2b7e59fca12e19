"""The pure sync/health derivation of ``dsfleet status`` (table cases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dsfleet.reconciler.planning.conditions import (
    Health,
    InstanceDesired,
    InstanceObserved,
    NodeDesired,
    NodeFacts,
    Sync,
    derive_instances,
    derive_nodes,
    health_of,
    redact,
    sync_of,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ONLINE = NodeFacts("n1", online=True, last_seen=NOW, observed_generation=3)
OFFLINE = NodeFacts("n1", online=False, last_seen=NOW - timedelta(minutes=5), observed_generation=3)
FRESH = NodeDesired("n1", 3, "nh", published_at=NOW - timedelta(seconds=5))
STALE = NodeDesired("n1", 3, "nh", published_at=NOW - timedelta(minutes=10))
WANT = InstanceDesired("cam", "n1", "h1")
PAUSED = InstanceDesired("cam", "n1", "h1", paused=True)


def obs(state: str = "running", h: str | None = "h1", gen: int | None = 3, **kw: object) -> InstanceObserved:
    return InstanceObserved("cam", "n1", state, generation=gen, config_hash=h, **kw)  # type: ignore[arg-type]


SYNC_CASES = [
    ("same hash, generation reached", WANT, obs(), ONLINE, FRESH, Sync.SYNCED),
    ("same hash, later generation", WANT, obs(gen=4), ONLINE, STALE, Sync.SYNCED),
    ("same hash, offline node still synced", WANT, obs(), OFFLINE, STALE, Sync.SYNCED),
    ("hash differs, online, recent", WANT, obs(h="old"), ONLINE, FRESH, Sync.PROGRESSING),
    ("hash differs, online, long ago", WANT, obs(h="old"), ONLINE, STALE, Sync.OUT_OF_SYNC),
    ("hash differs, offline, recent", WANT, obs(h="old"), OFFLINE, FRESH, Sync.OUT_OF_SYNC),
    ("same hash, generation behind, recent", WANT, obs(gen=2), ONLINE, FRESH, Sync.PROGRESSING),
    ("same hash, generation behind, stale", WANT, obs(gen=2), ONLINE, STALE, Sync.OUT_OF_SYNC),
    ("not reported yet, recent", WANT, None, ONLINE, FRESH, Sync.PROGRESSING),
    ("not reported, never seen node", WANT, None, None, FRESH, Sync.OUT_OF_SYNC),
    ("not desired, still reported, recent", None, obs(), ONLINE, FRESH, Sync.PROGRESSING),
    ("not desired, still reported, stale", None, obs(), ONLINE, STALE, Sync.OUT_OF_SYNC),
    ("not desired, not reported", None, None, ONLINE, STALE, Sync.SYNCED),
]


@pytest.mark.parametrize(("case", "desired", "observed", "node", "node_desired", "want"), SYNC_CASES)
def test_sync(
    case: str,
    desired: InstanceDesired | None,
    observed: InstanceObserved | None,
    node: NodeFacts | None,
    node_desired: NodeDesired,
    want: Sync,
) -> None:
    got, reason = sync_of(desired, observed, node, node_desired, NOW)
    assert got is want, f"{case}: {reason}"
    assert reason


HEALTH_CASES = [
    ("running", WANT, obs(), ONLINE, Health.HEALTHY),
    ("running with all sources flowing", WANT, obs(fps={"0": 30.0, "1": 25.0}), ONLINE, Health.HEALTHY),
    ("a source at 0 FPS", WANT, obs(fps={"0": 30.0, "1": 0.0}), ONLINE, Health.DEGRADED),
    ("agent says degraded", WANT, obs(error="degraded: no frames"), ONLINE, Health.DEGRADED),
    ("restarting", WANT, obs("restarting"), ONLINE, Health.DEGRADED),
    ("created", WANT, obs("created"), ONLINE, Health.DEGRADED),
    ("backoff", WANT, obs("backoff", restarts=7), ONLINE, Health.FAILED),
    ("exited", WANT, obs("exited", exit_code=1), ONLINE, Health.FAILED),
    ("missing", WANT, obs("missing"), ONLINE, Health.FAILED),
    ("stopped but should run", WANT, obs("stopped"), ONLINE, Health.FAILED),
    ("stopped and paused", PAUSED, obs("stopped"), ONLINE, Health.HEALTHY),
    ("node offline", WANT, obs(), OFFLINE, Health.UNKNOWN),
    ("node never reported", WANT, None, None, Health.UNKNOWN),
    ("no report for the instance", WANT, None, ONLINE, Health.UNKNOWN),
]


@pytest.mark.parametrize(("case", "desired", "observed", "node", "want"), HEALTH_CASES)
def test_health(
    case: str,
    desired: InstanceDesired | None,
    observed: InstanceObserved | None,
    node: NodeFacts | None,
    want: Health,
) -> None:
    got, reason = health_of(desired, observed, node)
    assert got is want, f"{case}: {reason}"


def test_derive_instances_joins_desired_and_observed() -> None:
    other = InstanceObserved("gone", "n1", "running", generation=2, config_hash="x")
    views = derive_instances([WANT], [obs(fps={"0": 0.0}), other], {"n1": ONLINE}, {"n1": STALE}, NOW)
    assert [(v.name, v.sync, v.health) for v in views] == [
        ("cam", Sync.SYNCED, Health.DEGRADED),
        ("gone", Sync.OUT_OF_SYNC, Health.HEALTHY),
    ]
    assert "0 FPS on source 0" in views[0].reason
    assert "no longer desired" in views[1].reason


@pytest.mark.parametrize(
    ("facts", "want", "sync"),
    [
        (NodeFacts("n1", online=True, observed_generation=3, observed_config_hash="nh"), FRESH, Sync.SYNCED),
        (NodeFacts("n1", online=True, observed_generation=2), FRESH, Sync.PROGRESSING),
        (NodeFacts("n1", online=True, observed_generation=2), STALE, Sync.OUT_OF_SYNC),
        (NodeFacts("n1", online=False, observed_generation=2), FRESH, Sync.OUT_OF_SYNC),
        (
            NodeFacts("n1", online=True, observed_generation=3, observed_config_hash="zz"),
            STALE,
            Sync.OUT_OF_SYNC,
        ),
        (None, FRESH, Sync.OUT_OF_SYNC),
        (NodeFacts("n1", online=True, observed_generation=None), None, Sync.SYNCED),
    ],
)
def test_derive_nodes(facts: NodeFacts | None, want: NodeDesired | None, sync: Sync) -> None:
    [view] = derive_nodes(["n1"], {"n1": facts} if facts else {}, {"n1": want} if want else {}, NOW)
    assert view.sync is sync


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("open rtsp://admin:s3cret@10.0.0.1/main failed", "open rtsp://***@10.0.0.1/main failed"),
        ("rtsp://10.0.0.1/main", "rtsp://10.0.0.1/main"),
        ("a http://u@h/x and rtsps://u:p@h2/y", "a http://***@h/x and rtsps://***@h2/y"),
        (None, None),
    ],
)
def test_redact(text: str | None, want: str | None) -> None:
    assert redact(text) == want


def test_reasons_say_each_thing_once() -> None:
    [offline] = derive_instances([WANT], [], {"n1": OFFLINE}, {"n1": STALE}, NOW)
    assert offline.reason == "desired; not reported by its node yet; node offline"
    [never] = derive_instances([WANT], [], {}, {"n1": FRESH}, NOW)
    assert never.reason == "desired; not reported by its node yet; node never reported"
    [behind] = derive_instances(
        [WANT], [obs("backoff", h="old", restarts=4)], {"n1": ONLINE}, {"n1": FRESH}, NOW
    )
    assert behind.reason.endswith("; crash loop (4 restarts)") and behind.sync is Sync.PROGRESSING
