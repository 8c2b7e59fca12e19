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

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["ReadFile", "YamlConfigError", "is_yaml_config", "yaml_to_keyfile"]

ReadFile = Callable[[str], tuple[str, str] | None]
"""A path relative to the config → (text, display name), or None when it is missing."""


class YamlConfigError(Exception):
    """The YAML config cannot be read as DeepStream reads it (gcc-style message)."""


def is_yaml_config(file: str) -> bool:
    return file.lower().endswith((".yml", ".yaml"))


def _where(file: str, node: Node) -> str:
    return f"{file}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _text(file: str, group: str, key: str, node: Node) -> str:
    if not isinstance(node, ScalarNode):
        what = "a list" if isinstance(node, SequenceNode) else "a mapping"
        raise YamlConfigError(
            f"{_where(file, node)}: error: {group}.{key} is {what}; DeepStream reads one value (a list is one "
            "string with ';' between the items)"
        )
    value = str(node.value)
    if value == "" and node.style is None:
        raise YamlConfigError(f"{_where(file, node)}: error: {group}.{key} has no value")
    if "\n" in value or "\r" in value or "\\" in value or value != value.strip(" \t"):
        raise YamlConfigError(
            f"{_where(file, node)}: error: {group}.{key}: a value with a line break, a backslash or surrounding "
            "spaces is not supported"
        )
    return value


def yaml_to_keyfile(text: str, file: str, read_file: ReadFile | None = None) -> str:
    """The key file ``text`` (a DeepStream YAML config named ``file``) stands for; ``read_file`` reads the
    sources CSV of a deepstream-app config. Raises :class:`YamlConfigError`."""
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else file
        raise YamlConfigError(
            f"{where}: error: invalid YAML: {getattr(exc, 'problem', None) or exc}"
        ) from None
    documents = [d for d in documents if d is not None]
    if len(documents) != 1 or not isinstance(documents[0], MappingNode):
        raise YamlConfigError(f"{file}: error: a DeepStream YAML config is one mapping of groups")
    lines: list[str | None] = [None] * (text.count("\n") + 2)
    tail: list[str] = []  # groups made from the sources CSV, after the rest
    sequential = False
    out: list[tuple[int, str]] = []
    for group_node, body in documents[0].value:
        if not isinstance(group_node, ScalarNode) or not isinstance(body, MappingNode):
            raise YamlConfigError(f"{_where(file, group_node)}: error: each top-level key is a group of keys")
        group = str(group_node.value)
        entries: list[tuple[ScalarNode, str]] = []
        for key_node, value_node in body.value:
            if not isinstance(key_node, ScalarNode):
                raise YamlConfigError(f"{_where(file, key_node)}: error: [{group}]: a key must be a name")
            entries.append((key_node, _text(file, group, str(key_node.value), value_node)))
        if group == "source" and [str(k.value) for k, _ in entries] == ["csv-file-path"]:
            tail.extend(_csv_sources(entries[0][1], file, entries[0][0], read_file))
            continue
        out.append((group_node.start_mark.line, f"[{group}]"))
        out.extend((k.start_mark.line, f"{k.value}={v}") for k, v in entries)
    last = -1
    for line, content in out:  # at the YAML's own line numbers, unless two share a line (flow style)
        if line <= last:
            sequential = True
            break
        lines[line] = content
        last = line
    if sequential:
        body_text = "\n".join(content for _line, content in out)
    else:
        body_text = "\n".join(content or "" for content in lines).rstrip("\n")
    return body_text + ("\n\n" + "\n".join(tail) if tail else "") + "\n"


def _csv_sources(path: str, file: str, key: ScalarNode, read_file: ReadFile | None) -> list[str]:
    """deepstream-app's sources CSV: a header row of key names, then one row per source → ``[sourceN]``."""
    found = read_file(path) if read_file is not None else None
    if found is None:
        raise YamlConfigError(f"{_where(file, key)}: error: source.csv-file-path {path}: no such file")
    csv_text, where = found
    rows = [line.strip() for line in csv_text.splitlines()]
    numbered = [(n, line) for n, line in enumerate(rows, start=1) if line]
    if not numbered:
        raise YamlConfigError(
            f"{where}: error: the sources CSV is empty (a header row of keys, then a row each)"
        )
    header = [name.strip() for name in numbered[0][1].split(",")]
    if not all(header):
        raise YamlConfigError(f"{where}:{numbered[0][0]}: error: an empty column name in the header row")
    out: list[str] = []
    for index, (n, line) in enumerate(numbered[1:]):
        values = [value.strip() for value in line.split(",")]
        if len(values) != len(header):
            raise YamlConfigError(
                f"{where}:{n}: error: {len(values)} values for the {len(header)} columns of the header row"
            )
        if index:
            out.append("")
        out.append(f"[source{index}]")
        out.extend(f"{name}={value}" for name, value in zip(header, values, strict=True) if value)
    if not out:
        raise YamlConfigError(f"{where}: error: the sources CSV has a header row but no source")
    return out
