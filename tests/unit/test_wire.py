"""The wire contract: partition function (Kafka's own test vectors), topic names, decoding that never raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsfleet.schemas.wire import (
    AgentConfig,
    AgentInfo,
    AgentResponse,
    Decoded,
    Rejection,
    RejectReason,
    Tombstone,
    Topic,
    agent_config_record,
    decode,
    encode,
    murmur2,
    partition_for,
    schema_of,
    topic_name,
    topic_of,
)

NOW = "2026-12-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("data", "expected"),
    [  # org.apache.kafka.common.utils.UtilsTest#testMurmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@given(st.text(min_size=1, max_size=63), st.integers(min_value=1, max_value=1000))
def test_partition_in_range_and_stable(key: str, partitions: int) -> None:
    p = partition_for(key, partitions)
    assert 0 <= p < partitions
    assert p == partition_for(key, partitions)


def test_partition_of_one_partition_topic_is_zero() -> None:
    assert partition_for("gpu-node-1", 1) == 0
    with pytest.raises(ValueError):
        partition_for("x", 0)


def test_topic_names_with_prefix() -> None:
    assert topic_name(Topic.AGENT_CONFIG, "prod.") == "prod.AgentConfig"
    assert topic_of("prod.AgentConfig", "prod.") is Topic.AGENT_CONFIG
    assert topic_of("AgentConfig", "prod.") is None
    assert topic_of("prod.Other", "prod.") is None


def _info(**kw: object) -> AgentInfo:
    return AgentInfo.model_validate({"sent_at": NOW, "hostname": "h1", **kw})


def test_round_trip_every_topic() -> None:
    info = _info(node="gpu-node-1", machineId="a" * 32)
    got = decode(Topic.AGENT_INFO, b"gpu-node-1", encode(info))
    assert isinstance(got, Decoded) and got.message == info
    resp = AgentResponse.model_validate(
        {
            "sent_at": NOW,
            "node": "n1",
            "observedGeneration": 3,
            "instances": [{"name": "i1", "state": "running"}],
        }
    )
    got = decode(Topic.AGENT_RESPONSE, "n1", encode(resp))
    assert isinstance(got, Decoded) and got.message.instances[0].state == "running"
    assert json.loads(encode(resp))["schema"] == schema_of(Topic.AGENT_RESPONSE)


def test_agent_config_record_and_tombstone() -> None:
    payload = {"node": "n1", "configHash": "h", "instances": []}
    topic, key, value, headers = agent_config_record("n1", 4, payload, NOW, "p.")
    assert (topic, key, headers["generation"]) == ("p.AgentConfig", "n1", "4")
    got = decode(Topic.AGENT_CONFIG, key, value)
    assert isinstance(got, Decoded) and isinstance(got.message, AgentConfig) and got.message.generation == 4
    _, _, none, _ = agent_config_record("n1", 5, None, NOW)
    assert none is None
    assert decode(Topic.AGENT_CONFIG, "n1", None) == Tombstone("AgentConfig", "n1")


@pytest.mark.parametrize(
    ("topic", "key", "value", "reason"),
    [
        (Topic.AGENT_INFO, b"n", b"\x00\xff garbage", RejectReason.NOT_JSON),
        (Topic.AGENT_INFO, b"n", b"[" * 100_000 + b"]" * 100_000, RejectReason.NOT_JSON),
        (Topic.AGENT_INFO, b"n", b"x" * 2_000_000, RejectReason.TOO_LARGE),
        (
            Topic.AGENT_INFO,
            b"n",
            b'{"schema": "dsfleet.other/v9", "sent_at": "x"}',
            RejectReason.WRONG_SCHEMA,
        ),
        (
            Topic.AGENT_INFO,
            b"n",
            b'{"schema": "dsfleet.agent-info/v1", "sent_at": "x"}',
            RejectReason.INVALID,
        ),
        (Topic.AGENT_INFO, b"n", None, RejectReason.NULL_VALUE),
        (Topic.AGENT_RESPONSE, b"\xff", b"{}", RejectReason.INVALID),
        (Topic.AGENT_RESPONSE, None, b"{}", RejectReason.NULL_KEY),
        (Topic.AGENT_CONFIG, b"other-node", None, None),
    ],
)
def test_malformed_records_are_rejections(
    topic: Topic, key: bytes | None, value: bytes | None, reason: RejectReason | None
) -> None:
    got = decode(topic, key, value, require_key=topic is not Topic.AGENT_INFO)
    if reason is None:
        assert isinstance(got, Tombstone)
    else:
        assert isinstance(got, Rejection) and got.reason is reason, got


def test_forged_key_is_rejected_and_detail_never_echoes_content() -> None:
    resp = AgentResponse(sent_at=NOW, node="victim")
    got = decode(Topic.AGENT_RESPONSE, "attacker", encode(resp))
    assert isinstance(got, Rejection) and got.reason is RejectReason.KEY_MISMATCH
    secret = "canary-s3cr3t"
    bad = json.dumps({"schema": "dsfleet.agent-info/v1", "sent_at": NOW, "hostname": 5, "x": secret}).encode()
    got = decode(Topic.AGENT_INFO, "n", bad)
    assert isinstance(got, Rejection) and secret not in str(got)


@given(st.binary(max_size=300))
def test_decode_never_raises(value: bytes) -> None:
    for topic in Topic:
        decode(topic, b"k", value)
