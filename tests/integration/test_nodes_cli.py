"""``dsfleet nodes`` (list, approve, revoke, token create/list) and the enrollment lines of ``dsfleet status``, run as
an operator runs them against a real SQLite store, with agents' announcements going through the coordinator's own
gate (:class:`~dsfleet.reconciler.coordinator.authentication.Gate`) and bookkeeping
(:class:`~dsfleet.reconciler.coordinator.enrollments.Enrollments`): a key the command approves is the key whose
reports the gate takes, a key it revokes is one whose reports it drops, a token it prints enrolls an agent once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dsfleet.plumbing.signing import SigningKey, enrollment_proof, generate_key
from dsfleet.reconciler.coordinator.authentication import Admission
from dsfleet.reconciler.coordinator.enrollments import Enrollments
from dsfleet.reconciler.store import Store
from dsfleet.schemas.wire import AgentInfo, AgentResponse, Topic, encode
from tests.support.keys import sign_message

ROOT = Path(__file__).resolve().parents[2]


def dsfleet(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**env, "NO_COLOR": "1"},
    )


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the example fleet (nodes gpu-node-1, gpu-node-2), made once; each test copies it."""
    base = tmp_path_factory.mktemp("applied")
    done = dsfleet("apply", str(ROOT / "manifests"), "--db", f"sqlite:///{base / 'state.db'}")
    assert done.returncode == 0, done.stderr
    return base / "state.db"


@pytest.fixture
def db(applied: Path, tmp_path: Path) -> str:
    target = tmp_path / "state.db"
    target.write_bytes(applied.read_bytes())
    return f"sqlite:///{target}"


def announce(
    db: str, node: str, key: SigningKey, *, hostname: str = "host", proof: str | None = None
) -> Admission:
    """An agent's AgentInfo signed by its own key, through the coordinator's gate and bookkeeping."""
    now = datetime.now(UTC)
    info = AgentInfo(
        sent_at=now.isoformat(),
        node=node,
        hostname=hostname,
        agentVersion="0.1.0",
        publicKey=key.public.text(),
        enrollProof=proof,
    )
    return _admit(db, Topic.AGENT_INFO, node, info, key)


def report(db: str, node: str, key: SigningKey) -> Admission:
    """An AgentResponse of ``node`` signed by ``key``, through the gate (dropped ones are counted)."""
    response = AgentResponse(sent_at=datetime.now(UTC).isoformat(), node=node, observedGeneration=1)
    return _admit(db, Topic.AGENT_RESPONSE, node, response, key)


_COORDINATORS: dict[str, Enrollments] = {}


def _admit(db: str, topic: Topic, node: str, message: Any, key: SigningKey) -> Admission:
    """What the coordinator of ``db`` does with one inbound record: admit it, then count, keep and redeem (one
    bookkeeping per store, as one coordinator keeps its counts since its start)."""
    now = datetime.now(UTC)
    with Store.open(db) as store:
        enrollments = _COORDINATORS.setdefault(db, Enrollments(store))
        enrollments.store = store
        enrollments.read(now)
        admitted = enrollments.gate(now, {"gpu-node-1", "gpu-node-2"}).admit(
            topic, node.encode(), encode(message), sign_message(key, message, node)
        )
        dropped = {admitted.reason: 1} if not admitted.accepted and admitted.reason else {}
        enrollments.settle(
            dropped,
            [admitted.sighting] if admitted.sighting else [],
            [admitted.redemption] if admitted.redemption else [],
            now,
            time.monotonic(),
        )
        enrollments.write_counts(now, now)
    return admitted


def events(db: str, kind: str) -> list[str]:
    with Store.open(db) as store:
        return [e.message for e in store.events(limit=100) if e.kind == kind]


def nodes_doc(db: str) -> dict[str, Any]:
    done = dsfleet("nodes", "list", "--db", db, "-o", "json")
    assert done.returncode == 0, done.stderr
    return {n["name"]: n for n in json.loads(done.stdout)["nodes"]}


def test_a_pending_key_is_listed_approved_and_then_speaks_for_its_node(db: str) -> None:
    agent = generate_key()
    assert not report(db, "gpu-node-1", agent).accepted  # unenrolled: dropped
    assert announce(db, "gpu-node-1", agent, hostname="rack-7").reason == "pending-enrollment"

    listed = dsfleet("nodes", "list", "--db", db)
    assert listed.returncode == 0, listed.stderr
    assert f"key {agent.id}  hostname rack-7" in listed.stdout
    assert f"approve with dsfleet nodes approve gpu-node-1 --key {agent.id}" in listed.stdout
    doc = nodes_doc(db)
    assert set(doc) >= {"gpu-node-1", "gpu-node-2"}
    assert doc["gpu-node-1"]["enrolledKey"] is None
    [pending] = doc["gpu-node-1"]["pendingKeys"]
    assert pending["id"] == agent.id and pending["publicKey"] == agent.public.text()
    assert pending["firstSeen"] and pending["lastSeen"]
    assert doc["gpu-node-2"]["pendingKeys"] == []

    status = json.loads(dsfleet("status", "--db", db, "-o", "json").stdout)["enrollment"]
    assert [(k["node"], k["keyId"]) for k in status["pendingKeys"]] == [("gpu-node-1", agent.id)]
    assert status["droppedReports"]["byReason"]["unknown-key"] == 1
    text = dsfleet("status", "--db", db).stdout
    assert f"approve with dsfleet nodes approve gpu-node-1 --key {agent.id}" in text
    assert "reports dropped for their signature" in text

    approved = dsfleet("nodes", "approve", "gpu-node-1", "--db", db)
    assert approved.returncode == 0, approved.stderr
    assert agent.id in approved.stdout
    assert nodes_doc(db)["gpu-node-1"]["enrolledKey"]["id"] == agent.id
    assert any(agent.id in m for m in events(db, "key-enrolled"))
    assert report(db, "gpu-node-1", agent).accepted
    assert not report(db, "gpu-node-2", agent).accepted  # its key speaks for its own node only
    again = dsfleet("nodes", "approve", "gpu-node-1", "--key", agent.id, "--db", db)
    assert again.returncode == 0 and "already" in again.stdout
    after = json.loads(dsfleet("status", "--db", db, "-o", "json").stdout)["enrollment"]
    assert after["pendingKeys"] == []


def test_approval_refuses_ambiguity_and_unknown_keys(db: str) -> None:
    first, second = generate_key(), generate_key()
    announce(db, "gpu-node-2", first, hostname="old-host")
    announce(db, "gpu-node-2", second, hostname="new-host")

    ambiguous = dsfleet("nodes", "approve", "gpu-node-2", "--db", db)
    assert ambiguous.returncode == 2
    assert "2 keys waiting for approval" in ambiguous.stderr
    assert first.id in ambiguous.stderr and second.id in ambiguous.stderr and "--key" in ambiguous.stderr
    assert nodes_doc(db)["gpu-node-2"]["enrolledKey"] is None

    unknown = dsfleet("nodes", "approve", "gpu-node-2", "--key", "0000000000000000", "--db", db)
    assert unknown.returncode == 2 and "no key 0000000000000000" in unknown.stderr
    nothing = dsfleet("nodes", "approve", "gpu-node-1", "--db", db)
    assert nothing.returncode == 2 and "no key waiting for approval" in nothing.stderr

    chosen = dsfleet("nodes", "approve", "gpu-node-2", "--key", second.id[:10], "--db", db)
    assert chosen.returncode == 0, chosen.stderr
    assert report(db, "gpu-node-2", second).accepted
    assert not report(db, "gpu-node-2", first).accepted

    switched = dsfleet("nodes", "approve", "gpu-node-2", "--key", first.id, "--db", db)
    assert switched.returncode == 0, switched.stderr
    assert f"key {second.id} revoked" in switched.stdout  # one key speaks for a node at a time
    assert report(db, "gpu-node-2", first).accepted
    assert report(db, "gpu-node-2", second).reason == "revoked"


def test_revoke_stops_a_key_and_says_when_there_is_nothing_to_revoke(db: str) -> None:
    agent = generate_key()
    announce(db, "gpu-node-1", agent)
    assert dsfleet("nodes", "approve", "gpu-node-1", "--db", db).returncode == 0
    assert report(db, "gpu-node-1", agent).accepted

    revoked = dsfleet("nodes", "revoke", "gpu-node-1", "--key", agent.id, "--db", db)
    assert revoked.returncode == 0, revoked.stderr
    assert report(db, "gpu-node-1", agent).reason == "revoked"
    assert announce(db, "gpu-node-1", agent).reason == "revoked"  # announcing again does not make it pending
    doc = nodes_doc(db)["gpu-node-1"]
    assert doc["enrolledKey"] is None and doc["pendingKeys"] == [] and doc["revokedKeys"] == 1
    assert any(agent.id in m for m in events(db, "key-revoked"))

    twice = dsfleet("nodes", "revoke", "gpu-node-1", "--key", agent.id, "--db", db)
    assert twice.returncode == 2 and "not revoked already" in twice.stderr
    none = dsfleet("nodes", "revoke", "gpu-node-2", "--db", db)
    assert none.returncode == 2
    back = dsfleet("nodes", "approve", "gpu-node-1", "--key", agent.id, "--db", db)
    assert back.returncode == 0, back.stderr
    assert report(db, "gpu-node-1", agent).accepted


def test_a_token_is_shown_once_stored_hashed_and_enrolls_one_agent_once(db: str) -> None:
    made = dsfleet(
        "nodes", "token", "create", "--node", "gpu-node-1", "--ttl", "2h", "--db", db, "-o", "json"
    )
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    assert token.startswith("dsfleet-enroll-")

    listed = dsfleet("nodes", "token", "list", "--db", db, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)["tokens"]
    assert row["node"] == "gpu-node-1" and row["state"] == "usable" and row["usedBy"] is None
    assert token not in listed.stdout
    assert token.encode() not in Path(db.removeprefix("sqlite:///")).read_bytes()

    stranger = generate_key()  # a token bound to gpu-node-1 does not enroll gpu-node-2
    assert (
        announce(db, "gpu-node-2", stranger, proof=enrollment_proof(token, stranger.public.text())).redemption
        is None
    )

    agent = generate_key()
    admitted = announce(db, "gpu-node-1", agent, proof=enrollment_proof(token, agent.public.text()))
    assert admitted.redemption is not None
    assert nodes_doc(db)["gpu-node-1"]["enrolledKey"]["id"] == agent.id
    assert report(db, "gpu-node-1", agent).accepted
    used = json.loads(dsfleet("nodes", "token", "list", "--db", db, "-o", "json").stdout)["tokens"][0]
    assert used["state"] == "used" and used["usedBy"] == agent.id

    thief = generate_key()
    announce(db, "gpu-node-1", thief, proof=enrollment_proof(token, thief.public.text()))
    assert nodes_doc(db)["gpu-node-1"]["enrolledKey"]["id"] == agent.id  # used up

    text = dsfleet("nodes", "token", "create", "--db", db)
    assert text.returncode == 0, text.stderr
    assert "any node that has no enrolled key yet" in text.stdout
    assert text.stdout.count("dsfleet-enroll-") == 1
    table = dsfleet("nodes", "token", "list", "--db", db)
    assert "(any)" in table.stdout and "used by key " + agent.id in table.stdout
    assert "dsfleet-enroll-" not in table.stdout


@pytest.mark.parametrize("ttl", ["0", "-1h", "31d", "soon"])
def test_a_bad_ttl_is_refused_before_anything_is_stored(db: str, ttl: str) -> None:
    done = dsfleet("nodes", "token", "create", f"--ttl={ttl}", "--db", db)
    assert done.returncode == 2 and "--ttl" in done.stderr
    assert json.loads(dsfleet("nodes", "token", "list", "--db", db, "-o", "json").stdout)["tokens"] == []


def test_the_commands_refuse_a_missing_store(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    for args in (
        ("nodes", "list"),
        ("nodes", "approve", "n"),
        ("nodes", "revoke", "n"),
        ("nodes", "token", "list"),
    ):
        done = dsfleet(*args, "--db", missing)
        assert done.returncode == 2 and "no store at" in done.stderr, args
    assert not (tmp_path / "none.db").exists()
