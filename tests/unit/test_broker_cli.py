"""``dsfleet broker``'s address rules, checked before anything is started."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dsfleet.reconciler.cli.broker import Address, BrokerError, broker_binary, is_loopback, parse_address
from dsfleet.reconciler.cli.main import main


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:9092", Address("127.0.0.1", 9092)),
        ("localhost:19092", Address("localhost", 19092)),
        ("[::1]:9092", Address("::1", 9092)),
        ("127.0.0.1:0", Address("127.0.0.1", 0)),
    ],
)
def test_addresses_parse(text: str, address: Address) -> None:
    assert parse_address(text) == address
    assert str(address) == text


@pytest.mark.parametrize("text", ["9092", "127.0.0.1", ":9092", "127.0.0.1:x", "127.0.0.1:70000"])
def test_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(BrokerError, match="expected HOST:PORT"):
        parse_address(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("broker.example", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_address_is_refused_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker", "--listen", "192.168.1.10:9092"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 192.168.1.10:9092" in err
    assert "no authentication" in err and "in memory" in err and "--allow-remote" in err


def test_a_wildcard_address_needs_an_advertised_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker", "--listen", "0.0.0.0:9092", "--allow-remote"]) == 2
    assert "--advertise HOST:PORT" in capsys.readouterr().err


def test_help_says_what_it_is_for(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["broker", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "ONE machine and for tests" in out
    assert "all topics and records are lost when it stops" in out


def test_a_replaced_cached_broker_binary_is_copied_again_from_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CALF_TANSU_BIN", raising=False)
    first = Path(broker_binary())
    assert first.is_relative_to(tmp_path)
    first.write_bytes(b"#!/bin/sh\necho not tansu\n")  # someone who can write the home directory
    again = Path(broker_binary())
    assert again == first and first.read_bytes()[:4] == b"\x7fELF"


def test_another_binary_runs_only_with_its_own_pinned_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "tansu"
    fake.write_bytes(b"#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CALF_TANSU_BIN", str(fake))
    monkeypatch.delenv("DSFLEET_BROKER_SHA256", raising=False)
    with pytest.raises(BrokerError, match="DSFLEET_BROKER_SHA256"):
        broker_binary()
    monkeypatch.setenv("DSFLEET_BROKER_SHA256", "0" * 64)
    with pytest.raises(BrokerError, match="not the known Tansu build"):
        broker_binary()
    monkeypatch.setenv("DSFLEET_BROKER_SHA256", hashlib.sha256(fake.read_bytes()).hexdigest())
    assert broker_binary() == str(fake)
