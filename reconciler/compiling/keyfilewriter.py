"""Writing GLib key files that DeepStream reads back to the same typed values (pure: values in, text out).

``render_keyfile`` and ``render_gie`` produce files GLib loads back to the same typed values: no inline comments,
no trailing whitespace, booleans as ``0``/``1``, doubles in plain decimal form, lists ``;``-joined, strings escaped
as GLib escapes them. Keys are written in the order of the key tables in ``dsfleet.schemas.deepstream``. The reader (GLib's
parsing rules, for the importers) is :mod:`dsfleet.reconciler.importers.keyfilereader`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from dsfleet.schemas.deepstream import (
    AUTO,
    NVINFER_CLASS_ATTRS_KEYS,
    PREPROCESS_GROUP_KEYS,
    PROPERTY_MODELS,
    PROPERTY_TABLES,
    ROI_PARAMS_KEY,
    ROI_PARAMS_RE,
    ClassAttrs,
    GieFormat,
    KeySpec,
    PreprocessGroup,
    ValueKind,
)

__all__ = [
    "WHITESPACE",
    "Raw",
    "escape_value",
    "format_double",
    "format_value",
    "is_group_name",
    "render_gie",
    "render_gie_mapping",
    "render_keyfile",
]

WHITESPACE: Final = " \t\n\v\f\r"
"""``g_ascii_isspace`` (and C ``isspace`` in the C locale)."""


def is_group_name(name: str) -> bool:
    """What GLib accepts as a ``[group]`` name."""
    return bool(name) and not any(c in "[]" or ord(c) < 32 or ord(c) == 127 for c in name)


@functools.lru_cache(maxsize=4096)
def _valid_group(name: str) -> bool:
    """A group name written as is: one GLib accepts, without surrounding whitespace (names repeat: memoized)."""
    return is_group_name(name) and name == name.strip(WHITESPACE)


# --------------------------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class Raw:
    """A value written verbatim (an unknown key kept as it was read)."""

    text: str


def format_double(value: float) -> str:
    """Shortest text ``g_ascii_strtod`` reads back as ``value``, in plain decimal form (``1e-05`` → ``0.00001``)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
        if "." not in text:
            text += ".0"
    return text


_NEEDS_ESCAPE = re.compile(r"[ \\\n\t\r\x00\v\f]")
_NEEDS_ESCAPE_IN_LIST = re.compile(r"[ \\\n\t\r\x00\v\f;]")
_RAW_FORBIDDEN = re.compile(r"[\n\r\x00]")


def escape_value(text: str, *, list_item: bool = False) -> str:
    """Escape a string as GLib's ``g_key_file_set_string`` does, and also escape spaces GLib would drop or that
    would look like trailing whitespace or an inline comment (``\\s``). ``list_item`` also escapes ``;``."""
    if not (_NEEDS_ESCAPE_IN_LIST if list_item else _NEEDS_ESCAPE).search(text):
        return text  # nothing to escape (the common case)
    for bad in ("\x00", "\v", "\f"):
        if bad in text:
            raise ValueError("a key-file string cannot contain NUL, vertical tab or form feed")
    lead = len(text) - len(text.lstrip(" "))
    trail = len(text.rstrip(" "))
    out: list[str] = []
    for index, char in enumerate(text):
        if char == " ":
            edge = index < lead or index >= trail
            out.append("\\s" if edge or text.startswith("#", index + 1) else " ")
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif char == ";" and list_item:
            out.append("\\;")
        else:
            out.append(char)
    return "".join(out)


def _format_item(value: object, list_item: bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, str):
        return escape_value(value, list_item=list_item)
    raise TypeError(f"cannot write a {type(value).__name__} to a key file")


def format_value(value: object) -> str:
    """The text after ``key=`` for a Python value: bool → 0/1, int, float (plain decimal), str (escaped),
    list/tuple → ``;``-joined items (a final empty string item gets the extra ``;`` GLib needs), ``Raw`` verbatim."""
    if type(value) is str:  # the common cases first, by exact type (a bool is no int here)
        return value if not _NEEDS_ESCAPE.search(value) else escape_value(value)
    if type(value) is int:
        return str(value)
    if isinstance(value, Raw):
        if _RAW_FORBIDDEN.search(value.text):
            raise ValueError("a raw key-file value cannot contain a line break or NUL")
        return value.text
    if isinstance(value, list | tuple):
        items = [_format_item(item, True) for item in value]
        text = ";".join(items)
        if items and items[-1] == "":
            text += ";"
        return text
    return _format_item(value, False)


@functools.lru_cache(maxsize=4096)
def _valid_key(key: str) -> bool:
    return not (
        not key
        or key[0] in WHITESPACE + "#["
        or key[-1] in WHITESPACE
        or any(c in "=[]" or ord(c) < 32 or ord(c) == 127 for c in key)
    )


def render_keyfile(
    groups: Sequence[tuple[str, Sequence[tuple[str, object]]]],
    header_comment: str | None = None,
) -> str:
    """Write groups of ``(key, value)`` pairs (None values skipped) as a key file GLib reads back identically.

    ``header_comment`` becomes ``#`` lines at the top. Raises ``ValueError`` for names GLib cannot read back
    (invalid group or key names, a group or a key given twice).
    """
    lines: list[str] = []
    if header_comment:
        for text in header_comment.splitlines():
            lines.append(f"# {text}".rstrip() if text.strip() else "#")
    seen_groups: set[str] = set()
    for name, entries in groups:
        if not _valid_group(name):
            raise ValueError("invalid key-file group name")
        if name in seen_groups:
            raise ValueError(f"group [{name}] given twice")
        seen_groups.add(name)
        if lines:
            lines.append("")
        lines.append(f"[{name}]")
        seen_keys: set[str] = set()
        for key, value in entries:
            if value is None:
                continue
            if key in seen_keys:
                raise ValueError(f"key {key} given twice in [{name}]")
            if not _valid_key(key):
                raise ValueError("invalid key-file key name")
            seen_keys.add(key)
            lines.append(f"{key}={format_value(value)}")
    return "\n".join(lines) + "\n" if lines else ""


def _typed_text(spec: KeySpec, key: str, value: object) -> str:
    """Format ``value`` as the getter of ``spec`` expects it (type-checked)."""
    kind = spec.kind
    if value == AUTO or (isinstance(value, list | tuple) and AUTO in value):
        raise ValueError(f"{key}: 'auto' must be resolved before rendering")
    if kind.is_list:
        if not isinstance(value, list | tuple):
            raise TypeError(f"{key}: expected a list")
        return format_value([_coerce(spec.kind.item_kind, key, item) for item in value])
    return format_value(_coerce(kind, key, value))


def _coerce(kind: ValueKind, key: str, value: object) -> object:
    if kind is ValueKind.BOOL and (isinstance(value, bool) or value in (0, 1)):
        return bool(value)
    if kind is ValueKind.INT and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is ValueKind.DOUBLE and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is ValueKind.STRING and isinstance(value, str):
        return value
    raise TypeError(f"{key}: expected a {kind.value} value")


def _ordered(
    table: Mapping[str, KeySpec], values: Mapping[str, object], where: str
) -> list[tuple[str, object]]:
    """``values`` in table order, typed as the table says; ``roi-params-src-<id>`` keys by source id."""
    out: list[tuple[str, object]] = []
    order = _table_order(table)
    rois: list[tuple[int, str]] = []
    keys: list[tuple[int, str]] = []
    for key, value in values.items():
        if value is None:
            continue
        index = order.get(key)
        if index is not None:
            keys.append((index, key))
        elif (m := ROI_PARAMS_RE.match(key)) and ROI_PARAMS_KEY in table:
            rois.append((int(m.group(1)), key))
        else:
            raise ValueError(f"{where}: unknown key {key}")
    roi_index = order.get(ROI_PARAMS_KEY, len(order))
    keys.extend(
        (roi_index, key) for _, key in sorted(rois)
    )  # stable: roi keys by source id, at the table's place
    for _, key in sorted(keys, key=lambda item: item[0]):
        spec = table[ROI_PARAMS_KEY] if key not in table else table[key]
        out.append((key, Raw(_typed_text(spec, key, values[key]))))
    return out


_ORDERS: dict[int, tuple[Mapping[str, KeySpec], dict[str, int]]] = {}


def _table_order(table: Mapping[str, KeySpec]) -> dict[str, int]:
    """Key → position in the table (computed once per table)."""
    hit = _ORDERS.get(id(table))
    if hit is None or hit[0] is not table:
        hit = _ORDERS[id(table)] = (table, {key: i for i, key in enumerate(table)})
    return hit[1]


def _class_attrs_group(name: str) -> tuple[int, str]:
    if name == "all":
        return (-1, "class-attrs-all")
    if name.isdigit() and name.isascii():
        return (int(name), f"class-attrs-{int(name)}")
    raise ValueError("classAttrs keys must be 'all' or a class id")


def render_gie(
    format: GieFormat,
    properties: Mapping[str, object],
    class_attrs: Mapping[str, Mapping[str, object]] | None = None,
    groups: Sequence[Mapping[str, object]] | None = None,
    user_configs: Mapping[str, object] | None = None,
    extra_properties: Mapping[str, object] | None = None,
    *,
    header_comment: str | None = None,
) -> str:
    """The config file DeepStream reads for one GIE.

    Inputs are ``model_dump(by_alias=True, exclude_none=True)`` of the key models. Output: ``[property]`` (typed
    keys in table order, then ``extra_properties`` verbatim in the given order); for nvinfer ``[class-attrs-all]``
    then ``[class-attrs-<N>]`` by class id; for nvdspreprocess ``[user-configs]`` (given order) then
    ``[group-<i>]`` in list order. ``auto`` values must be resolved first (``ValueError``).
    """
    format = GieFormat(format)
    if class_attrs and format is not GieFormat.NVINFER:
        raise ValueError("classAttrs are only for nvinfer")
    if (groups or user_configs) and format is not GieFormat.NVDSPREPROCESS:
        raise ValueError("groups and userConfigs are only for nvdspreprocess")
    property_entries = _ordered(PROPERTY_TABLES[format], properties, "[property]")
    typed = {key for key, _ in property_entries}
    for key, value in (extra_properties or {}).items():
        if key in typed:
            raise ValueError(f"extraProperties: {key} is also a typed property")
        property_entries.append((key, Raw(value) if isinstance(value, str) else value))
    out: list[tuple[str, Sequence[tuple[str, object]]]] = [("property", property_entries)]
    if class_attrs:
        ordered = sorted(class_attrs.items(), key=lambda item: _class_attrs_group(str(item[0]))[0])
        for name, attrs in ordered:
            group_name = _class_attrs_group(str(name))[1]
            out.append((group_name, _ordered(NVINFER_CLASS_ATTRS_KEYS, attrs, f"[{group_name}]")))
    if user_configs:
        out.append(("user-configs", list(user_configs.items())))
    for index, group in enumerate(groups or ()):
        out.append((f"group-{index}", _ordered(PREPROCESS_GROUP_KEYS, group, f"[group-{index}]")))
    return render_keyfile(out, header_comment)


_ROLE_FORMATS: Final = {
    "primary": GieFormat.NVINFER,
    "secondary": GieFormat.NVINFER,
    "preprocess": GieFormat.NVDSPREPROCESS,
}


def render_gie_mapping(gie: Mapping[str, Any], *, header_comment: str | None = None) -> str:
    """Validate one GIE in manifest shape (``role``, ``format``, ``properties``, ``classAttrs``, ``groups``,
    ``userConfigs``, ``extraProperties``) through the key models and render it.

    Raises ``pydantic.ValidationError`` for invalid keys or values and ``ValueError`` for anything else.
    """
    role = gie.get("role", "primary")
    if role not in _ROLE_FORMATS:
        raise ValueError("role must be primary, secondary or preprocess")
    fmt = GieFormat(gie.get("format") or _ROLE_FORMATS[role])
    properties = PROPERTY_MODELS[fmt].model_validate(gie.get("properties") or {}).values_by_key()
    class_attrs = {
        str(name): ClassAttrs.model_validate(attrs).values_by_key()
        for name, attrs in (gie.get("classAttrs") or {}).items()
    }
    groups = [PreprocessGroup.model_validate(group).values_by_key() for group in gie.get("groups") or ()]
    user_configs = dict(gie.get("userConfigs") or {})
    extra = dict(gie.get("extraProperties") or {})
    return render_gie(
        fmt,
        properties,
        class_attrs=class_attrs or None,
        groups=groups or None,
        user_configs=user_configs or None,
        extra_properties=extra or None,
        header_comment=header_comment,
    )
