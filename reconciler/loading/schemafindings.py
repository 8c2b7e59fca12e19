"""pydantic validation errors → findings that name the YAML path, never echo the input, and suggest fixes."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from dsfleet.schemas.base import DNS_LABEL_RE
from dsfleet.schemas.findings import Finding, PathItem, Severity, SourceRef, format_path
from dsfleet.schemas.manifests import ENV_NAME_RE, FILE_NAME_RE, IMAGE_REF_RE, LABEL_KEY_RE

RULE_SCHEMA = "schema"
RULE_UNKNOWN_FIELD = "unknown-field"
RULE_MISSING_FIELD = "missing-field"


# pydantic's words for YAML users: a YAML sequence is a "list", a YAML mapping a "mapping"
_TYPE_WORDS = {
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
}

PATTERN_MEANINGS = {
    DNS_LABEL_RE.pattern: "a DNS label: lowercase letters, digits and '-', starting and ending alphanumeric",
    LABEL_KEY_RE: "a label key: an optional DNS-style prefix and '/', then letters, digits, '-', '_' or '.', "
    "starting and ending alphanumeric",
    ENV_NAME_RE: "an environment variable name: letters, digits and '_', not starting with a digit",
    FILE_NAME_RE: "a plain file name: letters, digits, '_', '-' and '.', no directories",
    IMAGE_REF_RE: "an image reference without spaces",
}


def data_path(data: Any, loc: Sequence[PathItem]) -> tuple[PathItem, ...]:
    """The part of a pydantic ``loc`` that exists in ``data``: drops union tags and validator names."""
    path: list[PathItem] = []
    node = data
    for i, item in enumerate(loc):
        if isinstance(node, dict) and item in node:
            path.append(item)
            node = node[item]
        elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            path.append(item)
            node = node[item]
        elif i == len(loc) - 1 and isinstance(node, dict) and isinstance(item, str):
            path.append(item)  # a missing field: name it
    return tuple(path)


def _members(annotation: Any) -> list[Any]:
    """Flatten Annotated / Optional / unions into their member types, keeping Tag names as (tag, type)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        tags = [m.tag for m in meta if type(m).__name__ == "Tag"]
        inner = _members(base)
        if tags:
            return [(tags[0], t if not isinstance(t, tuple) else t[1]) for t in inner]
        return inner
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_members(arg))
        return out
    return [annotation]


def _field_by_key(model: type[BaseModel], key: PathItem) -> Any | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def _model_keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def known_keys_at(root: type[BaseModel], loc: Sequence[PathItem]) -> list[str] | None:
    """Field names (by alias) of the model that ``loc[:-1]`` leads to, following pydantic's loc conventions."""
    current: list[Any] = [root]
    items = list(loc[:-1])
    i = 0
    while i < len(items):
        item = items[i]
        nxt: list[Any] = []
        for typ in current:
            if isinstance(typ, tuple):  # (tag, type)
                if typ[0] == item:
                    nxt.append(typ[1])
                continue
            if isinstance(typ, type) and issubclass(typ, BaseModel):
                ann = _field_by_key(typ, item)
                if ann is not None:
                    nxt.extend(_members(ann))
                continue
            origin = typing.get_origin(typ)
            args = typing.get_args(typ)
            if origin in (tuple, list) and isinstance(item, int) and args:
                nxt.extend(_members(args[0]))
            elif origin is dict and len(args) == 2 and isinstance(item, str):
                nxt.extend(_members(args[1]))
        if not nxt:
            return None
        expanded: list[Any] = []
        for typ in nxt:
            expanded.extend(_members(typ) if not isinstance(typ, tuple) else [typ])
        current = expanded
        i += 1
    keys: list[str] = []
    for typ in current:
        t = typ[1] if isinstance(typ, tuple) else typ
        if isinstance(t, type) and issubclass(t, BaseModel):
            keys.extend(_model_keys(t))
    return keys or None


@cache
def _vocabulary() -> tuple[str, ...]:
    from dsfleet.schemas.manifests import MODELS

    words: set[str] = set()

    def walk(schema: Any) -> None:
        if isinstance(schema, dict):
            props = schema.get("properties")
            if isinstance(props, dict):
                words.update(props)
            for value in schema.values():
                walk(value)
        elif isinstance(schema, list):
            for value in schema:
                walk(value)

    for model in MODELS.values():
        walk(model.model_json_schema(by_alias=True))
    return tuple(sorted(words))


def suggest(word: str, candidates: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in candidates}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return lowered[word.lower()]
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    if matches:
        return matches[0]
    matches = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[matches[0]] if matches else None


def _message(error: ErrorDetails, root: type[BaseModel], path_text: str) -> tuple[str, str]:
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        keys = known_keys_at(root, loc) or list(_vocabulary())
        hint = suggest(key, keys)
        message = "unknown field"
        if hint:
            message += f"; did you mean {hint}?"
        return RULE_UNKNOWN_FIELD, message
    if kind == "missing":
        return RULE_MISSING_FIELD, "required field is missing"
    if kind in ("literal_error", "enum"):
        expected = (error.get("ctx") or {}).get("expected")
        return RULE_SCHEMA, f"must be {expected}" if expected else "value is not allowed"
    msg = error["msg"]
    if kind in _TYPE_WORDS:
        return RULE_SCHEMA, f"must be {_TYPE_WORDS[kind]}"
    if kind == "string_pattern_mismatch":
        described = PATTERN_MEANINGS.get(str((error.get("ctx") or {}).get("pattern")))
        if described:
            return RULE_SCHEMA, f"must be {described}"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif kind == "assertion_error":
        msg = msg.removeprefix("Assertion failed, ")
    if msg[:1].isupper() and not msg[1:2].isupper():
        msg = msg[:1].lower() + msg[1:]
    return RULE_SCHEMA, msg


def findings_from_error(
    exc: ValidationError, root: type[BaseModel], data: Any, source: SourceRef
) -> list[Finding]:
    out: list[Finding] = []
    seen: set[tuple[tuple[PathItem, ...], str]] = set()
    errors = exc.errors(include_url=False, include_input=False)
    # a list whose items failed also reports "too short" (the failed items are not counted): say it once
    item_error_parents = {tuple(e["loc"][:i]) for e in errors for i in range(len(e["loc"]))}
    errors = [e for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in item_error_parents)]
    for error in errors:
        path = data_path(data, error["loc"])
        rule, message = _message(error, root, format_path(path))
        dedup = (path, message)
        if dedup in seen:
            continue  # unions report the same problem once per member
        seen.add(dedup)
        where = format_path(path)
        out.append(
            Finding(
                severity=Severity.ERROR,
                rule=rule,
                message=f"{where}: {message}" if where else message,
                source=source.at(*path),
            )
        )
    return out
