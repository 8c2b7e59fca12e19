"""The plain-subset reader agrees with the libyaml loader on every text it accepts, and refuses the rest."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsfleet.reconciler.loading import simpleyaml
from dsfleet.reconciler.loading.simpleyaml import parse_simple
from dsfleet.reconciler.loading.yamlfiles import _simple_scalar, decode_text, parse_yaml, parse_yaml_libyaml

ROOT = Path(__file__).resolve().parents[2]


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return (
            list(a) == list(b)
            and all(type(x) is type(y) for x, y in zip(a, b, strict=True))
            and all(_same(a[k], b[k]) for k in a)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _agrees(text: str) -> bool:
    """True when the subset reader accepted ``text`` (and then it must match libyaml exactly)."""
    simple = parse_simple(text, _simple_scalar)
    if simple is None:
        return False
    reference = parse_yaml_libyaml(text)
    assert not reference.problems, (text, reference.problems)
    assert [d.line for d in reference.documents] == [line for _, line in simple], text
    assert len(reference.documents) == len(simple)
    for doc, (value, _line) in zip(reference.documents, simple, strict=True):
        assert _same(doc.data, value), (text, doc.data, value)
    return True


KEYS = [
    "a",
    "b",
    "k-1",
    "0",
    "01",
    "true",
    "null",
    "~",
    "a b",
    "a:b",
    "x.y",
    "é",
    "<<",
    '"q"',
    "'q'",
    "-x",
    "?",
]
VALUES = [
    "1", "-1", "+1", "0x1F", "0o17", "0123", "1e3", "-.5", ".inf", ".nan", "true", "False", "on", "~", "null",
    "1:30", "2001-12-14", "a b", "a #c", "a#c", "a:b", "x: y", "- z", "-", "--", "#c", "'s'", "'it''s'",
    "'a # b'", '"d"', '"a\\tb"', '"x" y', '"1"', "[0]", "[a, b]", "[ ]", "[]", "[a, ]", "['x', \"y\"]",
    "[a, [b]]", "[a: 1]", "{a: 1}", "a]", "&x 1", "*x", "!t v", "|", ">", "%x", "@x", "`x", "é", "rtsp://h:1/p",
    "a,b", "[0] # c", "[0] x", "---", "...", "<<",
]  # fmt: skip
SEPARATORS = [": ", ":", ":  ", " : "]


@st.composite
def _lines(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(
            st.sampled_from(["entry", "entry", "open", "item", "item-entry", "comment", "marker", "raw"])
        )
        indent = " " * draw(st.integers(0, 6))
        key, value = draw(st.sampled_from(KEYS)), draw(st.sampled_from(VALUES))
        sep = draw(st.sampled_from(SEPARATORS))
        if kind == "entry":
            out.append(f"{indent}{key}{sep}{value}")
        elif kind == "open":
            out.append(f"{indent}{key}:" + draw(st.sampled_from(["", " ", " # c"])))
        elif kind == "item":
            out.append(
                f"{indent}-" + draw(st.sampled_from(["", " ", "  "])) + draw(st.sampled_from(["", value]))
            )
        elif kind == "item-entry":
            dashes = "- " * draw(st.integers(1, 3))
            out.append(f"{indent}{dashes}{key}{sep}{value}")
        elif kind == "comment":
            out.append(indent + draw(st.sampled_from(["", "# c", "#"])))
        elif kind == "marker":
            out.append(draw(st.sampled_from(["---", "--- ", "---x", "--- a", "..."])))
        else:
            out.append(indent + value)
    return "\n".join(out) + draw(st.sampled_from(["", "\n", "\n\n"]))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_lines())
def test_the_subset_reader_agrees_with_libyaml_or_refuses(text: str) -> None:
    _agrees(text)


PLAIN_KEYS = ["a", "b", "c", "k-1", "0", "x.y", "a b", "a:b", "true", "é"]
SCALAR_TEXTS = ["1", "-1", "0x1F", "1e3", "-.5", "true", "on", "~", "null", "1:30", "2001-12-14", "a b", "a #c",
                "rtsp://h:1/p", "'s'", '"d"', '"1"', "[0]", "[a, 'b']", "[]", "v"]  # fmt: skip
TREES = st.recursive(
    st.sampled_from(SCALAR_TEXTS).map(lambda t: ("scalar", t)),
    lambda kids: (
        st.lists(kids, min_size=1, max_size=3).map(lambda v: ("seq", v))
        | st.lists(st.tuples(st.sampled_from(PLAIN_KEYS), kids), min_size=1, max_size=3).map(
            lambda v: ("map", v)
        )
    ),
    max_leaves=10,
)


def _render(draw: st.DrawFn, node: tuple[str, Any], indent: int, out: list[str], first: str | None) -> None:
    """Block YAML for ``node`` at ``indent``; ``first``: the prefix (``- `` ...) its first line starts with."""
    kind, value = node
    step = draw(st.integers(1, 3))
    for n, entry in enumerate(value):
        pad = first if (n == 0 and first is not None) else " " * indent
        if draw(st.integers(0, 9)) == 0:
            out.append(" " * draw(st.integers(0, 4)) + "# note")
        if kind == "map":
            key, child = entry
            if child[0] == "scalar":
                out.append(f"{pad}{key}: {child[1]}" + draw(st.sampled_from(["", "  # c", " "])))
            else:
                out.append(f"{pad}{key}:")
                below = indent + (0 if child[0] == "seq" and draw(st.booleans()) else step)
                _render(draw, child, below, out, None)
        elif entry[0] == "scalar":
            out.append(f"{pad}- {entry[1]}")
        elif draw(st.booleans()):  # compact: "- key: v" / "- - x" with the rest at the column after "- "
            gap = draw(st.integers(1, 2))
            _render(draw, entry, indent + 1 + gap, out, pad + "-" + " " * gap)
        else:
            out.append(f"{pad}-")
            _render(draw, entry, indent + step, out, None)


@st.composite
def _documents(draw: st.DrawFn) -> str:
    docs = []
    for _ in range(draw(st.integers(1, 3))):
        out: list[str] = []
        _render(draw, draw(TREES.filter(lambda t: t[0] != "scalar")), draw(st.integers(0, 2)), out, None)
        if out and draw(st.integers(0, 3)) == 0:  # one line changed: an indent off by one, a tricky value
            i = draw(st.integers(0, len(out) - 1))
            change = draw(st.sampled_from(["indent", "dedent", "value"]))
            if change == "indent":
                out[i] = " " + out[i]
            elif change == "dedent" and out[i].startswith(" "):
                out[i] = out[i][1:]
            else:
                out[i] = out[i].split(": ")[0] + ": " + draw(st.sampled_from(VALUES))
        docs.append("\n".join(out))
    return "\n---\n".join(docs) + "\n"


def _general_tokens(raw: str) -> tuple[Any, ...]:
    try:
        return tuple(simpleyaml._tokens(raw, _simple_scalar))
    except (simpleyaml._Refused, ValueError):
        return simpleyaml._REFUSED_LINE


@settings(max_examples=1000, deadline=None)
@given(
    st.integers(0, 4),
    st.one_of(st.sampled_from(KEYS), st.text(alphabet="az09_./-:é<", min_size=1, max_size=8)),
    st.sampled_from([*SEPARATORS, ": ", "   "]),
    st.one_of(
        st.sampled_from([*VALUES, "", "a:", "(x", "./p", "a/b:c", "1.", "x y"]),
        st.text(alphabet="aZ09_./:@?=&%+~,;()-'\"# \\", max_size=10),
    ),
    st.sampled_from(["", " ", "  "]),
)
def test_the_one_match_tokenizer_reads_lines_as_the_general_one(
    indent: int, key: str, sep: str, value: str, trailing: str
) -> None:
    raw = " " * indent + key + sep + value + trailing
    assert repr(simpleyaml._tokenize(raw, _simple_scalar)) == repr(_general_tokens(raw)), raw  # 1 is not True


def test_the_one_match_tokenizer_takes_the_common_lines() -> None:
    for raw in (
        "  kind: Camera",
        'cameraId: "51"',
        "url: rtsp://127.0.0.1:8554/cam-1/main",
        "spec:",
        "w: 1920",
    ):
        assert simpleyaml._FAST_ENTRY_RE.fullmatch(raw), raw
        assert repr(simpleyaml._tokenize(raw, _simple_scalar)) == repr(_general_tokens(raw))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
def test_nested_block_documents_read_the_same(text: str) -> None:
    _agrees(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=" \t\r\n-:#'\"[]{},&*!|>?%@`.0ax\x85\u2028\ufeff\x00é", max_size=60))
def test_any_text_agrees_or_is_refused(text: str) -> None:
    _agrees(text)


def test_every_manifest_of_the_repository_reads_the_same() -> None:
    accepted = 0
    for path in sorted(ROOT.glob("manifests/**/*.yaml")) + sorted(ROOT.glob("tests/golden/**/*.yaml")):
        text, _problem = decode_text(path.read_bytes())
        if text is not None:
            accepted += _agrees(text)
    assert accepted >= 8  # the example fleet but its policy (a block scalar) is in the subset


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate key: libyaml reports it with both places
        "a: &x 1\nb: *x\n",
        "a: |\n  text\n",
        "a: some\n  text\n",
        "a:\n\tb: 1\n",
        "a: 1\r\nb: 2\r\n",
        "a: 1\n---\n",
        "<<: {a: 1}\n",
        "a: 'it''s'\n",
        'a: "tab\\there"\n',
        "a: [b, [c]]\n",
        "a: {b: 1}\n",
    ],
)
def test_outside_the_subset_takes_the_libyaml_path(text: str) -> None:
    assert parse_simple(text, _simple_scalar) is None
    parse_yaml(text)  # and the loader still reads (or reports) it


def test_a_fleet_file_is_read_by_the_subset_reader() -> None:
    text = (
        "apiVersion: dsfleet/v1\nkind: Node\nmetadata:\n  name: edge-1  # a comment\n  labels:\n    rack: r1\n"
        'spec:\n  capacity: 20\n  gpus: [0, 1]\n  image: "nvcr.io/nvidia/deepstream:7.1"\n---\n'
        "kind: X\nlist:\n- a: 1\n  b: [x]\n- - 2\n  - ~\n-\n  c:\n  - 0x1F\n"
    )
    assert _agrees(text)
    docs = parse_yaml(text).documents
    assert docs[0].data["spec"] == {"capacity": 20, "gpus": [0, 1], "image": "nvcr.io/nvidia/deepstream:7.1"}
    assert docs[1].line == 12 and docs[1].data["list"] == [{"a": 1, "b": ["x"]}, [2, None], {"c": [31]}]
