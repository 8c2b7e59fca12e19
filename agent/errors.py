"""The agent's errors: branches of the one tree in :mod:`dsfleet.schemas.errors`.

``TemporaryError``: worth retrying with capped, jittered backoff (a write failed: disk full, I/O error).
``PermanentError``: fails again the same way until the input or the host's setup changes (an invalid config,
a missing or badly protected secret). Adapters translate ``OSError`` and library exceptions into these.

Messages name the place (a path, ``FILE:LINE:COL``) and the secret *ref*; never a secret's value.
"""

from __future__ import annotations

from collections.abc import Iterable

from dsfleet.schemas.errors import DsfleetError, PermanentError, TemporaryError

AgentError = DsfleetError
"""The agent raises the project's root error (kept under this name for the agent's modules)."""

__all__ = [
    "AgentError",
    "ConfigError",
    "FileWriteError",
    "ImageNotFoundError",
    "NameConflictError",
    "PermanentError",
    "SecretError",
    "TemporaryError",
]


class ConfigError(PermanentError):
    """The desired config (an ``AgentConfig`` message or a ``NodeConfig``) is malformed or inconsistent."""


class SecretError(PermanentError):
    """A secret is missing, unreadable or too openly readable; ``refs`` names the secrets concerned.

    The message is one line per problem and says where the agent looked; it never carries a value.
    """

    def __init__(self, message: str, refs: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.refs: tuple[str, ...] = tuple(dict.fromkeys(refs))

    @classmethod
    def combine(cls, errors: Iterable[SecretError]) -> SecretError:
        """One error listing every problem (so a user fixes them all in one go)."""
        errors = list(errors)
        lines = list(dict.fromkeys(line for e in errors for line in str(e).splitlines()))
        return cls("\n".join(lines), [ref for e in errors for ref in e.refs])


class FileWriteError(TemporaryError):
    """Writing, replacing or removing a file under the state directory failed."""


class NameConflictError(PermanentError):
    """A container of that name exists and is not the agent's (it is reported, never removed)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a container named {name} already exists and is not managed by this agent")
        self.name = name


class ImageNotFoundError(PermanentError):
    """The image of a container spec is not on the host and cannot be pulled (absent, unknown to its registry,
    or its registry unreachable). Nothing was changed: the instance keeps running what it ran."""

    def __init__(self, image: str, why: str = "not present on this host") -> None:
        super().__init__(f"image {image}: {why}")
        self.image = image
