"""The reply to a ``logs`` command: ``since`` in its forms, the newest lines within the byte cap, redaction with
the host's secret values (``dsfleet.agent.logreplies``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsfleet.agent.logreplies import cap_log, logs_reply, parse_since, stamp
from dsfleet.schemas.wire import LOG_REPLY_BYTES, AgentCommand, AgentLogs, CommandKind, Topic, decode, encode

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("90s", NOW - 90),
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("1d", NOW - 86400),
        ("1767225000", 1767225000.0),
        ("2026-01-01T00:00:00Z", NOW),
        ("2026-01-01T01:00:00+01:00", NOW),
        ("2026-01-01T00:00:00", NOW),
    ],
)
def test_since_forms(text: str | None, expected: float | None) -> None:
    assert parse_since(text, NOW) == expected


def test_a_bad_since_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="yesterday"):
        parse_since("yesterday", NOW)


def test_the_newest_lines_are_kept_within_the_cap() -> None:
    lines = [f"line {i:04d}" for i in range(1000)]
    text, truncated = cap_log(lines, limit=100)
    assert truncated and len(text.encode()) <= 100 and text.endswith("line 0999")
    assert text.split("\n")[0].startswith("line 09")
    assert cap_log(["a", "b"], limit=100) == ("a\nb", False)
    one, cut = cap_log(["x" * 10 + "é" * 200], limit=101)
    assert cut and len(one.encode()) <= 101 and one.endswith("é")


@given(st.lists(st.text(max_size=300), max_size=60), st.integers(min_value=1, max_value=2000))
def test_the_cap_is_never_exceeded(lines: list[str], limit: int) -> None:
    text, truncated = cap_log(lines, limit)
    assert len(text.encode()) <= limit
    if not truncated:
        assert text == "\n".join(lines)


def _cmd(**kw: object) -> AgentCommand:
    return AgentCommand(
        sent_at="2026-01-01T00:00:00+00:00",
        command=CommandKind.LOGS,
        target="gpu-01",
        requestId="r1",
        instance="cam",
        **kw,  # type: ignore[arg-type]
    )


def test_the_reply_is_redacted_with_known_secret_values_and_travels_on_the_response_topic() -> None:
    lines = [
        "opening rtsp://admin:Sup3rSecret@10.0.0.5/main",
        "auth failed for password=hunter22",
        "the camera said Sup3rSecret again",
        "Authorization: Bearer abc.def.ghi",
    ]
    reply = logs_reply(
        "gpu-01", _cmd(tail=10), sent_at="2026-01-01T00:00:01+00:00", lines=lines, secrets=["Sup3rSecret"]
    )
    assert "Sup3rSecret" not in reply.text and "hunter22" not in reply.text and "abc.def" not in reply.text
    assert reply.text.count("***") == 4 and not reply.truncated and reply.requestId == "r1"
    decoded = decode(Topic.AGENT_RESPONSE, b"gpu-01", encode(reply))
    assert isinstance(getattr(decoded, "message", None), AgentLogs)


def test_a_reply_of_the_largest_size_fits_the_message_and_an_error_reply_has_no_text() -> None:
    lines = ["\x01" * 1000] * 200  # escapes in JSON grow it six-fold
    reply = logs_reply("gpu-01", _cmd(), sent_at="t", lines=lines)
    assert reply.truncated and len(reply.text.encode()) <= LOG_REPLY_BYTES
    assert len(encode(reply)) < 1_000_000
    err = logs_reply("gpu-01", _cmd(), sent_at="t", error="no such instance, token=abc")
    assert err.text == "" and err.error == "no such instance, token=***"


def test_lines_are_led_by_their_time_as_docker_prints_them() -> None:
    assert stamp(NOW + 0.5) == "2026-01-01T00:00:00.500000000Z"
    reply = logs_reply("gpu-01", _cmd(), sent_at="t", lines=["a", "b token=x"], times=[NOW, NOW + 1.25])
    assert reply.text == "2026-01-01T00:00:00.000000000Z a\n2026-01-01T00:00:01.250000000Z b token=***"
    assert parse_since(stamp(NOW + 1.25), 0.0) == NOW + 1.25  # what a follower sends back as since
