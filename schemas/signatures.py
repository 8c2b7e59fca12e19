"""What a signature covers (pure): the bytes signed for one record, and the headers that carry the signature.

A record on the bus is signed by whoever may send it — the coordinator for ``AgentConfig`` and ``AgentCommand``,
an agent for its own ``AgentInfo``, ``AgentResponse`` and ``AgentLogs``, the API or an operator for
``UpdateConfig`` and ``Refresh``. The signature covers a domain-separated line naming the record's schema, the
fleet, the record's key (the target or sending node), the generation and the issue time, followed by the exact
payload bytes (which carry the same fields: the verifier checks both agree). The signature and the signing key's
id travel in two Kafka headers, so the payload stays the plain JSON message.

Signing and verifying themselves (Ed25519, ``cryptography``) live in :mod:`dsfleet.plumbing.signing`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

HEADER_SIGNATURE: Final = "dsfleet-signature"
"""Base64 of the Ed25519 signature."""
HEADER_KEY: Final = "dsfleet-key"
"""The id of the signing key (:func:`key_id`)."""
DOMAIN: Final = "dsfleet-signed/v1"


def signed_bytes(
    *, schema: str, fleet: str | None, key: str | None, generation: int | None, issued: str, payload: bytes
) -> bytes:
    """The bytes a signature covers."""
    line = json.dumps(
        [DOMAIN, schema, fleet or "", key or "", generation or 0, issued], separators=(",", ":")
    )
    return line.encode("utf-8") + b"\n" + payload


def key_id(public_key: bytes) -> str:
    """A public key's id: the first 16 hex digits of the SHA-256 of its 32 raw bytes."""
    return hashlib.sha256(public_key).hexdigest()[:16]
