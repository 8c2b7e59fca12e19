"""An instance's log, end to end on a real broker: ``GET /api/v1/instances/{name}/logs`` of a coordinator
(``--http``, the replies routed by its ingest) and of ``dsfleet serve`` (its own reader of the AgentResponse
topic) sends an AgentCommand ``logs`` to the instance's node and answers with the agent's AgentLogs, redacted
again; 404/409/422/504; ``dsfleet logs`` prints it, and ``--follow`` prints each new line once until Ctrl-C. The
last test runs the real agents on the real engine.

Elsewhere the agent is a small stand-in that answers ``logs`` commands on the real broker with lines that still carry
credentials (as if the host had failed to mask them): the coordinator side must mask them on its own.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from dsfleet.plumbing.signing import generate_key
from dsfleet.reconciler.cli.main import main
from dsfleet.schemas.wire import AgentCommand
from tests.support.apiserver import ServerProc
from tests.support.brokers import Tansu, free_port
from tests.support.fleetstack import Stack
from tests.support.keys import enroll
from tests.support.livefleet import ROOT, CoordinatorProc, copy_fleet, stop_process, wait_for
from tests.support.logagents import LogAgent

SECRET = "hunter2-Canary"
NODE_KEY = generate_key()
"""The key of the stand-in agent of gpu-node-1 (enrolled in each test's store before its coordinator starts)."""
LINES = (
    "2026-01-01T12:00:00.000000001Z starting pipeline",
    f"2026-01-01T12:00:01.5Z connecting rtsp://admin:{SECRET}@10.0.0.5/main",
    f"2026-01-01T12:00:02Z login password={SECRET} ok",
    "2026-01-01T12:00:03.250Z **PERF:  30.01 (29.87)",
)

UNPLACED = """\
apiVersion: dsfleet/v1
kind: DsInstance
metadata:
  name: ccm-spare
spec:
  image: nvcr.io/nvidia/deepstream:7.0-triton-multiarch
  gpu: 0
  layout: ccm
  cameras: []
  profile: ccm-faceid
  app:
    appType: NORMAL
    faceRawMetaTopic: RawFaceMeta
    motRawMetaTopic: RawMotMeta
    visualTopic: RawImage
    kafkaConnectionStr: 127.0.0.1:9092
    streammux:
      width: 1920
      height: 1080
      batch-size: auto
"""


def _coordinator(fleet: Path, db: str, broker: Tansu, prefix: str, log: Path) -> ServerProc:
    return ServerProc(
        [
            "coordinator",
            "--manifests",
            str(fleet),
            "--db",
            db,
            "--bootstrap-servers",
            broker.bootstrap,
            "-X",
            "fetch.wait.max.ms=10",
            "--topic-prefix",
            prefix,
            "--partitions",
            "3",
        ],
        log,
    )


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    manifests = copy_fleet(tmp_path / "manifests")
    (manifests / "instances" / "spare.yaml").write_text(UNPLACED)
    return manifests


@pytest.fixture
def coordinator(fleet: Path, kafka_broker: Tansu, topic_prefix: str, tmp_path: Path) -> Iterator[ServerProc]:
    db = f"sqlite:///{tmp_path / 'state.db'}"
    enroll(
        db, "gpu-node-1", NODE_KEY
    )  # the stand-in agent's key, enrolled before the coordinator reads the keys
    server = _coordinator(fleet, db, kafka_broker, topic_prefix, tmp_path / "c.log").start()
    try:
        with server.client() as api:
            wait_for(
                lambda: any(r["accepted"] for r in api.get("/api/v1/revisions").json()),
                30,
                "the first revision",
            )
        yield server
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.text()


def _whole(_command: AgentCommand) -> str:
    return "\n".join(LINES) + "\n"


def test_the_log_comes_from_the_node_redacted_and_the_cli_prints_it(
    coordinator: ServerProc, kafka_broker: Tansu, topic_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = LogAgent(kafka_broker.bootstrap, topic_prefix, "gpu-node-1", _whole, key=NODE_KEY)
    try:
        with coordinator.client() as api:
            asked = datetime.now(UTC)
            resp = api.get("/api/v1/instances/ccm-gate/logs", params={"tail": 50, "since": "10m"})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert (body["instance"], body["node"], body["truncated"], body["error"]) == (
                "ccm-gate",
                "gpu-node-1",
                False,
                None,
            )
            assert SECRET not in resp.text
            assert "rtsp://***@10.0.0.5/main" in body["text"] and "password=*** ok" in body["text"]
            assert body["text"].splitlines()[0] == LINES[0] and body["text"].splitlines()[3] == LINES[3]
            [command] = agent.commands
            assert (command.node, command.instance, command.tail) == ("gpu-node-1", "ccm-gate", 50)
            assert command.requestId == body["requestId"]
            assert command.since is not None
            since = datetime.fromisoformat(command.since)
            assert timedelta(minutes=9) < asked - since < timedelta(minutes=11)

            missing = api.get("/api/v1/instances/no-such/logs")
            assert missing.status_code == 404 and "not found" in missing.json()["error"]["message"]
            spare = api.get("/api/v1/instances/ccm-spare/logs")
            assert spare.status_code == 409 and "not placed" in spare.json()["error"]["message"]
            bad = api.get("/api/v1/instances/ccm-gate/logs", params={"since": "yesterday"})
            assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["loc"] == ["query", "since"]
            assert len(agent.commands) == 1  # refused requests never reach a node

        assert main(["logs", "ccm-gate", "--api", coordinator.url, "--tail", "10"]) == 0
        out = capsys.readouterr()
        assert SECRET not in out.out + out.err
        assert out.out.splitlines() == [
            line.replace(SECRET, "***").replace("admin:***", "***") for line in LINES
        ]
        assert main(["logs", "no-such", "--api", coordinator.url]) == 2
        assert "instance 'no-such' not found" in capsys.readouterr().err
    finally:
        agent.close()


def test_a_node_that_does_not_answer_is_504(coordinator: ServerProc) -> None:
    with coordinator.client() as api:
        started = datetime.now(UTC)
        resp = api.get("/api/v1/instances/traffic-parking/logs")
        took = (datetime.now(UTC) - started).total_seconds()
    assert resp.status_code == 504
    assert "node 'gpu-node-2' did not answer within 10 s" in resp.json()["error"]["message"]
    assert 9.0 < took < 15.0


def test_serve_reads_the_replies_itself(
    coordinator: ServerProc, fleet: Path, kafka_broker: Tansu, topic_prefix: str, tmp_path: Path
) -> None:
    db = next(a for a in coordinator.args if a.startswith("sqlite:///"))
    serve = ServerProc(
        [
            "serve",
            "--manifests",
            str(fleet),
            "--db",
            db,
            "--bootstrap-servers",
            kafka_broker.bootstrap,
            "-X",
            "fetch.wait.max.ms=10",
            "--topic-prefix",
            topic_prefix,
        ],
        tmp_path / "serve.log",
    ).start()
    agent = LogAgent(kafka_broker.bootstrap, topic_prefix, "gpu-node-1", _whole, key=NODE_KEY)
    try:
        with serve.client() as api:
            for _ in range(2):  # the reader starts on the first request and serves the next ones
                resp = api.get("/api/v1/instances/ccm-lobby/logs", params={"tail": 3})
                assert resp.status_code == 200, resp.text
                assert resp.json()["node"] == "gpu-node-1" and SECRET not in resp.text
        assert [(c.instance, c.tail) for c in agent.commands] == [("ccm-lobby", 3), ("ccm-lobby", 3)]
    finally:
        agent.close()
        assert serve.stop() == 0
    assert "Traceback" not in serve.text()


@pytest.mark.parametrize("timed", [True, False], ids=["lines-with-times", "lines-without-times"])
def test_follow_prints_each_new_line_once_until_ctrl_c(
    coordinator: ServerProc, kafka_broker: Tansu, topic_prefix: str, tmp_path: Path, timed: bool
) -> None:
    """The stand-in node logs one more line per request. With times, it answers ``since`` by whole seconds, as
    Docker does (lines of the same second come back); without (as the agent sends them), it answers lines after
    ``since`` by its own clock, which the CLI asks from a little before its previous reply (lines come back).
    Either way the CLI prints every line exactly once, in order."""
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    written: list[tuple[datetime, str]] = []

    def growing(command: AgentCommand) -> str:
        at = start + timedelta(milliseconds=400 * len(written)) if timed else datetime.now(UTC)
        stamp = f"{at.isoformat().replace('+00:00', 'Z')} " if timed else ""
        written.append((at, f"{stamp}line {len(written)} token={SECRET}"))
        since = datetime.fromisoformat(command.since) if command.since else None
        if since is not None and timed:
            return "\n".join(line for at, line in written if at >= since.replace(microsecond=0))
        return "\n".join(line for at, line in written if since is None or at > since)

    agent = LogAgent(kafka_broker.bootstrap, topic_prefix, "gpu-node-1", growing, key=NODE_KEY)
    out, err = tmp_path / "follow.out", tmp_path / "follow.err"
    with out.open("wb") as fh, err.open("wb") as fe:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dsfleet.reconciler.cli",
                "logs",
                "ccm-gate",
                "--follow",
                "--interval",
                "0.2",
                "--api",
                coordinator.url,
            ],
            stdout=fh,
            stderr=fe,
            cwd=ROOT,
        )
    try:

        def eight() -> list[str] | None:
            text = out.read_text().splitlines()
            return text if len(text) >= 8 else None

        lines = wait_for(eight, 60, "8 followed lines")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0, err.read_text()
        assert "Traceback" not in err.read_text()
        final = out.read_text().splitlines()
        assert final[: len(lines)] == lines
        numbers = [line.split()[2 if timed else 1] for line in final]
        assert numbers == [str(n) for n in range(len(final))]
        assert all(line.endswith("token=***") for line in final)
        assert len(agent.commands) >= len(final)
        assert agent.commands[0].since is None and all(c.since for c in agent.commands[1:])
    finally:
        with contextlib.suppress(AssertionError):
            stop_process(proc, 5, "dsfleet logs --follow")
        agent.close()


def test_the_real_agent_answers_from_the_real_engine_redacted(
    kafka_broker: Tansu, docker_client: docker.DockerClient, stub_image: str, tmp_path: Path
) -> None:
    """The example fleet on the stub image with real ``dsfleet-agent run`` processes and the Docker engine: lines
    written into a running container's log (a URL with the camera's user and password, a ``password=`` pair, the
    bare password the agent knows from its secret store) come back through ``GET .../logs`` and ``dsfleet logs``
    with every credential masked, beside the container's own ``**PERF`` lines."""
    stack = Stack(
        tmp_path, kafka_broker.bootstrap, f"l{uuid.uuid4().hex[:6]}.", docker_client, image=stub_image
    )
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    stack.coordinator = CoordinatorProc(
        stack.manifests,
        stack.db,
        stack.bootstrap,
        stack.prefix,
        tmp_path / "coordinator.log",
        extra=["--http", f"127.0.0.1:{port}"],
        env={"PYTHONUNBUFFERED": "1"},
    ).start()
    try:
        for node in stack.nodes:
            stack.start_agent(node)
        stack.wait_converged(90)
        gate = stack.names["ccm-gate"]
        known = f"{stack.canary}-gate-1"  # the password of camera gate-1 in the agent's secret store
        other = "Other-Pa55word"
        lines = [
            f"ERROR: cannot open rtsp://viewer:{known}@10.0.0.5:554/main",
            f"login to kafka with password={other} failed",
            f"the stream key is {known}",
        ]
        script = "; ".join(f"echo '{line}'" for line in lines)
        container = docker_client.containers.get(f"dsfleet-{gate}")
        done = container.exec_run(["/bin/sh", "-c", f"({script}) > /proc/1/fd/1"])
        assert done.exit_code == 0, done.output

        def reply() -> dict[str, Any] | None:
            resp = httpx.get(f"{api}/api/v1/instances/{gate}/logs", params={"tail": 100}, timeout=30)
            assert resp.status_code == 200, resp.text
            body: dict[str, Any] = resp.json()
            return body if "the stream key is" in body["text"] else None

        body = wait_for(reply, 30, "the injected lines in the reply", interval=0.5)
        text = body["text"]
        assert known not in text and other not in text and stack.canary not in text
        assert "ERROR: cannot open rtsp://***@10.0.0.5:554/main" in text
        assert "login to kafka with password=*** failed" in text
        assert "the stream key is ***" in text  # only the agent knows this value: masked on the host
        assert "**PERF:" in text and body["node"] == stack.names["gpu-node-1"] and body["error"] is None

        out = subprocess.run(
            [sys.executable, "-m", "dsfleet.reconciler.cli", "logs", gate, "--api", api, "--tail", "20"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "the stream key is ***" in out.stdout and stack.canary not in out.stdout + out.stderr
        assert len(out.stdout.splitlines()) <= 20
        stack.check_invariants(60)
    finally:
        stack.stop()
        stack.cleanup()
