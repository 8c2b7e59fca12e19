"""Who may speak on the coordinator's inbound topics (:mod:`dsfleet.reconciler.coordinator.authentication`): a node's
reports only from the key enrolled for it (unsigned, unknown, tampered, revoked and another node's keys dropped,
each with its reason); an unenrolled key announcing itself is a pending enrollment, or an enrollment when it proves
an unused, unexpired token bound to its node or to none; ``UpdateConfig`` and ``Refresh`` only from operator keys.
Then the batch as the loop reads it (a node's status is changed by its key alone) and what
:class:`~dsfleet.reconciler.coordinator.enrollments.Enrollments` does with what a batch taught."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dsfleet.plumbing.signing import (
    KeyFileError,
    SigningKey,
    enrollment_proof,
    generate_key,
    new_enrollment_token,
    sign_record,
    token_public,
)
from dsfleet.reconciler.coordinator.authentication import (
    BAD_SIGNATURE,
    PENDING_ENROLLMENT,
    REVOKED_KEY,
    UNKNOWN_KEY,
    UNSIGNED,
    Admission,
    Gate,
    KeyBook,
    Redemption,
)
from dsfleet.reconciler.coordinator.enrollments import UNAUTHENTICATED_STATE, Enrollments
from dsfleet.reconciler.coordinator.ingest import Inbound, read_batch
from dsfleet.reconciler.store.nodekeys import EnrollmentTokenRow, KeySighting, NodeKeyRow
from dsfleet.schemas.signatures import HEADER_SIGNATURE
from dsfleet.schemas.wire import (
    AgentConfig,
    AgentInfo,
    AgentLogs,
    AgentResponse,
    Refresh,
    Rejection,
    RejectReason,
    Topic,
    UpdateConfig,
    encode,
    signed_fields_of,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SENT = NOW.isoformat()
AGENT_1 = generate_key()  # enrolled for gpu-01
AGENT_2 = generate_key()  # enrolled for gpu-02
OLD_1 = generate_key()  # gpu-01's key before its host was reinstalled: revoked
STRANGER = generate_key()
OPERATOR = generate_key()
FLEET = frozenset({"gpu-01", "gpu-02", "gpu-03"})


def key_row(node: str, key: SigningKey, state: str) -> NodeKeyRow:
    return NodeKeyRow(node, key.id, key.public.text(), state, NOW)


ROWS = [
    key_row("gpu-01", AGENT_1, "enrolled"),
    key_row("gpu-02", AGENT_2, "enrolled"),
    key_row("gpu-01", OLD_1, "revoked"),
    key_row("gpu-03", STRANGER, "pending"),  # waiting for approval: authenticates nothing
]


def gate(tokens: Sequence[EnrollmentTokenRow] = (), rows: Sequence[NodeKeyRow] = ROWS) -> Gate:
    return Gate(KeyBook.of(rows, tokens, [OPERATOR.public]), NOW, FLEET)


@dataclass(frozen=True)
class Record:
    topic: Topic
    key: bytes | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


def record(message: Any, record_key: str | None, signer: SigningKey | None) -> Record:
    """A record of ``message`` under ``record_key`` signed by ``signer`` (None: unsigned), as the product signs."""
    topics: dict[type[Any], Topic] = {
        AgentInfo: Topic.AGENT_INFO,
        AgentResponse: Topic.AGENT_RESPONSE,
        AgentLogs: Topic.AGENT_RESPONSE,
        UpdateConfig: Topic.UPDATE_CONFIG,
        Refresh: Topic.REFRESH,
        AgentConfig: Topic.AGENT_CONFIG,
    }
    topic = topics[type(message)]
    value = encode(message)
    headers = sign_record(signer, signed_fields_of(message), record_key, value) if signer is not None else {}
    return Record(topic, record_key.encode() if record_key is not None else None, value, headers)


def admit(r: Record, g: Gate | None = None) -> Admission:
    return (g or gate()).admit(r.topic, r.key, r.value, r.headers)


def response(node: str = "gpu-01", **kw: Any) -> AgentResponse:
    return AgentResponse(sent_at=SENT, node=node, observedGeneration=3, **kw)


def info(key: SigningKey | None, node: str | None = "gpu-03", **kw: Any) -> AgentInfo:
    return AgentInfo(
        sent_at=SENT,
        node=node,
        hostname="host-3",
        machineId="m" * 32,
        **{"publicKey": key.public.text() if key is not None else None, **kw},
    )


def tampered(r: Record) -> Record:
    """The same headers (signature included) over a payload changed in transit."""
    return Record(
        r.topic, r.key, r.value.replace(b'"observedGeneration":3', b'"observedGeneration":9'), r.headers
    )


# -- a node's reports -----------------------------------------------------------------------------------------------

REPORTS: list[tuple[str, Record, bool, str | None]] = [
    ("its enrolled key", record(response(), "gpu-01", AGENT_1), True, None),
    ("no signature", record(response(), "gpu-01", None), False, UNSIGNED),
    ("a key enrolled nowhere", record(response(), "gpu-01", STRANGER), False, UNKNOWN_KEY),
    ("another node's enrolled key", record(response(), "gpu-01", AGENT_2), False, UNKNOWN_KEY),
    (
        "a payload changed under its key's signature",
        tampered(record(response(), "gpu-01", AGENT_1)),
        False,
        BAD_SIGNATURE,
    ),
    ("its revoked key", record(response(), "gpu-01", OLD_1), False, REVOKED_KEY),
    ("a key only pending for the node", record(response("gpu-03"), "gpu-03", STRANGER), False, UNKNOWN_KEY),
    (
        "a signature that is not base64",
        Record(
            Topic.AGENT_RESPONSE,
            b"gpu-01",
            encode(response()),
            {**record(response(), "gpu-01", AGENT_1).headers, HEADER_SIGNATURE: "!!"},
        ),
        False,
        BAD_SIGNATURE,
    ),
    (
        "a log reply of its enrolled key",
        record(AgentLogs(sent_at=SENT, node="gpu-01", requestId="r", instance="a"), "gpu-01", AGENT_1),
        True,
        None,
    ),
    (
        "an unsigned log reply",
        record(AgentLogs(sent_at=SENT, node="gpu-01", requestId="r", instance="a"), "gpu-01", None),
        False,
        UNSIGNED,
    ),
    ("an AgentInfo of its enrolled key", record(info(AGENT_1, "gpu-01"), "gpu-01", AGENT_1), True, None),
]


@pytest.mark.parametrize(("what", "r", "accepted", "reason"), REPORTS, ids=[c[0] for c in REPORTS])
def test_a_nodes_reports_are_taken_from_its_enrolled_key_only(
    what: str, r: Record, accepted: bool, reason: str | None
) -> None:
    got = admit(r)
    assert (got.accepted, got.reason) == (accepted, reason)
    assert got.sighting is None and got.redemption is None
    if accepted:
        assert got.key_id in (AGENT_1.id, AGENT_2.id)


def test_a_report_whose_signed_fields_were_changed_is_bad_signature() -> None:
    r = record(response(), "gpu-01", AGENT_1)
    for header, value in (("schema", "dsfleet.agent-info/v1"), ("issued", "2020-01-01T00:00:00+00:00")):
        got = admit(Record(r.topic, r.key, r.value, {**r.headers, header: value}))
        assert (got.accepted, got.reason) == (False, BAD_SIGNATURE), header
    moved = admit(Record(r.topic, b"gpu-02", r.value, r.headers))  # gpu-01's signed report under gpu-02's key
    assert (moved.accepted, moved.reason) == (False, UNKNOWN_KEY)


# -- keys announcing themselves --------------------------------------------------------------------------------------


def test_an_unenrolled_key_announcing_itself_is_a_pending_enrollment_never_a_report() -> None:
    newcomer = generate_key()
    got = admit(record(info(newcomer), "gpu-03", newcomer))
    assert (got.accepted, got.reason, got.key_id) == (False, PENDING_ENROLLMENT, newcomer.id)
    assert got.sighting == KeySighting("gpu-03", newcomer.id, newcomer.public.text(), "host-3", "m" * 32)
    # a reinstalled gpu-01 with a new key: shown for approval, the enrolled key keeps its place
    again = admit(record(info(newcomer, "gpu-01"), "gpu-01", newcomer))
    assert (
        again.reason == PENDING_ENROLLMENT and again.sighting is not None and again.sighting.node == "gpu-01"
    )


ANNOUNCES: list[tuple[str, Record, bool, str | None]] = [
    (
        "announces one key, signed by another",
        record(info(generate_key()), "gpu-03", STRANGER),
        False,
        BAD_SIGNATURE,
    ),
    ("announces a key, unsigned", record(info(generate_key()), "gpu-03", None), False, UNSIGNED),
    ("announces no key, unsigned", record(info(None), "gpu-03", None), False, UNSIGNED),
    ("a node outside the fleet", record(info(STRANGER, "gpu-99"), "gpu-99", STRANGER), False, UNKNOWN_KEY),
    ("a revoked key", record(info(OLD_1, "gpu-01"), "gpu-01", OLD_1), False, REVOKED_KEY),
    (
        "a malformed public key",
        record(info(None, publicKey="ed25519:AAAA"), "gpu-03", STRANGER),
        False,
        BAD_SIGNATURE,
    ),
    ("an unnamed agent asking for a name", record(info(STRANGER, None), "m" * 32, STRANGER), True, None),
]


@pytest.mark.parametrize(("what", "r", "accepted", "reason"), ANNOUNCES, ids=[c[0] for c in ANNOUNCES])
def test_announces_that_are_not_kept_as_pending(
    what: str, r: Record, accepted: bool, reason: str | None
) -> None:
    got = admit(r)
    assert (got.accepted, got.reason) == (accepted, reason)
    assert got.sighting is None and got.redemption is None


def test_a_malformed_announce_is_an_ordinary_rejection_not_an_unauthenticated_one() -> None:
    got = gate().admit(Topic.AGENT_INFO, b"gpu-03", b"{not json", {})
    assert not got.accepted and got.reason is None and isinstance(got.decoded, Rejection)


# -- enrollment tokens -----------------------------------------------------------------------------------------------

TOKEN = new_enrollment_token()


def token_row(
    token: str = TOKEN,
    node: str | None = None,
    *,
    expires: timedelta = timedelta(hours=24),
    used: bool = False,
    row_id: int = 7,
) -> EnrollmentTokenRow:
    return EnrollmentTokenRow(
        row_id,
        token_public(token),
        node,
        NOW - timedelta(hours=1),
        NOW + expires,
        used_at=NOW if used else None,
        used_by="x" if used else None,
    )


def announce(key: SigningKey, node: str = "gpu-03", proof: str | None = None) -> Record:
    return record(info(key, node, enrollProof=proof or enrollment_proof(TOKEN, key.public.text())), node, key)


def test_a_valid_token_proof_is_redeemed_once_for_the_key_that_made_it() -> None:
    key = generate_key()
    got = admit(announce(key), gate([token_row()]))
    assert got.redemption == Redemption(
        7, KeySighting("gpu-03", key.id, key.public.text(), "host-3", "m" * 32)
    )
    assert not got.accepted and got.reason == PENDING_ENROLLMENT and got.sighting is None
    # bound to the node it names, a token also enrolls a reinstalled host whose old key is still enrolled
    bound = admit(announce(key, "gpu-01"), gate([token_row(node="gpu-01")]))
    assert bound.redemption is not None and bound.redemption.sighting.node == "gpu-01"


TOKENS: list[tuple[str, Record, list[EnrollmentTokenRow]]] = [
    ("no such token", announce(generate_key()), []),
    ("a token bound to another node", announce(generate_key()), [token_row(node="gpu-02")]),
    ("an expired token", announce(generate_key()), [token_row(expires=timedelta(0))]),
    ("a used token", announce(generate_key()), [token_row(used=True)]),
    (
        "a proof made with another token",
        announce(STRANGER, proof=enrollment_proof(new_enrollment_token(), STRANGER.public.text())),
        [token_row()],
    ),
    (
        "another agent's proof, copied into an announce of another key",
        announce(generate_key(), proof=enrollment_proof(TOKEN, AGENT_2.public.text())),
        [token_row()],
    ),
    ("an unbound token for a node that has a key", announce(generate_key(), "gpu-01"), [token_row()]),
    ("not a proof", announce(generate_key(), proof="nonsense"), [token_row()]),
]


@pytest.mark.parametrize(("what", "r", "tokens"), TOKENS, ids=[c[0] for c in TOKENS])
def test_a_token_that_cannot_be_used_leaves_a_pending_enrollment(
    what: str, r: Record, tokens: list[EnrollmentTokenRow]
) -> None:
    got = admit(r, gate(tokens))
    assert got.redemption is None and not got.accepted
    assert got.reason == PENDING_ENROLLMENT and got.sighting is not None  # an operator may still approve it


# -- requests ---------------------------------------------------------------------------------------------------------

UPDATE = UpdateConfig(sent_at=SENT, requestId="r1", requestedBy="ci", revision=4, fleet="fleet-a")
REFRESH = Refresh(sent_at=SENT, requestId="r2", requestedBy="ops", node="gpu-01", fleet="fleet-a")


@pytest.mark.parametrize("message", [UPDATE, REFRESH], ids=["UpdateConfig", "Refresh"])
@pytest.mark.parametrize(
    ("signer", "accepted", "reason"),
    [
        (OPERATOR, True, None),
        (None, False, UNSIGNED),
        (AGENT_1, False, UNKNOWN_KEY),  # an enrolled agent is no operator
        (STRANGER, False, UNKNOWN_KEY),
    ],
    ids=["an operator key", "unsigned", "an agent's key", "a stranger's key"],
)
def test_requests_are_taken_only_from_operator_keys(
    message: Any, signer: SigningKey | None, accepted: bool, reason: str | None
) -> None:
    got = admit(record(message, None, signer))
    assert (got.accepted, got.reason) == (accepted, reason)
    if accepted:
        assert got.key_id == OPERATOR.id


def test_a_request_changed_under_an_operator_signature_is_bad_signature() -> None:
    r = record(UPDATE, None, OPERATOR)
    forged = Record(r.topic, r.key, r.value.replace(b'"revision":4', b'"revision":1'), r.headers)
    got = admit(forged)
    assert (got.accepted, got.reason, got.key_id) == (False, BAD_SIGNATURE, OPERATOR.id)


# -- the batch the loop reads -----------------------------------------------------------------------------------------


def inbound(r: Record) -> Inbound:
    return Inbound(r.topic.value, r.key, r.value, r.headers)


def test_a_nodes_status_is_changed_by_its_own_key_alone() -> None:
    mine = record(response("gpu-01", configHash="a" * 64), "gpu-01", AGENT_1)
    records = [
        mine,
        record(response("gpu-02", configHash="f" * 64), "gpu-02", AGENT_1),  # gpu-01's key speaks for gpu-02
        record(response("gpu-02", configHash="f" * 64), "gpu-01", AGENT_1),  # ...under its own record key
        record(info(AGENT_1, "gpu-02"), "gpu-01", AGENT_1),
        *[record(response("gpu-02"), "gpu-02", None)] * 50,  # a flood of forged responses
        record(UPDATE, None, None),
    ]
    batch = read_batch(
        [inbound(r) for r in records],
        prefix="",
        known_nodes=dict.fromkeys(FLEET),
        max_bytes=1 << 20,
        gate=gate(),
    )
    assert list(batch.responses) == ["gpu-01"] and batch.responses["gpu-01"].configHash == "a" * 64
    assert batch.infos == {} and batch.updates == []
    assert batch.unauthenticated == {UNKNOWN_KEY: 1, UNSIGNED: 51}
    assert sorted(r.reason for r in batch.rejected) == [RejectReason.KEY_MISMATCH, RejectReason.KEY_MISMATCH]
    assert batch.sightings == [] and batch.redemptions == []


def test_the_coordinators_own_topics_are_not_judged_by_the_gate() -> None:
    config = AgentConfig(sent_at=SENT, node="gpu-01", generation=1, configHash="0" * 64)
    assert admit(record(config, "gpu-01", None)).accepted


# -- what a batch teaches ---------------------------------------------------------------------------------------------


@dataclass
class FakeKeyStore:
    keys: list[NodeKeyRow] = field(default_factory=list)
    tokens: list[EnrollmentTokenRow] = field(default_factory=list)
    sightings: list[KeySighting] = field(default_factory=list)
    redeemed: list[tuple[int, str]] = field(default_factory=list)
    events: list[tuple[str, str, str | None]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    writes: int = 0

    def node_keys(self, node: str | None = None) -> list[NodeKeyRow]:
        return [k for k in self.keys if node is None or k.node == node]

    def enrollment_tokens(self, *, at: datetime | None = None) -> list[EnrollmentTokenRow]:
        return [t for t in self.tokens if t.used_at is None and (at is None or t.expires_at > at)]

    def note_key_sightings(self, sightings: Sequence[KeySighting], at: datetime) -> int:
        self.sightings.extend(sightings)
        return len(sightings)

    def redeem_enrollment_token(self, token_id: int, sighting: KeySighting, at: datetime) -> bool:
        token = next((t for t in self.tokens if t.id == token_id and t.used_at is None), None)
        if token is None:
            return False
        self.tokens = [t for t in self.tokens if t.id != token_id] + [
            EnrollmentTokenRow(t.id, t.token_public, t.node, t.created_at, t.expires_at, at, sighting.key_id)
            for t in [token]
        ]
        self.keys.append(NodeKeyRow(sighting.node, sighting.key_id, sighting.public_key, "enrolled", at))
        self.redeemed.append((token_id, sighting.key_id))
        return True

    def record_event(
        self, at: datetime, kind: str, message: str, *, node: str | None = None, instance: str | None = None
    ) -> int:
        self.events.append((kind, message, node))
        return len(self.events)

    def set_sync_state(self, key: str, value: Any, at: datetime) -> None:
        self.state[key] = value
        self.writes += 1


def test_a_redeemed_token_enrolls_the_key_and_its_next_report_is_taken() -> None:
    store = FakeKeyStore(keys=list(ROWS), tokens=[token_row()])
    enrollments = Enrollments(store, [OPERATOR.public])
    enrollments.read(NOW)
    key = generate_key()
    first = enrollments.gate(NOW, FLEET).admit(*_parts(announce(key)))
    assert first.redemption is not None
    enrollments.settle(
        {}, [], [first.redemption, first.redemption], NOW, 0.0
    )  # the same proof twice in a batch
    assert store.redeemed == [(7, key.id)] and enrollments.enrolled_by_token == 1
    assert store.events == [("key-enrolled", f"key {key.id} enrolled by enrollment token 7", "gpu-03")]
    after = enrollments.gate(NOW, FLEET).admit(*_parts(record(response("gpu-03"), "gpu-03", key)))
    assert after.accepted  # the book was read again at once
    # the token is burnt: another key presenting it is only a pending enrollment
    other = generate_key()
    late = enrollments.gate(NOW, FLEET).admit(*_parts(announce(other)))
    assert late.redemption is None and late.sighting is not None


def _parts(r: Record) -> tuple[Topic, bytes | None, bytes, dict[str, str]]:
    return r.topic, r.key, r.value, r.headers


def test_drops_are_counted_logged_rate_limited_and_kept_for_status(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dsfleet.coordinator")
    store = FakeKeyStore()
    enrollments = Enrollments(store)
    enrollments.settle({UNSIGNED: 40, UNKNOWN_KEY: 2}, [], [], NOW, 100.0)
    enrollments.settle({UNSIGNED: 10}, [], [], NOW, 105.0)  # within LOG_SECONDS: counted, not logged
    enrollments.settle({UNSIGNED: 1}, [], [], NOW, 111.0)
    lines = [m for m in caplog.messages if m.startswith("report dropped")]
    assert [m.split(" (")[0] for m in lines] == [
        "report dropped reason=unsigned count=40 total=40",
        "report dropped reason=unknown-key count=2 total=2",
        "report dropped reason=unsigned count=11 total=51",
    ]
    assert enrollments.dropped == {UNSIGNED: 51, UNKNOWN_KEY: 2}
    enrollments.write_counts(NOW, NOW - timedelta(hours=1))
    enrollments.write_counts(NOW, NOW - timedelta(hours=1))  # unchanged: not written again
    assert store.writes == 1
    assert store.state[UNAUTHENTICATED_STATE]["counts"] == {UNSIGNED: 51, UNKNOWN_KEY: 2}


def test_a_pending_key_is_kept_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dsfleet.coordinator")
    store = FakeKeyStore()
    enrollments = Enrollments(store)
    seen = KeySighting("gpu-03", STRANGER.id, STRANGER.public.text(), "host-3", None)
    enrollments.settle({}, [seen], [], NOW, 0.0)
    enrollments.settle({}, [seen], [], NOW + timedelta(seconds=30), 30.0)
    enrollments.settle({}, [seen], [], NOW + timedelta(seconds=61), 61.0)
    assert store.sightings == [seen, seen]
    waiting = [m for m in caplog.messages if m.startswith("key waiting for approval")]
    assert len(waiting) == 2 and f"dsfleet nodes approve gpu-03 --key {STRANGER.id}" in waiting[0]


def test_operator_keys_are_read_again_and_a_bad_read_keeps_the_last_good_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ``dsfleet serve`` started after the coordinator (its key file appears) is trusted at the next read; a key
    file that cannot be read meanwhile keeps the keys read before, said once."""
    source: list[Any] = [[]]

    def operators() -> list[Any]:
        if isinstance(source[0], Exception):
            raise source[0]
        return list(source[0])

    enrollments = Enrollments(FakeKeyStore(keys=list(ROWS)), operators)
    enrollments.read(NOW)
    update = _parts(record(UPDATE, None, OPERATOR))
    assert enrollments.gate(NOW, FLEET).admit(*update).reason == UNKNOWN_KEY
    source[0] = [OPERATOR.public]
    enrollments.read(NOW)
    assert enrollments.gate(NOW, FLEET).admit(*update).accepted
    source[0] = KeyFileError("keys/api.key: not a PEM private key")
    with caplog.at_level(logging.WARNING, logger="dsfleet.coordinator"):
        enrollments.read(NOW)
        enrollments.read(NOW)
    assert enrollments.gate(NOW, FLEET).admit(*update).accepted
    assert [r.getMessage() for r in caplog.records].count(
        "operator keys not read error=keys/api.key: not a PEM private key; the last ones read are used"
    ) == 1
