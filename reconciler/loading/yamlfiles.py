"""Reading manifest YAML fast, safely, and with locations on demand.

* Fastest path: text in the plain block subset manifests are written in (``key: value``, ``- item``, one-line
  scalars and flow sequences, comments, ``---``) is read line by line by ``simpleyaml``, which returns exactly
  what the libyaml path below would, or refuses (then that path reads it).
* Fast path: libyaml's C parser (through PyYAML) with a YAML 1.2 core-schema resolver, so ``on``/``yes`` stay
  strings, ``0123`` is decimal 123 and ``1:30`` is a string — the same values the round-trip loader reads.
  Duplicate keys are detected while constructing (with the key's line and column, for free).
* Hostile input is refused before anything is built: size limit, UTF-8 only, NUL bytes (binary files), alias
  count per document and nesting depth (counted on the event stream, which has no recursion), and the size the
  document would have once aliases are expanded ("billion laughs").
* Locations: ruamel.yaml's round-trip loader re-parses a file only when a finding in it needs a line and column.

Pure: functions take text and return values; reading files is the caller's business.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

from dsfleet.reconciler.loading.simpleyaml import parse_simple
from dsfleet.schemas.findings import PathItem


@dataclass(frozen=True)
class Limits:
    """Loader limits (docs/manifests/index.md, "Which files are read")."""

    max_file_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64
    max_aliases: int = 100
    max_nodes: int = 1_000_000
    """Values in one document once aliases are expanded."""
    exclude: tuple[str, ...] = ()
    """``--exclude`` patterns (gitignore syntax, relative to each directory given), beside ``.dsfleetignore``."""


DEFAULT_LIMITS = Limits()


class LimitSettings(Protocol):
    """The ``[coordinator]`` settings the loader limits come from."""

    @property
    def max_file_bytes(self) -> int: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def max_aliases(self) -> int: ...


def loader_limits(coordinator: LimitSettings, exclude: Sequence[str] = ()) -> Limits:
    """The loader limits of ``[coordinator]`` (``max_file_bytes``, ``max_depth``, ``max_aliases``)
    and ``--exclude`` patterns."""
    return Limits(
        max_file_bytes=coordinator.max_file_bytes,
        max_depth=coordinator.max_depth,
        max_aliases=coordinator.max_aliases,
        exclude=tuple(exclude),
    )


def size_text(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class YamlProblem:
    """A problem found while reading YAML text: 1-based line/column (0 = unknown)."""

    rule: str
    message: str
    line: int = 0
    column: int = 0
    note: str | None = None
    note_line: int = 0
    note_column: int = 0
    document: int | None = None


@dataclass(frozen=True)
class YamlDocument:
    index: int
    data: Any
    line: int
    """1-based line where the document starts."""


@dataclass(frozen=True)
class ParsedYaml:
    documents: tuple[YamlDocument, ...]
    problems: tuple[YamlProblem, ...]


# ----------------------------------------------------------------------------------------- YAML 1.2 core schema
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")


class _DuplicateKey(Exception):
    def __init__(self, key: str, mark: Any, first_mark: Any) -> None:
        super().__init__(key)
        self.key = key
        self.mark = mark
        self.first_mark = first_mark


def _to_int(value: str) -> int:
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return int(value)


def _to_float(value: str) -> float:
    lowered = value.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(value)


_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_NUMBER_START = frozenset("-+0123456789.")


def _resolve_tag(kind: Any, value: Any, implicit: Any) -> str:
    """The YAML 1.2 core schema's tag for a node (the generic resolver loop is the parser's hot spot)."""
    if kind is yaml.ScalarNode:
        if not implicit[0]:
            return _STR_TAG
        if not value:
            return "tag:yaml.org,2002:null"
        first = value[0]
        if first in _NUMBER_START:
            if _INT_RE.match(value):
                return "tag:yaml.org,2002:int"
            if _FLOAT_RE.match(value):
                return "tag:yaml.org,2002:float"
        elif first in "tTfF":
            if _BOOL_RE.match(value):
                return "tag:yaml.org,2002:bool"
        elif first in "nN~":
            if _NULL_RE.match(value):
                return "tag:yaml.org,2002:null"
        elif value == "<<":
            return "tag:yaml.org,2002:merge"
        return _STR_TAG
    return _SEQ_TAG if kind is yaml.SequenceNode else _MAP_TAG


class _Yaml12Loader(yaml.CSafeLoader):
    """libyaml parser + YAML 1.2 core schema + duplicate-key detection."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[_DuplicateKey] = []
        """Duplicate keys of the document being built (reported; the first value is kept)."""

    # The composer calls these for every node. Resolution is a pure function of its arguments, memoized with
    # a C-level cache (keys such as "kind" and common values repeat across documents); the path resolvers are
    # unused, so their hooks are C builtins that do nothing instead of Python methods.
    resolve = staticmethod(functools.lru_cache(maxsize=1 << 16)(_resolve_tag))
    descend_resolver = staticmethod(operator.is_)  # type: ignore[assignment]
    ascend_resolver = staticmethod(tuple)  # type: ignore[assignment]

    def construct_yaml_int(self, node: Any) -> int:
        return _to_int(str(self.construct_scalar(node)))

    def construct_yaml_float(self, node: Any) -> float:
        return _to_float(str(self.construct_scalar(node)))

    def construct_yaml_bool(self, node: Any) -> bool:
        return str(self.construct_scalar(node)).lower() == "true"


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _Yaml12Loader.construct_yaml_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _Yaml12Loader.construct_yaml_float)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _Yaml12Loader.construct_yaml_bool)


# YAML 1.2 has no timestamp type: keep such scalars as strings.
def _construct_timestamp_as_str(loader: _Yaml12Loader, node: Any) -> str:
    return str(loader.construct_scalar(node))


_Yaml12Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp_as_str)


_MERGE_TAG = "tag:yaml.org,2002:merge"


_SCALAR_BUILDERS: dict[str, Any] = {
    "tag:yaml.org,2002:int": _to_int,
    "tag:yaml.org,2002:float": _to_float,
    "tag:yaml.org,2002:bool": lambda v: v.lower() == "true",
    "tag:yaml.org,2002:null": lambda v: None,
}


def _build(loader: _Yaml12Loader, node: Any, memo: dict[int, Any]) -> Any:
    """Node tree → Python values, directly (several times faster than PyYAML's generic constructor).

    Aliased nodes are built once and shared (``memo``), as PyYAML does, so alias bombs stay small in memory.
    Tags other than the core schema's go through PyYAML's safe constructor (which refuses unknown tags).
    """
    cls = node.__class__
    if cls is yaml.ScalarNode:
        tag = node.tag
        if tag == _STR_TAG:
            return node.value
        builder = _SCALAR_BUILDERS.get(tag)
        if builder is None:
            return loader.construct_object(node, deep=True)
        try:
            return builder(node.value)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"the value is not a valid {tag.rsplit(':', 1)[-1]}", node.start_mark
            ) from None
    ident = id(node)
    if ident in memo:
        return memo[ident]
    if cls is yaml.SequenceNode:
        if node.tag != _SEQ_TAG:
            return loader.construct_object(node, deep=True)
        items: list[Any] = []
        memo[ident] = items
        items.extend(_build(loader, child, memo) for child in node.value)
        return items
    if node.tag != _MAP_TAG:
        return loader.construct_object(node, deep=True)
    mapping: dict[Any, Any] = {}
    memo[ident] = mapping
    pairs = node.value
    seen: dict[tuple[str, str], Any] = {}
    dropped: set[int] = set()
    merge = False
    for key_node, _value_node in pairs:
        if key_node.__class__ is yaml.ScalarNode:
            if key_node.tag == _MERGE_TAG:
                merge = True
                continue
            key_id = (key_node.tag, key_node.value)
            if key_id in seen:
                loader.duplicates.append(
                    _DuplicateKey(str(key_node.value), key_node.start_mark, seen[key_id].start_mark)
                )
                dropped.add(id(key_node))
                continue
            seen[key_id] = key_node
    if merge:
        loader.flatten_mapping(node)
        pairs = node.value
    for key_node, value_node in pairs:
        if dropped and id(key_node) in dropped:
            continue  # a duplicate key: reported, the first value is kept
        key = _build(loader, key_node, memo)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        mapping[key] = _build(loader, value_node, memo)
    return mapping


# ----------------------------------------------------------------------------------------- decoding & limits
def decode_text(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[str | None, YamlProblem | None]:
    """Bytes → text, refusing oversized, binary and non-UTF-8 input with a located problem."""
    if len(data) > limits.max_file_bytes:
        return None, YamlProblem(
            "yaml-limits", f"file is larger than the {size_text(limits.max_file_bytes)} limit"
        )
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or (
        len(data) >= 2 and (data[0] == 0) != (data[1] == 0) and b"\x00" in data[:4]
    ):
        return None, YamlProblem("yaml-encoding", "UTF-16 is not supported, save the file as UTF-8", 1, 1)
    nul = data.find(b"\x00")
    if nul >= 0:
        line, col = _line_col(data, nul)
        return None, YamlProblem(
            "yaml-encoding", "binary file (NUL byte); manifests are UTF-8 text", line, col
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        return None, YamlProblem("yaml-encoding", "invalid UTF-8; manifests must be UTF-8 text", line, col)
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, None


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    return line, len(data[start:offset].decode("utf-8", errors="replace")) + 1


_DOCUMENT_MARKER_RE = re.compile(r"^(?:---|\.\.\.)(?=[ \t\r\n]|\Z)", re.MULTILINE)


@functools.lru_cache(maxsize=64)
def _deep_run_re(prefix: int) -> re.Pattern[str]:
    """More than ``prefix`` characters of indentation and block indicators."""
    return re.compile(rf"[ \t?:-]{{{prefix + 1}}}")


@functools.lru_cache(maxsize=64)
def _deep_line_re(prefix: int) -> re.Pattern[str]:
    """A line after the first that starts with more than ``prefix`` characters of indentation and block
    indicators (a search for the newline first is several times faster than a multi-line ``^``)."""
    return re.compile(rf"\n[ \t?:-]{{{prefix + 1}}}")


def _has_deep_line(text: str, prefix: int) -> bool:
    """Whether a line starts with more than ``prefix`` characters of indentation and block indicators."""
    return _deep_run_re(prefix).match(text) is not None or _deep_line_re(prefix).search(text) is not None


def _needs_event_scan(text: str, limits: Limits) -> bool:
    """Cheap, sound test for input that could hold aliases or nest deeper than the limit (then the exact event
    scan runs before anything is composed).

    Depth is block nesting plus flow nesting. A block collection starts at the end of its line's run of
    indentation and block indicators (``- ``, ``? ``, ``: ``), and every two levels of block nesting need at least
    one more column of it (a mapping's value may be a sequence at the same column), so block depth is at most
    ``2 * run + 4``. Flow nesting is at most the number of ``[`` and ``{`` of the document (brackets in scalars
    and comments only make the bound larger). Documents are counted one by one: a document marker at the start
    of a line ends every scalar and collection, so many small flows (``gpus: [0]`` in each of 1,000 documents)
    do not add up."""
    if "&" in text or "*" in text:
        return True
    brackets = 0
    if "[" in text or "{" in text:
        for document in _DOCUMENT_MARKER_RE.split(text):
            brackets = max(brackets, document.count("[") + document.count("{"))
    deepest_run = (limits.max_depth - 4 - brackets) // 2
    return deepest_run < 0 or _has_deep_line(text, deepest_run)


def _limit(message: str, event: Any, document: int) -> YamlProblem:
    mark = event.start_mark
    return YamlProblem("yaml-limits", message, mark.line + 1, mark.column + 1, document=document)


def _scan_events(text: str, limits: Limits) -> YamlProblem | None:
    """Count aliases per document and the nesting depth on the event stream (no tree is built)."""
    depth = 0
    aliases = 0
    document = -1
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, yaml.DocumentStartEvent):
                document += 1
                aliases = 0
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > limits.max_depth:
                    return _limit(
                        f"document is nested deeper than {limits.max_depth} levels", event, document
                    )
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > limits.max_aliases:
                    return _limit(f"more than {limits.max_aliases} aliases in one document", event, document)
    except yaml.YAMLError:
        return None  # the real parse reports it with its location
    return None


def _expanded_size(value: Any, limit: int) -> int:
    """Number of values ``value`` would have with every alias expanded; stops counting past ``limit``."""
    memo: dict[int, int] = {}

    def size(v: Any) -> int:
        if isinstance(v, dict):
            key = id(v)
            if key in memo:
                return memo[key]
            total = 1 + sum(size(k) + size(x) for k, x in v.items())
        elif isinstance(v, list):
            key = id(v)
            if key in memo:
                return memo[key]
            total = 1 + sum(size(x) for x in v)
        else:
            return 1
        memo[key] = min(total, limit + 1)
        return memo[key]

    return size(value)


@functools.lru_cache(maxsize=1 << 16)
def _plain_scalar(text: str) -> Any:
    """A plain scalar's value under the YAML 1.2 core schema, as ``_build`` makes it (values are immutable, so
    repeated scalars share one)."""
    tag = _Yaml12Loader.resolve(yaml.ScalarNode, text, (True, False))
    if tag == _STR_TAG:
        return text
    builder = _SCALAR_BUILDERS.get(tag)
    if builder is None:
        raise ValueError(tag)  # "<<" as a value: the libyaml path reports it
    return builder(text)


def _simple_scalar(text: str, plain: bool) -> Any:
    return _plain_scalar(text) if plain else text


def parse_yaml(text: str, limits: Limits = DEFAULT_LIMITS) -> ParsedYaml:
    """Parse every document of ``text``; never raises for bad input.

    The limits are checked first; then text in the plain subset manifests are written in is read by
    :func:`~dsfleet.reconciler.loading.simpleyaml.parse_simple` (same values, several times faster), anything else by
    libyaml."""
    if _needs_event_scan(text, limits):
        problem = _scan_events(text, limits)
        if problem is not None:
            return ParsedYaml((), (problem,))
    simple = parse_simple(text, _simple_scalar)
    if simple is not None:
        return ParsedYaml(tuple(YamlDocument(i, data, line) for i, (data, line) in enumerate(simple)), ())
    return parse_yaml_libyaml(text, limits)


def parse_yaml_libyaml(text: str, limits: Limits = DEFAULT_LIMITS) -> ParsedYaml:
    """``parse_yaml`` through libyaml only (any YAML; the limits' event scan is the caller's)."""
    may_alias = "&" in text
    loader = _Yaml12Loader(text)
    documents: list[YamlDocument] = []
    duplicates: list[YamlProblem] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            line = node.start_mark.line + 1
            data = _build(loader, node, {})
            if may_alias and _expanded_size(data, limits.max_nodes) > limits.max_nodes:
                return ParsedYaml(
                    tuple(documents),
                    (
                        YamlProblem(
                            "yaml-limits",
                            f"document expands to more than {limits.max_nodes} values (alias bomb?)",
                            line,
                            1,
                            document=index,
                        ),
                    ),
                )
            documents.append(YamlDocument(index, data, line))
            for dup in loader.duplicates:
                duplicates.append(_duplicate_problem(dup, index))
            loader.duplicates.clear()
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = _yaml_message(exc, text)
        return ParsedYaml(
            tuple(documents),
            (
                *duplicates,
                YamlProblem(
                    "yaml-syntax", message, (mark.line + 1) if mark else 0, (mark.column + 1) if mark else 0
                ),
            ),
        )
    except yaml.reader.ReaderError as exc:  # control characters and the like
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return ParsedYaml(
            tuple(documents),
            (YamlProblem("yaml-syntax", f"YAML syntax: control character #x{exc.character:04x} is not allowed",
                         line, column),),
        )  # fmt: skip
    except yaml.YAMLError as exc:
        return ParsedYaml(tuple(documents), (YamlProblem("yaml-syntax", _first_line(str(exc))),))
    except RecursionError:
        return ParsedYaml((), (YamlProblem("yaml-limits", "document is nested too deeply"),))
    finally:
        loader.dispose()
    return ParsedYaml(tuple(documents), tuple(duplicates))


def _duplicate_problem(dup: _DuplicateKey, document: int) -> YamlProblem:
    return YamlProblem(
        "yaml-duplicate-key",
        f"duplicate key {_short(dup.key)!r} in a mapping (the first value is used)",
        dup.mark.line + 1,
        dup.mark.column + 1,
        note="first defined here",
        note_line=dup.first_mark.line + 1,
        note_column=dup.first_mark.column + 1,
        document=document,
    )


def _short(key: str) -> str:
    return key if len(key) <= 40 else key[:37] + "..."


def _tab_indented(exc: yaml.MarkedYAMLError, text: str) -> bool:
    """True when the line of the error (or the one before it) is indented with a tab."""
    mark = exc.problem_mark or exc.context_mark
    if mark is None or not text:
        return False
    lines = text.split("\n")
    for number in (mark.line, mark.line - 1):
        if 0 <= number < len(lines):
            line = lines[number]
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            if "\t" in indent:
                return True
    return False


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "invalid YAML"


def _yaml_message(exc: yaml.MarkedYAMLError, text: str = "") -> str:
    if "'\\t'" in (exc.problem or "") or _tab_indented(exc, text):
        return "YAML syntax: a tab is used for indentation; YAML indents with spaces only"
    parts = [p for p in (exc.context, exc.problem) if p]
    message = ": ".join(parts) if parts else "invalid YAML"
    return "YAML syntax: " + message


# ----------------------------------------------------------------------------------------- locations
@functools.cache
def _round_trip_constructor() -> Any:
    """ruamel's round-trip constructor held to the YAML 1.2 core schema, as ``parse_yaml`` reads it: ruamel also
    reads timestamps, ``1_000`` and ``-_`` as numbers (the last one crashes it); here they stay strings."""
    from ruamel.yaml.constructor import RoundTripConstructor

    class _RoundTripConstructor(RoundTripConstructor):
        def construct_yaml_int(self, node: Any) -> Any:
            value = str(node.value)
            return _to_int(value) if _INT_RE.match(value) else self.construct_yaml_str(node)

        def construct_yaml_float(self, node: Any) -> Any:
            value = str(node.value)
            return _to_float(value) if _FLOAT_RE.match(value) else self.construct_yaml_str(node)

    _RoundTripConstructor.add_constructor(
        "tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str
    )
    _RoundTripConstructor.add_constructor("tag:yaml.org,2002:int", _RoundTripConstructor.construct_yaml_int)
    _RoundTripConstructor.add_constructor(
        "tag:yaml.org,2002:float", _RoundTripConstructor.construct_yaml_float
    )
    return _RoundTripConstructor


def round_trip_yaml() -> Any:
    """The ruamel.yaml round-trip loader configured to read the same values as ``parse_yaml``. Imported on first
    use: only files with findings need line and column numbers."""
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")
    rt.Constructor = _round_trip_constructor()
    rt.allow_duplicate_keys = True
    return rt


class Locator:
    """Lines and columns for key paths of one file, from ruamel.yaml's round-trip loader (parsed on first use)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._docs: list[Any] | None = None

    def _documents(self) -> list[Any]:
        if self._docs is None:
            rt = round_trip_yaml()
            try:
                self._docs = list(rt.load_all(self._text))
            except Exception:
                self._docs = []
        return self._docs

    def locate(self, document: int, path: Sequence[PathItem], *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of the value at ``path`` (or of its key when ``key``); the deepest match wins.

        Path items that are not in the data (tags of tagged unions in validation errors) are skipped.
        """
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        docs = self._documents()
        if document >= len(docs):
            return (0, 0)
        node = docs[document]
        line, col = _node_start(node)
        for i, item in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, CommentedMap) and item in node:
                if last and key:
                    kline, kcol = node.lc.key(item)
                    return kline + 1, kcol + 1
                vline, vcol = node.lc.value(item)
                line, col = vline + 1, vcol + 1
                node = node[item]
            elif isinstance(node, CommentedSeq) and isinstance(item, int) and 0 <= item < len(node):
                iline, icol = node.lc.item(item)
                line, col = iline + 1, icol + 1
                node = node[item]
            else:
                continue
        return line, col


def _node_start(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is not None and lc.line is not None:
        return lc.line + 1, (lc.col or 0) + 1
    return (1, 1)
