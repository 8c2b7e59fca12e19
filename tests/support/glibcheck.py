"""Read key files with the real GLib, for tests that compare dsfleet's reader and writer with it.

The venv interpreter has no GLib bindings, so this runs Debian's ``/usr/bin/python3`` with PyGObject (``gi``) in
ONE subprocess per call, however many files are read (override the interpreter with env
``DSFLEET_GLIB_PYTHON``). Usage, normally through the ``glib`` fixture of ``tests/integration/conftest.py``::

    results = glib.read([(text, {"property": {"batch-size": "integer", "offsets": "double_list"}}), ...])
    r = results[0]
    r.load_error              # None, or GLib's message when g_key_file_load_from_data fails
    r.value("property", "batch-size")   # what g_key_file_get_integer returns (lists as tuples),
                                        # or a GetterError when the getter fails (or the key is missing)
    r.keys["property"]        # g_key_file_get_keys: a duplicated key is listed each time
    r.groups                  # g_key_file_get_groups

Getters: ``integer``, ``double``, ``boolean``, ``string``, ``integer_list``, ``double_list``, ``string_list``
(``getter_for(ValueKind)`` maps dsfleet's kinds to them).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsfleet.schemas.deepstream import ValueKind

GETTERS = ("integer", "double", "boolean", "string", "integer_list", "double_list", "string_list")

_GETTER_FOR_KIND = {
    ValueKind.INT: "integer",
    ValueKind.DOUBLE: "double",
    ValueKind.BOOL: "boolean",
    ValueKind.STRING: "string",
    ValueKind.INT_LIST: "integer_list",
    ValueKind.DOUBLE_LIST: "double_list",
    ValueKind.STRING_LIST: "string_list",
}

DEFAULT_PYTHON = "/usr/bin/python3"

_SCRIPT = r"""
import json, sys
import gi
gi.require_version("GLib", "2.0")
from gi.repository import GLib

GETTERS = set(__GETTERS__)
out = []
for item in json.load(sys.stdin):
    kf = GLib.KeyFile()
    data = item["text"]
    try:
        kf.load_from_data(data, len(data.encode("utf-8")), GLib.KeyFileFlags.NONE)
    except GLib.Error as exc:
        out.append({"load_error": exc.message})
        continue
    groups = list(kf.get_groups()[0])
    keys = {g: list(kf.get_keys(g)[0]) for g in groups}
    values = {}
    for group, getters in item["getters"].items():
        got = {}
        for key, getter in getters.items():
            if getter not in GETTERS:
                raise SystemExit("unknown getter " + getter)
            try:
                value = getattr(kf, "get_" + getter)(group, key)
            except GLib.Error as exc:
                got[key] = {"error": exc.message}
            else:
                got[key] = {"value": list(value) if isinstance(value, (list, tuple)) else value}
        values[group] = got
    out.append({"groups": groups, "keys": keys, "values": values})
json.dump(out, sys.stdout)
""".replace("__GETTERS__", repr(GETTERS))

_PROBE = "import gi; gi.require_version('GLib', '2.0'); from gi.repository import GLib"


@dataclass(frozen=True)
class GetterError:
    """A GLib getter failed (``message`` is GLib's, which may quote the value: test use only)."""

    message: str


@dataclass(frozen=True)
class GlibFile:
    """What real GLib made of one key file."""

    load_error: str | None
    groups: tuple[str, ...] = ()
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def value(self, group: str, key: str) -> Any:
        """The getter's result for a requested (group, key); a ``GetterError`` if it failed."""
        if self.load_error is not None:
            raise AssertionError(f"GLib could not load the file: {self.load_error}")
        return self.values[group][key]


def getter_for(kind: ValueKind) -> str:
    return _GETTER_FOR_KIND[kind]


def glib_python() -> str:
    return os.environ.get("DSFLEET_GLIB_PYTHON", DEFAULT_PYTHON)


def glib_available(python: str | None = None) -> str | None:
    """None when ``python`` can import GLib through gi, else why not."""
    python = python or glib_python()
    if not os.path.exists(python):
        return f"{python} does not exist"
    try:
        proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python} failed: {exc}"
    if proc.returncode != 0:
        return f"{python} cannot import GLib via gi: {proc.stderr.strip()[-300:]}"
    return None


def _convert(raw: Mapping[str, Any]) -> Any:
    if "error" in raw:
        return GetterError(raw["error"])
    value = raw["value"]
    return tuple(value) if isinstance(value, list) else value


class GlibChecker:
    """Batch reader: ``read`` runs one subprocess for all the files it is given."""

    def __init__(self, python: str | None = None) -> None:
        self.python = python or glib_python()

    def read(self, files: Sequence[tuple[str, Mapping[str, Mapping[str, str]]]]) -> list[GlibFile]:
        """For each (text, {group: {key: getter}}): the load error, or the groups, keys and typed values."""
        if not files:
            return []
        request = [
            {"text": text, "getters": {g: dict(k) for g, k in getters.items()}} for text, getters in files
        ]
        proc = subprocess.run(
            [self.python, "-c", _SCRIPT],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "LC_ALL": "C", "LANG": "C", "LANGUAGE": ""},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"GLib reader failed ({proc.returncode}): {proc.stderr[-2000:]}")
        results: list[GlibFile] = []
        for item in json.loads(proc.stdout):
            if "load_error" in item:
                results.append(GlibFile(load_error=item["load_error"]))
                continue
            results.append(
                GlibFile(
                    load_error=None,
                    groups=tuple(item["groups"]),
                    keys={g: tuple(k) for g, k in item["keys"].items()},
                    values={g: {k: _convert(v) for k, v in got.items()} for g, got in item["values"].items()},
                )
            )
        return results

    def read_one(self, text: str, getters: Mapping[str, Mapping[str, str]]) -> GlibFile:
        return self.read([(text, getters)])[0]


# --------------------------------------------------------------------------------------------------------------
# GLib facts: (getter, value text as written after "key=", what the getter returns).
# ``FAILS`` = the getter fails. tests/unit checks dsfleet's emulation against them; tests/integration checks
# them against the real GLib, so the two cannot drift apart.

FAILS = GetterError("fails")

GETTER_FACTS: list[tuple[str, str, Any]] = [
    # integer: strtol, then the next character must be whitespace or the end
    ("integer", "2", 2),
    ("integer", "2 # 0: FP32 1: INT8 2: FP16", 2),
    ("integer", "2\t# tab before the comment", 2),
    ("integer", "2 ", 2),
    ("integer", "2# no space", FAILS),
    ("integer", "0x10", FAILS),
    ("integer", "+5", 5),
    ("integer", "-1", -1),
    ("integer", "1.0", FAILS),
    ("integer", "", FAILS),
    ("integer", "true", FAILS),
    ("integer", "2147483647", 2147483647),
    ("integer", "-2147483648", -2147483648),
    ("integer", "2147483648", FAILS),
    ("integer", "5 C:\\x", 5),
    # double: g_ascii_strtod must consume the whole value
    ("double", "0.4", 0.4),
    ("double", "0.4 # comment", FAILS),
    ("double", "0.4 ", FAILS),
    ("double", "1/255", FAILS),
    ("double", "1", 1.0),
    ("double", "0.0039215697906911373", 0.0039215697906911373),
    ("double", "1e-05", 1e-05),
    ("double", "0.00001", 1e-05),
    ("double", ".5", 0.5),
    ("double", "5.", 5.0),
    ("double", "-2.5E3", -2500.0),
    ("double", "0x1p3", 8.0),
    ("double", "inf", float("inf")),
    ("double", "1e", FAILS),
    ("double", "1,5", FAILS),
    ("double", "", FAILS),
    # boolean: only true/false/1/0, trailing whitespace tolerated
    ("boolean", "1", True),
    ("boolean", "0", False),
    ("boolean", "true", True),
    ("boolean", "false", False),
    ("boolean", "1 ", True),
    ("boolean", "1 # a must", FAILS),
    ("boolean", "True", FAILS),
    ("boolean", "yes", FAILS),
    ("boolean", "2", FAILS),
    ("boolean", "", FAILS),
    # string: escapes decoded, inline comments and trailing whitespace kept
    ("string", "x.engine", "x.engine"),
    ("string", "x.engine # comment", "x.engine # comment"),
    ("string", "x.engine ", "x.engine "),
    ("string", "C:\\models\\x.txt", FAILS),
    ("string", "a\\sb\\tc\\nd\\re\\\\f", "a b\tc\nd\re\\f"),
    ("string", "\\s lead", "  lead"),
    ("string", "a;b", "a;b"),
    ("string", "a\\;b", FAILS),
    ("string", "ends with backslash\\", FAILS),
    ("string", "", ""),
    # integer list
    ("integer_list", "3;640;640", (3, 640, 640)),
    ("integer_list", "3;640;640;", (3, 640, 640)),
    ("integer_list", "0; 2", (0, 2)),
    ("integer_list", "1; 2 ;3", (1, 2, 3)),
    ("integer_list", "4 # match the gie-unique-id", (4,)),
    ("integer_list", "1;;2", FAILS),
    ("integer_list", ";", FAILS),
    ("integer_list", "", ()),
    ("integer_list", "a;1", FAILS),
    ("integer_list", "1\\;2", FAILS),
    # double list
    ("double_list", "104.0;117.0;123.0", (104.0, 117.0, 123.0)),
    ("double_list", "104.0; 117.0", (104.0, 117.0)),
    ("double_list", "1;1;1;1;", (1.0, 1.0, 1.0, 1.0)),
    ("double_list", "123.0 # BGR", FAILS),
    ("double_list", "1;2 ", FAILS),
    ("double_list", "1; 2 ;3", FAILS),
    # string list
    ("string_list", "a;b", ("a", "b")),
    ("string_list", "a;b;", ("a", "b")),
    ("string_list", "a; b", ("a", " b")),
    ("string_list", "a\\;b;c", ("a;b", "c")),
    ("string_list", "a\\sb;c", ("a b", "c")),
    ("string_list", ";", ("",)),
    ("string_list", "a;;", ("a", "")),
    ("string_list", "", ()),
    ("string_list", "a;b # c", ("a", "b # c")),
    ("string_list", "C:\\x;y", FAILS),
]

LOAD_FACTS: list[tuple[str, bool]] = [
    # (file text, whether g_key_file_load_from_data succeeds)
    ("[property]\n# comment\n   # indented comment\n\nkey=1\n", True),
    ("[property]\n; ini comment\nkey=1\n", False),
    ("[property] # trailing comment\nkey=1\n", False),
    ("[property]  \t\nkey=1\n", True),
    ("key=1\n[property]\n", False),
    ("[property]\nkey = value\n  other\t=\tx  \n", True),
    ("[property]\nlabelfile-path=C:\\models\\x.txt\n", True),
    ("[property]\nnot a pair\n", False),
    ("[property]\n=value\n", False),
    ("[property]\nk]=1\n", False),
    ("[]\nk=1\n", False),
    ("[a[b]\nk=1\n", False),
    ("[property]\r\nkey=1\r\n", True),
    ("[a]\nk=1\n[b]\nk=2\n[a]\nk=3\n", True),
    ("\ufeff[property]\nk=1\n", False),
]
