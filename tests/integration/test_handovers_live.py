"""Ordered camera moves, live: a camera moved from node 1's instance to node 2's leaves node 1 only once node 2
runs it (or at the handover timeout), and stays on node 1 while node 2 says it cannot take it — against a real
broker (Tansu), the real Docker engine (the stand-in image), the real SQLite store and the coordinator and agents
as subprocesses.

One stack for the module (the example fleet, 2 nodes, 3 instances); every test starts from the same converged
baseline (``stack``: the coordinator with its default settings, both agents running, every secret planted, the
manifests as written), so each passes alone and in any order. The camera moved is ``gate-2``: ccm-gate (node 1,
cameras selected by zone) → traffic-parking (node 2), by changing its zone label to ``parking``.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import docker
import pytest

from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.metrics import metrics_text
from dsfleet.reconciler.cli.status import read_status
from dsfleet.reconciler.store import EventRecord
from tests.support.brokers import Tansu
from tests.support.fleetstack import Stack, container, plant_secrets
from tests.support.livefleet import wait_for

DEADLINE = 60.0
CAMERA = "gate-2"
SHORT_TIMEOUT = "DSFLEET_COORDINATOR__HANDOVER_TIMEOUT_SECONDS"
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def live(
    kafka_broker: Tansu,
    docker_client: docker.DockerClient,
    stub_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("handovers"),
        kafka_broker.bootstrap,
        f"h{uuid.uuid4().hex[:6]}.",
        docker_client,
        image=stub_image,
        coordinator_env={},  # the default handover timeout: the scenarios decide when a handover ends
    )
    s.start()
    try:
        s.mark_baseline(DEADLINE)
        yield s
    finally:
        s.stop()
        s.cleanup()


@pytest.fixture
def stack(live: Stack) -> Stack:
    """The module's stack back at the baseline: a coordinator started with a short handover timeout is replaced
    by one with the default settings, every secret is planted again, then the manifests are restored."""
    c = live.coordinator
    if c is not None and SHORT_TIMEOUT in c.env:
        c.stop()
    for node in live.nodes:
        plant_secrets(live.state_dir(node), live.canary)
    live.restore_baseline(DEADLINE)
    return live


# --- what a test reads -------------------------------------------------------------------------------------------


def status(s: Stack) -> Doc:
    """``dsfleet status -o json`` (in process)."""
    return read_status(s.db)


def wait_status(s: Stack, check: Callable[[Doc], bool], what: str, timeout: float = DEADLINE) -> Doc:
    last: list[Doc] = [{}]

    def probe() -> Doc | None:
        last[0] = status(s)
        return last[0] if check(last[0]) else None

    try:
        return wait_for(probe, timeout, what, 0.2)
    except AssertionError as exc:
        brief = {
            "handovers": last[0].get("handovers"),
            "instances": {i["name"]: (i["sync"], i["reason"]) for i in last[0].get("instances", ())},
        }
        raise AssertionError(f"{exc}; last status: {json.dumps(brief, indent=1)}\n{s.tails()}") from None


def wait_stack(s: Stack, check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``check``; on timeout the status's handovers and the processes' logs say why."""
    try:
        wait_for(check, timeout, what, 0.1)
    except AssertionError as exc:
        handovers = status(s).get("handovers")
        raise AssertionError(f"{exc}; handovers: {json.dumps(handovers, indent=1)}\n{s.tails()}") from None


def instances(doc: Doc) -> dict[str, Doc]:
    return {i["name"]: i for i in doc["instances"]}


def handover_of(doc: Doc, node: str) -> Doc | None:
    return next((h for h in doc.get("handovers") or () if h["node"] == node), None)


def handovers_since(s: Stack, after: int) -> list[EventRecord]:
    """The ``handover`` events after event ``after``, oldest first."""
    with s.store() as store:
        return sorted((e for e in store.events(limit=1000) if e.id > after and e.kind == "handover"), key=_id)


def _id(e: EventRecord) -> int:
    return e.id


def last_event_id(s: Stack) -> int:
    with s.store() as store:
        newest = store.events(limit=1)
    return newest[0].id if newest else 0


def generation(s: Stack, node: str) -> int:
    return int(s.desired()[node]["generation"])


def handover_gauge(s: Stack, state: str) -> float:
    """``dsfleet_camera_handovers{state=...}`` as ``/metrics`` shows it."""
    ctx = ApiContext(db=s.db)
    try:
        text = metrics_text(ctx)[0].decode()
    finally:
        ctx.close()
    line = f'dsfleet_camera_handovers{{state="{state}"}} '
    return next(float(x.removeprefix(line)) for x in text.splitlines() if x.startswith(line))


def sources_of(s: Stack, node: str, instance: str) -> str:
    """The source list the agent of ``node`` rendered for a ccm instance (secrets filled in: read, not printed)."""
    return (s.state_dir(node) / "instances" / instance / "source_list.json").read_text()


def names_camera(text: str) -> bool:
    return f"/{CAMERA}/main" in text


def started_at(s: Stack, instance: str) -> tuple[str, str]:
    c = container(s.client, instance)
    assert c is not None, instance
    c.reload()
    return c.id, c.attrs["State"]["StartedAt"]


def move_camera(s: Stack) -> tuple[int, int]:
    """Move the camera to node 2's instance; returns the generations stored before (node 1, node 2)."""
    n1, n2 = s.nodes
    before = generation(s, n1), generation(s, n2)
    s.move_camera(CAMERA, "parking")
    wait_for(
        lambda: generation(s, n1) > before[0] and generation(s, n2) > before[1],
        20,
        "the move stored for both nodes",
        0.1,
    )
    return before


def runs_camera_on_target(s: Stack) -> bool:
    """Node 2's agent reports its instance running the desired config (the one with the camera)."""
    n2 = s.nodes[1]
    parking = s.instance_names()[2]
    desired = next(i for i in s.desired()[n2]["instances"] if i["name"] == parking)
    with s.store() as store:
        rows = {r["instance"]: r for r in store.observed_details(n2)}
    row = rows.get(parking)
    return row is not None and row["state"] == "running" and row["config_hash"] == desired["configHash"]


# --- (a) the target is down: the source keeps the camera until the target runs it -------------------------------


def test_a_camera_leaves_its_node_only_once_the_target_runs_it(stack: Stack) -> None:
    gate, _lobby, parking = stack.instance_names()
    n1, n2 = stack.nodes
    assert names_camera(sources_of(stack, n1, gate))
    running = started_at(stack, gate)
    mark = last_event_id(stack)
    stack.agents[n2].terminate()
    move_camera(stack)

    doc = wait_status(
        stack,
        lambda d: (h := handover_of(d, n1)) is not None and h["state"] == "waiting" and bool(h["reason"]),
        "the handover waiting for node 2",
    )
    held = handover_of(doc, n1)
    assert held is not None
    assert held["moves"] == [{"camera": CAMERA, "fromInstance": gate, "toNode": n2, "toInstance": parking}]
    assert held["summary"].startswith(f"camera {CAMERA} moving to {n2}/{parking}: waiting for {n2}")
    assert "released at" in held["summary"] and "at the latest" in held["summary"]
    source = instances(doc)[gate]
    assert source["sync"] == "Progressing", source
    assert f"camera {CAMERA} moving to {n2}/{parking}" in source["reason"]
    assert doc["outbox"]["held"] == 1
    assert handover_gauge(stack, "waiting") == 1.0
    assert [e.message.split(":", 1)[0] for e in handovers_since(stack, mark)] == ["started"]
    # node 1 was sent nothing: it still ingests the camera, in the same container
    assert names_camera(sources_of(stack, n1, gate))
    assert started_at(stack, gate) == running

    stack.start_agent(n2)
    wait_stack(stack, lambda: not names_camera(sources_of(stack, n1, gate)), "node 1 dropping the camera")
    assert runs_camera_on_target(stack), "node 1 released before node 2 ran the camera"
    stack.wait_converged(DEADLINE)
    doc = wait_status(
        stack,
        lambda d: not d["handovers"] and all(i["sync"] == "Synced" for i in d["instances"]),
        "the handover done and every instance Synced",
    )
    assert doc["outbox"]["held"] == 0
    assert handover_gauge(stack, "waiting") == 0.0
    events = handovers_since(stack, mark)
    assert [e.message.split(":", 1)[0] for e in events] == ["started", "done"]
    assert (
        events[-1].node == n1 and f"camera {CAMERA} from {n1}/{gate} to {n2}/{parking}" in events[-1].message
    )
    assert any(e["kind"] == "handover" and e["message"].startswith("done:") for e in doc["events"])


# --- (b) the target lacks the camera's secret: blocked, the source keeps it -------------------------------------


def test_a_target_without_the_secret_blocks_the_move_and_the_source_keeps_it(stack: Stack) -> None:
    gate, _lobby, parking = stack.instance_names()
    n1, n2 = stack.nodes
    running = started_at(stack, gate)
    mark = last_event_id(stack)
    shutil.rmtree(stack.state_dir(n2) / "secrets" / CAMERA)
    move_camera(stack)

    doc = wait_status(
        stack,
        lambda d: (h := handover_of(d, n1)) is not None and h["state"] == "blocked",
        "the handover blocked",
    )
    held = handover_of(doc, n1)
    assert held is not None
    assert held["reason"] == f"secret {CAMERA} missing on {n2}"
    assert f"blocked: secret {CAMERA} missing on {n2}" in held["summary"]
    assert handover_gauge(stack, "blocked") == 1.0
    source = instances(doc)[gate]
    assert source["sync"] == "OutOfSync", source
    assert f"secret {CAMERA} missing on {n2}" in source["reason"]
    events = handovers_since(stack, mark)
    assert [e.message.split(":", 1)[0] for e in events] == ["started", "blocked"]
    assert f"secret {CAMERA} missing on {n2}" in events[-1].message
    # node 1 keeps ingesting it, in the same container
    assert names_camera(sources_of(stack, n1, gate))
    assert started_at(stack, gate) == running
    assert parking in instances(doc)


# --- (c) a short timeout and the target down: released at the timeout -------------------------------------------


def test_the_source_is_released_at_the_timeout_when_the_target_stays_silent(stack: Stack) -> None:
    gate, _lobby, _parking = stack.instance_names()
    n1, n2 = stack.nodes
    assert stack.coordinator is not None
    stack.coordinator.stop()
    stack.start_coordinator({SHORT_TIMEOUT: "4"})
    mark = last_event_id(stack)
    stack.agents[n2].terminate()
    move_camera(stack)

    wait_stack(
        stack, lambda: not names_camera(sources_of(stack, n1, gate)), "node 1 dropping it at the timeout"
    )
    events = handovers_since(stack, mark)
    assert [e.message.split(":", 1)[0] for e in events] == ["started", "timed out"], [
        e.message for e in events
    ]
    assert f"{n2}" in events[-1].message and "did not report running it by the deadline" in events[-1].message
    assert events[-1].at - events[0].at >= timedelta(
        seconds=3
    )  # not before the timeout (4 s after the change)
    assert not runs_camera_on_target(stack)
    doc = wait_status(stack, lambda d: not d["handovers"], "no handover left")
    assert any(e["kind"] == "handover" and e["message"].startswith("timed out:") for e in doc["events"])
    assert doc["outbox"]["held"] == 0
