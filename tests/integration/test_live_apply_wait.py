"""``dsfleet apply PATH --wait`` on the live loop: refused beside a running coordinator, without one (the command
publishes the outbox itself and reads AgentResponse off the topic), and a timeout naming the laggard."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support.brokers import Tansu
from tests.support.fleetstack import Stack
from tests.support.livefleet import ROOT


@pytest.fixture
def stack(
    kafka_broker: Tansu, docker_client: docker.DockerClient, stub_image: str, tmp_path: Path
) -> Iterator[Stack]:
    s = Stack(tmp_path, kafka_broker.bootstrap, f"w{uuid.uuid4().hex[:6]}.", docker_client, image=stub_image)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        s.cleanup()


def _apply(s: Stack, path: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "dsfleet.reconciler.cli", "apply", str(path), "--db", s.db, "--wait"]
    cmd += ["--topic-prefix", s.prefix, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)


def _edited(s: Stack, dest: Path, old: str, new: str) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(s.manifests, dest)
    path = dest / "instances" / "ccm.yaml"
    path.write_text(path.read_text().replace(old, new))
    return dest


def test_apply_wait_with_and_without_a_coordinator(stack: Stack, tmp_path: Path) -> None:
    stack.wait_converged(60)

    # a coordinator runs: it is the fleet's one writer (it would undo this apply at its next read of its own
    # directory), so apply refuses and says what to do instead
    edited = _edited(stack, tmp_path / "edit1", "motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.55")
    done = _apply(stack, edited, "--timeout", "40")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "a coordinator runs on this store" in done.stderr and "rolled out" not in done.stdout

    # no coordinator: apply publishes the outbox itself and reads the agents' reports off the topic
    assert stack.coordinator is not None
    stack.coordinator.stop()
    edited = _edited(stack, tmp_path / "edit2", "motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.5")
    wire = ["--bootstrap-servers", stack.bootstrap]
    done = _apply(stack, edited, *wire, "--timeout", "40")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "published 1 node config(s)" in done.stdout and "rolled out" in done.stdout

    # a node whose agent is down: the timeout names it and why
    node = stack.nodes[0]
    stack.agents[node].kill()
    edited = _edited(stack, tmp_path / "edit3", "motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.45")
    late = _apply(stack, edited, *wire, "--timeout", "3")
    assert late.returncode == 1, late.stdout + late.stderr
    assert "timed out after 3 s" in late.stderr
    assert f"{node}: at generation" in late.stderr
