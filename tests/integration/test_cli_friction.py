"""What ``apply`` and ``diff`` print, through the real CLI and a real SQLite store: a quiet ``apply`` (each
instance's action and how many files, then the summary), ``--stat`` (which files) and ``--diff`` (their diffs);
a ``selfHeal`` toggle shown as a settings change in text and JSON alike; ``dsfleet-agent run`` logging through
the shared setup (JSON, any-case level)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from dsfleet.reconciler.cli.main import main
from tests.support.livefleet import stop_process, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NO_COLOR", "1")
    return shutil.copytree(EXAMPLE, tmp_path / "manifests")


def _db(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


def test_apply_is_quiet_by_default_and_says_more_when_asked(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, quiet, _ = cli(capsys, "apply", str(fleet), "--db", _db(tmp_path, "a.db"))
    assert code == 0
    assert "  + instance ccm-gate: create" in quiet
    assert re.search(r"^      \d+ files written$", quiet, re.M)
    assert "+ file " not in quiet and "+++ " not in quiet and "@@" not in quiet
    assert "Plan: 2 nodes to add" in quiet and "revision 1 applied: 2 node configs queued" in quiet
    assert len(quiet.splitlines()) < 20

    code, stat, _ = cli(capsys, "apply", str(fleet), "--db", _db(tmp_path, "b.db"), "--stat")
    assert code == 0 and "      + file " in stat and "@@" not in stat and "+++ " not in stat

    code, full, _ = cli(capsys, "apply", str(fleet), "--db", _db(tmp_path, "c.db"), "--diff")
    assert code == 0 and "      + file " in full and "+++ b/" in full and "@@" in full
    assert len(full) > 10 * len(quiet)

    with pytest.raises(SystemExit):
        main(["apply", str(fleet), "--db", _db(tmp_path, "d.db"), "--stat", "--diff"])


def test_a_self_heal_toggle_is_a_settings_change(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _db(tmp_path, "state.db")
    assert cli(capsys, "apply", str(fleet), "--db", db)[0] == 0
    ccm = fleet / "instances" / "ccm.yaml"
    ccm.write_text(
        ccm.read_text().replace(
            "  restartPolicy: OnFailure\n", "  restartPolicy: OnFailure\n  sync: {selfHeal: false}\n", 1
        )
    )

    code, text, _ = cli(capsys, "diff", str(fleet), "--db", db)
    assert code == 1
    assert "  ~ instance ccm-gate: settings only (no restart)\n      ~ selfHeal: true → false\n" in text
    assert "restart" not in text.replace("no restart", "").replace("0 instances to restart", "")
    assert "1 with new settings only" in text

    code, out, _ = cli(capsys, "diff", str(fleet), "--db", db, "-o", "json")
    doc = json.loads(out)
    [node] = [n for n in doc["nodes"] if n["action"] == "update"]
    [gate] = node["instances"]
    assert (gate["name"], gate["kind"], gate["files"]) == ("ccm-gate", "settings", [])
    assert gate["fields"] == [{"path": "selfHeal", "action": "changed", "old": True, "new": False}]
    assert doc["summary"]["instances_settings_changed"] == 1
    assert doc["summary"]["instances_to_restart"] == doc["summary"]["instances_to_start"] == 0


def test_the_agent_logs_through_the_shared_setup(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    """``dsfleet-agent run --log-format json --log-level WARNING``: JSON lines from the one logging setup of both
    sides (the level in any case), not ``logging.basicConfig`` text."""
    err = tmp_path / "agent.err"
    with err.open("wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dsfleet.agent.cli",
                "run",
                "--log-format",
                "json",
                "--log-level",
                "WARNING",
                "--state-dir",
                str(tmp_path / "state"),
                "--node-name",
                f"friction-{uuid.uuid4().hex[:8]}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=fh,
            env={k: v for k, v in os.environ.items() if not k.startswith("DSFLEET_")},
        )
    try:

        def warned() -> dict[str, Any] | None:
            for line in err.read_text().splitlines():
                record = json.loads(line)  # every line is one JSON object
                if "no bootstrap servers" in record["msg"]:
                    return dict(record)
            assert proc.poll() is None, err.read_text()
            return None

        record = wait_for(warned, 30, "the agent's warning as JSON")
        assert (record["level"], record["logger"]) == ("warning", "dsfleet.agent")
    finally:
        assert stop_process(proc, 15, "dsfleet-agent run") == 0
    assert all(json.loads(line)["level"] != "info" for line in err.read_text().splitlines())
