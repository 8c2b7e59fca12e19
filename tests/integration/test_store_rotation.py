"""A new signing key re-signs every node's stored config once (a real SQLite file and a throw-away PostgreSQL
server): the first start with a key re-publishes what the store holds signed by it, a start with the same key
nothing, a start after ``keys rotate --commit`` every config again, verifiable by the new key only; a held config
(a camera handover under way) is left to its handover."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from dsfleet.plumbing.signing import Keyring, SigningKey, generate_key, sign_record
from dsfleet.reconciler.applying import agent_config_encoder, apply_manifests
from dsfleet.reconciler.coordinator.rotation import SIGNING_KEY_STATE, resign_configs
from dsfleet.reconciler.store import NewRevision, Store
from dsfleet.schemas.wire import Signer
from tests.support.livefleet import ROOT

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


def _signer(key: SigningKey) -> Signer:
    return lambda fields, record_key, payload: sign_record(key, fields, record_key, payload)


def _resign(store: Store, key: SigningKey, at: datetime) -> list[str]:
    encode = agent_config_encoder(at, "", store.fleet_id(), sign=_signer(key))
    return resign_configs(
        store, key.id, store.latest_node_configs(), lambda c: encode(c.node, c.generation, c.payload), at
    )


def test_a_new_key_re_signs_every_stored_config_once(store: Store) -> None:
    old, new = generate_key(), generate_key()

    applied = apply_manifests(
        [ROOT / "manifests"],
        store,
        NewRevision(source="cli", created_at=T0, manifests_hash=""),
        sign=_signer(old),
    )
    nodes = sorted(store.latest_node_configs())
    assert nodes and applied.applied is not None
    store.mark_published([r.id for r in store.pending_outbox()], T0)

    # the first start with a key on a store that never recorded one: every config again (records of an
    # earlier release carry no signature)
    assert _resign(store, old, T0) == nodes
    store.mark_published([r.id for r in store.pending_outbox()], T0)
    assert store.sync_state(SIGNING_KEY_STATE) == old.id
    # the same key at the next start: nothing
    assert _resign(store, old, T0 + timedelta(seconds=5)) == []
    assert store.pending_outbox() == []

    # keys rotate --commit, then a start: every config, signed by the new key, verifiable by it alone
    later = T0 + timedelta(minutes=1)
    assert _resign(store, new, later) == nodes
    rows = store.pending_outbox()
    assert sorted(r.key for r in rows) == nodes
    by_new, by_old = Keyring.of([new.public]), Keyring.of([old.public])
    for row in rows:
        assert by_new.check_record(row.key, row.value, row.headers).ok
        assert not by_old.check_record(row.key, row.value, row.headers).ok
        assert row.headers["generation"] == str(store.latest_node_configs()[row.key].generation)
    events = [e for e in store.events(limit=50) if e.kind == "resync" and new.id in e.message]
    assert sorted(str(e.node) for e in events) == nodes
