"""Git push webhooks: which forge sent the request and whether its signature is right (pure; stdlib ``hmac``).

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
- Gitea (and Forgejo): ``X-Gitea-Signature: <hex HMAC-SHA256 of the body>``;
- GitLab: ``X-Gitlab-Token: <the shared secret>`` (no HMAC; compared in constant time).

Every comparison is constant-time; a missing or wrong signature is refused.

A delivery is known by :func:`delivery_keys`: the forge's delivery id (``X-GitHub-Delivery``,
``X-Gitea-Delivery``, ``X-Forgejo-Delivery``, GitLab's ``Idempotency-Key``; the same on a redelivery) and the
SHA-256 of the body. The id is not signed (a replay could change it), the body is (a replay cannot), so a
delivery seen under either key is a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DELIVERY_HEADERS", "Verdict", "delivery_keys", "verify_push"]

DELIVERY_HEADERS = (
    "x-github-delivery",
    "x-gitea-delivery",
    "x-forgejo-delivery",
    "x-gogs-delivery",
    "idempotency-key",
)
"""Where the forges put the id of a delivery (GitLab: ``Idempotency-Key``, kept across its retries)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    forge: str | None
    reason: str


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def verify_push(headers: Mapping[str, str], body: bytes, secret: str) -> Verdict:
    """``headers`` with lower-case names. The forge is told by its signature header."""
    github = headers.get("x-hub-signature-256")
    if github is not None:
        want = "sha256=" + _hmac_hex(secret, body)
        return Verdict(_same(github.strip(), want), "github", "X-Hub-Signature-256")
    gitea = headers.get("x-gitea-signature") or headers.get("x-forgejo-signature")
    if gitea is not None:
        return Verdict(_same(gitea.strip(), _hmac_hex(secret, body)), "gitea", "X-Gitea-Signature")
    gitlab = headers.get("x-gitlab-token")
    if gitlab is not None:
        return Verdict(_same(gitlab, secret), "gitlab", "X-Gitlab-Token")
    return Verdict(
        False, None, "no signature header (X-Hub-Signature-256, X-Gitea-Signature, X-Gitlab-Token)"
    )


def delivery_keys(headers: Mapping[str, str], body: bytes) -> list[str]:
    """``headers`` with lower-case names: ``delivery:<id>`` when the forge names the delivery, and always
    ``sha256:<hex of the body>``."""
    keys = []
    for name in DELIVERY_HEADERS:
        given = headers.get(name, "").strip()
        if given:
            keys.append(f"delivery:{given[:100]}")
            break
    keys.append("sha256:" + hashlib.sha256(body).hexdigest())
    return keys
