"""The leadership epoch on the fakes: once the agent has accepted a record of a coordinator's leadership epoch, a
record of a lower epoch (a deposed coordinator's late record) or of none is refused as ``stale-epoch`` whatever its
generation (the last good config keeps running, the refusal is reported); the epoch is kept in binding.json across
a restart, raised by a re-announce of the same config, and starts anew when the agent is bound to another fleet."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.support.inprocessagents import FAKE_NODE as NODE
from tests.support.inprocessagents import FakeAgent, fake_agent
from tests.support.inprocessagents import config_record as config
from tests.support.inprocessagents import fake_instance as inst


def generation(r: FakeAgent) -> int | None:
    return getattr(r.agent.desired, "generation", None)


def kept_epoch(state_dir: Path) -> int:
    value = json.loads((state_dir / "binding.json").read_text())["epoch"]
    assert isinstance(value, int)
    return value


def led(tmp_path: Path, epoch: int = 2) -> FakeAgent:
    """An agent running generation 5 of fleet-a, stored by the coordinator of leadership ``epoch``."""
    r = fake_agent(tmp_path)
    r.bus.push_config(NODE, config(5, inst(), fleet="fleet-a"), epoch=epoch)
    r.settle()
    assert generation(r) == 5 and kept_epoch(tmp_path) == epoch
    return r


def test_a_lower_epoch_is_refused_whatever_its_generation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = led(tmp_path)
    cid = r.running_one()
    calls = len(r.runtime.calls)
    caplog.set_level(logging.WARNING, logger="dsfleet.agent")
    r.bus.push_config(NODE, config(9, inst(files="late"), fleet="fleet-a"), epoch=1)
    r.settle()
    assert generation(r) == 5 and r.running_one() == cid and r.calls_since(calls) == []
    (rej,) = r.agent.response().rejections
    assert (rej.reason, rej.generation) == ("stale-epoch", 9)
    assert "epoch 1" in rej.detail and "epoch 2" in rej.detail
    assert r.agent.rejected == 1
    assert any("reason=stale-epoch generation=9" in m for m in caplog.messages)
    # the same leader's next generation is taken, and clears the refusal
    r.bus.push_config(NODE, config(6, inst(files="v2"), fleet="fleet-a"), epoch=2)
    r.settle()
    assert generation(r) == 6 and r.agent.response().rejections == ()


def test_a_record_without_epoch_after_one_was_seen_is_refused(tmp_path: Path) -> None:
    r = led(tmp_path)
    r.bus.push_config(NODE, config(9, inst(files="late"), fleet="fleet-a"))
    r.settle()
    assert generation(r) == 5
    (rej,) = r.agent.response().rejections
    assert rej.reason == "stale-epoch" and "no epoch" in rej.detail


def test_the_epoch_is_kept_across_a_restart(tmp_path: Path) -> None:
    first = led(tmp_path, epoch=3)
    cid = first.running_one()
    again = fake_agent(tmp_path, first.runtime, first.clock)
    again.bus.push_config(NODE, config(8, inst(files="late"), fleet="fleet-a"), epoch=2)
    again.settle()
    assert generation(again) == 5 and again.running_one() == cid
    (rej,) = again.agent.response().rejections
    # the newest record on the broker at catch-up: the store that publishes is behind what the agent saw
    assert rej.reason == "stale-epoch" and "restored from a backup" in rej.detail
    again.bus.push_config(NODE, config(8, inst(files="v8"), fleet="fleet-a"), epoch=3)
    again.settle()
    assert generation(again) == 8 and kept_epoch(tmp_path) == 3


def test_a_re_announce_from_a_newer_leader_raises_the_epoch_and_changes_nothing(tmp_path: Path) -> None:
    r = led(tmp_path, epoch=2)
    calls = len(r.runtime.calls)
    r.bus.push_config(NODE, config(5, inst(), fleet="fleet-a"), epoch=4)
    r.settle()
    assert r.calls_since(calls) == [] and r.agent.response().rejections == () and kept_epoch(tmp_path) == 4
    r.bus.push_config(NODE, config(6, inst(files="v2"), fleet="fleet-a"), epoch=3)
    r.settle()
    assert generation(r) == 5 and r.agent.response().rejections[0].reason == "stale-epoch"


def test_a_removal_of_a_lower_epoch_is_refused(tmp_path: Path) -> None:
    r = led(tmp_path)
    cid = r.running_one()
    r.bus.push_config(NODE, None, generation=9, epoch=1)
    r.settle()
    assert r.running_one() == cid and generation(r) == 5
    assert r.agent.response().rejections[0].reason == "stale-epoch"


def test_another_fleet_starts_the_epoch_anew(tmp_path: Path) -> None:
    """Two stores count their epochs apart: an agent rebound to fleet-b takes fleet-b's epoch 1 after fleet-a's 5."""
    r = fake_agent(tmp_path, fleet_id="fleet-a")
    r.bus.push_config(NODE, config(5, inst(), fleet="fleet-a"), epoch=5)
    r.settle()
    moved = fake_agent(tmp_path, r.runtime, r.clock, fleet_id="fleet-b")
    moved.bus.push_config(NODE, config(1, inst(env="2"), fleet="fleet-b"), epoch=1)
    moved.settle()
    assert generation(moved) == 1 and kept_epoch(tmp_path) == 1
    assert moved.agent.response().rejections == ()
