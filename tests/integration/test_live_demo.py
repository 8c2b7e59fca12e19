"""``dsfleet demo`` end to end (CI=true, no TTY): every step converges, and it leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import docker

from tests.support.livefleet import ROOT


def test_demo_runs_the_live_loop_and_cleans_up(
    docker_client: docker.DockerClient, stub_image: str, tmp_path: Path
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", "demo", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "CI": "true"},
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    for step in ("== 1.", "== 2.", "== 3.", "== 4.", "demo done"):
        assert step in out
    assert "rejected" in out and "still run the last accepted revision" in out
    assert "hunter2" not in out + run.stderr
    assert "\033[" not in out  # no TTY: plain text
    names = {f"dsfleet-{i}" for i in ("ccm-gate", "ccm-lobby", "traffic-parking")}
    left = [c.name for c in docker_client.containers.list(all=True) if c.name in names]
    assert not left, f"the demo left containers behind: {left}"
    logs = tmp_path / "demo"
    for log in logs.glob("*.log"):
        assert "hunter2" not in log.read_text(errors="replace"), log.name
