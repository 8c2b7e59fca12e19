"""Whom the agent believes: every refusal reason of an AgentConfig record as a table (:func:`accept_record` with a
:class:`Trust`), then on the fakes — a forged, tampered, replayed, re-keyed or foreign record is refused, the running
container is left as it was, the mark (fleet, generation) does not move and the refusal is reported and logged
rate-limited; forged commands (``assign-name`` for another key, unsigned ``refresh``/``logs``) are ignored and
counted; two trusted keys let the coordinator's key rotate; an agent without a trusted key refuses everything, and
``--insecure-accept-unsigned`` takes everything signed or not but still refuses stale generations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dsfleet.agent import filestore
from dsfleet.agent.desiredconfigs import Accepted, Refusal, accept_record
from dsfleet.agent.intake import REJECTIONS_KEPT
from dsfleet.agent.ports import BusBatch, BusRecord
from dsfleet.agent.testing import signed_record
from dsfleet.agent.trust import Trust
from dsfleet.plumbing.signing import Keyring, SigningKey, generate_key, sign_record
from dsfleet.schemas.nodeconfigs import InstanceConfig, MountSpec
from dsfleet.schemas.signatures import HEADER_GENERATION, HEADER_KEY, HEADER_SIGNATURE, SignedFields
from dsfleet.schemas.wire import AgentCommand, CommandKind, Rejection, encode
from tests.support.inprocessagents import FAKE_NODE as NODE
from tests.support.inprocessagents import FakeAgent, fake_agent
from tests.support.inprocessagents import config_record as config
from tests.support.inprocessagents import fake_instance as inst

COORDINATOR = generate_key()
STRANGER = generate_key()
TRUST = Trust(Keyring.of([COORDINATOR.public]))
SENT = "2026-01-01T00:00:00+00:00"  # the issue time config_record writes
EVIL = "evil.example/miner:1"


def evil_instance() -> InstanceConfig:
    """What an attacker asks for: privileged, the host's ``/`` bound read-write, their image (hashes recomputed)."""
    root = MountSpec(type="bind", source="/", target="/host", readOnly=False)
    return inst(image=EVIL, privileged=True, binds=(root,))


def signed(
    key: SigningKey | None, value: bytes | None, *, node: str = NODE, generation: int | None = None
) -> BusRecord:
    return signed_record(key, node, value, generation=generation)


def with_headers(record: BusRecord, **changes: str | None) -> BusRecord:
    headers = {k: v for k, v in {**record.headers, **changes}.items() if v is not None}
    return BusRecord(record.key, record.value, headers)


def judge(record: BusRecord, trust: Trust = TRUST) -> Accepted | Rejection | Refusal | None:
    return accept_record(NODE, record.key, record.value, headers=record.headers, trust=trust)


GOOD = config(2, inst(env="2"), fleet="fleet-a")
TAMPERED = config(2, inst(image=EVIL, privileged=True), fleet="fleet-a")  # valid shape, hashes recomputed


@dataclass(frozen=True)
class Case:
    what: str
    record: BusRecord
    reason: str
    generation: int | None
    detail: str = ""
    trust: Trust = TRUST


CASES = [
    Case("no signature at all", signed(None, GOOD), "unsigned", None, "no signature"),
    Case(
        "signed by a key the agent does not trust",
        signed(STRANGER, GOOD),
        "unknown-key",
        2,
        f"signed by key {STRANGER.id}, which this agent does not trust (it trusts: {COORDINATOR.id})",
    ),
    Case(
        "a payload changed under the original signature",
        BusRecord(NODE.encode(), TAMPERED, signed(COORDINATOR, GOOD).headers),
        "bad-signature",
        2,
        f"the signature of key {COORDINATOR.id} does not match the record",
    ),
    Case(
        "an old record replayed under a higher generation header",
        with_headers(signed(COORDINATOR, config(1, inst(), fleet="fleet-a")), **{HEADER_GENERATION: "9"}),
        "bad-signature",
        9,
    ),
    Case(
        "a record of another fleet re-labelled",
        with_headers(signed(COORDINATOR, GOOD), fleet="fleet-b"),
        "bad-signature",
        2,
    ),
    Case(
        "a record signed for another node, re-keyed to this one",
        BusRecord(NODE.encode(), GOOD, signed(COORDINATOR, GOOD, node="gpu-99").headers),
        "bad-signature",
        2,
    ),
    Case(
        "a signature that is not base64",
        with_headers(signed(COORDINATOR, GOOD), **{HEADER_SIGNATURE: "not base64!"}),
        "bad-signature",
        2,
    ),
    Case(
        "a signature without the signed fields (schema, issue time)",
        BusRecord(NODE.encode(), GOOD, COORDINATOR.headers(GOOD)),
        "bad-signature",
        None,
        "without the signed fields",
    ),
    Case(
        "a record signed as another schema (an AgentCommand's signature does not make a config)",
        BusRecord(
            NODE.encode(),
            GOOD,
            sign_record(
                COORDINATOR,
                SignedFields(schema="dsfleet.agent-command/v1", issued=SENT, fleet="fleet-a", generation=2),
                NODE,
                GOOD,
            ),
        ),
        "bad-signature",
        2,
        "disagree on the schema",
    ),
    Case(
        "signed headers that say another generation than the payload",
        BusRecord(
            NODE.encode(),
            GOOD,
            sign_record(
                COORDINATOR,
                SignedFields(schema="dsfleet.agent-config/v1", issued=SENT, fleet="fleet-a", generation=7),
                NODE,
                GOOD,
            ),
        ),
        "bad-signature",
        2,
        "disagree on the generation",
    ),
    Case(
        "a signed record whose message names another node",
        signed(COORDINATOR, config(2, inst(), node="gpu-02")),
        "other-node",
        None,
        f"a record of node {NODE} whose message names another node",
    ),
    Case(
        "an agent given no coordinator key",
        signed(COORDINATOR, GOOD),
        "no-trusted-key",
        2,
        "trusts no coordinator key",
        Trust(),
    ),
    Case("an unsigned removal (tombstone)", signed(None, None, generation=3), "unsigned", None),
    Case(
        "a removal signed by a stranger",
        signed(STRANGER, None, generation=3),
        "unknown-key",
        3,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_each_record_the_agent_cannot_believe_is_refused_with_its_reason(case: Case) -> None:
    verdict = judge(case.record, case.trust)
    assert isinstance(verdict, Refusal), verdict
    assert (verdict.reason, verdict.generation) == (case.reason, case.generation)
    assert case.detail in verdict.detail
    assert EVIL not in verdict.detail and "miner" not in verdict.detail  # names keys, never quotes the record


def test_a_record_signed_by_a_trusted_key_is_accepted_and_its_tombstone_carries_its_signed_fields() -> None:
    verdict = judge(signed(COORDINATOR, GOOD))
    assert isinstance(verdict, Accepted) and verdict.config is not None and verdict.config.generation == 2
    removal = judge(signed_record(COORDINATOR, NODE, None, generation=3))
    assert removal == Accepted(None, 3, None)
    assert judge(signed(COORDINATOR, GOOD, node="gpu-99")) is None  # another node's record: not ours to judge
    invalid = judge(signed(COORDINATOR, b"{garbage"))
    assert isinstance(invalid, Rejection)  # believed, then found malformed: an ordinary invalid record


def test_insecure_accept_unsigned_takes_any_record_and_checks_nothing_else() -> None:
    lab = Trust(accept_unsigned=True)
    for record in (signed(None, GOOD), signed(STRANGER, GOOD), BusRecord(NODE.encode(), TAMPERED, {})):
        verdict = judge(record, lab)
        assert isinstance(verdict, Accepted) and verdict.config is not None


def test_log_requests_keys_are_believed_for_logs_only() -> None:
    serve = generate_key()
    trust = Trust(Keyring.of([COORDINATOR.public]), Keyring.of([serve.public]))
    value = b'{"schema": "dsfleet.agent-command/v1", "sent_at": "2026-01-01T00:00:00+00:00"}'
    record = signed_record(serve, NODE, value)
    _, distrust = trust.check(NODE, record.value, record.headers)
    assert distrust is not None and distrust.reason == "unknown-key"  # not a coordinator key
    assert trust.check_log_request(NODE, record.value, record.headers) is None
    stranger = signed_record(STRANGER, NODE, value)
    refused = trust.check_log_request(NODE, stranger.value, stranger.headers)
    assert refused is not None and refused.reason == "unknown-key"


# -- on the fakes -------------------------------------------------------------------------------------------------


def steps(r: FakeAgent, n: int = 3) -> None:
    for _ in range(n):
        r.agent._next_heartbeat = 0.0
        r.agent.step()


def reasons(r: FakeAgent) -> list[str]:
    return [x.reason for x in r.agent.response().rejections]


def running(tmp_path: Path, **kw: Any) -> tuple[FakeAgent, str]:
    """An agent that runs generation 1 of fleet-a, signed by its coordinator."""
    r = fake_agent(tmp_path, **kw)
    r.bus.push_config(NODE, config(1, inst(), fleet="fleet-a"))
    r.settle()
    return r, r.running_one()


def untouched(r: FakeAgent, cid: str, mark: int) -> None:
    """The container runs as it was: same id, same start, the good spec; nothing was asked of the engine."""
    assert r.running_one() == cid and not r.runtime.requests[cid].privileged
    assert r.runtime.requests[cid].image == "ds:7.0"
    assert [
        c for c in r.calls_since(mark) if c.split()[0] in ("create", "stop", "remove", "rename", "pull")
    ] == []


def test_forged_configs_are_refused_the_container_untouched_and_the_refusals_reported(tmp_path: Path) -> None:
    r, cid = running(tmp_path)
    started = r.runtime.containers[cid].started_at
    mark = len(r.runtime.calls)
    evil = config(9, evil_instance(), fleet="fleet-a")
    r.bus.push_record(signed(None, evil))
    r.bus.push_record(signed(STRANGER, evil))
    r.bus.push_record(BusRecord(NODE.encode(), evil, r.bus.config_record(NODE, GOOD).headers))
    r.bus.push_record(signed(None, None, generation=10))  # a forged removal
    steps(r)
    untouched(r, cid, mark)
    assert r.runtime.containers[cid].started_at == started
    assert reasons(r) == ["unsigned", "unknown-key", "bad-signature", "unsigned"]
    assert r.agent.rejected == 4 and r.agent.observed_generation == 1
    binding = filestore.load_binding(tmp_path)
    assert binding is not None and binding.generation == 1  # a forged 9 moves no mark
    assert r.bus.responses[-1].rejections == r.agent.response().rejections  # reported on the bus
    # the coordinator's next real config is taken (9 was never believed, so 2 is above the mark)
    r.bus.push_config(NODE, GOOD)
    r.settle()
    assert r.agent.observed_generation == 2 and reasons(r) == []


def test_a_forged_record_appended_after_the_good_one_does_not_hide_it_at_catch_up(tmp_path: Path) -> None:
    r = fake_agent(tmp_path)
    good = r.bus.config_record(NODE, config(4, inst(), fleet="fleet-a"))
    forged = signed(None, config(99, evil_instance(), fleet="fleet-a"))
    r.bus.enqueue(BusBatch(configs=[good, forged], caught_up=True))
    r.settle()
    assert r.agent.observed_generation == 4 and not r.runtime.requests[r.running_one()].privileged
    assert reasons(r) == ["unsigned"]


def test_a_replayed_older_signed_record_is_refused_even_after_a_restart(tmp_path: Path) -> None:
    key = generate_key()
    r, _ = running(tmp_path, coordinator=key)
    first = r.bus.configs[0]
    r.bus.push_config(NODE, config(2, inst(env="2"), fleet="fleet-a"))
    r.settle()
    cid = r.running_one()
    mark = len(r.runtime.calls)
    r.bus.push_record(first)  # the coordinator's own signature, an older generation
    steps(r)
    untouched(r, cid, mark)
    assert reasons(r) == ["stale-generation"] and r.agent.observed_generation == 2
    r.bus.push_record(r.bus.configs[1])  # the record it runs, again: nothing to do, no refusal
    steps(r)
    assert reasons(r) == ["stale-generation"] and r.calls_since(mark) == []
    # restarted, the agent reads its partition again: the newest record there is the replayed old one
    again = fake_agent(tmp_path, r.runtime, r.clock, coordinator=key)
    again.bus.push_record(first)
    steps(again)
    assert [x.reason for x in again.agent.response().rejections] == ["stale-generation"]
    assert again.running_one() == cid and getattr(again.agent.desired, "generation", None) == 2


def test_a_replayed_older_removal_is_refused(tmp_path: Path) -> None:
    r, _ = running(tmp_path)
    r.bus.push_config(NODE, None, generation=2)  # the node was removed from the fleet...
    r.settle()
    assert r.runtime.named("dsfleet-a") is None
    removal = r.bus.configs[-1]
    r.bus.push_config(NODE, config(3, inst(env="3"), fleet="fleet-a"))  # ...and added again
    r.settle()
    cid = r.running_one()
    r.bus.push_record(removal)  # the coordinator's own signature over the old removal
    steps(r)
    assert r.running_one() == cid and reasons(r) == ["stale-generation"]


@pytest.mark.parametrize(
    ("signer", "reason"),
    [("its own coordinator", "unknown-key"), ("the same key", "other-fleet")],
    ids=["another fleet's coordinator", "another fleet id under a trusted key"],
)
def test_a_config_of_another_fleet_is_refused(tmp_path: Path, signer: str, reason: str) -> None:
    key = generate_key()
    r, cid = running(tmp_path, coordinator=key, fleet_id="fleet-a")
    other = config(5, inst(env="b"), fleet="fleet-b")
    r.bus.push_record(signed(generate_key() if signer == "its own coordinator" else key, other))
    steps(r)
    assert r.running_one() == cid and reasons(r) == [reason] and r.agent.bound_fleet == "fleet-a"


def test_refusals_are_bounded_in_the_response_and_logged_rate_limited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r, cid = running(tmp_path)
    caplog.set_level(logging.WARNING, logger="dsfleet.agent")
    for n in range(50):
        r.bus.push_record(signed(None, config(10 + n, evil_instance(), fleet="fleet-a")))
    steps(r, 1)
    logged = [m for m in caplog.messages if m.startswith("refused AgentConfig record")]
    assert r.agent.rejected == 50 and len(reasons(r)) == REJECTIONS_KEPT
    assert len(logged) == 3  # the first three, then one line per REJECT_LOG_SECONDS
    r.clock.advance(11)
    r.bus.push_record(signed(STRANGER, GOOD))
    steps(r, 1)
    logged = [m for m in caplog.messages if m.startswith("refused AgentConfig record")]
    assert len(logged) == 4 and "reason=unknown-key" in logged[-1] and STRANGER.id in logged[-1]
    summaries = [m for m in caplog.messages if "since the last heartbeat" in m]
    assert summaries == [
        "ignored 50 AgentConfig records since the last heartbeat (total 50)",
        "ignored 1 AgentConfig records since the last heartbeat (total 51)",
    ]
    assert r.running_one() == cid


def test_an_agent_without_a_trusted_key_refuses_every_config_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dsfleet.agent")
    r = fake_agent(tmp_path, trust=Trust())
    r.agent._log_trust()
    assert any(
        rec.levelno == logging.ERROR and "no trusted coordinator key" in rec.message for rec in caplog.records
    )
    r.bus.push_config(NODE, config(1, inst(), fleet="fleet-a"))  # signed by the coordinator: still nobody's
    steps(r)
    assert r.runtime.containers == {} and r.agent.desired is None and reasons(r) == ["no-trusted-key"]


def test_insecure_accept_unsigned_takes_unsigned_configs_but_not_stale_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dsfleet.agent")
    r = fake_agent(tmp_path, trust=Trust(accept_unsigned=True))
    r.agent._log_trust()
    assert any(rec.levelno == logging.WARNING and "INSECURE" in rec.message for rec in caplog.records)
    r.bus.push_record(signed(None, config(3, inst(), fleet="fleet-a")))
    r.settle()
    cid = r.running_one()
    r.bus.push_record(signed(None, config(2, inst(env="old"), fleet="fleet-a")))
    steps(r)
    assert r.running_one() == cid and reasons(r) == ["stale-generation"]


def test_two_trusted_keys_let_the_coordinator_key_rotate(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    both = Trust(Keyring.of([old.public, new.public]))
    r, _ = running(tmp_path, coordinator=old, trust=both)
    r.bus.push_record(
        signed(new, config(2, inst(env="2"), fleet="fleet-a"))
    )  # the coordinator signs with the new
    r.settle()
    assert r.agent.observed_generation == 2 and reasons(r) == []
    # the old key is taken off the agent's list: what it signs is refused, the new key's is taken
    after = fake_agent(tmp_path, r.runtime, r.clock, coordinator=new, trust=Trust(Keyring.of([new.public])))
    after.bus.push_config(NODE, config(2, inst(env="2"), fleet="fleet-a"))
    after.settle()
    cid = after.running_one()
    after.bus.push_record(signed(old, config(3, evil_instance(), fleet="fleet-a")))
    steps(after)
    assert [x.reason for x in after.agent.response().rejections] == ["unknown-key"]
    assert after.running_one() == cid
    after.bus.push_config(NODE, config(4, inst(env="4"), fleet="fleet-a"))
    after.settle()
    assert after.agent.observed_generation == 4


# -- commands -----------------------------------------------------------------------------------------------------


def command(r: FakeAgent, kind: CommandKind, **kw: object) -> bytes:
    now = datetime.fromtimestamp(r.clock.time(), UTC).isoformat()
    return encode(AgentCommand(sent_at=now, command=kind, **kw))


def command_record(key: SigningKey | None, value: bytes, target: str) -> BusRecord:
    return signed_record(key, target, value)


def test_assign_name_is_obeyed_only_signed_and_for_this_agents_own_key(tmp_path: Path) -> None:
    r = fake_agent(tmp_path, node=None)
    r.agent.step()
    machine = r.agent.host.machine_id
    assert machine is not None
    mine = r.agent.identity.id
    forged = [
        (
            "another agent's key",
            r.bus.command_record(
                command(r, CommandKind.ASSIGN_NAME, target=machine, node="x1", keyId=STRANGER.id)
            ),
        ),
        (
            "to every agent, another key",
            r.bus.command_record(
                command(r, CommandKind.ASSIGN_NAME, target="*", node="x2", keyId=STRANGER.id)
            ),
        ),
        (
            "unsigned, this key",
            command_record(
                None, command(r, CommandKind.ASSIGN_NAME, target=machine, node="x3", keyId=mine), machine
            ),
        ),
        (
            "a stranger's signature",
            command_record(
                STRANGER, command(r, CommandKind.ASSIGN_NAME, target=machine, node="x4", keyId=mine), machine
            ),
        ),
        (
            "no key named",
            r.bus.command_record(command(r, CommandKind.ASSIGN_NAME, target=machine, node="x5")),
        ),
    ]
    for _, record in forged:
        r.bus.push_record(record, command=True)
    steps(r)
    assert r.agent.node is None and not (tmp_path / "node-name").exists()
    assert r.agent.commands_refused == len(forged)
    assert all(f[0] == "" for f in r.bus.followed)  # never followed another node's partition
    r.bus.push_command(command(r, CommandKind.ASSIGN_NAME, target=machine, node="gpu-07", keyId=mine))
    steps(r)
    assert r.agent.node == "gpu-07" and r.bus.followed[-1][0] == "gpu-07"


def test_unsigned_refresh_and_logs_are_ignored_and_counted(tmp_path: Path) -> None:
    serve = generate_key()
    r, cid = running(tmp_path, heartbeat_seconds=60.0)
    r.runtime.emit(cid, "a line")
    infos = len(r.bus.infos)
    r.bus.push_record(command_record(None, command(r, CommandKind.REFRESH, target=NODE), NODE), command=True)
    r.bus.push_record(
        command_record(None, command(r, CommandKind.LOGS, target=NODE, requestId="r1", instance="a"), NODE),
        command=True,
    )
    r.bus.push_record(
        command_record(serve, command(r, CommandKind.LOGS, target=NODE, requestId="r2", instance="a"), NODE),
        command=True,
    )
    for _ in range(3):  # no heartbeat is due: only a believed refresh makes one
        r.agent.step()
    assert len(r.bus.infos) == infos and r.bus.logs == [] and r.agent.commands_refused == 3
    r.bus.push_command(command(r, CommandKind.REFRESH, target=NODE))
    r.agent.step()
    assert len(r.bus.infos) == infos + 1  # a signed refresh: re-announced at once
    r.bus.push_command(command(r, CommandKind.LOGS, target=NODE, requestId="r3", instance="a"))
    r.agent.step()
    assert [x.requestId for x in r.bus.logs] == ["r3"] and r.agent.commands_refused == 3


def test_a_log_reader_key_may_ask_for_logs_and_nothing_else(tmp_path: Path) -> None:
    coordinator, serve = generate_key(), generate_key()
    trust = Trust(Keyring.of([coordinator.public]), Keyring.of([serve.public]))
    r, cid = running(tmp_path, coordinator=coordinator, trust=trust, heartbeat_seconds=60.0)
    r.runtime.emit(cid, "a line")
    infos = len(r.bus.infos)
    r.bus.push_record(
        command_record(serve, command(r, CommandKind.LOGS, target=NODE, requestId="r1", instance="a"), NODE),
        command=True,
    )
    r.bus.push_record(command_record(serve, command(r, CommandKind.REFRESH, target=NODE), NODE), command=True)
    r.agent.step()
    assert [x.requestId for x in r.bus.logs] == ["r1"] and "a line" in r.bus.logs[0].text
    assert len(r.bus.infos) == infos and r.agent.commands_refused == 1


def test_a_signed_command_for_another_node_cannot_be_turned_on_this_one(tmp_path: Path) -> None:
    r, _ = running(tmp_path, heartbeat_seconds=60.0)
    infos = len(r.bus.infos)
    theirs = r.bus.command_record(command(r, CommandKind.REFRESH, target="gpu-02"))
    assert r.bus.signer is not None and theirs.value is not None
    assert theirs.headers[HEADER_KEY] == r.bus.signer.id  # a genuine command of the coordinator, for gpu-02
    retargeted = BusRecord(
        NODE.encode(), theirs.value.replace(b'"gpu-02"', f'"{NODE}"'.encode()), theirs.headers
    )
    r.bus.push_record(retargeted, command=True)  # re-keyed and re-targeted under the coordinator's signature
    r.bus.push_record(BusRecord(NODE.encode(), theirs.value, theirs.headers), command=True)  # re-keyed only
    r.agent.step()
    # the re-targeted one fails its signature (counted); the re-keyed one still names gpu-02 (not for this agent)
    assert len(r.bus.infos) == infos and r.agent.commands_refused == 1
