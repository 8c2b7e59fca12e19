"""What a signature covers (pure): the bytes signed for one record, and the headers that carry the signature.

A record on the bus is signed by whoever may send it — the coordinator for ``AgentConfig`` and ``AgentCommand``,
an agent for its own ``AgentInfo``, ``AgentResponse`` and ``AgentLogs``, the API or an operator for
``UpdateConfig`` and ``Refresh``. The signature covers a domain-separated line naming the record's schema, the
fleet, the record's key (the target or sending node), the generation, the issue time and — on ``AgentConfig``
records — the leadership epoch of the coordinator that stored it, followed by the exact payload bytes (which carry
the same fields but the epoch: the verifier checks both agree). The signature and the signing key's
id travel in two Kafka headers, so the payload stays the plain JSON message; the other fields of the line travel in
headers too (:class:`SignedFields`), so a verifier checks a record before it parses its payload, and a tombstone
(no payload) is signed like any other record.

Signing and verifying themselves (Ed25519, ``cryptography``) live in :mod:`dsfleet.plumbing.signing`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

HEADER_SIGNATURE: Final = "dsfleet-signature"
"""Base64 of the Ed25519 signature."""
HEADER_KEY: Final = "dsfleet-key"
"""The id of the signing key (:func:`key_id`)."""
HEADER_SCHEMA: Final = "schema"
"""The record's schema (``dsfleet.agent-config/v1``, …): a signature made for one kind never passes for another."""
HEADER_FLEET: Final = "fleet"
HEADER_GENERATION: Final = "generation"
HEADER_ISSUED: Final = "issued"
"""When the signer issued the record (ISO 8601, UTC)."""
HEADER_EPOCH: Final = "epoch"
"""The leadership epoch of the coordinator that stored an ``AgentConfig`` record (absent: epoch 0, a record of a
store no coordinator claimed, or of an earlier release)."""
DOMAIN: Final = "dsfleet-signed/v1"


def signed_bytes(
    *,
    schema: str,
    fleet: str | None,
    key: str | None,
    generation: int | None,
    issued: str,
    payload: bytes,
    epoch: int | None = None,
) -> bytes:
    """The bytes a signature covers. A record with an epoch has it as a seventh item of the line; one without
    keeps the six-item line of the records of earlier releases (so those still verify, and adding, removing or
    changing an epoch header breaks the signature)."""
    items: list[str | int] = [DOMAIN, schema, fleet or "", key or "", generation or 0, issued]
    if epoch:
        items.append(epoch)
    line = json.dumps(items, separators=(",", ":"))
    return line.encode("utf-8") + b"\n" + payload


def key_id(public_key: bytes) -> str:
    """A public key's id: the first 16 hex digits of the SHA-256 of its 32 raw bytes."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class SignedFields:
    """The fields of a record's signed line besides its key and payload, as its headers carry them."""

    schema: str
    issued: str
    fleet: str | None = None
    generation: int | None = None
    epoch: int | None = None
    """The leadership epoch of the writer (``AgentConfig`` only; None: not carried, read as 0)."""

    def headers(self) -> dict[str, str]:
        out = {HEADER_SCHEMA: self.schema, HEADER_ISSUED: self.issued}
        if self.fleet:
            out[HEADER_FLEET] = self.fleet
        if self.generation:
            out[HEADER_GENERATION] = str(self.generation)
        if self.epoch:
            out[HEADER_EPOCH] = str(self.epoch)
        return out

    def data(self, key: str | None, payload: bytes | None) -> bytes:
        """The bytes signed for a record of ``key`` carrying ``payload`` (None: a tombstone, signed as empty)."""
        return signed_bytes(
            schema=self.schema,
            fleet=self.fleet,
            key=key,
            generation=self.generation,
            issued=self.issued,
            payload=payload or b"",
            epoch=self.epoch,
        )


def _number(text: str | None) -> int | None:
    """A header's decimal number (None: absent or empty); ``ValueError`` when it is not one of at most 12 digits."""
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ValueError(text)
    return int(text)


def signed_fields(headers: Mapping[str, str]) -> SignedFields | None:
    """The signed fields a record's headers carry; None when the schema or issue time is missing or the
    generation or epoch is not a non-negative integer."""
    schema, issued = headers.get(HEADER_SCHEMA), headers.get(HEADER_ISSUED)
    if not schema or not issued:
        return None
    try:
        generation, epoch = _number(headers.get(HEADER_GENERATION)), _number(headers.get(HEADER_EPOCH))
    except ValueError:
        return None
    return SignedFields(
        schema=schema,
        issued=issued,
        fleet=headers.get(HEADER_FLEET) or None,
        generation=generation,
        epoch=epoch or None,
    )


def text_headers(headers: Mapping[str, bytes | str | None]) -> dict[str, str]:
    """Kafka headers (bytes) as text; a header that is not UTF-8 is left out (it cannot be one of ours)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(value, str):
            out[name] = value
        elif value is not None:
            try:
                out[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                continue
    return out
