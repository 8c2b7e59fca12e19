"""Who a bearer token is and what it may do (pure; stdlib only).

Three roles, each allowed what the one before it is: ``viewer`` reads; ``operator`` also edits Cameras,
DsInstances, Nodes and InferenceProfiles, applies and refreshes; ``admin`` also edits Policies (and whatever
changes the fleet's rules or keys). The single ``[api] token`` is an admin named :data:`ADMIN_NAME`; more tokens
come from ``[api] tokens_file``: one ``name:role:sha256`` line each (the sha256 of the token, in hex; ``#``
starts a comment), so the file holds no token itself.

The role a request needs is decided from its method and path alone (:func:`required_role`), before its body is
read."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = [
    "ADMIN_KINDS",
    "ADMIN_NAME",
    "Identity",
    "Role",
    "TokenEntry",
    "TokensFileError",
    "identify",
    "parse_tokens",
    "required_role",
    "token_digest",
]

ADMIN_NAME: Final = "admin"
ADMIN_KINDS: Final = frozenset({"Policy"})
"""Kinds only an admin may create, change or delete."""
MANIFESTS_PATH: Final = "/api/v1/manifests/"
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
_DIGEST: Final = re.compile(r"^[0-9a-f]{64}$")


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role


@dataclass(frozen=True)
class TokenEntry:
    name: str
    role: Role
    digest: str
    """sha256 of the token, hex."""


class TokensFileError(ValueError):
    """A line of the tokens file is not ``name:role:sha256``."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_tokens(text: str, source: str = "tokens file") -> tuple[TokenEntry, ...]:
    """The entries of a tokens file; raises :class:`TokensFileError` naming the line."""
    entries: list[TokenEntry] = []
    names: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [part.strip() for part in line.split(":")]
        where = f"{source}:{number}"
        if len(parts) != 3:
            raise TokensFileError(f"{where}: expected name:role:sha256")
        name, role, digest = parts
        if not _NAME.match(name):
            raise TokensFileError(f"{where}: a name is letters, digits, space, '.', '_', '@' or '-'")
        if role.upper() not in Role.__members__:
            raise TokensFileError(f"{where}: role must be viewer, operator or admin")
        if not _DIGEST.match(digest.lower()):
            raise TokensFileError(f"{where}: the third field is the token's sha256 (64 hex digits)")
        if name in names:
            raise TokensFileError(f"{where}: {name!r} appears twice")
        names.add(name)
        entries.append(TokenEntry(name, Role[role.upper()], digest.lower()))
    return tuple(entries)


def identify(
    authorization: str | None, token: str | None, entries: tuple[TokenEntry, ...]
) -> Identity | None:
    """The identity of ``Authorization: Bearer <token>``: the ``[api] token`` (admin), a tokens-file entry, or
    None. Every entry is compared (in constant time), whichever matches."""
    if not authorization:
        return None
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    found: Identity | None = None
    if token and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        found = Identity(ADMIN_NAME, Role.ADMIN)
    digest = token_digest(given).encode()
    for entry in entries:
        if hmac.compare_digest(digest, entry.digest.encode()) and found is None:
            found = Identity(entry.name, entry.role)
    return found


def required_role(method: str, path: str) -> Role:
    """The least role a request needs: reads a viewer, writes an operator, writes of :data:`ADMIN_KINDS` an
    admin."""
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return Role.VIEWER
    if path.startswith(MANIFESTS_PATH):
        kind = path[len(MANIFESTS_PATH) :].split("/", 1)[0]
        if kind in ADMIN_KINDS:
            return Role.ADMIN
    return Role.OPERATOR
