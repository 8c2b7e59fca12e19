"""Progressive rollouts, live: six nodes, waves [1 node, 50 %, the rest], each wave gated on the health of the
instances it changed — against a real broker (Tansu), the real Docker engine (the stand-in image), the real
SQLite store, git, and the coordinator and six agents as subprocesses.

- a good change (a new tag of the stand-in image on every node: a recreate of every instance) rolls through every
  wave, each wave released only after the one before passed its gate for the soak time (the release times prove
  the order); ``dsfleet rollout status`` shows it;
- a bad change (the stand-in crash-loops: ``STUB_CRASH_AFTER``) is stopped in wave 1: the changed node returns to
  the good config automatically within the gate deadline + 10 s, the other five never receive it, the rollout is
  aborted with the reason, and auto sync stays pinned while the bad commit is HEAD (past two re-reads of the
  source); a new commit unpins and applies;
- a cordoned node is left out of a rollout and gets the change once uncordoned;
- ``dsfleet rollout pause`` and ``abort`` reach the running coordinator through the store.

The scenarios run in order on one fleet (each starts from the build the one before left running).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from dsfleet.reconciler.cli.status import read_status
from dsfleet.reconciler.planning.rollouts import NodeState, Rollout, RolloutState
from dsfleet.reconciler.store import Store
from dsfleet.reconciler.store.values import ROLLBACK_PIN, ROLLOUT
from dsfleet.schemas.labels import LABEL_NODE
from tests.support.brokers import Tansu
from tests.support.kafkafleet import AgentProcess, agent_args
from tests.support.keys import coordinator_key, enroll_agent
from tests.support.livefleet import ROOT, CoordinatorProc, wait_for

SOAK, DEADLINE = 2, 20
NODES = 6


def _fleet(root: Path, p: str, image: str) -> None:
    docs = []
    for i in range(1, NODES + 1):
        docs.append(
            f"""apiVersion: dsfleet/v1
kind: Node
metadata:
  name: {p}-n{i}
  labels:
    site: s{(i - 1) // 3}
spec:
  capacity: 4
  gpus: [0]
  image: {image}
---
apiVersion: dsfleet/v1
kind: Camera
metadata:
  name: {p}-c{i}
  labels:
    zone: {p}-z{i}
spec:
  cameraId: "{i}"
  url: file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4
  encoding: h264
  width: 1920
  height: 1080
---
apiVersion: dsfleet/v1
kind: DsInstance
metadata:
  name: {p}-t{i}
spec:
  node: {p}-n{i}
  layout: deepstream-app
  networkMode: none
  cameraSelector:
    matchLabels:
      zone: {p}-z{i}
  profile: traffic
  env:
    BUILD: v1
  app:
    application:
      enable-perf-measurement: true
      perf-measurement-interval-sec: 1
    streammux:
      width: 1920
      height: 1080
      live-source: false
    sinks:
      - type: 1
        sync: 0
    file-loop: true
"""
        )
    (root / "fleet.yaml").write_text("---\n".join(docs))
    shutil.copy(ROOT / "manifests" / "profiles" / "traffic.yaml", root / "traffic.yaml")
    (root / "policy.yaml").write_text(
        f"""# the fleet's policy: images allowed, and how recreates roll out
apiVersion: dsfleet/v1
kind: Policy
metadata:
  name: fleet
spec:
  allowedImages:
    - {image}
    - {image.rsplit(":", 1)[0]}:rollout-*
  rollout:
    governs: [recreate]
    waves:
      - name: canary
        nodes: 1
      - name: half
        nodes: "50%"
      - name: rest
    maxUnavailable: 3
    gate:
      soakSeconds: {SOAK}
      deadlineSeconds: {DEADLINE}
    abort:
      failures: 1
"""
    )


def _git(work: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=ops", "-c", "user.email=ops@example.invalid", *args],
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()


@dataclass
class Fleet:
    root: Path
    prefix: str
    bootstrap: str
    client: docker.DockerClient
    image: str
    coordinator: CoordinatorProc | None = None
    agents: list[AgentProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.manifests = self.root / "manifests"
        self.manifests.mkdir()
        _fleet(self.manifests, self.prefix, self.image)
        _git(self.manifests, "init", "-q", "-b", "main")
        self.commit("the fleet")
        self.db = f"sqlite:///{self.root / 'state.db'}"
        self.key = coordinator_key(self.db)
        self.nodes = [f"{self.prefix}-n{i}" for i in range(1, NODES + 1)]

    def commit(self, message: str, old: str = "", new: str = "", *, images: str | None = None) -> str:
        path = self.manifests / "fleet.yaml"
        if old:
            path.write_text(path.read_text().replace(old, new))
        if images:
            path.write_text(path.read_text().replace(f"  image: {self.image}\n", f"  image: {images}\n"))
        _git(self.manifests, "add", "-A")
        _git(self.manifests, "commit", "-qm", message)
        return _git(self.manifests, "rev-parse", "HEAD")

    def start(self) -> None:
        self.coordinator = CoordinatorProc(
            self.manifests,
            self.db,
            self.bootstrap,
            self.prefix,
            self.root / "coordinator.log",
            extra=["--resync-grace", "3"],
            env={"PYTHONUNBUFFERED": "1", "DSFLEET_COORDINATOR__DIRECTORY_RESYNC_SECONDS": "1"},
        ).start()
        for node in self.nodes:
            state = self.root / "agents" / node
            enroll_agent(self.db, node, state)
            args = agent_args(self.bootstrap, self.prefix, state, node, trust=[self.key])
            self.agents.append(AgentProcess(args, self.root / f"agent-{node}.log").start())

    def stop(self) -> None:
        for agent in self.agents:
            agent.terminate(15)
        if self.coordinator is not None:
            with contextlib.suppress(AssertionError):
                self.coordinator.stop()
        api = self.client.api
        for node in self.nodes:
            for c in api.containers(all=True, filters={"label": f"{LABEL_NODE}={node}"}):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_container(c["Id"], force=True)
            for vol in (api.volumes(filters={"label": f"{LABEL_NODE}={node}"}) or {}).get("Volumes") or []:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    api.remove_volume(vol["Name"], force=True)

    def rollout(self) -> Rollout | None:
        with Store.open(self.db, readonly=True) as s:
            return Rollout.from_json(s.sync_state(ROLLOUT))

    def running(self) -> dict[str, str | None]:
        """node → the BUILD env value of its instance's running container (None: none running)."""
        out: dict[str, str | None] = {}
        for i, node in enumerate(self.nodes, 1):
            try:
                c = self.client.containers.get(f"dsfleet-{self.prefix}-t{i}")
            except docker.errors.NotFound:
                out[node] = None
                continue
            env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"] or [] if "=" in e)
            out[node] = env.get("BUILD") if c.status == "running" else None
        return out

    def converged_on(self, build: str) -> bool:
        if set(self.running().values()) != {build}:
            return False
        with Store.open(self.db, readonly=True) as s:
            configs = s.latest_node_configs()
            observed = {r["node"]: r for r in s.observed_details()}
        return all(
            (row := observed.get(n)) is not None
            and row["state"] == "running"
            and row["config_hash"] == configs[n].payload["instances"][0]["configHash"]
            for n in self.nodes
        )

    def tails(self) -> str:
        assert self.coordinator is not None
        return self.coordinator.text()[-6000:]


@pytest.fixture(scope="module")
def fleet(
    kafka_broker: Tansu,
    docker_client: docker.DockerClient,
    stub_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    f = Fleet(
        tmp_path_factory.mktemp("rollouts"),
        f"r{uuid.uuid4().hex[:6]}",
        kafka_broker.bootstrap,
        docker_client,
        stub_image,
    )
    # the second tag of the stand-in image a good image change rolls out (removed at the end: only the tag)
    repository = stub_image.rsplit(":", 1)[0]
    docker_client.images.get(stub_image).tag(repository, tag=f"rollout-{f.prefix}")
    try:
        f.start()
        wait_for(lambda: f.converged_on("v1"), 90, "the six nodes running v1", interval=0.3)
        yield f
    finally:
        f.stop()
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(f"{repository}:rollout-{f.prefix}", noprune=True)


def _cli(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", *args, "--db", fleet.db],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_a_good_change_rolls_through_every_wave_in_order(fleet: Fleet) -> None:
    # --watch before any rollout: it waits for one, prints it on every change, exits 0 when it succeeded
    watch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dsfleet.reconciler.cli",
            *("rollout", "status", "--watch", "--timeout", "150"),
            "--db",
            fleet.db,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    # a new image (and a new build label) for every node: each instance is recreated, so the rollout governs it
    tagged = f"{fleet.image.rsplit(':', 1)[0]}:rollout-{fleet.prefix}"
    fleet.commit("image rollout-*, BUILD v2", "BUILD: v1", "BUILD: v2", images=tagged)

    def held_in_status() -> str | None:
        doc = read_status(fleet.db)
        rollout = doc.get("rollout") or {}
        reasons = [
            n["reason"] for n in doc["nodes"] if "held by the rollout of revision" in (n["reason"] or "")
        ]
        held = "5 configs held back by a rollout until their wave" in doc["outbox"]["summary"]
        progressing = rollout.get("state") == "progressing" and rollout.get("revision") == 2
        return rollout.get("summary") if progressing and len(reasons) == 5 and held else None

    summary = wait_for(held_in_status, 30, "five nodes held by the rollout in status", interval=0.1)
    assert summary.startswith("ROLLOUT of revision 2 progressing, wave canary"), summary
    done = wait_for(
        lambda: (
            (r := fleet.rollout()) is not None
            and r.state in (RolloutState.SUCCEEDED, RolloutState.ABORTED)
            and r
        ),
        150,
        "the rollout to end",
        interval=0.5,
    )
    assert done.state is RolloutState.SUCCEEDED, f"{done.reason}\n{fleet.tails()}"
    assert done.waves == ("canary", "half", "rest")
    by_wave: dict[int, list[Any]] = {}
    for p in done.nodes:
        assert p.state is NodeState.PASSED and p.released_at is not None and p.healthy_since is not None, p
        by_wave.setdefault(p.wave, []).append(p)
    assert [len(by_wave[w]) for w in range(3)] == [1, 3, 2]
    for wave in (1, 2):
        before = by_wave[wave - 1]
        passed = max(p.healthy_since for p in before) + timedelta(seconds=SOAK)
        first = min(p.released_at for p in by_wave[wave])
        assert first >= passed, f"wave {wave} released at {first}, before wave {wave - 1} passed at {passed}"
    wait_for(lambda: fleet.converged_on("v2"), 30, "every node on v2")
    images = {
        fleet.client.containers.get(f"dsfleet-{fleet.prefix}-t{i}").attrs["Config"]["Image"]
        for i in range(1, 7)
    }
    assert images == {tagged}, images
    out, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    assert out.count("rollout of revision 2") >= 3 and "SUCCEEDED" in out, out  # printed on every change
    shown = _cli(fleet, "rollout", "status")
    assert shown.returncode == 0, shown.stderr
    assert "SUCCEEDED" in shown.stdout and "wave canary: 1 node" in shown.stdout, shown.stdout


def test_a_crash_looping_change_stops_in_wave_one_and_rolls_back_pinned(fleet: Fleet) -> None:
    wait_for(lambda: fleet.converged_on("v2"), 60, "every node on v2")
    started = time.monotonic()
    bad = fleet.commit("BUILD v3, crash-looping", "BUILD: v2", "BUILD: v3\n    STUB_CRASH_AFTER: '1'")
    seen: set[str] = set()

    def ended() -> Rollout | None:
        for node, build in fleet.running().items():
            if build == "v3":
                seen.add(node)
        r = fleet.rollout()
        return r if r is not None and r.state is RolloutState.ABORTED and r.revision > 0 else None

    aborted = wait_for(ended, DEADLINE + 60, "the rollout aborted", interval=0.2)
    assert "failed" in aborted.reason, aborted.reason
    canary = [p for p in aborted.nodes if p.wave == 0]
    assert len(canary) == 1 and canary[0].state is NodeState.FAILED, canary
    assert all(p.released_at is None for p in aborted.nodes if p.wave > 0), aborted.nodes

    # the canary is back on v2 within the gate deadline + 10 s of the commit; the other five never ran v3
    def back() -> bool:
        ended()
        return fleet.converged_on("v2")

    wait_for(back, DEADLINE + 10, "the canary back on v2", interval=0.2)
    assert time.monotonic() - started < DEADLINE + 10, "the canary took longer than the deadline + 10 s"
    assert seen <= {canary[0].node}, f"v3 reached {sorted(seen)}"
    with Store.open(fleet.db, readonly=True) as s:
        pin = s.sync_state(ROLLBACK_PIN)
        revisions = s.revisions(limit=5)
        events = [e.message for e in s.events(limit=200) if e.kind == "rollout"]
    assert pin is not None and pin["commit"] == bad, pin
    assert revisions[0].source == "rollback" and "aborted" in (revisions[0].git_message or "")
    assert any("failed" in m and "crash loop" in m for m in events), events
    text = _cli(fleet, "status").stdout.splitlines()
    assert text[0].startswith("PINNED: the fleet rolled back to revision 2"), text[:3]
    assert text[1].startswith("ROLLOUT of revision 3 ABORTED"), text[:3]
    history = _cli(fleet, "history").stdout.splitlines()
    row = next(line for line in history if line.split()[:1] == ["3"])
    assert " failed " in row and "rollout aborted: 1 of 1 released nodes failed" in row, history
    # held while the bad commit is HEAD: past two re-reads of the source (every second), nothing is applied
    newest = revisions[0].id
    with Store.open(fleet.db, readonly=True) as s:
        wait_for(
            lambda: (
                fleet.coordinator is not None and fleet.coordinator.text().count("auto sync still held") >= 2
            ),
            30,
            "two re-reads held by the pin",
        )
        assert s.revisions(limit=1)[0].id == newest
    assert fleet.converged_on("v2")
    # a new commit moves past the pin: it applies (and rolls out again)
    fleet.commit("BUILD v4", "BUILD: v3\n    STUB_CRASH_AFTER: '1'", "BUILD: v4")
    wait_for(lambda: fleet.converged_on("v4"), 120, "every node on v4", interval=0.5)
    with Store.open(fleet.db, readonly=True) as s:
        assert s.sync_state(ROLLBACK_PIN) is None


def test_a_cordoned_node_is_left_out_until_uncordoned(fleet: Fleet) -> None:
    wait_for(lambda: fleet.converged_on("v4"), 120, "every node on v4", interval=0.5)
    last = fleet.nodes[-1]
    before = fleet.rollout()
    assert before is not None
    done = _cli(fleet, "nodes", "cordon", last, "--reason", "disk swap")
    assert done.returncode == 0 and "cordoned" in done.stdout, done.stderr
    fleet.commit("BUILD v5", "BUILD: v4", "BUILD: v5")
    finished = wait_for(
        lambda: (
            (r := fleet.rollout()) is not None
            and r.revision > before.revision
            and r.state is RolloutState.SUCCEEDED
            and r
        ),
        120,
        "the rollout of v5 done without the cordoned node",
        interval=0.5,
    )
    progress = finished.progress(last)
    assert progress is not None and progress.state is NodeState.CORDONED, progress
    running = fleet.running()
    assert running[last] == "v4" and {b for n, b in running.items() if n != last} == {"v5"}, running
    doc = read_status(fleet.db)
    reason = next(n["reason"] for n in doc["nodes"] if n["name"] == last)
    assert "cordoned" in reason, reason
    done = _cli(fleet, "nodes", "uncordon", last)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: fleet.converged_on("v5"), 60, "the uncordoned node on v5", interval=0.3)


def test_pause_then_abort_by_command_returns_the_changed_node(fleet: Fleet) -> None:
    """The commands, through the store to the running coordinator: pause holds the next wave, abort rolls the
    changed node back and pins; the next commit lifts the pin and rolls out again."""
    wait_for(lambda: fleet.converged_on("v5"), 120, "every node on v5", interval=0.5)
    policy = fleet.manifests / "policy.yaml"
    policy.write_text(policy.read_text().replace(f"soakSeconds: {SOAK}", "soakSeconds: 60"))
    before = fleet.rollout()
    assert before is not None
    fleet.commit("BUILD v6, a long soak", "BUILD: v5", "BUILD: v6")
    wait_for(
        lambda: (r := fleet.rollout()) is not None and r.revision > before.revision and r.released and r,
        30,
        "the v6 canary released",
        interval=0.2,
    )
    paused = _cli(fleet, "rollout", "pause")
    assert paused.returncode == 0, paused.stderr
    r = wait_for(
        lambda: (r := fleet.rollout()) is not None and r.state is RolloutState.PAUSED and r, 15, "paused"
    )
    assert r.reason.startswith("paused by ") and len(r.released) == 1
    aborted = _cli(fleet, "rollout", "abort")
    assert aborted.returncode == 0, aborted.stderr
    r = wait_for(
        lambda: (r := fleet.rollout()) is not None and r.state is RolloutState.ABORTED and r, 15, "aborted"
    )
    assert r.reason.startswith("aborted by "), r.reason
    wait_for(lambda: fleet.converged_on("v5"), 60, "the canary back on v5", interval=0.3)
    again = _cli(fleet, "rollout", "promote")
    assert again.returncode == 1 and "no rollout is running" in again.stderr
    # the next commit (a short soak again) moves past the pin: v6 rolls out again, gated as before
    policy.write_text(policy.read_text().replace("soakSeconds: 60", f"soakSeconds: {SOAK}"))
    fleet.commit("a short soak again")
    wait_for(lambda: fleet.converged_on("v6"), 120, "every node on v6 after the unpin", interval=0.5)
