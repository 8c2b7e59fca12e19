"""The operator's side of enrollment, pure parts: which key ``dsfleet nodes approve`` means (and when it refuses),
token states, durations, the ``nodes list`` document, the enrollment part of the status document (true to its
API model) and its text lines; where the key files live (``dsfleet keys``) and that the API process's key is an
operator key once it exists."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from dsfleet.plumbing.settings import CoordinatorSettings
from dsfleet.plumbing.signing import generate_key, save_signing_key
from dsfleet.reconciler.api.models import EnrollmentView, StatusDocument
from dsfleet.reconciler.cli.keys import (
    api_key_path,
    next_key_path,
    operator_keys,
    previous_key_path,
    signing_key_path,
)
from dsfleet.reconciler.cli.nodes import choose_key, nodes_json, parse_ttl, token_state
from dsfleet.reconciler.cli.status import status_text
from dsfleet.reconciler.store import EnrollmentTokenRow, NodeKeyRow
from dsfleet.reconciler.views import enrollment_json, status_document
from tests.support.statussnapshots import NOW, example_snapshot

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def key(node: str, key_id: str, state: str, *, hostname: str | None = "h", seen: int = 0) -> NodeKeyRow:
    return NodeKeyRow(
        node=node,
        key_id=key_id,
        public_key=f"ed25519:{key_id}",
        state=state,
        first_seen=T0 + timedelta(minutes=seen),
        last_seen=T0 + timedelta(minutes=seen + 1),
        hostname=hostname,
    )


# ------------------------------------------------------------------------------------------------- approve


def test_the_only_pending_key_is_chosen_without_an_id() -> None:
    keys = [key("n1", "aaaa1111", "pending"), key("n2", "bbbb2222", "pending"), key("n1", "cccc", "revoked")]
    choice = choose_key("n1", keys, None)
    assert choice.key is not None and choice.key.key_id == "aaaa1111" and not choice.already


def test_several_pending_keys_need_an_id() -> None:
    keys = [
        key("n1", "aaaa1111", "pending", hostname="old"),
        key("n1", "bbbb2222", "pending", hostname="new"),
    ]
    choice = choose_key("n1", keys, None)
    assert choice.key is None
    assert choice.problem is not None
    assert "2 keys waiting" in choice.problem and "aaaa1111 (hostname old)" in choice.problem
    assert "--key" in choice.problem
    chosen = choose_key("n1", keys, "bbbb")
    assert chosen.key is not None and chosen.key.key_id == "bbbb2222"


@pytest.mark.parametrize(
    ("keys", "wanted", "says"),
    [
        ([], None, "has no key waiting for approval"),
        ([key("n1", "aaaa", "enrolled")], None, "(enrolled: aaaa)"),
        ([key("n1", "aaaa", "pending")], "ffff", "has no key ffff"),
        ([key("n2", "aaaa", "pending")], "aaaa", "has no key aaaa"),  # another node's key
        ([key("n1", "aaaa1", "pending"), key("n1", "aaaa2", "pending")], "aaaa", "ambiguous"),
    ],
)
def test_an_approval_that_names_no_single_key_is_refused(
    keys: list[NodeKeyRow], wanted: str | None, says: str
) -> None:
    choice = choose_key("n1", keys, wanted)
    assert choice.key is None and choice.problem is not None and says in choice.problem


def test_an_exact_id_wins_over_a_prefix_and_an_enrolled_key_is_already_enrolled() -> None:
    keys = [key("n1", "aaaa", "enrolled"), key("n1", "aaaab", "pending")]
    choice = choose_key("n1", keys, "aaaa")
    assert choice.key is not None and choice.key.key_id == "aaaa" and choice.already
    revoked = choose_key("n1", [key("n1", "dddd", "revoked")], "dddd")
    assert revoked.key is not None and not revoked.already  # approving a revoked key again is allowed


# --------------------------------------------------------------------------------------------- tokens, ttl


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("30m", 1800),
        ("24h", 86400),
        ("7d", 7 * 86400),
        ("1.5h", 5400),
        ("30d", 2592000),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_ttl(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0", "0h", "-1h", "31d", "1w", "soon", "h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ttl(text)


def token(*, used: bool = False, expires: int = 60) -> EnrollmentTokenRow:
    return EnrollmentTokenRow(
        id=1,
        token_public="ab" * 32,
        node=None,
        created_at=T0,
        expires_at=T0 + timedelta(minutes=expires),
        used_at=T0 if used else None,
        used_by="k" if used else None,
    )


def test_token_states() -> None:
    assert token_state(token(), T0) == "usable"
    assert token_state(token(expires=0), T0) == "expired"
    assert token_state(token(used=True, expires=0), T0) == "used"
    assert token_state(token(used=True), T0) == "used"


# ------------------------------------------------------------------------------------------------ nodes list


def test_nodes_list_document() -> None:
    keys = [
        key("n1", "aaaa", "enrolled"),
        key("n1", "bbbb", "revoked"),
        key("n3", "cccc", "pending", seen=5),
    ]
    doc = nodes_json(["n2", "n1"], keys)
    assert [n["name"] for n in doc] == ["n1", "n2", "n3"]  # a node only a key was seen for is listed too
    assert (
        doc[0]["enrolledKey"]["id"] == "aaaa" and doc[0]["pendingKeys"] == [] and doc[0]["revokedKeys"] == 1
    )
    assert doc[1] == {"name": "n2", "enrolledKey": None, "pendingKeys": [], "revokedKeys": 0}
    [pending] = doc[2]["pendingKeys"]
    assert pending["approve"] == "dsfleet nodes approve n3 --key cccc"
    assert pending["firstSeen"] == (T0 + timedelta(minutes=5)).isoformat()


# --------------------------------------------------------------------------------------------- status lines


def snapshot_with(**changes: object) -> object:
    return dataclasses.replace(example_snapshot(), **changes)  # type: ignore[type-var]


def test_the_enrollment_part_of_the_status_document_is_its_model() -> None:
    snapshot = snapshot_with(
        pending_keys=(
            key("gpu-node-2", "bbbb", "pending", hostname="x"),
            key("gpu-node-1", "aaaa", "pending"),
        ),
        unauthenticated={"since": T0.isoformat(), "counts": {"unsigned": 3, "unknown-key": 2, "revoked": 0}},
    )
    doc = status_document(snapshot, NOW)  # type: ignore[arg-type]
    adapter = TypeAdapter(StatusDocument)
    dumped = adapter.dump_json(adapter.validate_python(doc), by_alias=True)
    assert json.loads(dumped) == doc
    e = doc["enrollment"]
    assert [k["node"] for k in e["pendingKeys"]] == ["gpu-node-1", "gpu-node-2"]
    assert e["droppedReports"] == {
        "since": T0.isoformat(),
        "total": 5,
        "byReason": {"unknown-key": 2, "unsigned": 3},
    }
    assert e["summary"] == (
        f"2 agent keys waiting for approval (dsfleet nodes list); 5 reports dropped for their signature since "
        f"{T0.isoformat()} (unknown-key 2, unsigned 3)"
    )
    text = status_text(doc)
    assert "key waiting for approval: node gpu-node-1, key aaaa, hostname h" in text
    assert "approve with dsfleet nodes approve gpu-node-2 --key bbbb" in text
    assert "reports dropped for their signature since" in text and "(unknown-key 2, unsigned 3)" in text


def test_nothing_waiting_and_nothing_dropped_says_so_and_prints_no_line() -> None:
    doc = status_document(example_snapshot(), NOW)
    assert doc["enrollment"] == {
        "pendingKeys": [],
        "droppedReports": {"since": None, "total": 0, "byReason": {}},
        "summary": "no keys waiting for approval, no reports dropped",
    }
    assert "approval" not in status_text(doc) and "dropped" not in status_text(doc)


def test_unreadable_drop_counts_count_nothing() -> None:
    snapshot = snapshot_with(unauthenticated={"since": "yesterday", "counts": {"unsigned": "many"}})
    e = enrollment_json(snapshot)  # type: ignore[arg-type]
    assert e["droppedReports"] == {"since": None, "total": 0, "byReason": {}}
    TypeAdapter(EnrollmentView).validate_python(e)


def test_agent_supplied_names_are_redacted() -> None:
    snapshot = snapshot_with(
        pending_keys=(key("n1", "aaaa", "pending", hostname="rtsp://admin:hunter2@10.0.0.5/x"),)
    )
    assert "hunter2" not in json.dumps(enrollment_json(snapshot))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- keys


def test_key_files_live_next_to_the_store(tmp_path: Path) -> None:
    conf = CoordinatorSettings(db=f"sqlite:///{tmp_path}/state.db")
    assert signing_key_path(conf) == tmp_path / "keys" / "coordinator.key"
    assert next_key_path(conf) == tmp_path / "keys" / "coordinator.next.key"
    assert previous_key_path(conf) == tmp_path / "keys" / "coordinator.previous.key"
    assert api_key_path(conf) == tmp_path / "keys" / "api.key"
    postgres = CoordinatorSettings(db="postgresql+psycopg://u@127.0.0.1/dsfleet")
    assert api_key_path(postgres) == Path(".dsfleet/keys/api.key")
    moved = CoordinatorSettings(
        db=f"sqlite:///{tmp_path}/state.db", signing_key=tmp_path / "etc" / "signer.pem"
    )
    assert next_key_path(moved) == tmp_path / "etc" / "signer.next.pem"
    assert api_key_path(moved) == tmp_path / "keys" / "api.key"  # the API process's key stays by the store


def test_the_api_process_key_is_an_operator_key_once_it_exists(tmp_path: Path) -> None:
    operator = generate_key()
    conf = CoordinatorSettings(db=f"sqlite:///{tmp_path}/state.db", operator_keys=(operator.public.text(),))
    assert [k.id for k in operator_keys(conf)] == [operator.id]
    api = generate_key()
    save_signing_key(api_key_path(conf), api)
    assert [k.id for k in operator_keys(conf)] == [operator.id, api.id]
    listed_too = CoordinatorSettings(db=conf.db, operator_keys=(api.public.text(),))
    assert [k.id for k in operator_keys(listed_too)] == [api.id]  # no duplicate
