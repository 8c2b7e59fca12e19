"""What the HTTP server decides from a request's head alone, before it reads any body (pure; stdlib only).

- **Host**: the ``Host`` header must name the server (:func:`allowed_hosts`, :func:`host_allowed`): on loopback by
  default only the bound address and the loopback names, so a page of another site that rebinds its DNS name to
  127.0.0.1 cannot read the API through the operator's browser.
- **Access**: every request is one of :class:`Access` by its method and path (:func:`access_of`); reads need the
  token when the server says so, anything that is not a read always does, and the git webhook needs a configured
  secret and a signature header (the signature itself covers the body, so it is checked once the body is read).
  :func:`refusal` answers with the status and message of a refused request, or None.
- **Bodies**: only writes and the webhook take one, up to :attr:`Gate.max_body_bytes` /
  :attr:`Gate.webhook_max_body_bytes`; a larger declared ``Content-Length`` is refused before a byte is read.
- **Headers** of every answer (:func:`security_headers`): a Content-Security-Policy that allows the server's own
  scripts and styles only, no framing, no MIME sniffing, no referrer, no caching of API answers.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum
from typing import Final

from dsfleet.reconciler.api.roles import Identity, Role, TokenEntry, identify

__all__ = [
    "API_PREFIX",
    "CONTENT_SECURITY_POLICY",
    "LOOPBACK_NAMES",
    "WEBHOOK_PATH",
    "Access",
    "Gate",
    "access_of",
    "allowed_hosts",
    "body_limit",
    "host_allowed",
    "host_name",
    "reads_need_token",
    "refusal",
    "role_refused",
    "security_headers",
    "token_matches",
]

API_PREFIX: Final = "/api/v1"
WEBHOOK_PATH: Final = f"{API_PREFIX}/webhooks/git"
STATIC_PREFIX: Final = "/static/"
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS: Final = frozenset({"", "0.0.0.0", "::"})
SIGNATURE_HEADERS: Final = (
    "x-hub-signature-256",
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-gitlab-token",
)
"""A push event carries one of these (see :mod:`dsfleet.reconciler.api.webhooks`)."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class Access(Enum):
    OPEN = "open"
    """``/healthz``, the dashboard's page and assets, ``/docs``, ``/openapi.json``: no token."""
    READ = "read"
    """``/api/v1/…`` and ``/metrics`` with GET/HEAD/OPTIONS: the token when the server requires it for reads."""
    WRITE = "write"
    """Any other method (``POST apply``, ``POST refresh``, and whatever else is not a read): always the token."""
    WEBHOOK = "webhook"
    """``POST /api/v1/webhooks/git``: a forge's signature over the body instead of the token."""


def access_of(method: str, path: str) -> Access:
    if method.upper() not in READ_METHODS:
        return Access.WEBHOOK if path == WEBHOOK_PATH and method.upper() == "POST" else Access.WRITE
    if path in ("/metrics", API_PREFIX) or path.startswith(API_PREFIX + "/"):
        return Access.READ
    return Access.OPEN


@dataclass(frozen=True)
class Gate:
    """The limits and names the server applies to every request (from ``[api]``)."""

    allowed_hosts: frozenset[str] | None = None
    """Host names the ``Host`` header may carry; None: any."""
    max_body_bytes: int = 1024 * 1024
    webhook_max_body_bytes: int = 25 * 1024 * 1024
    body_timeout: float = 30.0
    """Seconds a request's body may take to arrive, from the end of its headers."""
    max_requests: int = 64
    """Requests handled at once (body reads included); more are answered 503."""
    max_webhook_reads: int = 2
    """Webhook bodies read at once: they are buffered before their signature can be checked."""


def body_limit(gate: Gate, access: Access) -> int:
    """How many body bytes a request of this access may send (reads and open pages take none)."""
    if access is Access.WEBHOOK:
        return gate.webhook_max_body_bytes
    if access is Access.WRITE:
        return gate.max_body_bytes
    return 0


def host_name(header: str) -> str:
    """The host of a ``Host`` header, lower-case, without port, brackets or a trailing dot."""
    text = header.strip().lower()
    if text.startswith("["):
        name, _, _rest = text[1:].partition("]")
        return name
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


def allowed_hosts(configured: tuple[str, ...] | None, bound: str, *, loopback: bool) -> frozenset[str] | None:
    """The names ``Host`` may carry: the configured ones (``*``: any) plus the bound address and the loopback
    names; with none configured, that on loopback and any name beyond it. None: any."""
    if configured is not None and "*" in configured:
        return None
    if configured is None and not loopback:
        return None
    names = set(LOOPBACK_NAMES)
    bound_name = host_name(bound)
    if bound_name not in WILDCARDS:
        names.add(bound_name)
    names.update(host_name(name) for name in configured or ())
    return frozenset(names)


def reads_need_token(setting: bool | str, *, loopback: bool) -> bool:
    """``[api] read_requires_token``: ``auto`` means the token is needed for reads unless the server listens on
    loopback only."""
    return not loopback if setting == "auto" else bool(setting)


def host_allowed(header: str | None, allowed: frozenset[str] | None) -> bool:
    if allowed is None:
        return True
    return bool(header) and host_name(header or "") in allowed


def token_matches(expected: str | None, header: str | None) -> bool:
    """``Authorization: Bearer <token>`` against the configured token, in constant time."""
    if not expected or not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))


READ_REFUSED: Final = "this server requires a bearer token for reads (Authorization: Bearer …)"
WRITES_DISABLED: Final = "writes are disabled: the server has no API token configured"
WRITE_REFUSED: Final = "missing or wrong bearer token (Authorization: Bearer …)"


def role_refused(who: Identity, needed: Role) -> str:
    return f"the token of {who.name!r} has the role {who.role.label}; this needs {needed.label}"


WEBHOOKS_DISABLED: Final = "webhooks are disabled: no [api] webhook_secret configured"
NO_SIGNATURE: Final = (
    "bad or missing webhook signature (no signature header: X-Hub-Signature-256, X-Gitea-Signature, "
    "X-Gitlab-Token)"
)


def refusal(
    access: Access,
    *,
    token: str | None,
    read_requires_token: bool,
    authorization: str | None,
    webhook_secret: str | None = None,
    signed: bool = False,
    tokens: tuple[TokenEntry, ...] = (),
    needed: Role = Role.OPERATOR,
) -> tuple[int, str] | None:
    """The status and message that refuse this request before its body is read, or None. ``signed``: the
    request carries one of the forges' signature headers; ``tokens``: the ``[api] tokens_file`` entries;
    ``needed``: the role the request needs (:func:`~dsfleet.reconciler.api.roles.required_role`)."""
    if access is Access.READ:
        if read_requires_token and identify(authorization, token, tokens) is None:
            return 401, READ_REFUSED
        return None
    if access is Access.WRITE:
        if not token and not tokens:
            return 401, WRITES_DISABLED
        who = identify(authorization, token, tokens)
        if who is None:
            return 401, WRITE_REFUSED
        if who.role < needed:
            return 403, role_refused(who, needed)
        return None
    if access is Access.WEBHOOK:
        if not webhook_secret:
            return 401, WEBHOOKS_DISABLED
        if not signed:
            return 401, NO_SIGNATURE
    return None


def security_headers(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The headers every answer carries; API answers are never cached, the server's assets are revalidated."""
    cache = b"no-cache" if path.startswith(STATIC_PREFIX) else b"no-store"
    return (
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cache-control", cache),
    )
