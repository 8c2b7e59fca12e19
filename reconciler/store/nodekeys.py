"""Agents' keys and enrollment tokens: who may speak for which node.

Every agent signs its reports with a key of its own; the coordinator takes a node's reports only from a key
*enrolled* for that node (``node_keys``, state ``enrolled``). A key that announces itself for a node without being
enrolled is kept as ``pending`` (with the hostname and machine id it gave), for an operator to approve
(``dsfleet nodes approve NAME``); approving a key revokes the node's other enrolled key (one key speaks for a node
at a time; a reinstalled host makes a new key). An enrollment token (``dsfleet nodes token create``) enrolls the key
of the first agent that proves it holds the token; the store keeps only the public half of the key derived from
the token (:func:`dsfleet.plumbing.signing.token_public`), never the token, and a token is used once. A token not
bound to a node cannot enroll a node that already has an enrolled key (a leaked token cannot take over a node).

At most :data:`MAX_PENDING_PER_NODE` pending keys are kept per node (the newest): a flood of announcements with
made-up keys cannot grow the table. Times come from the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsfleet.reconciler.store.database import StoreBase, _inserted_id
from dsfleet.reconciler.store.schema import ENROLLMENT_TOKENS, NODE_KEYS
from dsfleet.reconciler.store.values import _from_db, _from_db_required, _to_utc

__all__ = [
    "ENROLLED",
    "MAX_PENDING_PER_NODE",
    "PENDING",
    "REVOKED",
    "EnrollmentTokenRow",
    "KeySighting",
    "KeysMixin",
    "NodeKeyRow",
]

PENDING: Final = "pending"
ENROLLED: Final = "enrolled"
REVOKED: Final = "revoked"
MAX_PENDING_PER_NODE: Final = 5


@dataclass(frozen=True)
class NodeKeyRow:
    node: str
    key_id: str
    public_key: str
    state: str
    first_seen: datetime
    last_seen: datetime | None = None
    enrolled_at: datetime | None = None
    enrolled_by: str | None = None
    hostname: str | None = None
    machine_id: str | None = None


@dataclass(frozen=True)
class KeySighting:
    """A key that announced itself for a node (self-signed AgentInfo) without being enrolled for it."""

    node: str
    key_id: str
    public_key: str
    hostname: str | None = None
    machine_id: str | None = None


@dataclass(frozen=True)
class EnrollmentTokenRow:
    id: int
    token_public: str
    """The public half of the key derived from the token (64 hex digits); the token itself is never stored."""
    node: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    used_by: str | None = None

    @property
    def token_id(self) -> str:
        """How a proof names the token (:data:`dsfleet.plumbing.signing.TOKEN_ID_CHARS` hex digits)."""
        return self.token_public[:16]


def _key_row(r: Any) -> NodeKeyRow:
    return NodeKeyRow(
        node=r["node"],
        key_id=r["key_id"],
        public_key=r["public_key"],
        state=r["state"],
        first_seen=_from_db_required(r["first_seen"]),
        last_seen=_from_db(r["last_seen"]),
        enrolled_at=_from_db(r["enrolled_at"]),
        enrolled_by=r["enrolled_by"],
        hostname=r["hostname"],
        machine_id=r["machine_id"],
    )


def _token_row(r: Any) -> EnrollmentTokenRow:
    return EnrollmentTokenRow(
        id=int(r["id"]),
        token_public=r["token_hash"],
        node=r["node"],
        created_at=_from_db_required(r["created_at"]),
        expires_at=_from_db_required(r["expires_at"]),
        used_at=_from_db(r["used_at"]),
        used_by=r["used_by"],
    )


class KeysMixin(StoreBase):
    """Agents' keys (``node_keys``) and one-time enrollment tokens (``enrollment_tokens``)."""

    # ---- keys

    def node_keys(self, node: str | None = None) -> list[NodeKeyRow]:
        """Every key known for every node (or one node), by node then first sighting."""
        query = sa.select(NODE_KEYS).order_by(NODE_KEYS.c.node, NODE_KEYS.c.first_seen, NODE_KEYS.c.key_id)
        if node is not None:
            query = query.where(NODE_KEYS.c.node == node)
        with self._read() as conn:
            return [_key_row(r) for r in conn.execute(query).mappings()]

    def note_key_sightings(self, sightings: Sequence[KeySighting], at: datetime) -> int:
        """Keep keys that announced themselves for a node as pending (an enrolled or revoked key keeps its
        state; its last sighting is updated). Returns how many new pending keys were kept."""
        if not sightings:
            return 0
        stamp = _to_utc(at)
        added = 0
        with self._write() as conn:
            for s in {(x.node, x.key_id): x for x in sightings}.values():
                known = conn.execute(
                    sa.select(NODE_KEYS.c.state).where(
                        NODE_KEYS.c.node == s.node, NODE_KEYS.c.key_id == s.key_id
                    )
                ).first()
                if known is not None:
                    conn.execute(
                        NODE_KEYS.update()
                        .where(NODE_KEYS.c.node == s.node, NODE_KEYS.c.key_id == s.key_id)
                        .values(
                            last_seen=stamp, hostname=_cut(s.hostname, 255), machine_id=_cut(s.machine_id, 64)
                        )
                    )
                    continue
                conn.execute(
                    NODE_KEYS.insert().values(
                        node=s.node,
                        key_id=s.key_id,
                        public_key=s.public_key,
                        state=PENDING,
                        first_seen=stamp,
                        last_seen=stamp,
                        hostname=_cut(s.hostname, 255),
                        machine_id=_cut(s.machine_id, 64),
                    )
                )
                added += 1
                self._trim_pending(conn, s.node)
        return added

    def _trim_pending(self, conn: Connection, node: str) -> None:
        rows = conn.execute(
            sa.select(NODE_KEYS.c.key_id)
            .where(NODE_KEYS.c.node == node, NODE_KEYS.c.state == PENDING)
            .order_by(NODE_KEYS.c.last_seen.desc(), NODE_KEYS.c.key_id)
        ).all()
        extra = [r[0] for r in rows[MAX_PENDING_PER_NODE:]]
        if extra:
            conn.execute(
                NODE_KEYS.delete().where(
                    NODE_KEYS.c.node == node, NODE_KEYS.c.state == PENDING, NODE_KEYS.c.key_id.in_(extra)
                )
            )

    def enroll_key(
        self, node: str, key_id: str | None, *, by: str, at: datetime, public_key: str | None = None
    ) -> NodeKeyRow | None:
        """Enroll a key for ``node``: the pending (or revoked) key ``key_id`` (None: the node's only pending key),
        or a new one when ``public_key`` is given. The node's other enrolled key is revoked. None: no such key
        (or ``key_id`` None and not exactly one pending key)."""
        stamp = _to_utc(at)
        with self._write() as conn:
            if key_id is None:
                pending = conn.execute(
                    sa.select(NODE_KEYS.c.key_id).where(
                        NODE_KEYS.c.node == node, NODE_KEYS.c.state == PENDING
                    )
                ).all()
                if len(pending) != 1:
                    return None
                key_id = str(pending[0][0])
            found = conn.execute(
                sa.select(NODE_KEYS.c.key_id).where(NODE_KEYS.c.node == node, NODE_KEYS.c.key_id == key_id)
            ).first()
            if found is None:
                if public_key is None:
                    return None
                conn.execute(
                    NODE_KEYS.insert().values(
                        node=node, key_id=key_id, public_key=public_key, state=PENDING, first_seen=stamp
                    )
                )
            self._enroll(conn, node, key_id, by=by, at=stamp)
            row = (
                conn.execute(
                    sa.select(NODE_KEYS).where(NODE_KEYS.c.node == node, NODE_KEYS.c.key_id == key_id)
                )
                .mappings()
                .first()
            )
        return _key_row(row) if row is not None else None

    @staticmethod
    def _enroll(conn: Connection, node: str, key_id: str, *, by: str, at: datetime) -> None:
        conn.execute(
            NODE_KEYS.update()
            .where(NODE_KEYS.c.node == node, NODE_KEYS.c.state == ENROLLED, NODE_KEYS.c.key_id != key_id)
            .values(state=REVOKED)
        )
        conn.execute(
            NODE_KEYS.update()
            .where(NODE_KEYS.c.node == node, NODE_KEYS.c.key_id == key_id)
            .values(state=ENROLLED, enrolled_at=at, enrolled_by=by[:255])
        )

    def revoke_key(self, node: str, key_id: str | None = None) -> int:
        """Revoke a key of ``node`` (None: every key it has); its reports are dropped from now on. Returns how
        many keys changed state."""
        query = NODE_KEYS.update().where(NODE_KEYS.c.node == node, NODE_KEYS.c.state != REVOKED)
        if key_id is not None:
            query = query.where(NODE_KEYS.c.key_id == key_id)
        with self._write() as conn:
            return int(conn.execute(query.values(state=REVOKED)).rowcount)

    def forget_keys(self, node: str) -> int:
        """Forget every key of ``node`` (a node removed for good)."""
        with self._write() as conn:
            return int(conn.execute(NODE_KEYS.delete().where(NODE_KEYS.c.node == node)).rowcount)

    # ---- enrollment tokens

    def create_enrollment_token(
        self, token_public: str, *, node: str | None, at: datetime, expires_at: datetime
    ) -> int:
        """Keep a new token (its derived public key only); its id."""
        with self._write() as conn:
            result = conn.execute(
                ENROLLMENT_TOKENS.insert().values(
                    token_hash=token_public,
                    node=node,
                    created_at=_to_utc(at),
                    expires_at=_to_utc(expires_at),
                )
            )
            return _inserted_id(result)

    def enrollment_tokens(self, *, at: datetime | None = None) -> list[EnrollmentTokenRow]:
        """Tokens, oldest first; with ``at``: only those still usable then (unused, not expired)."""
        query = sa.select(ENROLLMENT_TOKENS).order_by(ENROLLMENT_TOKENS.c.id)
        if at is not None:
            query = query.where(
                ENROLLMENT_TOKENS.c.used_at.is_(None), ENROLLMENT_TOKENS.c.expires_at > _to_utc(at)
            )
        with self._read() as conn:
            return [_token_row(r) for r in conn.execute(query).mappings()]

    def redeem_enrollment_token(self, token_id: int, sighting: KeySighting, at: datetime) -> bool:
        """Use a token to enroll ``sighting``'s key for its node, in one transaction: the token must be unused,
        unexpired, bound to that node or to none, and an unbound token never enrolls a node that has an enrolled
        key already. True when the key is enrolled now."""
        stamp = _to_utc(at)
        with self._write() as conn:
            token = (
                conn.execute(sa.select(ENROLLMENT_TOKENS).where(ENROLLMENT_TOKENS.c.id == token_id))
                .mappings()
                .first()
            )
            if (
                token is None
                or token["used_at"] is not None
                or _from_db_required(token["expires_at"]) <= stamp
            ):
                return False
            if token["node"] is not None and token["node"] != sighting.node:
                return False
            if token["node"] is None:
                enrolled = conn.execute(
                    sa.select(NODE_KEYS.c.key_id).where(
                        NODE_KEYS.c.node == sighting.node, NODE_KEYS.c.state == ENROLLED
                    )
                ).first()
                if enrolled is not None and enrolled[0] != sighting.key_id:
                    return False
            used = conn.execute(
                ENROLLMENT_TOKENS.update()
                .where(ENROLLMENT_TOKENS.c.id == token_id, ENROLLMENT_TOKENS.c.used_at.is_(None))
                .values(used_at=stamp, used_by=sighting.key_id)
            ).rowcount
            if used != 1:
                return False
            known = conn.execute(
                sa.select(NODE_KEYS.c.key_id).where(
                    NODE_KEYS.c.node == sighting.node, NODE_KEYS.c.key_id == sighting.key_id
                )
            ).first()
            if known is None:
                conn.execute(
                    NODE_KEYS.insert().values(
                        node=sighting.node,
                        key_id=sighting.key_id,
                        public_key=sighting.public_key,
                        state=PENDING,
                        first_seen=stamp,
                        last_seen=stamp,
                        hostname=_cut(sighting.hostname, 255),
                        machine_id=_cut(sighting.machine_id, 64),
                    )
                )
            self._enroll(conn, sighting.node, sighting.key_id, by=f"token {token_id}", at=stamp)
        return True


def _cut(text: str | None, limit: int) -> str | None:
    return text[:limit] if text is not None else None
