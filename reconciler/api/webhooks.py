"""Git push webhooks: which forge sent the request and whether its signature is right (pure; stdlib ``hmac``).

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
- Gitea (and Forgejo): ``X-Gitea-Signature: <hex HMAC-SHA256 of the body>``;
- GitLab: ``X-Gitlab-Token: <the shared secret>`` (no HMAC; compared in constant time).

Every comparison is constant-time; a missing or wrong signature is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Verdict", "verify_push"]


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
