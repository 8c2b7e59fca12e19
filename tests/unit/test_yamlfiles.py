"""The manifest YAML reader: YAML 1.2 values, agreement with the round-trip loader, limits, locations."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsfleet.reconciler.loading import yamlfiles
from dsfleet.reconciler.loading.yamlfiles import Limits, Locator, decode_text, parse_yaml, round_trip_yaml
from tests.support.yamlgen import block_yaml


def _plain(value: Any) -> Any:
    """ruamel's round-trip types → plain Python (for comparison)."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def _rt_load(text: str) -> list[Any]:
    rt = round_trip_yaml()
    rt.allow_duplicate_keys = False
    return [_plain(d) for d in rt.load_all(text)]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: on", "on"),
        ("a: yes", "yes"),
        ("a: 0123", 123),
        ("a: 1:30", "1:30"),
        ("a: 0o17", 15),
        ("a: 0x1f", 31),
        ("a: 2001-12-14", "2001-12-14"),
        ("a: .5", 0.5),
        ("a: 1e3", 1000.0),
        ("a: true", True),
        ("a: FALSE", False),
        ("a: ~", None),
        ("a: null", None),
        ("a: '3'", "3"),
        ("a: -.inf", -math.inf),
    ],
)
def test_yaml_12_scalars(text: str, expected: Any) -> None:
    parsed = parse_yaml(text)
    assert not parsed.problems
    value = parsed.documents[0].data["a"]
    assert _same(value, expected)
    assert _same(_rt_load(text)[0]["a"], expected), "the round-trip loader must read the same value"


SCALARS = st.one_of(
    st.sampled_from(
        ["on", "off", "yes", "no", "0123", "1:30", "0o17", "0x1F", "1e3", ".5", "-.inf", ".nan", "~", "null",
         "True", "2001-12-14", "+12", "-0", "1_000", "0b101", "3.", "'quoted'", '"dq"', "a b", "x: y"]
    ),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=8),
)  # fmt: skip
KEYS = st.text(alphabet="abcdefgh-_", min_size=1, max_size=6)


TREES = st.recursive(
    SCALARS, lambda kids: st.dictionaries(KEYS, kids, max_size=4) | st.lists(kids, max_size=4), max_leaves=12
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, TREES, min_size=1, max_size=5))
def test_fast_and_round_trip_loaders_agree(doc: dict[str, Any]) -> None:
    text = block_yaml(doc)
    parsed = parse_yaml(text)
    try:
        expected = _rt_load(text)
    except Exception:
        assert parsed.problems, "the round-trip loader refused it, so must the fast loader"
        return
    if parsed.problems:
        # only the fast loader's own refusals (duplicate keys) may differ
        assert parsed.problems[0].rule == "yaml-duplicate-key"
        return
    assert len(parsed.documents) == len(expected)
    for got, want in zip(parsed.documents, expected, strict=True):
        assert _same(got.data, want), (text, got.data, want)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_loads_or_gives_a_located_problem(text: str) -> None:
    parsed = parse_yaml(text)  # must never raise
    for problem in parsed.problems:
        assert problem.message
        assert problem.line >= 0 and problem.column >= 0


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_give_a_located_problem(data: bytes) -> None:
    text, problem = decode_text(data)
    if text is None:
        assert problem is not None and problem.line >= 1 and problem.column >= 1
    else:
        parse_yaml(text)


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    parsed = parse_yaml("\n".join(lines) + "\n")
    assert [p.rule for p in parsed.problems] == ["yaml-limits"]
    assert "expands" in parsed.problems[0].message


def test_too_many_aliases_refused_before_building() -> None:
    text = "a: &x 1\nb: [" + ", ".join(["*x"] * 101) + "]\n"
    parsed = parse_yaml(text)
    assert parsed.problems[0].rule == "yaml-limits"
    assert "aliases" in parsed.problems[0].message
    assert (parsed.problems[0].line, parsed.problems[0].column) == (2, 5 + 4 * 100)


@pytest.mark.parametrize("depth", [65, 500, 50_000])
def test_deep_nesting_refused(depth: int) -> None:
    parsed = parse_yaml("x: " + "[" * depth + "]" * depth + "\n")
    assert parsed.problems and parsed.problems[0].rule in ("yaml-limits", "yaml-syntax")
    assert parsed.problems[0].line == 1


def test_block_nesting_refused() -> None:
    text = "".join(" " * i + f"k{i}:\n" for i in range(70)) + " " * 70 + "v\n"
    parsed = parse_yaml(text)
    assert parsed.problems and parsed.problems[0].rule == "yaml-limits"


def test_nesting_within_limit_loads() -> None:
    parsed = parse_yaml("x: " + "[" * 60 + "]" * 60 + "\n")
    assert not parsed.problems


def test_size_limit_and_encoding() -> None:
    assert decode_text(b"a" * 101, Limits(max_file_bytes=100))[1] is not None
    text, problem = decode_text("name: caf\u00e9\n".encode("latin-1"))
    assert text is None and problem is not None
    assert (problem.rule, problem.line, problem.column) == ("yaml-encoding", 1, 10)
    text, problem = decode_text(b"a: 1\n\x00\x01binary")
    assert text is None and problem is not None and "binary" in problem.message and problem.line == 2
    assert decode_text("\ufeffa: 1\n".encode())[0] == "a: 1\n"


def test_duplicate_keys_located_with_note() -> None:
    parsed = parse_yaml("spec:\n  a: 1\n  b: 2\n  a: 3\n")
    (p,) = parsed.problems
    assert (p.rule, p.line, p.column, p.note_line, p.note_column) == ("yaml-duplicate-key", 4, 3, 2, 3)


def test_locator_finds_keys_values_and_items() -> None:
    text = "---\nkind: A\n---\nkind: B\nspec:\n  items:\n    - x\n    - name: y\n      url: z\n"
    loc = Locator(text)
    assert loc.locate(1, ("spec", "items", 1, "url")) == (9, 12)
    assert loc.locate(1, ("spec", "items", 1, "url"), key=True) == (9, 7)
    assert loc.locate(1, ("spec", "items", 0)) == (7, 7)
    assert loc.locate(0, ("kind",)) == (2, 7)
    # unknown parts (union tags) are skipped: the deepest existing node is used
    assert loc.locate(1, ("spec", "ccm", "items")) == (7, 5)


def _event_depth(text: str) -> int:
    import yaml

    depth = deepest = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            deepest = max(deepest, depth)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
    return deepest


DEEP_TEXTS = {
    "flow": "x: " + "[" * 70 + "]" * 70 + "\n",
    "block mappings": "".join(" " * i + f"k{i}:\n" for i in range(70)) + " " * 70 + "v\n",
    "compact sequences": "- " * 70 + "x\n",
    "compact sequences, indented": "a:\n" + "".join("  " * i + "-\n" for i in range(70)) + "  " * 70 + "x\n",
    "mappings with indentless sequences": "".join(" " * i + f"k{i}:\n" + " " * i + "-\n" for i in range(40))
    + " " * 40
    + "v\n",
    "block then flow": "".join(" " * i + f"k{i}:\n" for i in range(40))
    + " " * 40
    + "v: "
    + "[" * 30
    + "]" * 30,
    "second document": "a: [1]\n---\n" + "- " * 70 + "x\n",
}


@pytest.mark.parametrize("name", sorted(DEEP_TEXTS))
def test_deep_nesting_is_refused_in_block_and_flow_style(name: str) -> None:
    text = DEEP_TEXTS[name]
    assert _event_depth(text) > 64
    parsed = parse_yaml(text)
    assert parsed.problems and parsed.problems[0].rule == "yaml-limits", parsed.problems
    assert "nested deeper than 64 levels" in parsed.problems[0].message


def test_many_shallow_flows_do_not_take_the_slow_path() -> None:
    """1,000 documents with one small flow each (a fleet's nodes.yaml) are not event-scanned first."""
    from dsfleet.reconciler.loading.yamlfiles import DEFAULT_LIMITS, _needs_event_scan

    text = "---\n".join(
        f"kind: Node\nmetadata:\n  name: n{i}\nspec:\n  gpus: [0]\n  x: {{a: 1}}\n" for i in range(1000)
    )
    assert not _needs_event_scan(text, DEFAULT_LIMITS)
    assert len(parse_yaml(text).documents) == 1000


def _nested(draw: st.DrawFn, depth: int) -> Any:
    if depth == 0:
        return "v"
    child = _nested(draw, depth - 1)
    return draw(st.sampled_from([[child], {"k": child}, [child, "w"], {"k": child, "j": "w"}]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_cheap_pre_check_never_lets_deep_nesting_through(data: st.DataObject) -> None:
    """Whatever the style (block, flow, compact, indentless sequences, any indent), a document deeper than the
    limit always goes through the exact event scan: the pre-check only ever errs on the side of scanning."""
    import yaml

    from dsfleet.reconciler.loading.yamlfiles import _needs_event_scan

    limit = data.draw(st.integers(min_value=2, max_value=12), label="max_depth")
    value = _nested(data.draw, data.draw(st.integers(min_value=1, max_value=16), label="depth"))
    style = data.draw(st.sampled_from(["block", "dump", "flow", "mixed"]), label="style")
    if style == "block":
        text = block_yaml(value)
    else:
        flow = {"dump": False, "flow": True, "mixed": None}[style]
        text = yaml.safe_dump(
            value, default_flow_style=flow, indent=data.draw(st.integers(2, 6)), width=10_000
        )
    if _event_depth(text) > limit:
        assert _needs_event_scan(text, Limits(max_depth=limit))
        problems = parse_yaml(text, Limits(max_depth=limit)).problems
        assert problems and problems[0].rule == "yaml-limits"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=" \t?:-\nab\r", max_size=40), st.integers(0, 6))
def test_the_deep_line_check_is_the_multiline_match(text: str, prefix: int) -> None:
    multiline = re.compile(rf"^[ \t?:-]{{{prefix + 1}}}", re.MULTILINE)
    assert yamlfiles._has_deep_line(text, prefix) == (multiline.search(text) is not None)
