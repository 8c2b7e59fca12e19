"""The leadership epoch on the wire: an ``AgentConfig`` record carries the epoch of the coordinator that stored it
as a signed header; changing, adding or removing that header breaks the signature, and a record without it (an
earlier release's) keeps the bytes it was signed over."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dsfleet.plumbing.signing import Keyring, Verdict, generate_key, sign_record
from dsfleet.schemas.signatures import HEADER_EPOCH, SignedFields, signed_bytes, signed_fields
from dsfleet.schemas.wire import agent_config_record

NOW = "2026-12-01T00:00:00+00:00"
PAYLOAD = {"node": "n1", "configHash": "h", "instances": []}
KEY = generate_key()
RING = Keyring.of([KEY.public])


def _sign(fields: SignedFields, key: str | None, payload: bytes | None) -> dict[str, str]:
    return sign_record(KEY, fields, key, payload)


@pytest.mark.parametrize("payload", [PAYLOAD, None], ids=["config", "tombstone"])
def test_the_epoch_travels_as_a_signed_header_and_reads_back(payload: dict[str, object] | None) -> None:
    _, key, value, headers = agent_config_record("n1", 4, payload, NOW, fleet="f1", sign=_sign, epoch=7)
    assert headers[HEADER_EPOCH] == "7"
    check = RING.check_record(key, value, headers)
    assert check.verdict is Verdict.OK
    assert check.fields is not None and (check.fields.epoch, check.fields.generation) == (7, 4)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda h: {**h, HEADER_EPOCH: "9"}, "raised"),
        (lambda h: {**h, HEADER_EPOCH: "6"}, "lowered"),
        (lambda h: {k: v for k, v in h.items() if k != HEADER_EPOCH}, "removed"),
    ],
)
def test_a_tampered_epoch_header_fails_the_signature(
    change: Callable[[dict[str, str]], dict[str, str]], what: str
) -> None:
    _, key, value, headers = agent_config_record("n1", 4, PAYLOAD, NOW, fleet="f1", sign=_sign, epoch=7)
    assert RING.check_record(key, value, change(headers)).verdict is Verdict.BAD_SIGNATURE, what


def test_an_epoch_added_to_a_record_signed_without_one_fails_the_signature() -> None:
    _, key, value, headers = agent_config_record("n1", 4, PAYLOAD, NOW, fleet="f1", sign=_sign)
    assert HEADER_EPOCH not in headers
    assert RING.check_record(key, value, headers).verdict is Verdict.OK
    assert RING.check_record(key, value, {**headers, HEADER_EPOCH: "3"}).verdict is Verdict.BAD_SIGNATURE


def test_a_record_without_epoch_is_signed_over_the_line_of_earlier_releases() -> None:
    """Epoch 0 (none claimed) leaves the header out and the signed line as it was: records of an earlier
    coordinator still verify, and read as epoch 0."""

    def line(epoch: int | None = None) -> bytes:
        return signed_bytes(
            schema="s", fleet="f", key="n", generation=3, issued="t", payload=b"p", epoch=epoch
        )

    earlier = b'["dsfleet-signed/v1","s","f","n",3,"t"]\np'
    assert line() == earlier and line(0) == earlier
    assert line(2) == b'["dsfleet-signed/v1","s","f","n",3,"t",2]\np'
    fields = signed_fields({"schema": "s", "issued": "t"})
    assert fields is not None and fields.epoch is None


@pytest.mark.parametrize("text", ["-1", "x", "1.5", "²", "1" * 13])
def test_an_epoch_header_that_is_not_a_number_leaves_no_signed_fields(text: str) -> None:
    assert signed_fields({"schema": "s", "issued": "t", HEADER_EPOCH: text}) is None
