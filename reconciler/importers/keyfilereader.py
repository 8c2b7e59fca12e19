"""GLib key files as DeepStream reads them (pure: text in, values and findings out).

Reading follows ``glib/gkeyfile.c`` (``g_key_file_load_from_data`` with ``G_KEY_FILE_NONE``) and the typed getters
nvinfer / nvdspreprocess call; the rules, each checked against the real libglib:

* ``parse_keyfile`` splits the text into groups and ``key=value`` entries (1-based line/column), reports what makes
  ``g_key_file_load_*`` fail (``;`` comments, ``[group] junk``, a key before the first group, invalid group or key
  names), duplicate keys (GLib keeps the last value) and duplicate groups (GLib merges them), and invalid escapes
  (``C:\\models``: every getter but the integer one then fails).
* ``read_typed`` returns exactly what DeepStream's getter for a key returns, plus pitfalls: an inline ``# …`` after
  an integer is accepted (warned), after a double or boolean it is an error, in a string it silently becomes part
  of the value (warned).

The importers use it; the writer is :mod:`dsfleet.reconciler.compiling.keyfilewriter` (it shares only the GLib character
classes, which it owns).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

from dsfleet.reconciler.compiling.keyfilewriter import WHITESPACE, is_group_name
from dsfleet.schemas.deepstream import (
    INT32_MAX,
    INT32_MIN,
    KeySpec,
    ValueKind,
)
from dsfleet.schemas.findings import Finding, Location, Note, Severity

__all__ = [
    "RULE_DUPLICATE_GROUP",
    "RULE_DUPLICATE_KEY",
    "RULE_INLINE_COMMENT",
    "RULE_INVALID_ESCAPE",
    "RULE_LOAD_ERROR",
    "RULE_LOCALIZED_KEY",
    "RULE_NUL_CHARACTER",
    "RULE_TRAILING_TEXT",
    "RULE_TRAILING_WHITESPACE",
    "RULE_TYPE_ERROR",
    "KeyEntry",
    "KeyFile",
    "KeyGroup",
    "Problem",
    "parse_keyfile",
    "read_typed",
]

RULE_LOAD_ERROR: Final = "keyfile-load-error"
RULE_DUPLICATE_KEY: Final = "keyfile-duplicate-key"
RULE_DUPLICATE_GROUP: Final = "keyfile-duplicate-group"
RULE_LOCALIZED_KEY: Final = "keyfile-localized-key"
RULE_INVALID_ESCAPE: Final = "keyfile-invalid-escape"
RULE_TYPE_ERROR: Final = "keyfile-type-error"
RULE_INLINE_COMMENT: Final = "keyfile-inline-comment"
RULE_TRAILING_WHITESPACE: Final = "keyfile-trailing-whitespace"
RULE_TRAILING_TEXT: Final = "keyfile-trailing-text"
RULE_NUL_CHARACTER: Final = "keyfile-nul-character"


_ESCAPES: Final = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


# --------------------------------------------------------------------------------------------------------------
# Parsed key files


@dataclass(frozen=True)
class KeyEntry:
    """One ``key=value`` line. ``raw`` is the value as GLib stores it (leading whitespace dropped, trailing kept,
    escapes not yet decoded); ``column`` is where the key starts, ``value_column`` where the value starts."""

    key: str
    raw: str
    line: int
    column: int
    value_column: int


@dataclass(frozen=True)
class KeyGroup:
    """A group with its entries in file order; a group that appears twice is merged (as GLib does)."""

    name: str
    line: int
    column: int
    entries: tuple[KeyEntry, ...] = ()

    def get(self, key: str) -> KeyEntry | None:
        """The entry GLib's getters read: the last one for a duplicated key."""
        for entry in reversed(self.entries):
            if entry.key == key:
                return entry
        return None

    def keys(self) -> tuple[str, ...]:
        """The keys as ``g_key_file_get_keys`` lists them (a duplicated key appears each time)."""
        return tuple(entry.key for entry in self.entries)

    def effective(self) -> dict[str, KeyEntry]:
        """Key → the entry GLib reads, in order of first appearance."""
        out: dict[str, KeyEntry] = {}
        for entry in self.entries:
            out[entry.key] = entry
        return out


@dataclass(frozen=True)
class KeyFile:
    file: str
    groups: tuple[KeyGroup, ...]
    findings: tuple[Finding, ...]

    @property
    def loaded(self) -> bool:
        """Whether ``g_key_file_load_from_file`` succeeds on this text."""
        return not any(f.rule == RULE_LOAD_ERROR for f in self.findings)

    def group(self, name: str) -> KeyGroup | None:
        for group in self.groups:
            if group.name == name:
                return group
        return None

    def group_names(self) -> tuple[str, ...]:
        return tuple(group.name for group in self.groups)


@dataclass
class _GroupBuilder:
    name: str
    line: int
    column: int
    entries: list[KeyEntry]
    first_seen: dict[str, KeyEntry]


def _finding(
    severity: Severity,
    rule: str,
    message: str,
    file: str,
    line: int,
    column: int,
    notes: tuple[Note, ...] = (),
) -> Finding:
    return Finding(
        severity=severity,
        rule=rule,
        message=message,
        location=Location(file=file, line=line, column=column),
        notes=notes,
    )


def _key_name_problem(key: str) -> str | None:
    """Why GLib's ``g_key_file_is_key_name`` rejects ``key`` (None: valid)."""
    end = len(key)
    q = 0
    while q < end and key[q] not in "=[]":
        q += 1
    if q == 0:
        return "a key may not start with '[' or ']'"
    if key[0] == " " or key[q - 1] == " ":
        return "a key may not start or end with a space"
    if q < end and key[q] == "[":
        q += 1
        while q < end and (key[q].isalnum() or key[q] in "-_.@"):
            q += 1
        if q >= end or key[q] != "]":
            return "a key may contain '[' only as a locale suffix like key[de]"
        q += 1
    if q < end:
        return "a key may not contain '[' or ']' except a locale suffix like key[de]"
    return None


def _not_a_line_message(rest: str) -> str:
    base = "line is not a key=value pair, a [group] or a # comment, so GLib refuses to load the file"
    if rest.startswith(";"):
        return f"';' comments are not supported by GLib key files (use '#'): {base}"
    if rest.startswith("\ufeff"):
        return f"the file starts with a byte-order mark: {base}"
    if rest.startswith("["):
        return f"only spaces or tabs may follow the ']' of a group header (put comments on their own line): {base}"
    return base


def _escape_error_offset(raw: str) -> int | None:
    """Offset of the first backslash sequence no GLib getter accepts (``\\;`` counts as valid: lists use it)."""
    i = 0
    while i < len(raw):
        if raw[i] == "\\":
            if i + 1 >= len(raw) or (raw[i + 1] not in _ESCAPES and raw[i + 1] != ";"):
                return i
            i += 2
            continue
        i += 1
    return None


def parse_keyfile(text: str, file: str) -> KeyFile:
    """Parse ``text`` the way ``g_key_file_load_from_data(..., G_KEY_FILE_NONE)`` does.

    GLib stops at the first load error; this parser reports every error (each a ``keyfile-load-error``) and keeps
    going, so ``KeyFile.loaded`` tells whether GLib would load the file at all.
    """
    findings: list[Finding] = []
    groups: dict[str, _GroupBuilder] = {}
    current: _GroupBuilder | None = None
    skipping = False  # after an invalid group header: its keys belong nowhere
    reported_no_group = False
    lines = text.split("\n")
    for index, line in enumerate(lines):
        lineno = index + 1
        if index < len(lines) - 1 and line.endswith("\r"):
            line = line[:-1]  # GLib drops one \r before \n (not at the end of a last line without \n)
        if "\x00" in line:
            line = line[: line.index("\x00")]
            findings.append(
                _finding(
                    Severity.WARNING,
                    RULE_NUL_CHARACTER,
                    "NUL character: GLib ignores the rest of the line",
                    file,
                    lineno,
                    len(line) + 1,
                )
            )
        start = len(line) - len(line.lstrip(WHITESPACE))
        rest = line[start:]
        column = start + 1
        if rest == "" or rest.startswith("#"):
            continue
        if rest.startswith("["):
            close = rest.find("]")
            if close > 0 and all(c in " \t" for c in rest[close + 1 :]):
                name = rest[1:close]
                if not is_group_name(name):
                    findings.append(
                        _finding(
                            Severity.ERROR,
                            RULE_LOAD_ERROR,
                            "invalid group name (empty, or contains '[' or a control character): "
                            "GLib refuses to load the file",
                            file,
                            lineno,
                            column,
                        )
                    )
                    current, skipping = None, True
                    continue
                skipping = False
                existing = groups.get(name)
                if existing is not None:
                    findings.append(
                        _finding(
                            Severity.WARNING,
                            RULE_DUPLICATE_GROUP,
                            f"group [{name}] appears again: GLib merges it into the first one",
                            file,
                            lineno,
                            column,
                            (
                                Note(
                                    message=f"[{name}] first appears here",
                                    location=Location(file=file, line=existing.line, column=existing.column),
                                ),
                            ),
                        )
                    )
                    current = existing
                else:
                    current = groups[name] = _GroupBuilder(name, lineno, column, [], {})
                continue
        eq = rest.find("=")
        if eq <= 0:
            findings.append(
                _finding(Severity.ERROR, RULE_LOAD_ERROR, _not_a_line_message(rest), file, lineno, column)
            )
            if rest.lstrip("\ufeff").startswith("["):
                current, skipping = None, True  # a broken group header: do not pin its keys on another group
            continue
        if skipping:
            continue
        if current is None:
            if not reported_no_group:
                reported_no_group = True
                findings.append(
                    _finding(
                        Severity.ERROR,
                        RULE_LOAD_ERROR,
                        "key before the first [group]: GLib refuses to load the file",
                        file,
                        lineno,
                        column,
                    )
                )
            continue
        key = rest[:eq].rstrip(WHITESPACE)
        problem = _key_name_problem(key)
        if problem is not None:
            message = f"invalid key name ({problem}): GLib refuses to load the file"
            if rest.startswith("["):
                message = _not_a_line_message(rest)
                current, skipping = None, True
            findings.append(_finding(Severity.ERROR, RULE_LOAD_ERROR, message, file, lineno, column))
            continue
        after = rest[eq + 1 :]
        raw = after.lstrip(WHITESPACE)
        value_column = column + eq + 1 + (len(after) - len(raw))
        if "[" in key:
            findings.append(
                _finding(
                    Severity.WARNING,
                    RULE_LOCALIZED_KEY,
                    f"localized key {key!s} is ignored: DeepStream reads only untranslated keys",
                    file,
                    lineno,
                    column,
                )
            )
            continue
        entry = KeyEntry(key=key, raw=raw, line=lineno, column=column, value_column=value_column)
        first = current.first_seen.get(key)
        if first is not None:
            findings.append(
                _finding(
                    Severity.WARNING,
                    RULE_DUPLICATE_KEY,
                    f"duplicate key {key} in [{current.name}]: GLib keeps only the last value",
                    file,
                    lineno,
                    column,
                    (
                        Note(
                            message=f"{key} first set here",
                            location=Location(file=file, line=first.line, column=first.column),
                        ),
                    ),
                )
            )
        else:
            current.first_seen[key] = entry
        current.entries.append(entry)
        bad = _escape_error_offset(raw)
        if bad is not None:
            findings.append(
                _finding(
                    Severity.ERROR,
                    RULE_INVALID_ESCAPE,
                    _escape_message(key),
                    file,
                    lineno,
                    value_column + bad,
                )
            )
    return KeyFile(
        file=file,
        groups=tuple(KeyGroup(g.name, g.line, g.column, tuple(g.entries)) for g in groups.values()),
        findings=tuple(findings),
    )


def _escape_message(key: str) -> str:
    return (
        f"value of {key} has an invalid backslash escape (GLib knows \\s \\n \\t \\r \\\\, and \\; in lists): "
        "DeepStream's string, boolean, double and list getters fail on it; write paths with '/'"
    )


# --------------------------------------------------------------------------------------------------------------
# Typed getters


@dataclass(frozen=True)
class Problem:
    """A pitfall or error in one value; ``offset`` is where in the raw value it is (for the column)."""

    severity: Severity
    rule: str
    message: str
    offset: int = 0


_STRTOL_RE: Final = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_HEX: Final = r"[0-9a-fA-F]"
_STRTOD_RE: Final = re.compile(
    r"[ \t\n\v\f\r]*[+-]?(?:"
    rf"0[xX](?:{_HEX}+(?:\.{_HEX}*)?|\.{_HEX}+)(?:[pP][+-]?[0-9]+)?"
    r"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?"
    r"|[nN][aA][nN](?:\([0-9A-Za-z_]*\))?"
    r"|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r")"
)


def _strtol(text: str) -> tuple[int | None, int, str | None]:
    """``g_key_file_parse_value_as_integer``: (value, end of the number, why it fails)."""
    if text == "":
        return None, 0, "is empty"
    match = _STRTOL_RE.match(text)
    value, end = (int(match.group(1)), match.end()) if match else (0, 0)
    if end < len(text) and text[end] not in WHITESPACE:
        return None, end, "is not an integer"
    if not INT32_MIN <= value <= INT32_MAX:
        return None, end, "is outside the 32-bit integer range"
    return value, end, None


def _strtod(text: str) -> tuple[float | None, int]:
    """``g_ascii_strtod`` over the whole string: (value or None, end of the longest number prefix)."""
    match = _STRTOD_RE.match(text)
    if match is None:
        return None, 0
    end = match.end()
    if end != len(text):
        return None, end
    number = match.group(0).lstrip(WHITESPACE)
    body = number.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        return float.fromhex(number), end
    if body[:3].lower() == "nan":
        return math.nan, end
    return float(number), end


def _trailing_problems(key: str, raw: str, end: int, what: str) -> list[Problem]:
    """Warnings for what GLib ignored after an accepted integer."""
    rest = raw[end:]
    content = rest.strip(WHITESPACE)
    if content.startswith("#"):
        return [
            Problem(
                Severity.WARNING,
                RULE_INLINE_COMMENT,
                f"inline comment after {what} of {key}: GLib ignores it on integer keys, but the same "
                "comment breaks double and boolean keys and corrupts string keys; put comments on their own line",
                raw.index("#", end),
            )
        ]
    if content:
        return [
            Problem(
                Severity.WARNING,
                RULE_TRAILING_TEXT,
                f"text after {what} of {key} is ignored by GLib",
                end + (len(rest) - len(rest.lstrip(WHITESPACE))),
            )
        ]
    if rest:
        return [
            Problem(
                Severity.WARNING,
                RULE_TRAILING_WHITESPACE,
                f"trailing whitespace after the value of {key}",
                end,
            )
        ]
    return []


def _double_failure(key: str, item: str, end: int, what: str) -> Problem:
    rest = item[end:]
    content = rest.strip(WHITESPACE)
    if end and content.startswith("#"):
        message = (
            f"inline comment after {what} of {key}: GLib's double getter must consume the whole value, "
            "so DeepStream fails to parse the config"
        )
        return Problem(Severity.ERROR, RULE_TYPE_ERROR, message, item.index("#", end))
    if end and rest and not content:
        message = f"trailing whitespace after {what} of {key}: GLib's double getter fails on it"
        return Problem(Severity.ERROR, RULE_TYPE_ERROR, message, end)
    if "/" in item:
        message = f"{what} of {key} must be a plain decimal number (no arithmetic like 1/255)"
        return Problem(Severity.ERROR, RULE_TYPE_ERROR, message, 0)
    return Problem(Severity.ERROR, RULE_TYPE_ERROR, f"{what} of {key} is not a number", end)


def _unescape(raw: str, list_mode: bool) -> tuple[str, list[str], int | None]:
    """``g_key_file_parse_value_as_string``: (string, list pieces, offset of the first bad escape)."""
    out: list[str] = []
    pieces: list[str] = []
    piece_start = 0
    bad: int | None = None
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\":
            if i + 1 >= len(raw):
                bad = i if bad is None else bad
                break
            nxt = raw[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif list_mode and nxt == ";":
                out.append(";")
            else:
                out.append("\\" + nxt)
                bad = i if bad is None else bad
            i += 2
            continue
        if list_mode and char == ";":
            pieces.append("".join(out[piece_start:]))
            piece_start = len(out)
        else:
            out.append(char)
        i += 1
    if list_mode:
        # A separator contributes no character, so ``out[piece_start:]`` is exactly the last piece.
        last = "".join(out[piece_start:])
        if last:
            pieces.append(last)
    return "".join(out), pieces, bad


def _comment_offset(raw: str) -> int | None:
    match = re.search(r"[ \t]#", raw)
    return match.start() + 1 if match else None


def _read_int(spec: KeySpec, raw: str) -> tuple[object | None, tuple[Problem, ...]]:
    value, end, why = _strtol(raw)
    if why is not None:
        return None, (
            Problem(
                Severity.ERROR,
                RULE_TYPE_ERROR,
                f"value of {spec.name} {why}: DeepStream's integer getter fails, so the config does not parse",
                end if why == "is not an integer" else 0,
            ),
        )
    return value, tuple(_trailing_problems(spec.name, raw, end, "the integer value"))


def _read_double(spec: KeySpec, raw: str) -> tuple[object | None, tuple[Problem, ...]]:
    value, end = _strtod(raw)
    if value is None:
        return None, (_double_failure(spec.name, raw, end, "the value"),)
    return value, ()


def _read_bool(spec: KeySpec, raw: str) -> tuple[object | None, tuple[Problem, ...]]:
    stripped = raw.rstrip(WHITESPACE)
    problems: list[Problem] = []
    if stripped != raw:
        problems.append(
            Problem(
                Severity.WARNING,
                RULE_TRAILING_WHITESPACE,
                f"trailing whitespace after the value of {spec.name}",
                len(stripped),
            )
        )
    if stripped in ("true", "1"):
        return True, tuple(problems)
    if stripped in ("false", "0"):
        return False, tuple(problems)
    comment = _comment_offset(raw)
    if comment is not None:
        message = (
            f"inline comment after the boolean value of {spec.name}: GLib's boolean getter accepts only "
            "true, false, 1 or 0, so DeepStream fails to parse the config"
        )
        return None, (Problem(Severity.ERROR, RULE_TYPE_ERROR, message, comment),)
    if stripped.lower() in ("true", "false", "yes", "no", "on", "off"):
        message = f"{spec.name} must be written true, false, 1 or 0 (lowercase): GLib's boolean getter fails"
    else:
        message = f"value of {spec.name} is not a boolean (true, false, 1 or 0): GLib's boolean getter fails"
    return None, (Problem(Severity.ERROR, RULE_TYPE_ERROR, message, 0),)


def _read_string(spec: KeySpec, raw: str) -> tuple[object | None, tuple[Problem, ...]]:
    value, _, bad = _unescape(raw, False)
    if bad is not None:
        return None, (Problem(Severity.ERROR, RULE_INVALID_ESCAPE, _escape_message(spec.name), bad),)
    problems: list[Problem] = []
    comment = _comment_offset(raw)
    if comment is not None:
        problems.append(
            Problem(
                Severity.WARNING,
                RULE_INLINE_COMMENT,
                f"value of {spec.name} contains ' #': GLib does not strip inline comments, so it is part of the "
                "string (a wrong path or symbol name); put comments on their own line",
                comment,
            )
        )
    elif raw != raw.rstrip(WHITESPACE):
        problems.append(
            Problem(
                Severity.WARNING,
                RULE_TRAILING_WHITESPACE,
                f"value of {spec.name} ends with whitespace, which GLib keeps in the string",
                len(raw.rstrip(WHITESPACE)),
            )
        )
    return value, tuple(problems)


def _read_list(spec: KeySpec, raw: str) -> tuple[object | None, tuple[Problem, ...]]:
    _, pieces, bad = _unescape(raw, True)
    if bad is not None:
        return None, (Problem(Severity.ERROR, RULE_INVALID_ESCAPE, _escape_message(spec.name), bad),)
    item_kind = spec.kind.item_kind
    items: list[object] = []
    problems: list[Problem] = []
    comment = _comment_offset(raw)
    for index, piece in enumerate(pieces):
        what = f"item {index + 1}"
        if item_kind is ValueKind.INT:
            value, end, why = _strtol(piece)
            if why is not None:
                message = f"{what} of {spec.name} {why}: DeepStream's integer list getter fails"
                return None, (Problem(Severity.ERROR, RULE_TYPE_ERROR, message, 0),)
            items.append(value)
            for problem in _trailing_problems(spec.name, piece, end, what):
                offset = comment if comment is not None and problem.rule == RULE_INLINE_COMMENT else 0
                problems.append(Problem(problem.severity, problem.rule, problem.message, offset))
        elif item_kind is ValueKind.DOUBLE:
            number, end = _strtod(piece)
            if number is None:
                failure = _double_failure(spec.name, piece, end, what)
                offset = comment if comment is not None else 0
                return None, (Problem(failure.severity, failure.rule, failure.message, offset),)
            items.append(number)
        else:
            items.append(piece)
    if item_kind is ValueKind.STRING and comment is not None:
        problems.append(
            Problem(
                Severity.WARNING,
                RULE_INLINE_COMMENT,
                f"value of {spec.name} contains ' #': GLib does not strip inline comments, so it is part of an item",
                comment,
            )
        )
    return tuple(items), tuple(problems)


def read_typed(spec: KeySpec, raw: str) -> tuple[object | None, tuple[Problem, ...]]:
    """What DeepStream's getter for ``spec`` returns for the raw value (None when the getter fails), and problems.

    INT → int (``g_key_file_get_integer``), DOUBLE → float, BOOL → bool, STRING → str (escapes decoded), lists →
    tuples. Errors (the getter fails, so DeepStream's parser fails) and warnings (accepted, but a pitfall) carry
    rule ids ``keyfile-type-error``, ``keyfile-invalid-escape``, ``keyfile-inline-comment``,
    ``keyfile-trailing-whitespace`` and ``keyfile-trailing-text``.
    """
    kind = spec.kind
    if kind is ValueKind.INT:
        return _read_int(spec, raw)
    if kind is ValueKind.DOUBLE:
        return _read_double(spec, raw)
    if kind is ValueKind.BOOL:
        return _read_bool(spec, raw)
    if kind is ValueKind.STRING:
        return _read_string(spec, raw)
    return _read_list(spec, raw)
