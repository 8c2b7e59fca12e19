"""An instance's log on the coordinator side, without a broker: which node to ask, ``since``, the replies routed by
request id (ingest and waiters), what ``dsfleet logs --follow`` prints, and the dashboard's page."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from dsfleet.reconciler.api.dashboard import page
from dsfleet.reconciler.api.routes.inventory import camera_sources
from dsfleet.reconciler.api.routes.logs import log_node, since_time
from dsfleet.reconciler.cli.logs import Follow, api_url, line_time
from dsfleet.reconciler.coordinator.ingest import Inbound, read_batch
from dsfleet.reconciler.coordinator.logreplies import LogFetcher, LogReplies
from dsfleet.schemas.errors import TemporaryError
from dsfleet.schemas.wire import AgentCommand, AgentLogs, AgentResponse, CommandKind, encode

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _reply(request_id: str, text: str = "x", node: str = "n1") -> AgentLogs:
    return AgentLogs(sent_at=NOW.isoformat(), node=node, requestId=request_id, instance="cam", text=text)


# ---- which node, since


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a", ("n1", 200)),
        ("b", (None, 409)),
        ("gone", ("n2", 200)),  # no longer desired: the node that still reports it
        ("twice", (None, 409)),
        ("none", (None, 404)),
    ],
)
def test_log_node(name: str, expected: tuple[str | None, int]) -> None:
    placed = [("a", "n1"), ("b", None)]
    reported = [("n1", "a"), ("n2", "gone"), ("n1", "twice"), ("n2", "twice")]
    node, status, why = log_node(name, placed, reported)
    assert (node, status) == expected
    assert bool(why) is (status != 200)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("10m", NOW - timedelta(minutes=10)),
        ("2H", NOW - timedelta(hours=2)),
        ("1.5d", NOW - timedelta(hours=36)),
        ("2026-11-30T10:00:00Z", datetime(2026, 11, 30, 10, tzinfo=UTC)),
        ("2026-11-30T10:00:00", datetime(2026, 11, 30, 10, tzinfo=UTC)),
        ("2026-11-30T12:00:00+02:00", datetime(2026, 11, 30, 10, tzinfo=UTC)),
    ],
)
def test_since_time(text: str, expected: datetime) -> None:
    assert since_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "10", "-5m", "10 minutes", ""])
def test_since_time_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        since_time(text, NOW)


# ---- replies by request id


def test_ingest_keeps_log_replies_apart_from_responses() -> None:
    response = AgentResponse(sent_at=NOW.isoformat(), node="n1", observedGeneration=1)
    batch = read_batch(
        [
            Inbound("AgentResponse", b"n1", encode(_reply("r1", "one"))),
            Inbound("AgentResponse", b"n1", encode(response)),
            Inbound("AgentResponse", b"n1", encode(_reply("r2", "two"))),
            Inbound("AgentResponse", b"n2", encode(_reply("r3", node="n1"))),  # key and node disagree
        ],
        prefix="",
        known_nodes={"n1": object()},
        max_bytes=1_000_000,
    )
    assert [(r.requestId, r.text) for r in batch.logs] == [("r1", "one"), ("r2", "two")]
    assert list(batch.responses) == ["n1"]
    assert [r.reason.value for r in batch.rejected] == ["key-mismatch"]


def test_a_reply_reaches_only_its_waiter_once() -> None:
    replies = LogReplies()
    assert not replies.deliver(_reply("nobody"))
    replies.expect("r1")
    got: list[AgentLogs | None] = []
    waiter = threading.Thread(target=lambda: got.append(replies.wait("r1", 10)))
    waiter.start()
    assert replies.deliver(_reply("r1", "first"))
    assert not replies.deliver(_reply("r1", "again"))
    waiter.join(10)
    assert [r.text if r else None for r in got] == ["first"]
    assert replies.waiting == 0


def test_no_reply_is_none_after_the_timeout_and_forgotten() -> None:
    replies = LogReplies()
    replies.expect("r1")
    assert replies.wait("r1", 0.01) is None
    assert replies.waiting == 0 and not replies.deliver(_reply("r1"))


def test_the_fetcher_sends_the_command_to_the_node_and_returns_its_reply() -> None:
    replies = LogReplies()
    sent: list[tuple[str, str | None, AgentCommand]] = []

    def send(kind: str, key: str | None, value: bytes) -> None:
        command = AgentCommand.model_validate_json(value)
        sent.append((kind, key, command))
        assert command.requestId is not None
        replies.deliver(_reply(command.requestId, "lines"))  # the node answers at once

    reply = LogFetcher(send, replies).fetch(
        "n1", "cam", tail=20, since="2026-12-01T11:00:00+00:00", timeout=5
    )
    assert reply is not None and reply.text == "lines"
    [(kind, key, command)] = sent
    assert (kind, key, command.command, command.target, command.node) == (
        "agent-command",
        "n1",
        CommandKind.LOGS,
        "n1",
        "n1",
    )
    assert (command.instance, command.tail, command.since) == ("cam", 20, "2026-12-01T11:00:00+00:00")
    assert replies.waiting == 0


def test_a_command_the_broker_cannot_take_forgets_its_waiter() -> None:
    replies = LogReplies()

    def send(_kind: str, _key: str | None, _value: bytes) -> None:
        raise TemporaryError("broker down")

    with pytest.raises(TemporaryError):
        LogFetcher(send, replies).fetch("n1", "cam", tail=None, since=None, timeout=5)
    assert replies.waiting == 0


# ---- dsfleet logs


@pytest.mark.parametrize(
    ("flag", "listen", "expected"),
    [
        ("http://127.0.0.1:9000/", None, "http://127.0.0.1:9000"),
        ("127.0.0.1:9000", "10.0.0.1:1", "http://127.0.0.1:9000"),
        (None, "127.0.0.1:8080", "http://127.0.0.1:8080"),
        (None, "0.0.0.0:8080", "http://127.0.0.1:8080"),
        (None, "[::1]:8080", "http://[::1]:8080"),
        (None, None, None),
    ],
)
def test_api_url(flag: str | None, listen: str | None, expected: str | None) -> None:
    assert api_url(flag, listen) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2026-01-01T12:00:00.123456789Z x", "2026-01-01T12:00:00.123456789Z"),
        ("2026-01-01T12:00:00.5Z x", "2026-01-01T12:00:00.500000000Z"),
        ("2026-01-01T12:00:00Z", "2026-01-01T12:00:00.000000000Z"),
        ("2026-01-01T14:00:00.1+02:00 x", "2026-01-01T12:00:00.100000000Z"),
        ("no time here", None),
        ("2026-01-01 12:00:00 x", None),
    ],
)
def test_line_time(line: str, expected: str | None) -> None:
    assert line_time(line) == expected


def test_follow_prints_timed_lines_once_across_overlapping_replies() -> None:
    follow = Follow()
    first = "2026-01-01T12:00:00.1Z a\n2026-01-01T12:00:00.9Z b"
    assert follow.take(first) == ["2026-01-01T12:00:00.1Z a", "2026-01-01T12:00:00.9Z b"]
    assert follow.since() == "2026-01-01T12:00:00.900000+00:00"
    # the node answers by whole seconds: a and b come back, with c of the same second and d after it
    again = first + "\n2026-01-01T12:00:00.9Z c\n2026-01-01T12:00:01Z d"
    assert follow.take(again) == ["2026-01-01T12:00:00.9Z c", "2026-01-01T12:00:01Z d"]
    assert follow.take(again) == []


def test_follow_without_times_skips_the_overlap() -> None:
    follow = Follow()
    assert follow.take("a\nb\nc") == ["a", "b", "c"]
    assert follow.take("b\nc\nd") == ["d"]
    assert follow.take("x") == ["x"]
    assert follow.since() is None


def test_camera_sources_in_the_compiled_order() -> None:
    payloads = [
        {"instances": [{"name": "a", "cameras": ["zeta", "alpha"]}, {"name": "b"}]},
        {"instances": [{"name": "c", "cameras": ["gate"]}]},
    ]
    assert camera_sources(payloads) == {"a": ["zeta", "alpha"], "b": [], "c": ["gate"]}


# ---- the dashboard page


@pytest.mark.parametrize(("apply", "refresh"), [(True, True), (True, False), (False, False)])
def test_the_page_leaves_out_what_the_server_cannot_take(apply: bool, refresh: bool) -> None:
    html = page(apply=apply, refresh=refresh)
    assert ('<button id="apply" type="button">' in html) is apply
    assert ('<button id="refresh" type="button">' in html) is refresh
    assert ('<button id="apply" type="button" hidden>' in html) is not apply
    assert ("read-only</span>" in html) is not (apply or refresh)
    assert "__" not in html.split("<script>")[0]
