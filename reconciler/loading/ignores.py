"""Leaving files out of a manifest set: ``.dsfleetignore`` files (gitignore syntax, like Flux's ``.sourceignore``)
and ``--exclude GLOB`` patterns.

Syntax, as gitignore: one pattern per line; blank lines and ``#`` comments are ignored; ``!`` re-includes; a
trailing ``/`` matches directories only; a pattern with a ``/`` elsewhere is anchored to the directory of the
``.dsfleetignore`` file (``/ci/*.yaml``), one without matches a name at any depth (``docker-compose*.yml``);
``*`` and ``?`` do not cross ``/``, ``**`` does. The last matching pattern wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IGNORE_FILE = ".dsfleetignore"


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool


def _translate(glob: str) -> str:
    out = ""
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if glob.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = glob.find("]", i + 1)
            if end < 0:
                out += re.escape(c)
            else:
                body = glob[i + 1 : end].replace("\\", "\\\\")
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end
        else:
            out += re.escape(c)
        i += 1
    return out


def compile_pattern(line: str) -> Pattern | None:
    """One gitignore line → a pattern matched against ``/``-separated paths relative to the ignore file's
    directory; ``None`` for blank lines and comments."""
    text = line.rstrip("\n").rstrip()
    if not text or text.startswith("#"):
        return None
    negated = text.startswith("!")
    if negated:
        text = text[1:]
    if text.startswith("\\"):
        text = text[1:]
    dir_only = text.endswith("/")
    text = text.rstrip("/")
    if not text:
        return None
    anchored = "/" in text
    text = text.lstrip("/")
    body = _translate(text)
    regex = ("^" if anchored else r"^(?:.*/)?") + body + "$"
    return Pattern(re.compile(regex), negated, dir_only)


def compile_patterns(lines: Iterable[str]) -> tuple[Pattern, ...]:
    return tuple(p for p in (compile_pattern(line) for line in lines) if p is not None)


def ignored(rules: Sequence[tuple[str, Sequence[Pattern]]], relpath: str, is_dir: bool) -> bool:
    """True when the last pattern matching ``relpath`` (``a/b.yaml``, relative to the root) excludes it. ``rules``
    are (directory prefix ``sub/`` or ``""``, patterns of that directory's ignore file), outermost first."""
    result = False
    for base, patterns in rules:
        if not relpath.startswith(base):
            continue
        sub = relpath[len(base) :]
        for p in patterns:
            if (not p.dir_only or is_dir) and p.regex.match(sub):
                result = not p.negated
    return result
