"""Whom the agent believes (pure): the coordinator keys it trusts, and why a record is not taken from the bus.

Every ``AgentConfig`` and ``AgentCommand`` record the agent acts on must be signed by a key of its keyring (the
coordinator's public keys, given at install: ``[agent] trusted_keys``, ``--trust-key``, or ``trusted_keys_file``;
several at once while the coordinator's key rotates). The signature covers the record's schema, fleet, key (the
node), generation, issue time, leadership epoch and exact payload bytes (:mod:`dsfleet.schemas.signatures`), and is
checked before the payload is parsed; the signed fields the headers carry must then agree with the payload. A record
that fails is refused with one of the reasons below and the last good config keeps running:

- ``unsigned``: no signature; ``unknown-key``: signed by a key this agent does not trust; ``bad-signature``: the
  signature does not match the record (tampered, or replayed under another key, generation or time) or the signed
  fields disagree with the payload; ``no-trusted-key``: the agent was given no coordinator key at all (it trusts
  nobody rather than the first comer); ``other-node``: the message names another node than the record's key.

Other fleets, stale leadership epochs and stale generations are judged next, by
:func:`dsfleet.agent.desiredconfigs.judge_config`.
``accept_unsigned`` (``--insecure-accept-unsigned``, for labs only) skips these checks.

``logs`` commands may also come from :attr:`Trust.log_requests` (a ``dsfleet serve`` of its own process, whose key
may ask for logs and nothing else).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dsfleet.plumbing.signing import Keyring, RecordCheck, Verdict
from dsfleet.schemas.signatures import SignedFields, signed_fields

__all__ = [
    "REJECT_BAD_SIGNATURE",
    "REJECT_NO_TRUSTED_KEY",
    "REJECT_OTHER_NODE",
    "REJECT_UNKNOWN_KEY",
    "REJECT_UNSIGNED",
    "Distrust",
    "Trust",
    "fields_disagree",
]

REJECT_UNSIGNED = "unsigned"
REJECT_UNKNOWN_KEY = "unknown-key"
REJECT_BAD_SIGNATURE = "bad-signature"
REJECT_NO_TRUSTED_KEY = "no-trusted-key"
REJECT_OTHER_NODE = "other-node"

_REASONS = {
    Verdict.UNSIGNED: REJECT_UNSIGNED,
    Verdict.UNKNOWN_KEY: REJECT_UNKNOWN_KEY,
    Verdict.BAD_SIGNATURE: REJECT_BAD_SIGNATURE,
}


@dataclass(frozen=True)
class Distrust:
    """Why a record is not believed; ``detail`` names keys by id, never quotes the record."""

    reason: str
    detail: str
    generation: int | None = None


@dataclass(frozen=True)
class Trust:
    """The keys the agent believes: ``keyring`` for everything, ``log_requests`` for ``logs`` commands only."""

    keyring: Keyring = field(default_factory=Keyring)
    log_requests: Keyring = field(default_factory=Keyring)
    accept_unsigned: bool = False

    def check(
        self, record_key: str | None, value: bytes | None, headers: Mapping[str, str]
    ) -> tuple[SignedFields | None, Distrust | None]:
        """The signed fields of a record, and why it is not believed (None: it is)."""
        if self.accept_unsigned:
            return signed_fields(headers), None
        if not self.keyring:
            return None, Distrust(
                REJECT_NO_TRUSTED_KEY,
                "this agent trusts no coordinator key: give it one (--trust-key / [agent] trusted_keys)",
                _generation(headers),
            )
        found = self.keyring.check_record(record_key, value, headers)
        if found.ok:
            return found.fields, None
        return found.fields, _distrust(found, self.keyring)

    def check_log_request(
        self, record_key: str | None, value: bytes | None, headers: Mapping[str, str]
    ) -> Distrust | None:
        """Why a ``logs`` command not signed by :attr:`keyring` is not believed either (None: a key of
        :attr:`log_requests` signed it)."""
        found = self.log_requests.check_record(record_key, value, headers)
        return None if found.ok else _distrust(found, self.keyring)


def _generation(headers: Mapping[str, str]) -> int | None:
    fields = signed_fields(headers)
    return fields.generation if fields is not None else None


def _distrust(found: RecordCheck, keyring: Keyring) -> Distrust:
    reason = _REASONS.get(found.verdict, REJECT_BAD_SIGNATURE)
    generation = found.fields.generation if found.fields is not None else None
    if found.verdict is Verdict.UNSIGNED:
        detail = "the record carries no signature"
    elif found.verdict is Verdict.UNKNOWN_KEY:
        trusted = ", ".join(sorted(keyring.keys)) or "none"
        detail = f"signed by key {found.key_id}, which this agent does not trust (it trusts: {trusted})"
    elif found.fields is None:
        detail = f"signed by key {found.key_id} without the signed fields (schema, issue time)"
    else:
        detail = f"the signature of key {found.key_id} does not match the record (tampered or replayed)"
    return Distrust(reason, detail, generation)


def fields_disagree(
    fields: SignedFields | None, *, schema: str, fleet: str | None, generation: int | None, issued: str
) -> str | None:
    """What the signed fields of a record say otherwise than its payload (None: they agree, or were not given)."""
    if fields is None:
        return None
    if fields.schema != schema:
        return "schema"
    if (fields.fleet or None) != (fleet or None):
        return "fleet"
    if (fields.generation or None) != (generation or None):
        return "generation"
    if fields.issued != issued:
        return "issue time"
    return None
