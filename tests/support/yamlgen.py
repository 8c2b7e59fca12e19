"""Block-style YAML text from generated Python values (for property tests of the loader).

Scalars are written as they are (``str(value)``, ``null``, ``true``/``false``), unquoted on purpose: the tests
want YAML's own reading of them (``on``, ``0123``, ``1:30`` …), not a serializer's quoting.
"""

from __future__ import annotations

from typing import Any


def block_yaml(value: Any, indent: int = 0) -> str:
    pad = " " * indent
    if isinstance(value, dict) and value:
        return "".join(f"{pad}{k}:{_child(v, indent)}" for k, v in value.items())
    if isinstance(value, list) and value:
        return "".join(f"{pad}-{_child(v, indent)}" for v in value)
    return pad + scalar(value) + "\n"


def _child(value: Any, indent: int) -> str:
    if isinstance(value, dict | list) and value:
        return "\n" + block_yaml(value, indent + 2)
    return f" {scalar(value)}\n"


def scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
