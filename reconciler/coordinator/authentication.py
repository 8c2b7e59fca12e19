"""Who may speak on the inbound topics (pure): a node's reports only from its enrolled key, requests only from a
key the coordinator trusts.

- ``AgentInfo``, ``AgentResponse`` and ``AgentLogs`` of node N must be signed by a key enrolled for N
  (:class:`KeyBook`); the signature is checked before the payload is parsed. A report that is not is dropped
  before it touches the store, and counted by reason (:data:`REASONS`).
- An ``AgentInfo`` signed by the key it announces (``publicKey``) but not enrolled for its node is a *pending*
  enrollment (:class:`~dsfleet.reconciler.store.KeySighting`; an operator approves it), or, when it carries a valid
  proof of an unused enrollment token (:func:`dsfleet.plumbing.signing.check_enrollment_proof`), an enrollment the
  coordinator makes at once (:class:`Redemption`; the report after it is taken). An unnamed agent's self-signed
  AgentInfo is taken (it asks for a name; the ``assign-name`` answer names its key).
- ``UpdateConfig`` and ``Refresh`` must be signed by an operator key (``[coordinator] operator_keys``: a ``dsfleet
  serve`` of its own process, an operator's).

Reasons: ``unsigned`` (no signature), ``unknown-key`` (signed by a key not enrolled for the node, or not an
operator key), ``bad-signature`` (the signature does not match: tampered, or a key announced by another),
``pending-enrollment`` (a self-signed announce of a key not enrolled yet), ``revoked`` (a key an operator revoked or
replaced).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from dsfleet.plumbing.signing import (
    KeyFileError,
    Keyring,
    PublicKey,
    Verdict,
    check_enrollment_proof,
    proof_token_id,
)
from dsfleet.reconciler.store.nodekeys import ENROLLED, REVOKED, EnrollmentTokenRow, KeySighting, NodeKeyRow
from dsfleet.schemas.signatures import HEADER_KEY, HEADER_SIGNATURE
from dsfleet.schemas.wire import AgentInfo, Decoded, Rejection, Tombstone, Topic, decode

__all__ = [
    "BAD_SIGNATURE",
    "PENDING_ENROLLMENT",
    "REASONS",
    "REVOKED_KEY",
    "UNKNOWN_KEY",
    "UNSIGNED",
    "Admission",
    "Gate",
    "KeyBook",
    "Redemption",
]

UNSIGNED: Final = "unsigned"
UNKNOWN_KEY: Final = "unknown-key"
BAD_SIGNATURE: Final = "bad-signature"
PENDING_ENROLLMENT: Final = "pending-enrollment"
REVOKED_KEY: Final = "revoked"
REASONS: Final = (UNSIGNED, UNKNOWN_KEY, BAD_SIGNATURE, PENDING_ENROLLMENT, REVOKED_KEY)

_VERDICTS = {
    Verdict.UNSIGNED: UNSIGNED,
    Verdict.UNKNOWN_KEY: UNKNOWN_KEY,
    Verdict.BAD_SIGNATURE: BAD_SIGNATURE,
}
_REPORTS = (Topic.AGENT_INFO, Topic.AGENT_RESPONSE)
_REQUESTS = (Topic.UPDATE_CONFIG, Topic.REFRESH)


@dataclass(frozen=True)
class TokenRef:
    row_id: int
    public: str
    node: str | None
    expires_at: datetime


@dataclass(frozen=True)
class KeyBook:
    """The keys of every node as the store holds them, the usable enrollment tokens, and the operator keys."""

    enrolled: Mapping[str, Keyring] = field(default_factory=dict)
    """Node → its enrolled key(s)."""
    revoked: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Node → ids of its revoked keys."""
    tokens: Mapping[str, TokenRef] = field(default_factory=dict)
    """Token id (first hex digits of its public key) → the token."""
    operators: Keyring = field(default_factory=Keyring)

    @classmethod
    def of(
        cls,
        keys: Iterable[NodeKeyRow],
        tokens: Iterable[EnrollmentTokenRow] = (),
        operators: Iterable[PublicKey] = (),
    ) -> KeyBook:
        enrolled: dict[str, list[PublicKey]] = {}
        revoked: dict[str, set[str]] = {}
        for row in keys:
            if row.state == ENROLLED:
                try:
                    enrolled.setdefault(row.node, []).append(PublicKey.from_text(row.public_key))
                except KeyFileError:
                    continue  # a row that does not hold a key cannot authenticate anything
            elif row.state == REVOKED:
                revoked.setdefault(row.node, set()).add(row.key_id)
        return cls(
            enrolled={n: Keyring.of(k) for n, k in enrolled.items()},
            revoked={n: frozenset(k) for n, k in revoked.items()},
            tokens={
                t.token_id: TokenRef(t.id, t.token_public, t.node, t.expires_at)
                for t in tokens
                if t.used_at is None
            },
            operators=Keyring.of(operators),
        )


@dataclass(frozen=True)
class Redemption:
    """An enrollment token to use for a key (the coordinator does it in the store, once)."""

    token_row: int
    sighting: KeySighting


@dataclass(frozen=True)
class Admission:
    """What the gate says of one inbound record: taken or not (``reason``: why not), the message when the gate
    had to read it, and what the store learns (a pending key, a token to redeem)."""

    accepted: bool
    reason: str | None = None
    decoded: Decoded[Any] | Rejection | Tombstone | None = None
    key_id: str | None = None
    sighting: KeySighting | None = None
    redemption: Redemption | None = None


@dataclass(frozen=True)
class Gate:
    """Admits inbound records by their signatures (see the module docstring); ``known`` (the fleet's nodes):
    keys announced for a node outside it are not kept as pending."""

    book: KeyBook
    now: datetime
    known: frozenset[str] | None = None
    max_bytes: int = 1_000_000

    def admit(
        self, topic: Topic, key: bytes | None, value: bytes | None, headers: Mapping[str, str]
    ) -> Admission:
        try:
            key_text = key.decode("utf-8") if key is not None else None
        except UnicodeDecodeError:
            return Admission(False, UNSIGNED)
        if topic in _REQUESTS:
            found = self.book.operators.check_record(key_text, value, headers)
            if found.ok:
                return Admission(True, key_id=found.key_id)
            return Admission(False, _VERDICTS.get(found.verdict, BAD_SIGNATURE), key_id=found.key_id)
        if topic not in _REPORTS:
            return Admission(True)
        enrolled = self.book.enrolled.get(key_text or "")
        if enrolled is not None:
            found = enrolled.check_record(key_text, value, headers)
            if found.ok:
                return Admission(True, key_id=found.key_id)
        if topic is Topic.AGENT_INFO:
            return self._announce(key_text, value, headers)
        return Admission(False, self._why(key_text, headers, enrolled))

    def _why(self, node: str | None, headers: Mapping[str, str], enrolled: Keyring | None) -> str:
        """Why a report of ``node`` signed otherwise than by its enrolled key is dropped."""
        kid = headers.get(HEADER_KEY)
        if not headers.get(HEADER_SIGNATURE) or not kid:
            return UNSIGNED
        if kid in self.book.revoked.get(node or "", frozenset()):
            return REVOKED_KEY
        if enrolled is not None and kid in enrolled.keys:
            return BAD_SIGNATURE
        return UNKNOWN_KEY

    def _announce(self, key: str | None, value: bytes | None, headers: Mapping[str, str]) -> Admission:
        """An AgentInfo not signed by its node's enrolled key: taken only when self-signed by an unnamed agent;
        else kept as a pending key, or enrolled by its token."""
        decoded = decode(Topic.AGENT_INFO, key, value, max_bytes=self.max_bytes)
        if not isinstance(decoded, Decoded):
            return Admission(False, None, decoded=decoded)
        info = decoded.message
        assert isinstance(info, AgentInfo)
        if not info.publicKey:
            return Admission(False, self._why(key, headers, None), decoded=decoded)
        try:
            public = PublicKey.from_text(info.publicKey)
        except KeyFileError:
            return Admission(False, BAD_SIGNATURE, decoded=decoded)
        found = Keyring.of([public]).check_record(key, value, headers)
        if not found.ok:
            reason = UNSIGNED if found.verdict is Verdict.UNSIGNED else BAD_SIGNATURE
            return Admission(False, reason, decoded=decoded, key_id=found.key_id)
        if info.node is None:
            return Admission(True, decoded=decoded, key_id=public.id)
        if public.id in self.book.revoked.get(info.node, frozenset()):
            return Admission(False, REVOKED_KEY, decoded=decoded, key_id=public.id)
        if self.known is not None and info.node not in self.known:
            return Admission(False, UNKNOWN_KEY, decoded=decoded, key_id=public.id)
        sighting = KeySighting(info.node, public.id, public.text(), info.hostname, info.machineId)
        redemption = self._redemption(info, sighting)
        return Admission(
            False,
            PENDING_ENROLLMENT,
            decoded=decoded,
            key_id=public.id,
            sighting=sighting if redemption is None else None,
            redemption=redemption,
        )

    def _redemption(self, info: AgentInfo, sighting: KeySighting) -> Redemption | None:
        if not info.enrollProof or info.publicKey is None:
            return None
        token_id = proof_token_id(info.enrollProof)
        token = self.book.tokens.get(token_id or "")
        if token is None or token.expires_at <= self.now:
            return None
        if token.node is not None and token.node != sighting.node:
            return None
        if token.node is None and sighting.node in self.book.enrolled:
            return None  # an unbound token never takes over a node that has a key
        if not check_enrollment_proof(token.public, info.publicKey, info.enrollProof):
            return None
        return Redemption(token.row_id, sighting)
