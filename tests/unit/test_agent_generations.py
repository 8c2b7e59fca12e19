"""Generations and fleets on the fakes: after catching up, a lower generation, the same generation with another
config, or another fleet's config is refused (the last good config keeps running, the refusal is reported); what
is read while catching up is history; the binding survives a restart."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dsfleet.agent.ports import BusBatch
from tests.support.inprocessagents import FAKE_NODE as NODE
from tests.support.inprocessagents import FakeAgent, fake_agent
from tests.support.inprocessagents import config_record as config
from tests.support.inprocessagents import fake_instance as inst


def generation(r: FakeAgent) -> int | None:
    return getattr(r.agent.desired, "generation", None)


def test_a_lower_generation_after_catch_up_is_refused_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = fake_agent(tmp_path)
    r.bus.push_config(NODE, config(5, inst(), fleet="fleet-a"))
    r.settle()
    cid = r.running_one()
    caplog.set_level(logging.WARNING, logger="dsfleet.agent")
    r.bus.push_config(NODE, config(3, inst(files="v0"), fleet="fleet-a"))
    r.settle()
    assert generation(r) == 5 and r.running_one() == cid
    (rej,) = r.agent.response().rejections
    assert (rej.reason, rej.generation) == ("stale-generation", 3) and "lower than generation 5" in rej.detail
    assert any("refused AgentConfig record (1 so far): reason=stale-generation" in m for m in caplog.messages)
    assert json.loads((tmp_path / "binding.json").read_text())["generation"] == 5


def test_the_same_generation_with_another_config_is_a_conflict(tmp_path: Path) -> None:
    r = fake_agent(tmp_path)
    r.bus.push_config(NODE, config(5, inst(), fleet="fleet-a"))
    r.settle()
    r.bus.push_config(NODE, config(5, inst(files="v9"), fleet="fleet-a"))
    r.settle()
    assert [x.reason for x in r.agent.response().rejections] == ["conflicting-config"]
    assert (
        r.agent.desired is not None
        and r.agent.desired.configHash == json.loads(config(5, inst(), fleet="fleet-a"))["configHash"]
    )


def test_another_fleets_config_is_ignored_and_the_bound_fleet_is_reported(tmp_path: Path) -> None:
    r = fake_agent(tmp_path)
    r.bus.push_config(NODE, config(1, inst(), fleet="fleet-a"))
    r.settle()
    r.bus.push_config(NODE, config(9, inst(env="2"), fleet="fleet-b"))
    r.settle()
    assert generation(r) == 1
    resp = r.agent.response()
    assert resp.fleet == "fleet-a" and resp.rejections[0].reason == "other-fleet"
    assert "fleet-b" in resp.rejections[0].detail
    assert r.agent.info().fleet == "fleet-a"
    # the next good config clears the refusals: they describe what was refused since the last accepted config
    r.bus.push_config(NODE, config(2, inst(env="3"), fleet="fleet-a"))
    r.settle()
    assert generation(r) == 2 and r.agent.response().rejections == ()


def test_records_read_while_catching_up_are_history(tmp_path: Path) -> None:
    r = fake_agent(tmp_path)
    r.bus.enqueue(
        BusBatch(
            configs=[
                r.bus.config_record(NODE, config(3, inst(env="3"))),
                r.bus.config_record(NODE, config(1, inst(env="1"))),
            ]
        ),
        BusBatch(configs=[r.bus.config_record(NODE, config(4, inst(env="4")))], caught_up=True),
    )
    r.agent.step()
    assert r.agent.desired is None  # not caught up yet: nothing taken
    r.settle()
    assert generation(r) == 4 and r.agent.response().rejections == ()


def test_an_invalid_newest_record_at_catch_up_is_reported_the_older_good_one_taken(tmp_path: Path) -> None:
    r = fake_agent(tmp_path)
    r.bus.enqueue(
        BusBatch(
            configs=[r.bus.config_record(NODE, config(2, inst())), r.bus.config_record(NODE, b"{garbage")],
            caught_up=True,
        )
    )
    r.settle()
    assert generation(r) == 2
    assert [x.reason for x in r.agent.response().rejections] == ["not-json"]
    assert r.agent.rejected == 1


def test_a_store_restored_from_a_backup_is_refused_at_catch_up(tmp_path: Path) -> None:
    first = fake_agent(tmp_path)
    first.bus.push_config(NODE, config(7, inst(env="7"), fleet="fleet-a"))
    first.settle()
    cid = first.running_one()
    # the agent restarts; the broker's newest config of the node is older than what it runs
    again = fake_agent(tmp_path, first.runtime, first.clock)
    again.bus.push_config(NODE, config(2, inst(env="2"), fleet="fleet-a"))
    again.settle()
    assert generation(again) == 7 and again.running_one() == cid
    (rej,) = again.agent.response().rejections
    assert rej.reason == "stale-generation" and "restored from a backup" in rej.detail
    # the coordinator answers with a generation above the agent's: taken
    again.bus.push_config(NODE, config(8, inst(env="2"), fleet="fleet-a"))
    again.settle()
    assert generation(again) == 8 and again.agent.response().rejections == ()


def test_a_re_announce_of_the_same_config_is_no_refusal(tmp_path: Path) -> None:
    r = fake_agent(tmp_path)
    r.bus.push_config(NODE, config(4, inst(), fleet="fleet-a"))
    r.settle()
    calls = list(r.runtime.calls)
    r.bus.enqueue(
        BusBatch(reset=True),
        BusBatch(configs=[r.bus.config_record(NODE, config(2, inst(), fleet="fleet-a"))], caught_up=True),
    )
    r.settle()
    assert r.agent.response().rejections == () and generation(r) == 4 and r.runtime.calls == calls


def test_the_settings_bind_up_front_and_rebind_to_another_fleet(tmp_path: Path) -> None:
    r = fake_agent(tmp_path, fleet_id="fleet-a")
    r.bus.push_config(NODE, config(1, inst(), fleet="fleet-b"))
    r.settle()
    assert r.agent.desired is None and r.agent.response().rejections[0].reason == "other-fleet"
    r.bus.push_config(NODE, config(6, inst(), fleet="fleet-a"))
    r.settle()
    assert generation(r) == 6
    # the operator moves the host to fleet-b (a new store): its generations start anew
    moved = fake_agent(tmp_path, r.runtime, r.clock, fleet_id="fleet-b")
    moved.bus.push_config(NODE, config(1, inst(env="2"), fleet="fleet-b"))
    moved.settle()
    assert generation(moved) == 1 and moved.agent.response().fleet == "fleet-b"


def test_an_agent_of_an_earlier_release_takes_its_mark_from_desired_json(tmp_path: Path) -> None:
    r = fake_agent(tmp_path)
    r.bus.push_config(NODE, config(5, inst(), fleet="fleet-a"))
    r.settle()
    (tmp_path / "binding.json").unlink()
    again = fake_agent(tmp_path, r.runtime, r.clock)
    again.bus.push_config(NODE, config(4, inst(env="x"), fleet="fleet-a"))
    again.settle()
    assert generation(again) == 5 and again.agent.bound_fleet == "fleet-a"
    assert again.agent.response().rejections[0].reason == "stale-generation"
