"""The agent host's local secret store (docs/manifests/secrets.md): camera credentials and other secrets by secret ref.

A ref (``credentials.secretRef`` in a Camera manifest, e.g. ``cam-gate``) names one credential, a user name and
an optional password (``dsfleet.agent.credentials.Credential``), looked up in two places:

- files ``<state-dir>/secrets/<ref>/username`` and ``<state-dir>/secrets/<ref>/password``;
- environment variables ``DSFLEET_SECRET_<REF>_USERNAME`` and ``DSFLEET_SECRET_<REF>_PASSWORD``, where ``<REF>``
  is the ref upper-cased with ``-`` → ``_`` (``cam-gate`` → ``DSFLEET_SECRET_CAM_GATE_PASSWORD``).

Rules (the same layering as settings: files first, the environment overrides):

- **Precedence, per key.** A set environment variable wins over the file for that key, even when empty; the
  other key still comes from its file. So ``DSFLEET_SECRET_CAM_GATE_PASSWORD`` alone rotates a password whose
  user name lives in ``secrets/cam-gate/username``.
- **Trailing newline.** File contents are used exactly as stored (UTF-8), except that ONE trailing ``"\\n"`` (or
  ``"\\r\\n"``) is dropped, because ``echo`` and most editors add it. A password that really ends in a newline
  must come from the environment, whose values are always used verbatim.
- **Permissions.** A secret file with any group or other permission bit (``mode & 0o077``, e.g. 0644 or 0640)
  is refused, like ssh refuses an unprotected key: the error names the path and asks for ``chmod 600 PATH``.
  Symlinks are followed (a Kubernetes secret volume is made of them) and the target's mode is what counts;
  the target must be a regular file.
- **Shape.** A secret has a user name, a password, or both; a user name file or variable that is set must not be
  empty. A camera URL's user-info needs the user name (a credential without password renders as ``user@``); a
  value kept whole in a secret, such as a broker connection string (``${secret:<ref>:password}``), is its
  password and needs no user name. The file writer reports a secret that lacks what a placeholder needs.
- Refs must be DNS labels (the placeholder syntax of ``dsfleet.schemas.placeholders``), so a ref can never name a path
  outside ``secrets/``.

Errors (``SecretError``) name the ref, the files and the variables; never a value. The credential type and the
store port live in the pure ``dsfleet.agent.credentials`` (re-exported here).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from dsfleet.agent.credentials import Credential, MemorySecretStore, SecretStore
from dsfleet.agent.errors import SecretError

__all__ = [
    "ENV_PREFIX",
    "SECRETS_DIR",
    "Credential",
    "LocalSecretStore",
    "MemorySecretStore",
    "SecretStore",
    "env_names",
    "resolve_secrets",
]

SECRETS_DIR = "secrets"
ENV_PREFIX = "DSFLEET_SECRET_"
USERNAME = "username"
PASSWORD = "password"
_REF_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAX_SECRET_BYTES = 64 * 1024


def env_names(ref: str) -> tuple[str, str]:
    """The environment variables of ``ref``'s user name and password."""
    stem = ENV_PREFIX + ref.upper().replace("-", "_")
    return f"{stem}_USERNAME", f"{stem}_PASSWORD"


def _strip_one_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


class LocalSecretStore:
    """Files under ``<state-dir>/secrets/<ref>/``, overridden key by key by ``DSFLEET_SECRET_*`` variables."""

    def __init__(self, state_dir: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> None:
        self.root = Path(state_dir) / SECRETS_DIR
        self._environ: Mapping[str, str] = os.environ if environ is None else environ

    def __repr__(self) -> str:
        return f"LocalSecretStore(root={str(self.root)!r})"

    def where(self, ref: str) -> str:
        """Where ``ref`` is looked up, for messages."""
        user_env, pass_env = env_names(ref)
        base = self.root / ref
        return f"files {base / USERNAME}, {base / PASSWORD} or env {user_env}, {pass_env}"

    def get(self, ref: str) -> Credential:
        if not _REF_RE.fullmatch(ref) or len(ref) > 63:
            raise SecretError(f"secret {ref!r}: not a valid secret ref (a DNS label is expected)", [ref])
        user_env, pass_env = env_names(ref)
        username = self._lookup(ref, USERNAME, user_env)
        password = self._lookup(ref, PASSWORD, pass_env)
        if username is None:
            if password is not None:
                return Credential(None, password)  # a value kept whole in the password (a connection string)
            raise SecretError(f"secret {ref!r} not found: looked in {self.where(ref)}", [ref])
        if not username:
            source = user_env if user_env in self._environ else str(self.root / ref / USERNAME)
            raise SecretError(f"secret {ref!r}: the user name is empty ({source})", [ref])
        return Credential(username, password)

    def _lookup(self, ref: str, key: str, env_name: str) -> str | None:
        if env_name in self._environ:
            return self._environ[env_name]
        return self._read_file(ref, self.root / ref / key)

    @staticmethod
    def _read_file(ref: str, path: Path) -> str | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except OSError as exc:
            raise SecretError(f"secret {ref!r}: cannot open {path}: {exc.strerror}", [ref]) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SecretError(f"secret {ref!r}: {path} is not a regular file", [ref])
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise SecretError(
                    f"secret {ref!r}: {path} has mode {mode:04o}, readable or writable by group/others; "
                    f"refused. Run: chmod 600 {path}",
                    [ref],
                )
            data = os.read(fd, _MAX_SECRET_BYTES + 1)
        except OSError as exc:
            msg = "is a directory" if exc.errno == errno.EISDIR else exc.strerror
            raise SecretError(f"secret {ref!r}: cannot read {path}: {msg}", [ref]) from None
        finally:
            os.close(fd)
        if len(data) > _MAX_SECRET_BYTES:
            raise SecretError(f"secret {ref!r}: {path} is larger than {_MAX_SECRET_BYTES} bytes", [ref])
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError(f"secret {ref!r}: {path} is not valid UTF-8", [ref]) from None
        return _strip_one_newline(text)


def resolve_secrets(refs: Iterable[str], store: SecretStore) -> MemorySecretStore:
    """Look every ref up once; a snapshot for the pure core, or one ``SecretError`` listing every problem."""
    found: dict[str, Credential] = {}
    errors: list[SecretError] = []
    for ref in sorted(set(refs)):
        try:
            found[ref] = store.get(ref)
        except SecretError as exc:
            errors.append(exc)
    if errors:
        raise SecretError.combine(errors)
    return MemorySecretStore(found)
