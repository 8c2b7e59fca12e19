"""A manifest file's documents, and one object replaced, added or removed (pure: text in, text out).

A file is cut at its ``---`` lines into documents; each keeps its own text. An edit rewrites one document only,
with a ruamel.yaml round trip of that document (comments, key order and quoting kept; a key whose value is
unchanged keeps its line), so every other line of the file stays byte for byte what it was.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from dsfleet.reconciler.loading.yamlfiles import parse_yaml, round_trip_yaml

__all__ = ["Document", "EditError", "add_object", "find_object", "remove_object", "replace_object", "split"]

_SEPARATOR: Final = re.compile(r"^---(?:[ \t].*)?$")
_KEY_LINE: Final = re.compile(r"^( *)[^\s#-][^:]*:\s*(?:#.*)?$")
_DASH_LINE: Final = re.compile(r"^( *)- ")


class EditError(ValueError):
    """The file cannot take this edit (the object is not in it, or its document cannot be read)."""


@dataclass(frozen=True)
class Document:
    separator: str
    """The ``---`` line that opens it (with its newline), "" for a first document without one."""
    body: str
    kind: str | None
    name: str | None
    data: Any

    @property
    def text(self) -> str:
        return self.separator + self.body


def split(text: str) -> list[Document]:
    """The file's documents in order (joined, their texts give the file back)."""
    chunks: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines(keepends=True):
        if _SEPARATOR.match(line.rstrip("\r\n")):
            chunks.append((line, []))
        else:
            chunks[-1][1].append(line)
    out: list[Document] = []
    for separator, lines in chunks:
        body = "".join(lines)
        if not separator and not body:
            continue
        data: Any = None
        try:
            parsed = parse_yaml(body)
            if parsed.documents and not parsed.problems:
                data = parsed.documents[0].data
        except Exception:
            data = None
        kind = name = None
        if isinstance(data, Mapping):
            metadata = data.get("metadata")
            kind = data.get("kind") if isinstance(data.get("kind"), str) else None
            if isinstance(metadata, Mapping) and isinstance(metadata.get("name"), str):
                name = metadata["name"]
        out.append(Document(separator, body, kind, name, data))
    return out


def find_object(text: str, kind: str, name: str) -> Document | None:
    for doc in split(text):
        if doc.kind == kind and doc.name == name:
            return doc
    return None


def _sequence_indent(body: str) -> tuple[int, int]:
    """ruamel's (sequence, offset) for how this text indents a list under its key (default: ``  - item``)."""
    lines = body.splitlines()
    for before, line in itertools.pairwise(lines):
        key, dash = _KEY_LINE.match(before), _DASH_LINE.match(line)
        if key and dash:
            offset = len(dash.group(1)) - len(key.group(1))
            if offset in (0, 2):
                return offset + 2, offset
    return 4, 2


def _dump(data: Any, sequence: int = 4, offset: int = 2) -> str:
    rt = round_trip_yaml()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=sequence, offset=offset)
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def _merge(target: Any, new: Any) -> Any:
    """``new`` as a value to put where ``target`` was: a mapping is updated in place (its keys' order and
    comments kept; new keys last, gone keys removed), an equal value is kept as it was written."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(target, CommentedMap) and isinstance(new, Mapping):
        for key in [k for k in target if k not in new]:
            del target[key]
        for key, value in new.items():
            target[key] = _merge(target[key], value) if key in target else value
        return target
    if isinstance(target, CommentedSeq) and isinstance(new, Sequence) and not isinstance(new, str):
        del target[len(new) :]
        for i, value in enumerate(new):
            if i < len(target):
                target[i] = _merge(target[i], value)
            else:
                target.append(value)
        return target
    if _plain(target) == _plain(new):
        return target
    return new


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def replace_object(text: str, kind: str, name: str, data: Mapping[str, Any]) -> str:
    """The file with the document of ``kind``/``name`` rewritten to hold ``data``."""
    docs = split(text)
    for i, doc in enumerate(docs):
        if doc.kind == kind and doc.name == name:
            try:
                reader = round_trip_yaml()
                reader.preserve_quotes = True
                tree = reader.load(doc.body)
            except Exception as exc:
                raise EditError(f"{kind} {name}: its document cannot be read") from exc
            merged = _merge(tree, data)
            body = _dump(merged, *_sequence_indent(doc.body))
            docs[i] = Document(doc.separator, body, kind, name, data)
            return "".join(d.text for d in docs)
    raise EditError(f"{kind} {name} is not in this file")


def add_object(text: str, data: Mapping[str, Any]) -> str:
    """The file with a new document holding ``data`` at its end (the file's first document when it is empty)."""
    body = _dump(dict(data), *_sequence_indent(text))
    if not any(doc.data is not None for doc in split(text)):
        return text + ("\n" if text and not text.endswith("\n") else "") + body
    if not text.endswith("\n"):
        text += "\n"
    return text + "---\n" + body


def remove_object(text: str, kind: str, name: str) -> str:
    """The file without the document of ``kind``/``name`` (a leading comment of the file's first document
    stays); "" when no document is left."""
    docs = split(text)
    for i, doc in enumerate(docs):
        if doc.kind == kind and doc.name == name:
            kept = [d for j, d in enumerate(docs) if j != i]
            header = ""
            if i == 0 and not doc.separator:
                for line in doc.body.splitlines(keepends=True):
                    if not line.startswith("#"):
                        break
                    header += line
            if not any(d.data is not None for d in kept):
                return ""
            if kept and i == 0 and not doc.separator:
                first = kept[0]
                kept[0] = Document("", first.body, first.kind, first.name, first.data)
            return header + "".join(d.text for d in kept)
    raise EditError(f"{kind} {name} is not in this file")
