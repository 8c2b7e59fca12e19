"""Ed25519 keys and signatures: files, key texts, keyrings, what a signature covers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dsfleet.plumbing.signing import (
    KeyFileError,
    Keyring,
    PublicKey,
    Verdict,
    generate_key,
    load_or_create_key,
    load_signing_key,
    save_signing_key,
)
from dsfleet.schemas.signatures import HEADER_KEY, HEADER_SIGNATURE, signed_bytes


def _data(generation: int = 3, payload: bytes = b'{"a":1}') -> bytes:
    return signed_bytes(
        schema="dsfleet.agent-config/v1",
        fleet="f1",
        key="gpu-1",
        generation=generation,
        issued="t",
        payload=payload,
    )


def test_a_key_file_is_0600_never_overwritten_and_loads_back(tmp_path: Path) -> None:
    key = generate_key()
    path = save_signing_key(tmp_path / "keys" / "coordinator.key", key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(path).id == key.id
    with pytest.raises(KeyFileError, match="never overwritten"):
        save_signing_key(path, generate_key())
    assert load_signing_key(path).id == key.id
    assert b"PRIVATE KEY" not in repr(key).encode()


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = save_signing_key(tmp_path / "k.key", generate_key())
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_signing_key(path)


def test_load_or_create_makes_the_key_once(tmp_path: Path) -> None:
    first, created = load_or_create_key(tmp_path / "agent.key")
    again, created_again = load_or_create_key(tmp_path / "agent.key")
    assert created and not created_again and first.id == again.id


@pytest.mark.parametrize("text", ["", "ed25519:", "ed25519:@@@", "rsa:AAAA", "ed25519:" + "A" * 8])
def test_bad_public_key_texts_are_refused(text: str) -> None:
    with pytest.raises(KeyFileError):
        PublicKey.from_text(text)


def test_a_keyring_accepts_only_its_keys_and_untampered_bytes() -> None:
    trusted, other = generate_key(), generate_key()
    ring = Keyring.of([PublicKey.from_text(trusted.public.text())])
    good = trusted.headers(_data())
    assert ring.check(good, _data()) == (Verdict.OK, trusted.id)
    assert ring.check(good, _data(generation=2))[0] is Verdict.BAD_SIGNATURE  # a replayed generation
    assert ring.check(good, _data(payload=b'{"a":2}'))[0] is Verdict.BAD_SIGNATURE
    assert ring.check(other.headers(_data()), _data()) == (Verdict.UNKNOWN_KEY, other.id)
    assert ring.check({}, _data())[0] is Verdict.UNSIGNED
    forged = {HEADER_SIGNATURE: "not base64!", HEADER_KEY: trusted.id}
    assert ring.check(forged, _data())[0] is Verdict.BAD_SIGNATURE


def test_two_trusted_keys_are_how_a_key_rotates() -> None:
    old, new = generate_key(), generate_key()
    both = Keyring.of([old.public, new.public])
    assert both.check(old.headers(_data()), _data())[0] is Verdict.OK
    assert both.check(new.headers(_data()), _data())[0] is Verdict.OK
    after = Keyring.of([new.public])
    assert after.check(old.headers(_data()), _data())[0] is Verdict.UNKNOWN_KEY


def test_the_signed_bytes_name_every_field_apart() -> None:
    """No two different field sets give the same bytes (a key name cannot slide into the fleet, say)."""
    a = signed_bytes(schema="s", fleet="ab", key="c", generation=1, issued="t", payload=b"p")
    b = signed_bytes(schema="s", fleet="a", key="bc", generation=1, issued="t", payload=b"p")
    assert a != b
