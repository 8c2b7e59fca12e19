"""What the agent reports, on the fakes: a missing secret names the cameras it leaves out and keeps the instance
running its last good files; ``logs`` commands are answered, redacted; a drift that is gone is no longer active;
FPS only from the current run while fresh; the config hash reported is the one of what runs."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dsfleet.agent.credentials import Credential
from dsfleet.agent.testing import ManualClock, MemoryRuntime
from dsfleet.schemas.wire import AgentCommand, CommandKind, InstanceState, encode
from tests.support.inprocessagents import FAKE_NODE as NODE
from tests.support.inprocessagents import FakeAgent, fake_agent
from tests.support.inprocessagents import config_record as config
from tests.support.inprocessagents import fake_instance as inst

PASSWORD = "Zq8-Canary-pw"
GATE = {"gate": Credential("admin", PASSWORD)}
CAMERAS = {"gate-1": "gate", "gate-2": "gate", "lobby": "lobby"}
PERF = "**PERF:  30.00 (30.00)\t25.00 (25.00)\t"


def _command(r: FakeAgent, **kw: object) -> bytes:
    now = datetime.fromtimestamp(r.clock.time(), UTC).isoformat()
    return encode(AgentCommand(sent_at=now, command=CommandKind.LOGS, requestId="req-1", **kw))  # type: ignore[arg-type]


def test_a_missing_secret_names_the_cameras_and_keeps_the_last_good_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = fake_agent(tmp_path, secrets={**GATE, "lobby": Credential("u", "lobby-pw")})
    r.bus.push_config(NODE, config(1, inst(camera_secrets=CAMERAS)))
    r.settle()
    cid = r.running_one()
    good = (tmp_path / "instances" / "a" / "a.txt").read_text()
    caplog.set_level(logging.INFO, logger="dsfleet.agent")
    del r.secrets.credentials["gate"]  # type: ignore[attr-defined]
    r.bus.push_config(NODE, config(2, inst(files="v2", camera_secrets=CAMERAS)))
    for _ in range(5):
        r.agent._next_heartbeat = 0.0
        r.agent.step()
    s = r.status()
    (cond,) = s.conditions
    assert cond.reason == "SecretMissing" and cond.cameras == ("gate-1", "gate-2")
    assert "gate-1, gate-2 cannot be added" in cond.message and cond.nextRetryAt is None
    assert r.running_one() == cid and (tmp_path / "instances" / "a" / "a.txt").read_text() == good
    assert not any(c.startswith(("restart", "stop")) for c in r.runtime.calls)
    warnings = [m for m in caplog.messages if "condition=SecretMissing" in m]
    assert len(warnings) == 1 and "cameras=gate-1,gate-2" in warnings[0]  # once per change, not per tick
    assert r.agent.observed_generation == 1
    r.secrets.credentials["gate"] = GATE["gate"]  # type: ignore[index]
    r.agent._next_heartbeat = 0.0  # secrets are looked at again on every heartbeat
    r.settle()
    assert r.status().conditions == () and r.agent.observed_generation == 2
    assert any("condition=SecretMissing cleared" in m for m in caplog.messages)
    assert PASSWORD not in "\n".join(caplog.messages)


def test_logs_are_answered_redacted_and_capped_by_tail(tmp_path: Path) -> None:
    r = fake_agent(tmp_path, secrets=GATE)
    r.bus.push_config(NODE, config(1, inst(camera_secrets={"gate-1": "gate"})))
    r.settle()
    cid = r.running_one()
    r.runtime.emit(
        cid, "starting", f"connect rtsp://admin:{PASSWORD}@10.0.0.1/x", f"echo {PASSWORD}", "last line"
    )
    r.bus.push_command(_command(r, target=NODE, instance="a", tail=3))
    r.agent.step()
    (reply,) = r.bus.logs
    assert reply.requestId == "req-1" and reply.instance == "a" and reply.node == NODE and reply.error is None
    stamped = [line.split(" ", 1) for line in reply.text.split("\n")]
    assert [text for _, text in stamped] == ["connect rtsp://***@10.0.0.1/x", "echo ***", "last line"]
    assert all(re.fullmatch(r"2026-01-01T00:16:40\.\d{6}000Z", t) for t, _ in stamped)  # led by their time
    r.bus.push_command(_command(r, target=NODE, instance="nope"))
    r.bus.push_command(
        _command(r, target="*", instance="nope")
    )  # asked of every node: only one that runs it answers
    r.bus.push_command(_command(r, target=NODE, instance="a", since="yesterday"))
    r.agent.step()
    assert [x.error for x in r.bus.logs[1:]] == [
        f"instance nope has no container on node {NODE}",
        "since: 'yesterday' is not a time (ISO 8601, epoch seconds, or a duration like 10m)",
    ]


def test_the_last_log_line_and_errors_are_redacted(tmp_path: Path) -> None:
    r = fake_agent(tmp_path, secrets=GATE)
    r.bus.push_config(NODE, config(1, inst(camera_secrets={"gate-1": "gate"})))
    r.settle()
    r.runtime.emit(
        r.running_one(), f"ERROR: cannot open rtsp://admin:{PASSWORD}@h/x; retrying with {PASSWORD}"
    )
    r.agent._next_heartbeat = 0.0
    r.agent.step()
    line = r.status().lastLogLine
    assert line is not None and PASSWORD not in line and "rtsp://***@h/x" in line


def test_a_drift_that_is_gone_is_no_longer_active(tmp_path: Path) -> None:
    r = fake_agent(tmp_path)
    r.bus.push_config(NODE, config(1, inst(self_heal=False)))
    r.settle()
    cid = r.running_one()
    r.runtime.set_state(cid, "exited", 137)  # docker kill, self-heal off: reported, not healed
    r.settle()
    assert [(d.kind, d.healed) for d in r.status().drift] == [("stopped", False)]
    r.runtime.set_state(cid, "running")  # someone started it again
    r.settle()
    assert [(d.kind, d.healed) for d in r.status().drift] == [("stopped", True)]


def test_fps_come_from_the_current_run_and_expire(tmp_path: Path) -> None:
    r = fake_agent(tmp_path, log_lines=(PERF,))
    r.bus.push_config(NODE, config(1, inst()))
    r.settle()
    r.agent._next_heartbeat = 0.0
    r.agent.step()
    s = r.status()
    assert s.fps == {"0": 30.0, "1": 25.0} and s.fpsAt is not None
    r.clock.advance(31.0)  # nothing printed since: stale
    assert r.status().fps == {} and r.status().fpsAt is None
    cid = r.running_one()
    r.runtime.log_lines = ()
    r.runtime.set_state(cid, "running")  # restarted by Docker, prints nothing yet
    r.agent._next_heartbeat = 0.0
    r.agent.step()
    r.clock.advance(-30.0)  # even within the limit: the values were printed by the previous run
    assert r.status().fps == {}


def test_a_crash_loop_shows_no_fps(tmp_path: Path) -> None:
    clock = ManualClock()
    r = fake_agent(tmp_path, MemoryRuntime(clock=clock, log_lines=(PERF,)), clock)
    r.bus.push_config(NODE, config(1, inst()))
    r.settle()
    cid = r.running_one()
    for _ in range(4):
        r.runtime.set_state(cid, "running")  # restarted by its policy, prints FPS at once
        r.clock.advance(2.0)
        r.agent._next_heartbeat = 0.0
        r.agent.step()
    s = r.status()
    assert s.state is InstanceState.BACKOFF and s.fps == {}


def test_the_config_hash_reported_is_the_one_of_what_runs(tmp_path: Path) -> None:
    r = fake_agent(tmp_path)
    first = inst()
    r.bus.push_config(NODE, config(1, first))
    r.settle()
    assert r.status().configHash == first.configHash
    calls = list(r.runtime.calls)
    toggled = inst(self_heal=False)
    r.bus.push_config(NODE, config(2, toggled))
    r.settle()
    assert r.runtime.calls == calls  # a self-heal toggle changes nothing on the host ...
    assert r.status().configHash == toggled.configHash  # ... and is applied at once
    paused = inst(paused=True, self_heal=False)
    r.bus.push_config(NODE, config(3, paused))
    r.agent.step()
    r.settle()
    assert r.status().configHash == paused.configHash and r.status().state is InstanceState.STOPPED


def test_an_instance_directory_that_cannot_be_read_is_files_unwritable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = fake_agent(tmp_path)
    r.bus.push_config(NODE, config(1, inst()))
    r.settle()
    cid = r.running_one()
    directory = tmp_path / "instances" / "a"
    for f in directory.iterdir():
        f.unlink()
    directory.rmdir()
    directory.write_text("not a directory")  # what a broken disk or a stray file leaves
    caplog.set_level(logging.WARNING, logger="dsfleet.agent")
    r.agent._next_heartbeat = 0.0
    r.settle()
    (cond,) = r.status().conditions
    assert cond.reason == "FilesUnwritable" and "instances/a" in cond.message
    assert r.running_one() == cid  # left alone
    assert [m for m in caplog.messages if "condition=FilesUnwritable" in m]
