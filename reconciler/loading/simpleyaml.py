"""A fast reader for the plain subset of block YAML that manifests are written in; ``None`` for anything else.

Manifests are block mappings and sequences of one-line scalars: ``key: value``, ``- item``, ``- key: value``,
``"quoted"`` and ``'quoted'`` one-line scalars, one-line flow sequences of scalars (``gpus: [0]``), comments and
``---`` between documents. Reading that subset line by line in Python is several times faster than libyaml
through PyYAML (whose cost is one Python event, node and two marks per value).

The contract is agreement or refusal: for any text, :func:`parse_simple` returns exactly the documents (values
and start lines) that the libyaml loader (``yamlfiles``) builds, or ``None``. It refuses everything outside the
subset (tags, anchors and aliases, block scalars, multi-line scalars, flow mappings, nested flows, escapes,
directives, tabs, CR and other line breaks, control characters, ``...``, empty documents) and everything the
libyaml loader would report (syntax errors, duplicate keys, merge keys): those take the libyaml path, which
gives the same values or the same located problem as before. Scalars are resolved by the same YAML 1.2 core
schema function. Each distinct line is tokenized once per process (a bounded memo of immutable tokens: a
fleet's files repeat most of their lines). No I/O; no recursion deeper than the text's nesting, which the
caller's depth pre-check bounds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Final

_PRINTABLE_ASCII: Final = b"\n" + bytes(range(0x20, 0x7F))
"""What an ASCII text may hold (LF and the printable characters): deleting them leaves what is refused."""


@functools.cache
def _refused_chars_re() -> re.Pattern[str]:
    """Anything but LF and the characters libyaml reads as printable, minus tab and CR, NEL and U+2028/U+2029
    (line breaks in libyaml) and U+FEFF: texts with any of those take the libyaml path. Compiled on the first
    non-ASCII text (compiling its ranges is a noticeable part of a command's start)."""
    return re.compile("[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")


_INDICATORS: Final = frozenset("-?:,[]{}#&*!|>'\"%@`")
_FLOW_ITEM_REFUSED: Final = frozenset(",[]{}#:'\"\\")
_MAX_KEY_CHARS: Final = 1000
"""libyaml refuses implicit keys longer than 1024 characters."""
_MAX_CACHED_LINES: Final = 1 << 17
"""Distinct lines remembered (a 10,000-camera fleet has about 47,000; a few tens of MB at most)."""

# Token kinds. A token is (indent, kind, key, value); a line gives one token, or more when it starts with "- ".
_ITEM: Final = 0  # "-": a sequence item (its value follows: on this line as the next token, or below)
_ENTRY: Final = 1  # "key: scalar"
_FLOW_ENTRY: Final = 2  # "key: [a, b]" (value: a tuple, copied into a new list for each use)
_OPEN_ENTRY: Final = 3  # "key:" (its value is below, or null)
_SCALAR: Final = 4  # a scalar after "- "
_FLOW: Final = 5  # a flow sequence after "- "
_MARKER: Final = 6  # "---"

Token = tuple[int, int, Any, Any]
Scalar = Callable[[str, bool], Any]
"""(text, plain) → value: the loader's scalar resolution (quoted scalars are strings)."""


class _Refused(Exception):
    """The text is outside the subset: the caller takes the libyaml path."""


_REFUSED_LINE: Final[tuple[Token, ...]] = ((-1, -1, None, None),)


def parse_simple(text: str, scalar: Scalar) -> list[tuple[Any, int]] | None:
    """Every document of ``text`` as (value, 1-based start line), or ``None`` when the text is outside the subset
    (then the libyaml loader reads it)."""
    if text.isascii():
        if text.encode("ascii").translate(None, _PRINTABLE_ASCII):  # ten times faster than a regex search
            return None
    elif _refused_chars_re().search(text):
        return None
    try:
        return [(_document(tokens), line) for tokens, line in _documents(text, scalar)]
    except (_Refused, ValueError):
        return None


_line_caches: dict[Scalar, dict[str, tuple[Token, ...]]] = {}


def _documents(text: str, scalar: Scalar) -> list[tuple[list[Token], int]]:
    """Tokens and start line of each document. Lines repeat a lot across a fleet's files (``kind: Camera``,
    ``  width: 1920``), so each distinct line is tokenized once (its tokens are immutable)."""
    cache = _line_caches.setdefault(scalar, {})
    if len(cache) > _MAX_CACHED_LINES:
        cache.clear()
    documents: list[tuple[list[Token], int]] = []
    tokens: list[Token] = []
    start = 0
    started = False  # a "---" was seen: what follows is a document even before its first content
    for number, raw in enumerate(text.split("\n"), start=1):
        line = cache.get(raw)
        if line is None:
            line = cache[raw] = _tokenize(raw, scalar)
        if not line:
            continue
        first = line[0]
        if first[1] == _MARKER:
            if tokens or started:
                if not tokens:
                    raise _Refused  # an empty document
                documents.append((tokens, start))
                tokens = []
            started = True
            continue
        if first[0] < 0:
            raise _Refused
        if not tokens:
            start = number
        tokens.extend(line)
    if tokens:
        documents.append((tokens, start))
    elif started or not documents:
        raise _Refused  # "---" with nothing after it, or no document at all: libyaml decides
    return documents


_FAST_ENTRY_RE: Final = re.compile(
    r"( *)([A-Za-z0-9_][A-Za-z0-9_./-]*):(?: +(?:([A-Za-z0-9_./(][A-Za-z0-9_./:@?=&%+~,;()-]*)"
    r"|\"([^\"\\]*)\"|'([^']*)'))? *"
)
"""The commonest lines, ``key: value`` and ``key:`` with a plain key, a plain value of unremarkable characters or
a quoted one without escapes, read by one match. Everything it matches, :func:`_tokens` reads the same way (a
test checks it); everything else (and a plain value ending in ``:``, which is refused) goes to :func:`_tokens`."""


def _tokenize(raw: str, scalar: Scalar) -> tuple[Token, ...]:
    fast = _FAST_ENTRY_RE.fullmatch(raw)
    if fast is not None and fast.end(2) - fast.start(2) <= _MAX_KEY_CHARS:
        indent, key, plain, double, single = fast.groups()
        try:
            if plain is not None:
                if plain[-1] != ":":
                    return ((len(indent), _ENTRY, scalar(key, True), scalar(plain, True)),)
            elif double is not None or single is not None:
                quoted = double if double is not None else single
                return ((len(indent), _ENTRY, scalar(key, True), scalar(quoted, False)),)
            else:
                return ((len(indent), _OPEN_ENTRY, scalar(key, True), None),)
        except ValueError:
            return _REFUSED_LINE
    try:
        return tuple(_tokens(raw, scalar))
    except (_Refused, ValueError):
        return _REFUSED_LINE


def _tokens(raw: str, scalar: Scalar) -> list[Token]:
    content = raw.lstrip(" ")
    if not content or content[0] == "#":
        return []
    if raw.startswith(("---", "...")):
        if raw.rstrip(" ") != "---":
            raise _Refused  # "--- value", "...", "----": libyaml decides
        return [(0, _MARKER, None, None)]
    indent = len(raw) - len(content)
    content = content.rstrip(" ")
    out: list[Token] = []
    while content[0] == "-" and (len(content) == 1 or content[1] == " "):
        out.append((indent, _ITEM, None, None))
        rest = content[1:].lstrip(" ")
        if not rest or rest[0] == "#":
            return out
        indent += len(content) - len(rest)
        content = rest
    split = _split_key(content)
    if split is None:
        if not out:
            raise _Refused  # a scalar on a line of its own: a multi-line scalar or a bare document
        if content[0] == "[":
            out.append((indent, _FLOW, None, _flow(content, scalar)))
        else:
            out.append((indent, _SCALAR, None, _value(content, scalar)))
        return out
    key_text, value_text = split
    key = scalar(key_text, True)
    if value_text is None:
        out.append((indent, _OPEN_ENTRY, key, None))
    elif value_text[0] == "[":
        out.append((indent, _FLOW_ENTRY, key, _flow(value_text, scalar)))
    else:
        out.append((indent, _ENTRY, key, _value(value_text, scalar)))
    return out


def _split_key(text: str) -> tuple[str, str | None] | None:
    """``key: rest`` → (key, rest; None when nothing but a comment follows); None when the line is no mapping
    entry. Keys other than one-line plain scalars that start with no indicator are refused, and so is ``<<``."""
    colon = text.find(": ")
    if colon < 0:
        if text[-1] != ":":
            return None
        colon = len(text) - 1
        rest = ""
    else:
        rest = text[colon + 2 :].lstrip(" ")
    key = text[:colon]
    if (
        not key
        or key[0] in _INDICATORS
        or key[-1] == " "
        or " #" in key
        or len(key) > _MAX_KEY_CHARS
        or key == "<<"
    ):
        raise _Refused
    if not rest or rest[0] == "#":
        return key, None
    return key, rest


def _value(text: str, scalar: Scalar) -> Any:
    """A one-line scalar after ``key: `` or ``- ``: plain (a comment after it cut off) or quoted without escapes.
    Refused: plain scalars that start with an indicator or hold ``: `` (a nested mapping: a syntax error)."""
    first = text[0]
    if first in "\"'":
        close = text.find(first, 1)
        if close < 0 or not _blank_or_comment(text[close + 1 :]):
            raise _Refused
        inner = text[1:close]
        if first == '"' and "\\" in inner:
            raise _Refused
        return scalar(inner, False)
    comment = text.find(" #")
    if comment >= 0:
        text = text[:comment].rstrip(" ")
    if first in _INDICATORS and not (
        first == "-" and len(text) > 1 and (text[1].isdigit() or text[1] == ".")
    ):
        raise _Refused
    if ": " in text or text[-1] == ":":
        raise _Refused
    return scalar(text, True)


def _flow(text: str, scalar: Scalar) -> tuple[Any, ...]:
    """A one-line flow sequence of scalars (``[0]``, ``["a", b]``)."""
    close = text.find("]")
    if close < 0 or not _blank_or_comment(text[close + 1 :]):
        raise _Refused
    inner = text[1:close]
    if not inner.strip(" "):
        return ()
    items: list[Any] = []
    for raw in inner.split(","):
        item = raw.strip(" ")
        if not item:
            raise _Refused  # "[a, ]", "[, a]": libyaml decides
        first = item[0]
        if first in "\"'":
            if len(item) < 2 or item[-1] != first or first in item[1:-1] or "\\" in item:
                raise _Refused
            items.append(scalar(item[1:-1], False))
            continue
        if first in _INDICATORS or any(c in _FLOW_ITEM_REFUSED for c in item):
            raise _Refused
        items.append(scalar(item, True))
    return tuple(items)


def _blank_or_comment(rest: str) -> bool:
    stripped = rest.lstrip(" ")
    return not stripped or (stripped[0] == "#" and stripped != rest)


def _document(tokens: list[Token]) -> Any:
    value, end = _node(tokens, 0, tokens[0][0])
    if end != len(tokens):
        raise _Refused  # tokens left over: a syntax error or a construct outside the subset
    return value


def _node(tokens: list[Token], i: int, indent: int) -> tuple[Any, int]:
    kind = tokens[i][1]
    if kind == _ITEM:
        return _sequence(tokens, i, indent, False)
    if kind == _SCALAR:
        return tokens[i][3], i + 1
    if kind == _FLOW:
        return list(tokens[i][3]), i + 1
    return _mapping(tokens, i, indent)


def _below(tokens: list[Token], i: int, indent: int, in_mapping: bool) -> tuple[Any, int]:
    """The value after ``key:`` or ``-`` with nothing else on the line: a block node below it, or null."""
    if i < len(tokens):
        below = tokens[i]
        if below[0] > indent:
            return _node(tokens, i, below[0])
        if in_mapping and below[0] == indent and below[1] == _ITEM:
            return _sequence(tokens, i, indent, True)  # a mapping's value may be a sequence at its column
    return None, i


def _mapping(tokens: list[Token], i: int, indent: int) -> tuple[dict[Any, Any], int]:
    mapping: dict[Any, Any] = {}
    n = len(tokens)
    while i < n:
        at, kind, key, value = tokens[i]
        if at != indent:
            break
        if key in mapping or kind < _ENTRY or kind > _OPEN_ENTRY:
            raise _Refused  # a duplicate key (libyaml reports it), or an item or a scalar among the keys
        i += 1
        if kind == _ENTRY:
            mapping[key] = value
        elif kind == _FLOW_ENTRY:
            mapping[key] = list(value)
        elif i < n and tokens[i][0] > indent and _ENTRY <= tokens[i][1] <= _OPEN_ENTRY:
            mapping[key], i = _mapping(
                tokens, i, tokens[i][0]
            )  # what _below does for a nested mapping, inline
        else:
            mapping[key], i = _below(tokens, i, indent, True)
    if i < n and tokens[i][0] > indent:
        raise _Refused  # lines below a one-line value: a multi-line scalar or a syntax error
    return mapping, i


def _sequence(tokens: list[Token], i: int, indent: int, indentless: bool) -> tuple[list[Any], int]:
    items: list[Any] = []
    n = len(tokens)
    while i < n:
        at, kind = tokens[i][0], tokens[i][1]
        if at != indent or kind != _ITEM:
            break
        item, i = _below(tokens, i + 1, indent, False)
        items.append(item)
    if i < n:
        at = tokens[i][0]
        if at > indent or (at == indent and not indentless):
            raise _Refused  # lines below an item, or a key after a sequence: libyaml reports or reads them
    return items, i
