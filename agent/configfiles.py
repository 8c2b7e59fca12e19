"""Pure core of the config-file writer: fill secret placeholders, then plan the writes as data (no I/O).

``fill_placeholders`` replaces each ``${secret:<ref>}`` (``dsfleet.schemas.placeholders``) with the percent-encoded
``username:password`` (``urllib.parse.quote(..., safe="")`` on each part; ``username@`` when there is no
password). Percent-encoding leaves only ``A-Z a-z 0-9 - . _ ~ %``, so the result cannot break the file's syntax;
the value is escaped for the file's kind anyway (JSON string escapes, GLib key-file escapes), which keeps that
true should the encoding ever change. Each ``${secret:<ref>:<field>}`` (a broker connection string kept whole
in a secret's password) is replaced by that field verbatim, escaped for the file's kind: in a GLib key file a
backslash is doubled and newline, tab, CR and space become GLib's escapes (backslash + n, t, r, s; so leading
and trailing spaces survive), which ``g_key_file_get_string`` reads back as the exact value; ``;`` and ``=``
stay as they are (a string key, not a list); a NUL cannot be written and is an error. Only the refs a file
declares (``RenderedFile.secrets``) are filled: a placeholder of an undeclared ref is a ``ConfigError`` (the
coordinator and the agent disagree).

``plan_files`` compares an instance's desired files (placeholders filled) with what is in its directory and
returns a ``FilePlan``: the files to write (new, changed content, or wrong mode) and the stale ones to remove.
Planning the result of applying a plan gives an empty plan. Files that carry secrets are written 0600, the others
0644. ``FileWrite`` hides its content from ``repr``: a plan can be printed and logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import quote

from dsfleet.agent.credentials import Credential, SecretStore
from dsfleet.agent.errors import ConfigError, SecretError
from dsfleet.schemas.nodeconfigs import InstanceConfig, RenderedFile
from dsfleet.schemas.placeholders import ANY_PLACEHOLDER_RE

__all__ = [
    "MODE_PLAIN",
    "MODE_SECRET",
    "FileKind",
    "FilePlan",
    "FileWrite",
    "check_file_name",
    "file_kind",
    "file_refs",
    "fill_placeholders",
    "instance_refs",
    "plan_files",
    "userinfo",
]

MODE_SECRET = 0o600
MODE_PLAIN = 0o644

REASON_NEW = "new"
REASON_CHANGED = "changed"
REASON_MODE = "mode"


class FileKind(StrEnum):
    JSON = "json"
    KEYFILE = "keyfile"
    TEXT = "text"


_KEYFILE_SUFFIXES = (".txt", ".ini", ".cfg", ".conf")


def file_kind(path: str) -> FileKind:
    """``*.json`` → JSON; ``*.txt``/``.ini``/``.cfg``/``.conf`` → GLib key file (DeepStream's); else text."""
    lower = path.lower()
    if lower.endswith(".json"):
        return FileKind.JSON
    if lower.endswith(_KEYFILE_SUFFIXES):
        return FileKind.KEYFILE
    return FileKind.TEXT


def userinfo(credential: Credential) -> str:
    """The URL user-info of a credential: ``quote(user):quote(password)``, or ``quote(user)`` without password."""
    if credential.username is None:
        raise ValueError("a URL's user-info needs a user name")
    user = quote(credential.username, safe="")
    if credential.password is None:
        return user
    return f"{user}:{quote(credential.password, safe='')}"


def _escape_json(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)[1:-1]


def _escape_keyfile(value: str) -> str:
    # g_key_file_parse_value_as_string's escapes; a placeholder never starts a value, so no leading "\s".
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _escape_keyfile_whole(value: str) -> str:
    r"""A whole value for ``g_key_file_get_string``: every escape it knows, spaces as ``\s``."""
    return _escape_keyfile(value).replace(" ", "\\s")


def _escape_whole(value: str, kind: FileKind) -> str:
    if kind is FileKind.KEYFILE:
        return _escape_keyfile_whole(value)
    return _escape(value, kind)


def _escape(value: str, kind: FileKind) -> str:
    if kind is FileKind.JSON:
        return _escape_json(value)
    if kind is FileKind.KEYFILE:
        return _escape_keyfile(value)
    return value


def fill_placeholders(
    content: str, refs: Iterable[str], store: SecretStore, *, kind: FileKind | str = FileKind.TEXT
) -> str:
    """``content`` with every ``${secret:<ref>}`` of a declared ref replaced by its escaped user-info, and every
    ``${secret:<ref>:<field>}`` by that field, escaped for ``kind``.

    Raises ``ConfigError`` for a placeholder whose ref is not in ``refs``, and one ``SecretError`` listing every
    ref the store lacks (messages name refs and places, never values).
    """
    kind = FileKind(kind)
    declared = set(refs)
    matches = list(ANY_PLACEHOLDER_RE.finditer(content))
    used = list(dict.fromkeys(m.group(1) for m in matches))
    undeclared = [ref for ref in used if ref not in declared]
    if undeclared:
        raise ConfigError(
            "placeholder(s) for undeclared secret(s) "
            + ", ".join(repr(r) for r in undeclared)
            + " (a file's placeholders must be listed in its secrets)"
        )
    credentials: dict[str, Credential] = {}
    errors: list[SecretError] = []
    for ref in used:
        try:
            credentials[ref] = store.get(ref)
        except SecretError as exc:
            errors.append(exc)
    values: dict[tuple[str, str | None], str] = {}
    for m in matches:
        ref, name = m.group(1), m.group(3)
        cred = credentials.get(ref)
        if cred is None or (ref, name) in values:
            continue
        if name is None:
            if cred.username is None:
                errors.append(SecretError(f"secret {ref!r} has no user name (a camera URL's user-info needs one)",
                                          [ref]))  # fmt: skip
                continue
            values[(ref, name)] = _escape(userinfo(cred), kind)
            continue
        raw = cred.username if name == "username" else cred.password
        if raw is None:
            errors.append(
                SecretError(f"secret {ref!r} has no {name} (the value this file takes from it)", [ref])
            )
        elif "\0" in raw:
            errors.append(SecretError(f"secret {ref!r}: its {name} contains a NUL character", [ref]))
        else:
            values[(ref, name)] = _escape_whole(raw, kind)
    if errors:
        raise SecretError.combine(errors)
    return ANY_PLACEHOLDER_RE.sub(lambda m: values[(m.group(1), m.group(3))], content)


@dataclass(frozen=True)
class FileWrite:
    """Write ``content`` to ``path`` (a name in the instance directory) with ``mode``; ``reason`` says why."""

    path: str
    content: bytes = field(repr=False)
    mode: int
    reason: str = REASON_CHANGED

    def describe(self) -> str:
        return f"write {self.path} ({self.mode:04o}, {self.reason})"


@dataclass(frozen=True)
class FilePlan:
    """What to do in one instance directory: writes (sorted by path), then removals of stale files."""

    writes: tuple[FileWrite, ...] = ()
    removals: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.writes and not self.removals

    def describe(self) -> list[str]:
        return [w.describe() for w in self.writes] + [f"remove {p}" for p in self.removals]


def check_file_name(name: str) -> None:
    """A rendered file's path must be a plain file name: no directory part, not hidden, not ``.``/``..``."""
    if not name or name.startswith(".") or any(c in name for c in "/\\\0") or len(name.encode("utf-8")) > 255:
        raise ConfigError(f"file name {name!r} is not a plain file name inside the instance directory")


def file_refs(file: RenderedFile) -> tuple[str, ...]:
    """The refs a file declares (placeholders of other refs are an error when it is filled)."""
    return tuple(dict.fromkeys(file.secrets))


def instance_refs(instance: InstanceConfig) -> tuple[str, ...]:
    """Every secret ref an instance's files need, sorted."""
    return tuple(sorted({ref for f in instance.files for ref in file_refs(f)}))


def _desired_files(instance: InstanceConfig, store: SecretStore) -> dict[str, tuple[bytes, int]]:
    desired: dict[str, tuple[bytes, int]] = {}
    errors: list[SecretError] = []
    for file in instance.files:
        check_file_name(file.path)
        if file.path in desired:
            raise ConfigError(f"instance {instance.name!r}: file {file.path!r} is listed twice")
        refs = file_refs(file)
        try:
            text = fill_placeholders(file.content, refs, store, kind=file_kind(file.path))
        except SecretError as exc:
            errors.append(exc)
            continue
        except ConfigError as exc:
            raise ConfigError(f"instance {instance.name!r}: file {file.path!r}: {exc}") from None
        desired[file.path] = (text.encode("utf-8"), MODE_SECRET if refs else MODE_PLAIN)
    if errors:
        raise SecretError.combine(errors)
    return desired


def plan_files(
    instance: InstanceConfig,
    existing: Mapping[str, bytes],
    store: SecretStore,
    *,
    modes: Mapping[str, int] | None = None,
) -> FilePlan:
    """Writes and removals that make the instance directory hold exactly the instance's files.

    ``existing``: the directory's files by name and content; ``modes`` (optional): their permission bits; when
    given, a file with the right content but the wrong mode is rewritten (e.g. a secret file chmod'ed 0644).
    ``store`` should be a snapshot (``resolve_secrets``) so that planning does no I/O.
    """
    desired = _desired_files(instance, store)
    writes = []
    for path in sorted(desired):
        content, mode = desired[path]
        if path not in existing:
            writes.append(FileWrite(path, content, mode, REASON_NEW))
        elif existing[path] != content:
            writes.append(FileWrite(path, content, mode, REASON_CHANGED))
        elif modes is not None and modes.get(path) != mode:
            writes.append(FileWrite(path, content, mode, REASON_MODE))
    removals = tuple(sorted(p for p in existing if p not in desired))
    return FilePlan(tuple(writes), removals)
