"""The secret placeholder syntax shared by the coordinator (writes it) and the agent (fills it in).

A rendered camera URL carries ``${secret:<ref>}`` as its user-info, e.g. ``rtsp://${secret:cam-gate}@10.0.0.5/main``;
the agent replaces it with the percent-encoded ``username:password`` from its local secret store.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

PLACEHOLDER_RE = re.compile(r"\$\{secret:([a-z0-9]([-a-z0-9]*[a-z0-9])?)\}")


def secret_placeholder(ref: str) -> str:
    return "${secret:" + ref + "}"


def url_with_placeholder(url: str, ref: str | None) -> str:
    """Insert the placeholder for ``ref`` as the user-info of ``url`` (which must carry none)."""
    if not ref:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return f"{scheme}://{secret_placeholder(ref)}@{rest}"


def url_has_credentials(url: str) -> bool:
    """True when ``url`` carries a user name or password in its authority (``user:pass@host``)."""
    if "@" not in url:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.netloc:
        return False
    userinfo, at, _host = parts.netloc.rpartition("@")
    if not at:
        return False
    return bool(userinfo) and not PLACEHOLDER_RE.fullmatch(userinfo)
