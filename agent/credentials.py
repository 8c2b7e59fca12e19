"""Pure: the credential type and the secret-store port (moved out of ``dsfleet.agent.secrets``, which reads files).

``Credential`` hides its fields from ``repr``, so a credential printed by accident (a log line, a test failure)
shows nothing. ``SecretStore`` is the port the pure core asks; ``MemorySecretStore`` is the in-memory store of unit
tests and the snapshot ``dsfleet.agent.secrets.resolve_secrets`` hands to the core.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from dsfleet.agent.errors import SecretError

__all__ = ["Credential", "MemorySecretStore", "SecretStore"]


@dataclass(frozen=True)
class Credential:
    """A user name and a password, either optional (not both: the store refuses an empty secret). A camera URL's
    user-info needs the user name; a value kept whole in a secret (a broker connection string) is its password.
    ``repr`` shows neither."""

    username: str | None = field(repr=False)
    password: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return "Credential(<hidden>)"

    __str__ = __repr__


class SecretStore(Protocol):
    """Port: credentials by secret ref."""

    def get(self, ref: str) -> Credential:
        """The credential of ``ref``; raise ``SecretError`` (saying where it looked) when there is none."""
        ...


@dataclass(frozen=True)
class MemorySecretStore:
    """A store held in memory: for unit tests, and the snapshot ``resolve_secrets`` hands to the pure core."""

    credentials: Mapping[str, Credential] = field(default_factory=dict, repr=False)

    def get(self, ref: str) -> Credential:
        try:
            return self.credentials[ref]
        except KeyError:
            raise SecretError(f"secret {ref!r} not found in the in-memory secret store", [ref]) from None

    def __repr__(self) -> str:
        return f"MemorySecretStore(refs={sorted(self.credentials)})"
