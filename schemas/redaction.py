"""The one redaction of dsfleet: every text that may carry a credential (log lines, ``lastLogLine``, errors, events,
API output, log replies) goes through :func:`redact` before it is shown or stored, on the host and again on the
coordinator.

What is masked (each replaced by ``***``), in one pass over the text:

- URL user-info, whole: ``rtsp://admin:pw@cam/1`` → ``rtsp://***@cam/1``; also percent-encoded
  (``rtsp%3A%2F%2Fadmin%3Apw%40cam``) and with an escaped ``@`` (``\\x40``, ``\\u0040``);
- ``user:password@host`` without a scheme (Kafka connection strings), but not ``image:tag@sha256:…``;
- values of keys that name a credential: ``password=…``, ``token=…``, ``secret=…``, ``SharedAccessKey=…``,
  ``api_key: …``, ``sasl.password=…``, ``client_secret=…`` (query strings, ``key=value``, ``key: value``) and JSON or
  Python mappings ``"password": "…"``; ``${secret:name}`` references are left alone;
- ``Authorization: <scheme> …`` headers and ``Bearer …`` tokens;
- every value passed in ``secrets`` (and its percent-encoded spelling); values shorter than
  :data:`MIN_SECRET_LENGTH` are skipped, as masking them would mangle the text.

Pure and stdlib only: it does no I/O and keeps no state apart from a cache of compiled patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Final, overload
from urllib.parse import quote

__all__ = ["MASK", "MIN_SECRET_LENGTH", "names_credential", "redact"]

MASK: Final = "***"
MIN_SECRET_LENGTH: Final = 4

_URL: Final = (
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*)"
    r"(?:(?P<usep>://)[^/\s\"'<>]+(?P<uat>@|\\x40|\\u0040)"
    r"|(?P<esep>%3A%2F%2F)(?:(?!%2F)[^/\s&\"'<>])+(?P<eat>%40))"
)
"""``scheme://user-info@``: everything between ``://`` and the authority's last ``@`` (some clients take a raw
``@`` in a password); percent-encoded, up to the last ``%40`` before the next ``%2F``."""

_BARE: Final = (
    r"(?<![\w/:.%{$\-])(?P<bare_user>[A-Za-z_][\w.\-~+]*):(?:(?!@)[^\s/{}\"'<>,;])+@(?!sha\d+:)(?=[\w\[])"
)
"""``user:password@host`` without a scheme (a Kafka connection string); not ``image:tag@sha256:…``."""

_WORDS: Final = (
    r"(?:password|passwd|passphrase|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key"
    r"|sharedaccesskey|sharedaccesssignature|credentials?|authorization|auth)"
)
_KEY: Final = rf"[\w.\-]*{_WORDS}"
_QUOTED: Final = (
    rf"(?P<qkey>(?P<q>[\"']){_KEY}(?P=q))(?P<qsep>\s*:\s*)(?P<q2>[\"'])(?:\\.|(?!(?P=q2)).)*(?P=q2)"
)
"""``"password": "x"`` (JSON) and ``'password': 'x'`` (Python reprs): the whole quoted value."""

_SCHEMES: Final = r"(?:Bearer|Basic|Digest|Token|Negotiate)"
_PAIR: Final = (
    rf"(?<![\w.\-])(?<!\$\{{)(?P<key>{_KEY})(?P<kq>[\"']?)(?![\w\-])(?P<sep>\s*[=:]\s*)(?P<vq>[\"'])?"
    rf"(?P<kind>{_SCHEMES}\s+)?(?P<value>(?(vq)[^\"'\n]+|[^\s&;,\"'}}<>]+))"
)
"""``password=x``, ``token: x``, ``SharedAccessKey=x`` (up to the next separator of a query or a list)."""

_BEARER: Final = r"(?P<bearer>(?-i:\b[Bb]earer)\s+)[A-Za-z0-9\-._~+/]{4,}=*"

_BASE: Final = "|".join(
    f"(?:{p})" for p in (rf"(?P<url>{_URL})", rf"(?P<bare>{_BARE})", _QUOTED, _PAIR, _BEARER)
)


_TRIGGER: Final = re.compile(
    r"://|%3a%2f%2f|@|\\x40|\\u0040|pass|pwd|secret|token|key|signature|credential|auth|bearer",
    re.IGNORECASE,
)
"""What every credential shape above contains: a text without any of these (most log lines) is returned as is,
without the cost of the whole pattern."""


@lru_cache(maxsize=64)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str]:
    spellings = {s for value in secrets for s in (value, quote(value, safe=""))}
    known = sorted((re.escape(s) for s in spellings if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)
    # known values first: a password that also sits in a ``password=`` pair is masked either way
    alternatives = ([f"(?P<known>{'|'.join(known)})"] if known else []) + [_BASE]
    return re.compile("|".join(alternatives), re.IGNORECASE | re.DOTALL)


def _replace(m: re.Match[str]) -> str:
    groups = m.groupdict()
    if groups.get("known") is not None:
        return MASK
    if groups["url"] is not None:
        if groups["usep"] is not None:
            return f"{groups['scheme']}{groups['usep']}{MASK}{groups['uat']}"
        return f"{groups['scheme']}{groups['esep']}{MASK}{groups['eat']}"
    if groups["bare"] is not None:
        return f"{groups['bare_user']}:{MASK}@"
    if groups["qkey"] is not None:
        return f"{groups['qkey']}{groups['qsep']}{groups['q2']}{MASK}{groups['q2']}"
    if groups["key"] is not None:
        return f"{groups['key']}{groups['kq']}{groups['sep']}{groups['vq'] or ''}{groups['kind'] or ''}{MASK}"
    return f"{groups['bearer']}{MASK}"


@overload
def redact(text: str, secrets: Iterable[str] = ()) -> str: ...
@overload
def redact(text: None, secrets: Iterable[str] = ()) -> None: ...
def redact(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """``text`` with every credential-looking part and every value of ``secrets`` replaced by ``***``
    (None stays None)."""
    if not text:
        return text
    known = tuple(sorted(set(secrets)))
    if not known and _TRIGGER.search(text) is None:
        return text
    return _pattern(known).sub(_replace, text)


_CREDENTIAL_NAME: Final = re.compile(rf"{_WORDS}$", re.IGNORECASE)


def names_credential(key: str) -> bool:
    """Whether a field called ``key`` holds a credential (``password``, ``sasl.password``, ``apiKey``,
    ``Authorization``…): structured values (log context, settings) under such a key are masked whole."""
    return bool(_CREDENTIAL_NAME.search(key))
