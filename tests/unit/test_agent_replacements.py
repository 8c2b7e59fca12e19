"""Make-before-break on the fakes of ``dsfleet.agent.testing``: a spec change replaces a container by its
instance's strategy, a failure at any step leaves the old one running (a condition, retried with backoff), an
agent that died in the middle finishes on its next tick, and engine volumes are kept per image."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dsfleet.agent.containerrequests import container_request
from dsfleet.agent.containers import engine_volume_name, next_name
from dsfleet.agent.testing import ManualClock, MemoryRuntime
from tests.support.inprocessagents import FAKE_NODE as NODE
from tests.support.inprocessagents import FakeAgent, fake_agent
from tests.support.inprocessagents import config_record as config
from tests.support.inprocessagents import fake_instance as inst


def rig(tmp_path: Path, runtime: MemoryRuntime | None = None, clock: ManualClock | None = None) -> FakeAgent:
    return fake_agent(tmp_path, runtime, clock)


def running_one(r: FakeAgent, name: str = "a") -> str:
    return r.running_one(name)


def test_create_before_stop_creates_then_stops_then_starts_and_keeps_the_previous_volume(
    tmp_path: Path,
) -> None:
    r = rig(tmp_path)
    r.bus.push_config(NODE, config(1, inst()))
    r.settle()
    old = running_one(r)
    mark = len(r.runtime.calls)
    new = inst(image="ds:7.1")
    r.bus.push_config(NODE, config(2, new))
    r.settle()
    nid = running_one(r)
    assert nid != old
    steps = [c for c in r.calls_since(mark) if not c.startswith("volume")]
    assert steps == [
        "create dsfleet-a.next",
        f"stop {old}",
        f"start {nid}",
        f"remove {old}",
        f"rename {nid} dsfleet-a",
    ]
    assert r.runtime.containers[nid].image == "ds:7.1"
    assert r.runtime.requests[nid].mounts[1].source == engine_volume_name(new)
    assert sorted(r.runtime.volumes) == sorted([engine_volume_name(inst()), engine_volume_name(new)])
    assert r.agent.applied["a"].previous_image == "ds:7.0"
    s = r.status()
    assert s.configHash == new.configHash and s.conditions == () and s.drift == ()
    assert r.agent.observed_generation == 2
    # one image further: the volume of the image before the previous one goes
    r.bus.push_config(NODE, config(3, inst(image="ds:7.2")))
    r.settle()
    assert sorted(r.runtime.volumes) == sorted(
        [engine_volume_name(new), engine_volume_name(inst(image="ds:7.2"))]
    )


def _failure(r: FakeAgent) -> tuple[str, int]:
    (cond,) = r.status().conditions
    return cond.reason, cond.attempts


def test_a_missing_image_leaves_the_old_running_and_is_retried_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    r = rig(tmp_path, MemoryRuntime(clock=clock, images={"ds:7.0"}), clock)
    r.bus.push_config(NODE, config(1, inst()))
    r.settle()
    old = running_one(r)
    mark = len(r.runtime.calls)
    caplog.set_level(logging.WARNING, logger="dsfleet.agent")
    r.bus.push_config(NODE, config(2, inst(image="ds:no-such-tag")))
    r.agent.step()
    assert r.status().conditions[0].reason == "Pulling"
    r.finish_pulls()
    assert _failure(r) == ("ImageNotFound", 1)
    cond = r.status().conditions[0]
    assert cond.nextRetryAt is not None and cond.since is not None and "ds:no-such-tag" in cond.message
    for _ in range(20):  # not due: nothing is tried, nothing logged again
        r.agent.step()
    assert running_one(r) == old
    assert r.calls_since(mark) == ["pull ds:no-such-tag"]
    warnings = [m for m in caplog.messages if "reason=ImageNotFound" in m]
    assert len(warnings) == 1 and "attempt=1" in warnings[0]
    r.clock.advance(1.0)  # the first retry is due within a second
    r.agent.step()
    r.finish_pulls()
    assert _failure(r) == ("ImageNotFound", 2)
    assert len([m for m in caplog.messages if "reason=ImageNotFound" in m]) == 2
    assert r.agent.observed_generation == 1  # never claimed
    # a new desired config starts from scratch, at once
    r.bus.push_config(NODE, config(3, inst(env="2")))
    r.settle()
    assert r.status().conditions == () and r.agent.observed_generation == 3


def test_an_image_is_pulled_in_the_background_while_the_agent_keeps_reporting(tmp_path: Path) -> None:
    clock = ManualClock()
    r = rig(tmp_path, MemoryRuntime(clock=clock, images={"ds:7.0"}, pullable={"ds:7.1"}), clock)
    r.bus.push_config(NODE, config(1, inst()))
    r.settle()
    r.bus.push_config(NODE, config(2, inst(image="ds:7.1")))
    r.agent.step()
    assert r.bus.responses[-1].instances[0].conditions[0].reason == "Pulling"
    r.finish_pulls()
    r.settle()
    assert r.runtime.containers[running_one(r)].image == "ds:7.1" and r.status().conditions == ()


def test_a_failed_create_leaves_the_old_running(tmp_path: Path) -> None:
    clock = ManualClock()
    r = rig(tmp_path, MemoryRuntime(clock=clock, fail_create={"ds:7.1"}), clock)
    r.bus.push_config(NODE, config(1, inst()))
    r.settle()
    old = running_one(r)
    r.bus.push_config(NODE, config(2, inst(image="ds:7.1")))
    r.settle()
    assert running_one(r) == old and _failure(r) == ("CreateFailed", 1)
    assert r.status().configHash == inst().configHash  # what runs, truthfully


def test_a_failed_start_starts_the_old_again_and_removes_the_new(tmp_path: Path) -> None:
    clock = ManualClock()
    r = rig(tmp_path, MemoryRuntime(clock=clock, fail_start={"ds:7.1"}), clock)
    r.bus.push_config(NODE, config(1, inst()))
    r.settle()
    old = running_one(r)
    mark = len(r.runtime.calls)
    r.bus.push_config(NODE, config(2, inst(image="ds:7.1")))
    r.settle()
    steps = [c for c in r.calls_since(mark) if not c.startswith("volume")]
    nid = steps[0] and next(c.split()[1] for c in steps if c.startswith("start ") and c != f"start {old}")
    assert steps == ["create dsfleet-a.next", f"stop {old}", f"start {nid}", f"remove {nid}", f"start {old}"]
    assert running_one(r) == old and _failure(r) == ("StartFailed", 1)
    assert r.status().drift == ()  # the agent stopped and started it: no drift


def test_recreate_removes_first_and_its_own_removal_is_no_drift(tmp_path: Path) -> None:
    clock = ManualClock()
    r = rig(tmp_path, MemoryRuntime(clock=clock, fail_create={"ds:7.1"}), clock)
    r.bus.push_config(NODE, config(1, inst(strategy="Recreate")))
    r.settle()
    old = running_one(r)
    mark = len(r.runtime.calls)
    r.bus.push_config(NODE, config(2, inst(image="ds:7.1", strategy="Recreate")))
    r.settle()
    assert [c for c in r.calls_since(mark) if not c.startswith("volume")] == [
        f"remove {old}",
        "create dsfleet-a",
    ]
    s = r.status()
    assert s.state == "missing" and s.drift == () and s.conditions[0].reason == "CreateFailed"
    r.runtime.fail_create.clear()
    r.clock.advance(1.0)
    r.settle()
    assert r.runtime.containers[running_one(r)].image == "ds:7.1" and r.status().drift == ()


def test_start_before_stop_keeps_the_old_running_until_the_new_is_healthy(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.bus.push_config(NODE, config(1, inst(strategy="StartBeforeStop", health=True)))
    r.settle()
    old = running_one(r)
    r.bus.push_config(NODE, config(2, inst(env="2", strategy="StartBeforeStop", health=True)))
    r.settle()
    nxt = r.runtime.named(next_name("a"))
    assert nxt is not None and nxt.state == "running" and nxt.health == "starting"
    assert r.runtime.containers[old].state == "running"  # both run: no gap
    assert r.agent.observed_generation == 1  # not there yet
    r.runtime.set_health(nxt.id, "healthy")
    r.settle()
    assert running_one(r) == nxt.id and r.agent.observed_generation == 2


def test_start_before_stop_rolls_back_an_unhealthy_new_container(tmp_path: Path) -> None:
    r = rig(tmp_path)
    r.bus.push_config(NODE, config(1, inst(strategy="StartBeforeStop", health=True)))
    r.settle()
    old = running_one(r)
    r.bus.push_config(NODE, config(2, inst(env="2", strategy="StartBeforeStop", health=True)))
    r.settle()
    nxt = r.runtime.named(next_name("a"))
    assert nxt is not None
    r.runtime.set_health(nxt.id, "unhealthy")
    r.settle()
    assert running_one(r) == old and _failure(r) == ("Unhealthy", 1)


@pytest.mark.parametrize("died_after", ["create", "stop", "start", "remove"])
def test_an_agent_that_died_in_the_middle_of_a_replacement_finishes_it(
    tmp_path: Path, died_after: str
) -> None:
    clock = ManualClock()
    runtime = MemoryRuntime(clock=clock)
    first = rig(tmp_path, runtime, clock)
    first.bus.push_config(NODE, config(1, inst()))
    first.settle()
    old = running_one(first)
    new = inst(image="ds:7.1")
    # what the dead agent did of the replacement
    nid = runtime.create(
        container_request(new, NODE, 2, str(tmp_path), None, nvidia=False, name=next_name("a"))
    )
    if died_after in ("stop", "start", "remove"):
        runtime.stop(old)
    if died_after in ("start", "remove"):
        runtime.start(nid)
    if died_after == "remove":
        runtime.remove(old)
    second = rig(tmp_path, runtime, clock)
    second.bus.push_config(NODE, config(2, new))
    second.settle()
    assert running_one(second) == nid
    assert second.status().configHash == new.configHash and second.status().drift == ()
