"""dsfleet.plumbing.logs: one handler per process, key=value or JSON context, and credentials masked everywhere."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from dsfleet.plumbing.logs import MASK, configure_logging, log, redact

CANARY = "Canary-Pa55!"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "dsfleet"]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"rtsp://admin:{CANARY}@10.0.0.5/main", f"rtsp://{MASK}@10.0.0.5/main"),
        (f"postgresql+psycopg://dsfleet:{CANARY}@db/fleet", f"postgresql+psycopg://{MASK}@db/fleet"),
        (f"http://h/x?user=a&password={CANARY}&n=1", f"http://h/x?user=a&password={MASK}&n=1"),
        (f"token={CANARY} node=n1", f"token={MASK} node=n1"),
        (f"sasl.password: {CANARY}", f"sasl.password: {MASK}"),
        (f'{{"password": "{CANARY}", "node": "n1"}}', f'{{"password": "{MASK}", "node": "n1"}}'),
        (f"Authorization: Bearer {CANARY}abc", f"Authorization: Bearer {MASK}"),
        ("api_key='abc123' rest", f"api_key='{MASK}' rest"),
        ("rtsp://10.0.0.5/main node=gpu-node-1", "rtsp://10.0.0.5/main node=gpu-node-1"),
        ("${secret:cam-gate}@10.0.0.1", "${secret:cam-gate}@10.0.0.1"),
    ],
)
def test_redact_masks_credentials_and_nothing_else(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_text_lines_carry_key_value_context(stream: io.StringIO) -> None:
    configure_logging("info", "text", stream=stream)
    logger = logging.getLogger("dsfleet.test")
    log(logger, "published", node="gpu-node-1", generation=3, topic="AgentConfig")
    logger.info("plain %s", "args", extra={"ctx": {"instance": "ccm gate"}})
    logger.debug("not shown")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("INFO dsfleet.test: published node=gpu-node-1 generation=3 topic=AgentConfig")
    assert lines[1].endswith('INFO dsfleet.test: plain args instance="ccm gate"')


def test_json_lines_are_objects_with_the_context(stream: io.StringIO) -> None:
    configure_logging("debug", "json", stream=stream)
    log(logging.getLogger("dsfleet.test"), "tick", level=logging.DEBUG, node="n1", revision=4)
    record = json.loads(stream.getvalue())
    assert record["level"] == "debug" and record["logger"] == "dsfleet.test" and record["msg"] == "tick"
    assert (record["node"], record["revision"]) == ("n1", 4)
    assert record["ts"].endswith("+00:00")


def test_configuring_twice_keeps_one_handler(stream: io.StringIO) -> None:
    configure_logging("info", "text", stream=io.StringIO())
    configure_logging("warning", "text", stream=stream)
    assert [h.get_name() for h in logging.getLogger().handlers].count("dsfleet") == 1
    logging.getLogger("dsfleet.test").info("dropped")
    logging.getLogger("dsfleet.test").warning("kept")
    assert stream.getvalue().count("\n") == 1
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_credential_slipped_into_a_message_context_or_traceback_is_masked(
    stream: io.StringIO, fmt: str
) -> None:
    configure_logging("info", fmt, stream=stream)  # type: ignore[arg-type]
    logger = logging.getLogger("dsfleet.test")
    logger.info("connecting to %s", f"rtsp://admin:{CANARY}@cam/main")
    log(
        logger,
        "config",
        password=CANARY,
        url=f"http://u:{CANARY}@h/",
        headers={"Authorization": f"Bearer {CANARY}"},
    )
    try:
        raise RuntimeError(f"login failed: password={CANARY}")
    except RuntimeError:
        logger.exception("broker")
    out = stream.getvalue()
    assert CANARY not in out
    assert out.count(MASK) >= 5


def test_dsfleet_takes_the_global_log_flags(stream: io.StringIO) -> None:
    from pathlib import Path

    from dsfleet.reconciler.cli.main import build_parser, main

    manifests = str(Path(__file__).resolve().parents[2] / "manifests")
    assert main(["--log-level", "warning", "--log-format", "json", "validate", manifests]) == 0
    args = build_parser().parse_args(["validate", manifests])
    assert (args.log_level, args.log_format) == ("info", "text")
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--log-format", "xml", "validate", manifests])
    assert exit_.value.code == 2


def test_the_default_handler_follows_sys_stderr(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO) -> None:
    configure_logging("info", "text")
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    logging.getLogger("dsfleet.test").warning("one")
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("dsfleet.test").warning("two")
    assert first.getvalue().endswith("one\n") and second.getvalue().endswith("two\n")
