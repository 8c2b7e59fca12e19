"""DeepStream's YAML configs (DS 6.2+) as the key files they stand for (pure: text in, text out).

deepstream-app, nvinfer and nvdspreprocess read a YAML config as groups of keys, like a key file: each top-level
mapping is a group (``primary-gie:``, ``property:``, ``class-attrs-all:``), each of its entries a key whose
scalar text DeepStream converts with the same getter as the key file's (``1;0;0;1`` is a list either way). So a
YAML config is imported by writing that key file and reading it with GLib's rules, as every other config is:

* ``key=value`` lines keep the YAML's line numbers (the group header on its key's line), so what the key-file
  reader reports points into the YAML file;
* deepstream-app's ``source: {csv-file-path: FILE}`` (the YAML form of the sources: a CSV whose header row names
  the keys and each further row is a source) becomes one ``[sourceN]`` group per row, after the rest;
* refused, with FILE:LINE:COL, where DeepStream itself cannot read the value as one scalar: a sequence or a
  mapping as a value, a key without a value, more than one document, and values the key file cannot hold as
  they are (a line break, a backslash, leading or trailing spaces).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import PurePosixPath

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dsfleet.schemas.findings import plural

__all__ = ["ReadFile", "YamlConfigError", "is_yaml_config", "keyfile_name", "yaml_to_keyfile"]

ReadFile = Callable[[str], tuple[str, str] | None]
"""A path relative to the config → (text, display name), or None when it is missing."""


class YamlConfigError(Exception):
    """The YAML config cannot be read as DeepStream reads it; ``str()`` is the gcc-style message."""

    def __init__(self, file: str, message: str, line: int = 0, column: int = 0) -> None:
        self.file, self.message, self.line, self.column = file, message, line, column
        where = file + (f":{line}" if line else "") + (f":{column}" if line and column else "")
        super().__init__(f"{where}: error: {message}")


def is_yaml_config(file: str) -> bool:
    return file.lower().endswith((".yml", ".yaml"))


def keyfile_name(file: str) -> str:
    """The base name dsfleet renders a config as: a YAML config's with ``.txt`` (dsfleet writes key files, and
    DeepStream picks its parser by the name), any other's as it is."""
    name = PurePosixPath(file.replace("\\", "/")).name
    return PurePosixPath(name).stem + ".txt" if is_yaml_config(name) else name


def _error(file: str, node: Node, message: str) -> YamlConfigError:
    return YamlConfigError(file, message, node.start_mark.line + 1, node.start_mark.column + 1)


def _text(file: str, group: str, key: str, node: Node) -> str:
    if not isinstance(node, ScalarNode):
        what = "a list" if isinstance(node, SequenceNode) else "a mapping"
        raise _error(
            file,
            node,
            f"{group}.{key} is {what}; DeepStream reads one value (a list is one string with ';' "
            "between the items)",
        )
    value = str(node.value)
    if value == "" and node.style is None:
        raise _error(file, node, f"{group}.{key} has no value")
    if "\n" in value or "\r" in value or "\\" in value or value != value.strip(" \t"):
        raise _error(
            file,
            node,
            f"{group}.{key}: a value with a line break, a backslash or surrounding spaces is not supported",
        )
    return value


def yaml_to_keyfile(text: str, file: str, read_file: ReadFile | None = None) -> str:
    """The key file ``text`` (a DeepStream YAML config named ``file``) stands for; ``read_file`` reads the
    sources CSV of a deepstream-app config. Raises :class:`YamlConfigError`."""
    try:
        documents = [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        message = f"invalid YAML: {getattr(exc, 'problem', None) or exc}"
        if mark is None:
            raise YamlConfigError(file, message) from None
        raise YamlConfigError(file, message, mark.line + 1, mark.column + 1) from None
    if len(documents) != 1 or not isinstance(documents[0], MappingNode):
        raise YamlConfigError(file, "a DeepStream YAML config is one mapping of groups")
    out: list[tuple[int, str]] = []  # (0-based YAML line, key-file line)
    tail: list[str] = []  # groups made from the sources CSV, after the rest
    for group_node, body in documents[0].value:
        if not isinstance(group_node, ScalarNode) or not isinstance(body, MappingNode):
            raise _error(file, group_node, "each top-level key is a group of keys")
        group = str(group_node.value)
        entries: list[tuple[ScalarNode, str]] = []
        for key_node, value_node in body.value:
            if not isinstance(key_node, ScalarNode):
                raise _error(file, key_node, f"[{group}]: a key must be a name")
            entries.append((key_node, _text(file, group, str(key_node.value), value_node)))
        if group == "source" and [str(k.value) for k, _ in entries] == ["csv-file-path"]:
            tail.extend(_csv_sources(entries[0][1], file, entries[0][0], read_file))
            continue
        out.append((group_node.start_mark.line, f"[{group}]"))
        out.extend((k.start_mark.line, f"{k.value}={v}") for k, v in entries)
    if all(a[0] < b[0] for a, b in pairwise(out)):  # one per line: keep the YAML's lines
        lines = [""] * (out[-1][0] + 1 if out else 0)
        for line, content in out:
            lines[line] = content
    else:  # two share a line (flow style): in order
        lines = [content for _line, content in out]
    return "\n".join([*lines, *([""] if tail else []), *tail]).rstrip("\n") + "\n"


def _csv_sources(path: str, file: str, key: ScalarNode, read_file: ReadFile | None) -> list[str]:
    """deepstream-app's sources CSV: a header row of key names, then one row per source → ``[sourceN]``."""
    found = read_file(path) if read_file is not None else None
    if found is None:
        raise _error(file, key, f"source.csv-file-path {path}: no such file")
    csv_text, where = found
    rows = [(n, line.strip()) for n, line in enumerate(csv_text.splitlines(), start=1) if line.strip()]
    if not rows:
        raise YamlConfigError(where, "the sources CSV is empty (a header row of keys, then a row each)")
    header = [name.strip() for name in rows[0][1].split(",")]
    if not all(header):
        raise YamlConfigError(where, "an empty column name in the header row", rows[0][0])
    out: list[str] = []
    for index, (n, line) in enumerate(rows[1:]):
        values = [value.strip() for value in line.split(",")]
        if len(values) != len(header):
            raise YamlConfigError(
                where,
                f"{plural(len(values), 'value')} for the {plural(len(header), 'column')} of the header row",
                n,
            )
        out.extend(["", f"[source{index}]"] if index else [f"[source{index}]"])
        out.extend(f"{name}={value}" for name, value in zip(header, values, strict=True) if value)
    if not out:
        raise YamlConfigError(where, "the sources CSV has a header row but no source")
    return out
