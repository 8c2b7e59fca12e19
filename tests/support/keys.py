"""Keys for tests, benchmarks and the demo, set up as an operator would: the coordinator's signing key made up front
where the coordinator looks for it (``keys/coordinator.key`` next to a SQLite store, or a path given in
``DSFLEET_COORDINATOR__SIGNING_KEY``), every agent's key made in its state directory and enrolled in the store
(``dsfleet nodes approve``), and records signed exactly as the product signs them (the coordinator's
``AgentConfig``/``AgentCommand``, an agent's ``AgentInfo``/``AgentResponse``/``AgentLogs``, an operator's
``UpdateConfig``/``Refresh``).

Typical use::

    key = coordinator_key(db)                      # before the coordinator starts
    args = agent_args(...) + trust_args(key)       # every real agent trusts it
    enroll_agent(db, node, state_dir)              # the agent's reports are taken
    headers = sign_message(fake_agent_key, response, node)   # a stand-in agent speaks for its node
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsfleet.agent.identity import load_identity
from dsfleet.plumbing.settings import CoordinatorSettings
from dsfleet.plumbing.signing import SigningKey, load_or_create_key, sign_record
from dsfleet.reconciler.cli.keys import signing_key_path
from dsfleet.reconciler.store import Store
from dsfleet.schemas.signatures import SignedFields
from dsfleet.schemas.wire import encode, signed_fields_of

__all__ = [
    "OPERATOR_KEYS_ENV",
    "SIGNING_KEY_ENV",
    "TRUSTED_KEYS_ENV",
    "agent_key",
    "coordinator_env",
    "coordinator_key",
    "coordinator_key_path",
    "enroll",
    "enroll_agent",
    "enroll_all",
    "sign_message",
    "sign_value",
    "trust_args",
]

SIGNING_KEY_ENV = "DSFLEET_COORDINATOR__SIGNING_KEY"
OPERATOR_KEYS_ENV = "DSFLEET_COORDINATOR__OPERATOR_KEYS"
TRUSTED_KEYS_ENV = "DSFLEET_AGENT__TRUSTED_KEYS"


def coordinator_key_path(db: str) -> Path:
    """Where a coordinator (or ``dsfleet apply``) of store ``db`` looks for its signing key, unless
    ``DSFLEET_COORDINATOR__SIGNING_KEY`` says otherwise."""
    return signing_key_path(CoordinatorSettings(db=db))


def coordinator_key(db: str | None = None, path: str | os.PathLike[str] | None = None) -> SigningKey:
    """The coordinator's signing key, made now when there is none: at ``path``, else where a coordinator of
    store ``db`` looks for it (``keys/coordinator.key`` next to a SQLite file)."""
    if path is None:
        if db is None:
            raise ValueError("coordinator_key: give the store's URL or the key's path")
        path = coordinator_key_path(db)
    return load_or_create_key(path)[0]


def coordinator_env(key_path: str | os.PathLike[str], operators: Iterable[SigningKey] = ()) -> dict[str, str]:
    """Environment of a coordinator (or ``dsfleet apply``) that signs with the key at ``key_path`` and obeys
    the bus requests of ``operators``."""
    env = {SIGNING_KEY_ENV: str(key_path)}
    texts = [k.public.text() for k in operators]
    if texts:
        env[OPERATOR_KEYS_ENV] = json.dumps(texts)  # the nested form takes a list as JSON
    return env


def trust_args(*keys: SigningKey) -> list[str]:
    """``dsfleet-agent run`` flags: trust these coordinator keys."""
    out: list[str] = []
    for key in keys:
        out += ["--trust-key", key.public.text()]
    return out


def agent_key(state_dir: str | os.PathLike[str]) -> SigningKey:
    """The key an agent of ``state_dir`` signs with (made now, as the agent makes it on its first start)."""
    return load_identity(state_dir)[0]


def enroll(db: str, node: str, key: SigningKey, *, by: str = "test") -> None:
    """Enroll ``key`` for ``node`` in the store (what ``dsfleet nodes approve`` does): the coordinator takes the
    node's reports from it (within a second when it is running)."""
    with Store.open(db) as store:
        row = store.enroll_key(node, key.id, by=by, at=datetime.now(UTC), public_key=key.public.text())
    assert row is not None and row.state == "enrolled", f"{node}: key {key.id} not enrolled"


def enroll_all(db: str, keys: Mapping[str, SigningKey], *, by: str = "test") -> None:
    """Enroll each node's key (one store session for a whole fleet)."""
    at = datetime.now(UTC)
    with Store.open(db) as store:
        for node, key in keys.items():
            store.enroll_key(node, key.id, by=by, at=at, public_key=key.public.text())


def enroll_agent(db: str, node: str, state_dir: str | os.PathLike[str]) -> SigningKey:
    """Make the key of the agent of ``state_dir`` now and enroll it for ``node``; the key."""
    key = agent_key(state_dir)
    enroll(db, node, key)
    return key


def sign_message(key: SigningKey, message: Any, record_key: str | None) -> dict[str, str]:
    """The headers of a record carrying ``message`` (encoded with :func:`dsfleet.schemas.wire.encode`) under
    ``record_key``, signed by ``key`` as the product signs it."""
    return sign_record(key, signed_fields_of(message), record_key, encode(message))


def sign_value(
    key: SigningKey,
    record_key: str | None,
    value: bytes | None,
    *,
    fields: SignedFields | None = None,
) -> dict[str, str]:
    """The headers of a record of raw bytes signed by ``key``: the signed fields are read from the JSON payload
    (schema, sent_at, fleet, generation) unless given; a tombstone (None) needs ``fields``."""
    if fields is None:
        if value is None:
            raise ValueError("sign_value: a tombstone needs its signed fields")
        doc = json.loads(value)
        generation = doc.get("generation")
        fields = SignedFields(
            schema=str(doc.get("schema", "")),
            issued=str(doc.get("sent_at", "")),
            fleet=doc.get("fleet") or None,
            generation=generation if isinstance(generation, int) and generation > 0 else None,
        )
    return sign_record(key, fields, record_key, value)
