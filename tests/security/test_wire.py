"""Only the coordinator can change a host, only a host can speak for itself: forgeries on the bus, against a real
broker (Tansu), the real Docker engine (the stand-in image), the real SQLite store and the coordinator and agents
as subprocesses, with keys set up as an operator does (:mod:`tests.support.keys`).

One stack for the module (``live``: the example fleet, 2 nodes, 3 instances); every test starts from the same
converged baseline (``stack``), leaves what it changed for the next one's restore, and so passes alone and in any
order. What a test reads of the fleet is what ``dsfleet status -o json`` prints
(:func:`dsfleet.reconciler.cli.status.read_status`). Each forgery is one anyone who can produce to the broker can
make: a plain producer, no credentials, message shapes and hashes as valid as the coordinator's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest

from dsfleet.plumbing.kafka import Producer
from dsfleet.plumbing.signing import SigningKey, generate_key, load_or_create_key, sign_record
from dsfleet.reconciler.cli.status import read_status
from dsfleet.reconciler.store import Store
from dsfleet.schemas.nodeconfigs import build_node
from dsfleet.schemas.signatures import text_headers
from dsfleet.schemas.wire import (
    AgentCommand,
    AgentConfig,
    AgentInfo,
    AgentResponse,
    CommandKind,
    Topic,
    UpdateConfig,
    encode,
    partition_for,
    signed_fields_of,
    topic_name,
)
from tests.support.brokers import Tansu
from tests.support.dockerengine import RUN_ID, stub_instance
from tests.support.fleetstack import Stack, container
from tests.support.kafkafleet import AgentProcess, agent_args
from tests.support.keys import coordinator_env, sign_message
from tests.support.livefleet import (
    ROOT,
    CoordinatorProc,
    TopicReader,
    copy_fleet,
    kafka_client_config,
    now_iso,
    wait_for,
)

DEADLINE = 60.0
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def live(
    kafka_broker: Tansu,
    docker_client: docker.DockerClient,
    stub_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("wire"),
        kafka_broker.bootstrap,
        f"w{uuid.uuid4().hex[:6]}.",
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
def stack(live: Stack) -> Stack:
    """The module's stack back at its baseline: coordinator and agents running (with the coordinator's own key),
    the manifests as written, converged."""
    live.restore_baseline(DEADLINE)
    return live


# --- helpers -------------------------------------------------------------------------------------------------


def status(s: Stack) -> Doc:
    return read_status(s.db)


def wait_status(s: Stack, check: Callable[[Doc], bool], what: str, timeout: float = DEADLINE) -> Doc:
    last: list[Doc] = [{}]

    def probe() -> Doc | None:
        last[0] = status(s)
        return last[0] if check(last[0]) else None

    try:
        return wait_for(probe, timeout, what, 0.2)
    except AssertionError as exc:
        nodes = {n["name"]: (n["state"], n["rejections"]) for n in last[0].get("nodes", [])}
        raise AssertionError(f"{exc}; last nodes: {json.dumps(nodes)}\n{s.tails()}") from None


def edited(stack: Stack, node: str, threshold: str) -> tuple[Doc, Doc]:
    """``node``'s stored config before and after the ccm instance's MOT threshold became ``threshold`` (stored,
    and the fleet converged on it)."""
    old = stack.desired()[node]
    stack.edit("instances/ccm.yaml", "motConfidenceThreshold: 0.6", f"motConfidenceThreshold: {threshold}")
    wait_for(lambda: stack.desired()[node]["configHash"] != old["configHash"], 20, "the edit stored", 0.1)
    stack.wait_converged(DEADLINE)
    return old, stack.desired()[node]


def node_doc(doc: Doc, node: str) -> Doc:
    return next(n for n in doc["nodes"] if n["name"] == node)


def rejected_since(doc: Doc, node: str, reason: str, since: datetime) -> list[Doc]:
    """The rejections ``node``'s agent reports with ``reason`` that happened after ``since``."""
    return [
        r
        for r in node_doc(doc, node)["rejections"]
        if r["reason"] == reason and r["at"] and datetime.fromisoformat(r["at"]) >= since
    ]


def dropped(doc: Doc) -> dict[str, int]:
    return dict(doc["enrollment"]["droppedReports"]["byReason"])


def containers_of(s: Stack, node: str) -> dict[str, tuple[str, str]]:
    """Instance → (container id, start time) of every instance ``node`` runs."""
    out = {}
    for inst in s.desired()[node]["instances"]:
        c = container(s.client, inst["name"])
        assert c is not None, inst["name"]
        out[inst["name"]] = (c.id, c.attrs["State"]["StartedAt"])
    return out


def fleet_id(s: Stack) -> str:
    with s.store() as store:
        fid = store.fleet_id()
    assert fid
    return fid


def publish(
    s: Stack, topic: Topic, key: str | None, value: bytes | None, headers: dict[str, str] | None = None
) -> None:
    """Produce one record as anyone with access to the broker can (a plain client, no credentials)."""
    producer = Producer(kafka_client_config(s.bootstrap), client_id="test-forger")
    try:
        name = topic_name(topic, s.prefix)
        count = producer.partitions(name) or 1
        partition = partition_for(key, count) if key is not None else 0
        producer.send(name, key, value, headers=headers, partition=partition)
        assert producer.flush(10) == 0
    finally:
        producer.close(5)


def attacker_config(s: Stack, node: str, generation: int, *, payload_node: str | None = None) -> AgentConfig:
    """A config of valid shape with hashes recomputed: the gate instance replaced by the attacker's, every other
    instance of the node pruned."""
    forged = stub_instance(s.names["ccm-gate"], RUN_ID, image=s.image, env={"FORGED": "1"})
    nc = build_node(node, [forged])
    return AgentConfig(
        sent_at=now_iso(),
        node=payload_node or node,
        generation=generation,
        configHash=nc.configHash,
        instances=nc.instances,
        prune=True,
        fleet=fleet_id(s),
    )


def config_records(s: Stack, node: str, until: Callable[[list[Any]], bool]) -> list[Any]:
    """The AgentConfig records of ``node`` on the topic (read from the beginning until ``until`` holds)."""
    reader = TopicReader(s.bootstrap, s.prefix, Topic.AGENT_CONFIG)
    try:
        got = reader.wait(
            lambda rs: until([r for r in rs if r.key == node.encode() and r.value is not None]),
            20,
            f"AgentConfig records of {node}",
        )
        return [r for r in got if r.key == node.encode() and r.value is not None]
    finally:
        reader.close()


def assert_untouched(s: Stack, node: str, before: dict[str, tuple[str, str]], desired_hash: str) -> None:
    """The node's containers are the very ones (same ids, same start times) and its agent still reports the
    desired config applied."""
    assert containers_of(s, node) == before
    n = node_doc(status(s), node)
    assert n["sync"] == "Synced", n
    assert s.desired()[node]["configHash"] == desired_hash


# --- AgentConfig: only the coordinator's key, for this node, newer than the last applied ----------------------


def test_a_forged_config_unsigned_or_signed_by_another_key_is_refused(stack: Stack) -> None:
    """On the code before signing, either record replaced the gate container by the attacker's and pruned the
    lobby one (the hashes were the only check)."""
    node = stack.nodes[0]
    since = datetime.now(UTC) - timedelta(seconds=1)
    before = containers_of(stack, node)
    desired = stack.desired()[node]
    forged = attacker_config(stack, node, int(desired["generation"]) + 5)
    value = encode(forged)
    publish(stack, Topic.AGENT_CONFIG, node, value)  # no signature
    stranger = generate_key()
    publish(
        stack, Topic.AGENT_CONFIG, node, value, sign_record(stranger, signed_fields_of(forged), node, value)
    )
    wait_status(
        stack,
        lambda d: bool(
            rejected_since(d, node, "unsigned", since) and rejected_since(d, node, "unknown-key", since)
        ),
        "both forged configs reported refused",
    )
    assert_untouched(stack, node, before, desired["configHash"])
    # the same, as the operator reads it
    shown = subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", "status", "--db", stack.db, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert shown.returncode in (0, 1), shown.stderr
    reasons = {r["reason"] for r in node_doc(json.loads(shown.stdout), node)["rejections"]}
    assert {"unsigned", "unknown-key"} <= reasons
    detail = next(
        r["detail"]
        for r in node_doc(json.loads(shown.stdout), node)["rejections"]
        if r["reason"] == "unknown-key"
    )
    assert stranger.id in detail and stack.key.id in detail  # names the key it saw and the one it trusts


def test_a_replayed_older_config_is_refused_even_with_its_generation_raised(stack: Stack) -> None:
    """The coordinator's own older record, replayed as it was (stale generation) and with its generation raised
    above the current one (the signature no longer matches). On the code before signing the raised replay rolled
    the node back to the older config."""
    node = stack.nodes[0]
    old, current = edited(stack, node, "0.45")
    records = config_records(
        stack,
        node,
        lambda rs: any(AgentConfig.model_validate_json(r.value).configHash == old["configHash"] for r in rs),
    )
    older = next(
        r for r in records if AgentConfig.model_validate_json(r.value).configHash == old["configHash"]
    )
    headers = text_headers(older.headers)
    assert headers.get("dsfleet-signature"), "the coordinator's records are signed"
    since = datetime.now(UTC) - timedelta(seconds=1)
    before = containers_of(stack, node)

    publish(stack, Topic.AGENT_CONFIG, node, older.value, headers)  # as it was
    raised = json.loads(older.value)
    raised["generation"] = int(current["generation"]) + 5
    publish(stack, Topic.AGENT_CONFIG, node, json.dumps(raised).encode(), headers)  # a newer number
    wait_status(
        stack,
        lambda d: bool(
            rejected_since(d, node, "stale-generation", since)
            and rejected_since(d, node, "bad-signature", since)
        ),
        "the replay refused as stale and the raised one as not matching its signature",
    )
    assert_untouched(stack, node, before, current["configHash"])


def test_a_config_for_another_node_or_fleet_is_refused(stack: Stack) -> None:
    """Signed by the coordinator's key but naming another node in the payload, or written for another fleet; and
    another node's genuine record moved onto this node's key (its workload would run here). On the code before
    signing the moved record was taken (a node's config hash does not name the node)."""
    n1, n2 = stack.nodes
    since = datetime.now(UTC) - timedelta(seconds=1)
    before = containers_of(stack, n1)
    desired = stack.desired()[n1]
    ahead = int(max(desired["generation"], stack.desired()[n2]["generation"])) + 5

    other_node = attacker_config(stack, n1, ahead, payload_node=n2)
    value = encode(other_node)
    publish(
        stack, Topic.AGENT_CONFIG, n1, value, sign_record(stack.key, signed_fields_of(other_node), n1, value)
    )

    other_fleet = attacker_config(stack, n1, ahead).model_copy(update={"fleet": str(uuid.uuid4())})
    value = encode(other_fleet)
    publish(
        stack, Topic.AGENT_CONFIG, n1, value, sign_record(stack.key, signed_fields_of(other_fleet), n1, value)
    )

    genuine = config_records(stack, n2, bool)[-1]
    moved = json.loads(genuine.value)
    moved["node"], moved["generation"] = n1, ahead
    publish(stack, Topic.AGENT_CONFIG, n1, json.dumps(moved).encode(), text_headers(genuine.headers))

    wait_status(
        stack,
        lambda d: all(
            rejected_since(d, n1, reason, since) for reason in ("other-node", "other-fleet", "bad-signature")
        ),
        "the other node's, the other fleet's and the moved record refused",
    )
    assert_untouched(stack, n1, before, desired["configHash"])
    assert container(stack.client, stack.names["traffic-parking"]).labels  # still on n2 only
    assert set(containers_of(stack, n1)) == {stack.names["ccm-gate"], stack.names["ccm-lobby"]}


def test_a_deposed_leaders_late_record_is_refused_by_its_epoch(stack: Stack) -> None:
    """Every config the coordinator stores carries its leadership epoch, signed; a record of a lower epoch (a
    deposed coordinator's, sent late: signed by the same key, a generation ahead, valid in every other way) is
    refused once the agent has taken one of the current epoch. Without the epoch on the wire it was taken."""
    node = stack.nodes[0]
    _old, current = edited(stack, node, "0.55")
    with stack.store() as store:
        epoch = int((store.leadership() or {})["epoch"])
    records = config_records(
        stack,
        node,
        lambda rs: any(
            AgentConfig.model_validate_json(r.value).configHash == current["configHash"] for r in rs
        ),
    )
    taken = next(
        r for r in records if AgentConfig.model_validate_json(r.value).configHash == current["configHash"]
    )
    assert text_headers(taken.headers).get("epoch") == str(epoch)  # stamped by the leader, on the wire
    since = datetime.now(UTC) - timedelta(seconds=1)
    before = containers_of(stack, node)

    late = attacker_config(stack, node, int(current["generation"]) + 5)
    value = encode(late)
    fields = replace(signed_fields_of(late), epoch=epoch - 1 or None)  # 0 under the first leader: no header
    publish(stack, Topic.AGENT_CONFIG, node, value, sign_record(stack.key, fields, node, value))
    doc = wait_status(
        stack,
        lambda d: bool(rejected_since(d, node, "stale-epoch", since)),
        "the late record refused by epoch",
    )
    (refused,) = rejected_since(doc, node, "stale-epoch", since)
    assert refused["generation"] == int(current["generation"]) + 5 and f"epoch {epoch}" in refused["detail"]
    assert_untouched(stack, node, before, current["configHash"])


# --- reports: only the node's enrolled key ----------------------------------------------------------------------


def test_forged_reports_from_an_unenrolled_key_are_dropped_and_counted(stack: Stack) -> None:
    """A stopped agent stays offline whatever others say for it: AgentInfo and AgentResponse signed by a key not
    enrolled for the node (its AgentInfo announcing that key: kept as a pending key, for an operator to approve or
    not), or unsigned. On the code before signing the node came back online, Synced, with the forger's hostname."""
    node = stack.nodes[1]
    agent = stack.agents[node]
    agent.terminate(15)
    doc = wait_status(stack, lambda d: node_doc(d, node)["state"] == "offline", f"{node} offline")
    counts = dropped(doc)
    desired = stack.desired()[node]
    forger = generate_key()
    for _ in range(5):
        info = AgentInfo(
            sent_at=now_iso(),
            node=node,
            hostname="forged-host",
            heartbeatSeconds=1.0,
            observedGeneration=desired["generation"],
            configHash=desired["configHash"],
            agentVersion="forged",
            publicKey=forger.public.text(),
        )
        response = AgentResponse(
            sent_at=now_iso(),
            node=node,
            observedGeneration=desired["generation"],
            configHash=desired["configHash"],
        )
        publish(stack, Topic.AGENT_INFO, node, encode(info), sign_message(forger, info, node))
        publish(stack, Topic.AGENT_RESPONSE, node, encode(response), sign_message(forger, response, node))
        publish(stack, Topic.AGENT_RESPONSE, node, encode(response))

    def counted(d: Doc) -> bool:
        now = dropped(d)
        return (
            now.get("unknown-key", 0) >= counts.get("unknown-key", 0) + 5
            and now.get("unsigned", 0) >= counts.get("unsigned", 0) + 5
            and any(k["keyId"] == forger.id and k["node"] == node for k in d["enrollment"]["pendingKeys"])
        )

    doc = wait_status(stack, counted, "the forged reports counted and the forger's key pending")
    n = node_doc(doc, node)
    assert (n["state"], n["online"]) == ("offline", False), n
    assert n["hostname"] != "forged-host" and n["agentVersion"] != "forged"
    pending = next(k for k in doc["enrollment"]["pendingKeys"] if k["keyId"] == forger.id)
    assert pending["approve"] == f"dsfleet nodes approve {node} --key {forger.id}"
    assert "dropped for their signature" in doc["enrollment"]["summary"]
    with stack.store() as store:
        enrolled = [k for k in store.node_keys(node) if k.state == "enrolled"]
    assert [k.key_id for k in enrolled] != [forger.id]
    # the node's own agent is heard again at once
    stack.start_agent(node)
    wait_status(stack, lambda d: node_doc(d, node)["state"] == "online", f"{node} online again")


# --- commands: naming only for the key that asked -----------------------------------------------------------


def test_a_forged_assign_name_is_ignored(stack: Stack, tmp_path: Path) -> None:
    """An unnamed agent is told to take a name: by an unsigned command to every agent (``*``), by one signed by an
    untrusted key, and by one the coordinator signed for another key (a name meant for someone else). It takes
    none. On the code before signing the first one renamed it, persisted."""
    state = tmp_path / "unnamed"
    agent = AgentProcess(
        agent_args(stack.bootstrap, stack.prefix, state, None, trust=[stack.key]), tmp_path / "unnamed.log"
    ).start()
    try:
        # the coordinator answers its announce (no node has its hostname): commands reach it
        wait_for(
            lambda: "the coordinator cannot name this agent" in agent.log(), 30, "the coordinator's answer"
        )
        stranger = generate_key()
        for key, named in ((None, None), (stranger, stranger.id), (stack.key, stranger.id)):
            cmd = AgentCommand(
                sent_at=now_iso(), command=CommandKind.ASSIGN_NAME, target="*", node="pwned-node", keyId=named
            )
            headers = sign_message(key, cmd, "*") if key is not None else None
            publish(stack, Topic.AGENT_COMMAND, "*", encode(cmd), headers)
        wait_for(
            lambda: "ignored AgentCommand assign-name (3 so far)" in agent.log(), 30, "three commands ignored"
        )
        text = agent.log()
        assert (
            "reason=unsigned" in text and "reason=unknown-key" in text and f"names key {stranger.id}" in text
        )
        assert "named by the coordinator" not in text
        assert not (state / "node-name").exists()
        assert agent.proc is not None and agent.proc.poll() is None
    finally:
        agent.terminate(15)


# --- requests: UpdateConfig only from an operator key -----------------------------------------------------------


def test_manual_sync_cannot_be_bypassed_by_producing_update_config(
    kafka_broker: Tansu, topic_prefix: str, tmp_path: Path
) -> None:
    """``--sync manual``: an UpdateConfig that is unsigned or signed by a key the coordinator does not trust
    applies nothing (dropped and counted); one signed by an operator key applies the plan. On the code before
    signing the unsigned one applied it."""
    db = f"sqlite:///{tmp_path / 'state.db'}"
    operator = generate_key()
    key_path = tmp_path / "keys" / "coordinator.key"
    load_or_create_key(key_path)
    coord = CoordinatorProc(
        copy_fleet(tmp_path / "manifests"),
        db,
        kafka_broker.bootstrap,
        topic_prefix,
        tmp_path / "coordinator.log",
        extra=["--sync", "manual"],
        env=coordinator_env(key_path, operators=[operator]),
    ).start()
    reader = TopicReader(kafka_broker.bootstrap, topic_prefix, Topic.AGENT_CONFIG)
    producer = Producer(kafka_client_config(kafka_broker.bootstrap), client_id="test-forger")
    name = topic_name(Topic.UPDATE_CONFIG, topic_prefix)

    def send(request: UpdateConfig, key: SigningKey | None) -> None:
        headers = sign_message(key, request, None) if key is not None else None
        producer.send(name, None, encode(request), headers=headers, partition=0)
        assert producer.flush(10) == 0

    try:
        coord.wait_log(r"manual sync: plan stored, not applied", 30)
        send(UpdateConfig(sent_at=now_iso(), requestId="forged-1", requestedBy="forger"), None)
        send(UpdateConfig(sent_at=now_iso(), requestId="forged-2", requestedBy="forger"), generate_key())

        def counted() -> dict[str, int] | None:
            by = read_status(db)["enrollment"]["droppedReports"]["byReason"]
            return by if by.get("unsigned", 0) >= 1 and by.get("unknown-key", 0) >= 1 else None

        wait_for(counted, 30, "both forged requests dropped and counted", 0.1)
        reader.poll(0.3)
        assert reader.records == []
        with Store.open(db, readonly=True) as store:
            assert store.sync_state("pending_plan") is not None
            assert [r.source for r in store.revisions() if r.source == "api"] == []
        # the operator's request is obeyed: the test could fail
        send(UpdateConfig(sent_at=now_iso(), requestId="operator-1", requestedBy="operator"), operator)
        reader.wait(lambda rs: len(rs) >= 2, 20, "configs after the operator's UpdateConfig")
        with Store.open(db, readonly=True) as store:
            assert store.sync_state("pending_plan") is None
    finally:
        producer.close(5)
        reader.close()
        coord.stop()


# --- rotation: agents trust two keys while the coordinator's changes -------------------------------------------


def test_rotation_an_agent_trusting_both_keys_takes_the_new_one(stack: Stack) -> None:
    """The coordinator signs with a new key: the agent given both keys takes its configs; one still trusting only
    the old key refuses them (``unknown-key``) and keeps running its last good config — why the new key goes to
    every agent first. On the code before signing the agent kept no keyring at all and took anything."""
    n1, n2 = stack.nodes
    new_path = stack.root / "keys" / "coordinator-next.key"
    new_key, _ = load_or_create_key(new_path)
    old_n2 = containers_of(stack, n2)
    old_hash_n2 = stack.desired()[n2]["configHash"]
    assert stack.coordinator is not None
    try:
        stack.agents[n1].terminate(15)
        stack.agents[n1] = AgentProcess(
            agent_args(stack.bootstrap, stack.prefix, stack.state_dir(n1), n1, trust=[stack.key, new_key]),
            stack.root / f"agent-{n1}.log",
        ).start()
        stack.coordinator.stop()
        stack.start_coordinator(env=coordinator_env(new_path))
        stack.coordinator.wait_log(rf"signing with key={new_key.id}", 30)
        since = datetime.now(UTC) - timedelta(seconds=1)
        generations = {n: stack.desired()[n]["generation"] for n in stack.nodes}
        stack.edit("instances/ccm.yaml", "motConfidenceThreshold: 0.6", "motConfidenceThreshold: 0.35")
        stack.edit(
            "instances/traffic.yaml", "perf-measurement-interval-sec: 5", "perf-measurement-interval-sec: 4"
        )
        wait_for(
            lambda: all(stack.desired()[n]["generation"] > generations[n] for n in stack.nodes),
            20,
            "both edits stored",
            0.1,
        )
        want = stack.desired()[n1]
        doc = wait_status(
            stack,
            lambda d: (
                node_doc(d, n1)["observedGeneration"] == want["generation"]
                and node_doc(d, n1)["sync"] == "Synced"
                and bool(rejected_since(d, n2, "unknown-key", since))
            ),
            f"{n1} on the new key's config, {n2} refusing it",
        )
        refusal = rejected_since(doc, n2, "unknown-key", since)[-1]
        assert new_key.id in refusal["detail"]
        assert containers_of(stack, n2) == old_n2  # n2 keeps its last good config
        assert node_doc(doc, n2)["observedGeneration"] == generations[n2]
        assert old_hash_n2 != stack.desired()[n2]["configHash"]
    finally:
        # back to the old key everywhere (the next test's restore converges the fleet again)
        stack.coordinator.stop()
        stack.start_coordinator()
        stack.agents[n1].terminate(15)
        stack.start_agent(n1)
