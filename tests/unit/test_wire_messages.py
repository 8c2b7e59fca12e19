"""Messages added to the wire: log replies beside AgentResponse, conditions, rejections, update strategies."""

from __future__ import annotations

from dsfleet.schemas.hashing import canonical_hash
from dsfleet.schemas.nodeconfigs import instance_hash
from dsfleet.schemas.wire import (
    AgentLogs,
    AgentResponse,
    ConfigRejection,
    Decoded,
    InstanceCondition,
    InstanceState,
    InstanceStatus,
    Rejection,
    RejectReason,
    Topic,
    decode,
    encode,
)

T = "2026-12-07T12:00:00+00:00"


def test_a_log_reply_travels_beside_agent_responses() -> None:
    reply = AgentLogs(sent_at=T, node="n1", requestId="r1", instance="a", text="line 1\nline 2\n")
    got = decode(Topic.AGENT_RESPONSE, "n1", encode(reply))
    assert isinstance(got, Decoded) and got.message == reply


def test_a_log_line_that_names_the_log_schema_does_not_change_what_a_response_is() -> None:
    status = InstanceStatus(
        name="a", state=InstanceState.RUNNING, lastLogLine='"schema":"dsfleet.agent-logs/v1"'
    )
    response = AgentResponse(sent_at=T, node="n1", instances=(status,))
    got = decode(Topic.AGENT_RESPONSE, "n1", encode(response))
    assert isinstance(got, Decoded) and got.message == response


def test_a_log_reply_for_another_node_is_refused_like_a_response() -> None:
    reply = AgentLogs(sent_at=T, node="n2", requestId="r1", instance="a")
    got = decode(Topic.AGENT_RESPONSE, "n1", encode(reply))
    assert isinstance(got, Rejection) and got.reason is RejectReason.KEY_MISMATCH


def test_conditions_and_rejections_round_trip() -> None:
    cond = InstanceCondition(
        reason="SecretMissing",
        message="secret cam-gate not found",
        cameras=("gate-2",),
        attempts=3,
        nextRetryAt=T,
    )
    status = InstanceStatus(name="a", state=InstanceState.RUNNING, conditions=(cond,), fpsAt=T)
    response = AgentResponse(
        sent_at=T,
        node="n1",
        fleet="f" * 32,
        instances=(status,),
        rejections=(ConfigRejection(reason="stale-generation", generation=3, detail="below 5", at=T),),
    )
    got = decode(Topic.AGENT_RESPONSE, "n1", encode(response))
    assert isinstance(got, Decoded) and got.message == response


def test_the_default_update_strategy_keeps_the_instance_hash() -> None:
    before = canonical_hash({"spec": "s", "files": "f", "paused": False})
    assert instance_hash("s", "f", False) == before
    assert instance_hash("s", "f", False, strategy="CreateBeforeStop") == before
    assert instance_hash("s", "f", False, strategy="Recreate") != before
