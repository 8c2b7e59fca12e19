"""Ed25519 keys and signatures: the only importer of ``cryptography``.

Private keys are PEM (PKCS #8) files of mode 0600 — a key file readable by others is refused, as ssh refuses
one — written atomically and never overwritten. Public keys are written as ``ed25519:<base64 of the 32 raw
bytes>`` (one line, fit for a settings file or an environment variable) and named by their id
(:func:`dsfleet.schemas.signatures.key_id`). A :class:`Keyring` holds the public keys a side trusts (several at
once: that is how keys rotate) and says why a signature is not accepted; :func:`sign_record` and
:meth:`Keyring.check_record` sign and check a whole Kafka record (its key, payload and the signed fields its
headers carry, :class:`dsfleet.schemas.signatures.SignedFields`).

**Enrollment tokens** (:func:`new_enrollment_token`): an operator gives an agent a one-time token; the agent proves
it holds one by signing its own public key with an Ed25519 key derived from the token (:func:`enrollment_proof`).
The coordinator's store keeps only that derived key's public half (:func:`token_public`), so whoever reads the
store can check a proof but cannot make one (an HMAC keyed by the token, or by a hash of it, could be made by anyone
holding what the verifier holds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dsfleet.schemas.errors import PermanentError
from dsfleet.schemas.signatures import HEADER_KEY, HEADER_SIGNATURE, SignedFields, key_id, signed_fields

__all__ = [
    "KEY_MODE",
    "KeyFileError",
    "Keyring",
    "PublicKey",
    "RecordCheck",
    "SigningKey",
    "Verdict",
    "check_enrollment_proof",
    "enrollment_proof",
    "generate_key",
    "load_or_create_key",
    "load_public_keys",
    "load_signing_key",
    "new_enrollment_token",
    "proof_token_id",
    "save_signing_key",
    "sign_record",
    "token_public",
]

KEY_MODE = 0o600
_PREFIX = "ed25519:"


class KeyFileError(PermanentError):
    """A key file or key text that cannot be used; the message names the file, never the key."""


@dataclass(frozen=True)
class PublicKey:
    raw: bytes

    @property
    def id(self) -> str:
        return key_id(self.raw)

    def text(self) -> str:
        return _PREFIX + base64.b64encode(self.raw).decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        value = text.strip()
        if not value.startswith(_PREFIX):
            raise KeyFileError(f"a public key must start with {_PREFIX!r}")
        try:
            raw = base64.b64decode(value.removeprefix(_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError("a public key must be base64 after 'ed25519:'") from None
        if len(raw) != 32:
            raise KeyFileError("an Ed25519 public key has 32 bytes")
        return cls(raw)

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    _private: Ed25519PrivateKey = field(repr=False)

    @property
    def public(self) -> PublicKey:
        raw = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return PublicKey(raw)

    @property
    def id(self) -> str:
        return self.public.id

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def headers(self, data: bytes) -> dict[str, str]:
        """The two headers that carry a signature of ``data``."""
        return {HEADER_SIGNATURE: base64.b64encode(self.sign(data)).decode("ascii"), HEADER_KEY: self.id}

    def pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def generate_key() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


def save_signing_key(path: str | os.PathLike[str], key: SigningKey) -> Path:
    """Write a new key file (0600, atomically); an existing file is never overwritten."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key.pem())
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, target)  # fails if the target exists: a key is never replaced by accident
    except FileExistsError:
        raise KeyFileError(f"{target}: a key file is already there (it is never overwritten)") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    source = Path(path)
    try:
        mode = source.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"{source}: readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
        data = source.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{source}: no key file (create one with `dsfleet keys init`)") from None
    except OSError as exc:
        raise KeyFileError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{source}: not a PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{source}: not an Ed25519 key")
    return SigningKey(private)


def load_or_create_key(path: str | os.PathLike[str]) -> tuple[SigningKey, bool]:
    """The key at ``path``, made on first use; ``True`` when it was just created."""
    try:
        return load_signing_key(path), False
    except KeyFileError:
        if Path(path).exists():
            raise
    try:
        return load_signing_key(save_signing_key(path, generate_key())), True
    except KeyFileError:  # another process made it meanwhile
        return load_signing_key(path), False


def load_public_keys(
    texts: Iterable[str], file: str | os.PathLike[str] | None = None, *, what: str = "a key"
) -> tuple[PublicKey, ...]:
    """The public keys given as texts, and those of ``file`` (one a line; ``#`` starts a comment), without
    duplicates. ``what`` names the setting in errors (``[agent] trusted_keys``)."""
    found: dict[str, PublicKey] = {}
    for n, text in enumerate(texts, 1):
        try:
            key = PublicKey.from_text(text)
        except KeyFileError as exc:
            raise KeyFileError(f"{what} #{n}: {exc}") from None
        found.setdefault(key.id, key)
    if file is not None:
        source = Path(file)
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise KeyFileError(f"{source}: cannot read: {exc.strerror}") from None
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                key = PublicKey.from_text(text)
            except KeyFileError as exc:
                raise KeyFileError(f"{source}:{number}: error: {exc}") from None
            found.setdefault(key.id, key)
    return tuple(found.values())


class Verdict(StrEnum):
    OK = "ok"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"


@dataclass(frozen=True)
class RecordCheck:
    """What :meth:`Keyring.check_record` found: the verdict, the key id the record names, and the signed fields
    (None when the headers lack them)."""

    verdict: Verdict
    key_id: str | None
    fields: SignedFields | None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


def sign_record(
    key: SigningKey, fields: SignedFields, record_key: str | None, payload: bytes | None
) -> dict[str, str]:
    """The headers of a signed record: the signed fields, the signature and the signing key's id."""
    return {**fields.headers(), **key.headers(fields.data(record_key, payload))}


@dataclass(frozen=True)
class Keyring:
    """The public keys one side trusts, by id."""

    keys: Mapping[str, PublicKey] = field(default_factory=dict)

    @classmethod
    def of(cls, keys: Iterable[PublicKey]) -> Keyring:
        return cls({k.id: k for k in keys})

    def __bool__(self) -> bool:
        return bool(self.keys)

    def check(self, headers: Mapping[str, str], data: bytes) -> tuple[Verdict, str | None]:
        """Whether the signature in ``headers`` is a trusted key's over ``data``; the key id it names."""
        signature, kid = headers.get(HEADER_SIGNATURE), headers.get(HEADER_KEY)
        if not signature or not kid:
            return Verdict.UNSIGNED, kid
        key = self.keys.get(kid)
        if key is None:
            return Verdict.UNKNOWN_KEY, kid
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return Verdict.BAD_SIGNATURE, kid
        return (Verdict.OK if key.verify(raw, data) else Verdict.BAD_SIGNATURE), kid

    def check_record(
        self, record_key: str | None, payload: bytes | None, headers: Mapping[str, str]
    ) -> RecordCheck:
        """Whether a record (its key, payload and headers) is signed by a trusted key; the payload is not parsed."""
        fields = signed_fields(headers)
        if fields is None:
            verdict, kid = self.check(headers, b"")
            if verdict is Verdict.OK or verdict is Verdict.BAD_SIGNATURE:
                verdict = Verdict.BAD_SIGNATURE  # a signature whose signed fields are missing covers nothing
            return RecordCheck(verdict, kid, None)
        verdict, kid = self.check(headers, fields.data(record_key, payload))
        return RecordCheck(verdict, kid, fields)


# --------------------------------------------------------------------------------------------------- enrollment

_TOKEN_PREFIX = "dsfleet-enroll-"
_TOKEN_DOMAIN = b"dsfleet-enroll-token/v1\n"
_PROOF_DOMAIN = b"dsfleet-enroll-proof/v1\n"
TOKEN_ID_CHARS = 16
"""A proof names its token by the first hex digits of the token's public key."""


def new_enrollment_token() -> str:
    """A new one-time enrollment token (shown once to the operator, never stored)."""
    return _TOKEN_PREFIX + secrets.token_urlsafe(24)


def _token_key(token: str) -> Ed25519PrivateKey:
    seed = hashlib.sha256(_TOKEN_DOMAIN + token.strip().encode("utf-8")).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def token_public(token: str) -> str:
    """What the store keeps of a token: the hex of the public half of the key derived from it (64 digits)."""
    raw = (
        _token_key(token)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return raw.hex()


def enrollment_proof(token: str, public_key_text: str) -> str:
    """An agent's proof that it holds ``token``, bound to its public key: ``<token id>.<base64 signature>``."""
    signature = _token_key(token).sign(_PROOF_DOMAIN + public_key_text.encode("utf-8"))
    return f"{token_public(token)[:TOKEN_ID_CHARS]}.{base64.b64encode(signature).decode('ascii')}"


def proof_token_id(proof: str) -> str | None:
    """The token id a proof names (None: not a proof)."""
    head, dot, _ = proof.partition(".")
    if not dot or len(head) != TOKEN_ID_CHARS or any(c not in "0123456789abcdef" for c in head):
        return None
    return head


def check_enrollment_proof(stored_public: str, public_key_text: str, proof: str) -> bool:
    """Whether ``proof`` was made with the token whose stored public half is ``stored_public`` for this key."""
    head, _, signature = proof.partition(".")
    if not stored_public.startswith(head) or len(head) != TOKEN_ID_CHARS:
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
        public = PublicKey(bytes.fromhex(stored_public))
    except (binascii.Error, ValueError):
        return False
    return public.verify(raw, _PROOF_DOMAIN + public_key_text.encode("utf-8"))
