"""GLib key-file reading/writing (dsfleet.reconciler.importers.keyfilereader, dsfleet.reconciler.compiling.keyfilewriter) and importing (dsfleet.reconciler.importers.nvinfer): pure, no GLib.

The getter and load facts come from tests/glibcheck.py, which tests/integration re-checks against real GLib.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsfleet.reconciler.compiling.keyfilewriter import (
    Raw,
    escape_value,
    format_double,
    render_gie,
    render_gie_mapping,
    render_keyfile,
)
from dsfleet.reconciler.importers.keyfilereader import parse_keyfile, read_typed
from dsfleet.reconciler.importers.nvinfer import gie_name, import_keyfile, suggest_key
from dsfleet.schemas.deepstream import (
    INT32_MAX,
    INT32_MIN,
    NVINFER_CLASS_ATTRS_KEYS,
    NVINFER_PROPERTY_KEYS,
    GieFormat,
    KeySpec,
    NvinferProperties,
    ValueKind,
)
from dsfleet.schemas.findings import Severity
from tests.support.glibcheck import GETTER_FACTS, LOAD_FACTS, GetterError

KIND_OF_GETTER = {
    "integer": ValueKind.INT,
    "double": ValueKind.DOUBLE,
    "boolean": ValueKind.BOOL,
    "string": ValueKind.STRING,
    "integer_list": ValueKind.INT_LIST,
    "double_list": ValueKind.DOUBLE_LIST,
    "string_list": ValueKind.STRING_LIST,
}


def read_line(kind: ValueKind, written: str) -> tuple[object, tuple[Any, ...]]:
    """Read ``k=<written>`` the way DeepStream would with the getter of ``kind``."""
    keyfile = parse_keyfile(f"[g]\nk={written}\n", "t.txt")
    group = keyfile.group("g")
    assert group is not None
    entry = group.get("k")
    assert entry is not None
    return read_typed(KeySpec("k", kind), entry.raw)


def rules(findings: Any) -> list[str]:
    return [f.rule for f in findings]


# ---------------------------------------------------------------------------------------------------------------
# Typed getters: every §1 fact


@pytest.mark.parametrize(("getter", "written", "expected"), GETTER_FACTS, ids=lambda v: repr(v)[:40])
def test_read_typed_matches_glib_facts(getter: str, written: str, expected: Any) -> None:
    value, problems = read_line(KIND_OF_GETTER[getter], written)
    if isinstance(expected, GetterError):
        assert value is None
        assert any(p.severity is Severity.ERROR for p in problems)
    else:
        assert value == expected
        assert type(value) is type(expected)
        assert not any(p.severity is Severity.ERROR for p in problems)


@pytest.mark.parametrize(
    ("kind", "written", "rule", "severity"),
    [
        # §8.1: an inline comment is tolerated on integers (warned), fatal on doubles / booleans / double lists,
        # and silently part of a string (warned)
        (ValueKind.INT, "2 # FP16", "keyfile-inline-comment", Severity.WARNING),
        (ValueKind.INT_LIST, "1;2 # c", "keyfile-inline-comment", Severity.WARNING),
        (ValueKind.DOUBLE, "0.4 # c", "keyfile-type-error", Severity.ERROR),
        (ValueKind.DOUBLE, "0.4 ", "keyfile-type-error", Severity.ERROR),
        (ValueKind.DOUBLE_LIST, "123.0 # BGR", "keyfile-type-error", Severity.ERROR),
        (ValueKind.BOOL, "1 # a must", "keyfile-type-error", Severity.ERROR),
        (ValueKind.STRING, "model.engine # old", "keyfile-inline-comment", Severity.WARNING),
        (ValueKind.STRING_LIST, "a;b # c", "keyfile-inline-comment", Severity.WARNING),
        (ValueKind.STRING, "model.engine ", "keyfile-trailing-whitespace", Severity.WARNING),
        (ValueKind.INT, "2 ", "keyfile-trailing-whitespace", Severity.WARNING),
        (ValueKind.BOOL, "1\t", "keyfile-trailing-whitespace", Severity.WARNING),
        (ValueKind.INT, "2 trailing words", "keyfile-trailing-text", Severity.WARNING),
        # §8.2 backslashes, §8.3 booleans and doubles
        (ValueKind.STRING, "C:\\models\\x.txt", "keyfile-invalid-escape", Severity.ERROR),
        (ValueKind.STRING_LIST, "C:\\x;y", "keyfile-invalid-escape", Severity.ERROR),
        (ValueKind.BOOL, "True", "keyfile-type-error", Severity.ERROR),
        (ValueKind.BOOL, "yes", "keyfile-type-error", Severity.ERROR),
        (ValueKind.DOUBLE, "1/255", "keyfile-type-error", Severity.ERROR),
        (ValueKind.INT, "0x10", "keyfile-type-error", Severity.ERROR),
        (ValueKind.INT, "4096000000", "keyfile-type-error", Severity.ERROR),
        (ValueKind.INT_LIST, "1;;2", "keyfile-type-error", Severity.ERROR),
    ],
)
def test_read_typed_pitfalls(kind: ValueKind, written: str, rule: str, severity: Severity) -> None:
    _, problems = read_line(kind, written)
    assert [(p.rule, p.severity) for p in problems] == [(rule, severity)]


def test_inline_comment_offset_points_at_the_hash() -> None:
    value, problems = read_typed(KeySpec("network-mode", ValueKind.INT), "2 # 0: FP32")
    assert value == 2
    assert problems[0].offset == 2


def test_problem_messages_never_echo_the_value() -> None:
    secret = "hunter2-s3cret"
    for kind in ValueKind:
        for written in (f"{secret} # x", f"C:\\{secret}", f"1 {secret}", f"{secret}\\"):
            _, problems = read_line(kind, written)
            assert all(secret not in p.message for p in problems)


# ---------------------------------------------------------------------------------------------------------------
# Loading: every §1 line rule


@pytest.mark.parametrize(("text", "loads"), LOAD_FACTS, ids=lambda v: repr(v)[:40])
def test_parse_keyfile_load_errors_match_glib_facts(text: str, loads: bool) -> None:
    assert parse_keyfile(text, "f.txt").loaded is loads


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("[property]\n; ini comment\n", 2, 1, "';' comments"),
        ("[property] # x\nk=1\n", 1, 1, "only spaces or tabs may follow"),
        ("k=1\n[property]\n", 1, 1, "before the first [group]"),
        ("[property]\n  junk line\n", 2, 3, "not a key=value pair"),
        ("[property]\nk]=1\n", 2, 1, "invalid key name"),
        ("[]\n", 1, 1, "invalid group name"),
        ("\ufeff[property]\nk=1\n", 1, 1, "byte-order mark"),
    ],
)
def test_load_errors_are_located(text: str, line: int, column: int, fragment: str) -> None:
    keyfile = parse_keyfile(text, "cfg.txt")
    errors = [f for f in keyfile.findings if f.rule == "keyfile-load-error"]
    assert len(errors) == 1
    assert errors[0].severity is Severity.ERROR
    assert errors[0].location is not None
    assert (errors[0].location.file, errors[0].location.line, errors[0].location.column) == (
        "cfg.txt",
        line,
        column,
    )
    assert fragment in errors[0].message


def test_whitespace_around_equals_and_trailing_value_whitespace() -> None:
    keyfile = parse_keyfile("[g]\n  key \t=  value  \r\nk2=x\r\n", "f")
    group = keyfile.group("g")
    assert group is not None
    entry = group.get("key")
    assert entry is not None
    assert (entry.raw, entry.line, entry.column, entry.value_column) == ("value  ", 2, 3, 11)
    assert group.get("k2") is not None and group.get("k2").raw == "x"  # type: ignore[union-attr]
    assert keyfile.findings == ()


def test_comments_and_blank_lines_are_ignored() -> None:
    keyfile = parse_keyfile("# top\n[g]\n   # indented\n\n\t\na=1\n#b=2\n", "f")
    group = keyfile.group("g")
    assert group is not None
    assert group.keys() == ("a",)
    assert keyfile.findings == ()


def test_names_are_case_sensitive() -> None:
    group = parse_keyfile("[g]\nGpu-Id=1\ngpu-id=2\n", "f").group("g")
    assert group is not None
    assert group.keys() == ("Gpu-Id", "gpu-id")


def test_duplicate_key_last_wins_listed_twice_and_warned_with_note() -> None:
    keyfile = parse_keyfile("[property]\ngpu-id=0\nbatch-size=1\ngpu-id=1\ngpu-id=2\n", "f.txt")
    group = keyfile.group("property")
    assert group is not None
    assert group.keys() == ("gpu-id", "batch-size", "gpu-id", "gpu-id")
    assert group.get("gpu-id") is not None and group.get("gpu-id").raw == "2"  # type: ignore[union-attr]
    assert list(group.effective()) == ["gpu-id", "batch-size"]
    duplicates = [f for f in keyfile.findings if f.rule == "keyfile-duplicate-key"]
    assert [(f.location.line if f.location else 0) for f in duplicates] == [4, 5]
    assert all(f.severity is Severity.WARNING for f in duplicates)
    assert all(n.location is not None and n.location.line == 2 for f in duplicates for n in f.notes)
    assert keyfile.loaded


def test_duplicate_groups_are_merged() -> None:
    keyfile = parse_keyfile("[a]\nk=1\n[b]\nk=2\n[a]\nj=3\n", "f")
    assert keyfile.group_names() == ("a", "b")
    group = keyfile.group("a")
    assert group is not None
    assert group.keys() == ("k", "j")
    assert rules(keyfile.findings) == ["keyfile-duplicate-group"]


def test_invalid_escape_is_an_error_located_at_the_backslash() -> None:
    keyfile = parse_keyfile("[property]\nlabelfile-path=C:\\models\\x.txt\n", "f")
    assert keyfile.loaded  # GLib loads it; every getter but the integer one then fails
    (finding,) = keyfile.findings
    assert finding.rule == "keyfile-invalid-escape"
    assert finding.severity is Severity.ERROR
    assert finding.location is not None and (finding.location.line, finding.location.column) == (2, 18)


def test_last_line_without_newline_keeps_its_carriage_return() -> None:
    keyfile = parse_keyfile("[g]\nk=v\r", "f")
    group = keyfile.group("g")
    assert group is not None and group.get("k") is not None
    assert group.get("k").raw == "v\r"  # type: ignore[union-attr]


def test_localized_keys_are_dropped_with_a_warning() -> None:
    keyfile = parse_keyfile("[g]\nname[de]=x\nname=y\n", "f")
    group = keyfile.group("g")
    assert group is not None and group.keys() == ("name",)
    assert rules(keyfile.findings) == ["keyfile-localized-key"]


# ---------------------------------------------------------------------------------------------------------------
# Writing


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e-05, "0.00001"),
        (0.1, "0.1"),
        (1.0, "1.0"),
        (123.675, "123.675"),
        (0.0039215697906911373, "0.003921569790691137"),
        (1e16, "10000000000000000.0"),
        (-2.5e-07, "-0.00000025"),
        (float("inf"), "inf"),
    ],
)
def test_format_double_is_plain_decimal(value: float, text: str) -> None:
    assert format_double(value) == text
    assert "e" not in text.lower().replace("inf", "")


@pytest.mark.parametrize(
    ("value", "list_item", "text"),
    [
        ("plain", False, "plain"),
        (" lead", False, "\\slead"),
        ("trail  ", False, "trail\\s\\s"),
        ("a # b", False, "a\\s# b"),
        ("C:\\x", False, "C:\\\\x"),
        ("l1\nl2\tt\rr", False, "l1\\nl2\\tt\\rr"),
        ("a;b", False, "a;b"),
        ("a;b", True, "a\\;b"),
    ],
)
def test_escape_value(value: str, list_item: bool, text: str) -> None:
    assert escape_value(value, list_item=list_item) == text


def test_render_keyfile_shape() -> None:
    text = render_keyfile(
        [
            (
                "property",
                [("gpu-id", 0), ("maintain-aspect-ratio", True), ("offsets", (1.0, 2.5)), ("x", None)],
            ),
            ("class-attrs-all", [("topk", 20), ("names", ["a", "b;c"])]),
        ],
        header_comment="generated by dsfleet\n\nsecond line",
    )
    assert text == (
        "# generated by dsfleet\n#\n# second line\n\n[property]\ngpu-id=0\nmaintain-aspect-ratio=1\n"
        "offsets=1.0;2.5\n\n[class-attrs-all]\ntopk=20\nnames=a;b\\;c\n"
    )


@pytest.mark.parametrize(
    "groups",
    [
        [("bad]name", [])],
        [("", [])],
        [("g", [("bad key ", 1)])],
        [("g", [("#k", 1)])],
        [("g", [("k=v", 1)])],
        [("g", [("k", 1), ("k", 2)])],
        [("g", []), ("g", [])],
        [("g", [("k", "nul\x00")])],
        [("g", [("k", Raw("line\nbreak"))])],
    ],
)
def test_render_keyfile_rejects_what_glib_cannot_read_back(groups: Any) -> None:
    with pytest.raises(ValueError):
        render_keyfile(groups)


KINDS = list(ValueKind)
_text = st.text(st.characters(blacklist_characters="\x00\v\f", blacklist_categories=("Cs",)), max_size=12)
_double = st.floats(allow_nan=False)
_int = st.integers(INT32_MIN, INT32_MAX)
VALUE_FOR_KIND: dict[ValueKind, st.SearchStrategy[Any]] = {
    ValueKind.INT: _int,
    ValueKind.DOUBLE: _double,
    ValueKind.BOOL: st.booleans(),
    ValueKind.STRING: _text,
    ValueKind.INT_LIST: st.lists(_int, max_size=5).map(tuple),
    ValueKind.DOUBLE_LIST: st.lists(_double, max_size=5).map(tuple),
    ValueKind.STRING_LIST: st.lists(_text, max_size=5).map(tuple),
}


@st.composite
def typed_entries(draw: st.DrawFn) -> list[tuple[str, ValueKind, Any]]:
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=8))
    return [(f"key-{i}", kind, draw(VALUE_FOR_KIND[kind])) for i, kind in enumerate(kinds)]


@settings(max_examples=300, deadline=None)
@given(typed_entries())
def test_render_parse_read_round_trips(entries: list[tuple[str, ValueKind, Any]]) -> None:
    text = render_keyfile([("property", [(key, value) for key, _, value in entries])])
    keyfile = parse_keyfile(text, "r.txt")
    assert keyfile.findings == ()
    group = keyfile.group("property")
    assert group is not None
    for key, kind, value in entries:
        entry = group.get(key)
        assert entry is not None
        got, problems = read_typed(KeySpec(key, kind), entry.raw)
        assert got == value
        assert problems == ()
    for line in text.split("\n"):
        assert line == line.rstrip(" \t\r")
        if not line.startswith("#"):
            assert not re.search(r"[ \t]#", line)


# ---------------------------------------------------------------------------------------------------------------
# render_gie


def test_render_gie_orders_keys_by_table_and_class_ids_numerically() -> None:
    props = NvinferProperties.model_validate(
        {"batch-size": 4, "gpu-id": 0, "offsets": "1;2;3", "maintain-aspect-ratio": 1, "net-scale-factor": 1}
    ).values_by_key()
    text = render_gie(
        GieFormat.NVINFER,
        props,
        class_attrs={"10": {"topk": 5}, "all": {"pre-cluster-threshold": 0.2}, "2": {"topk": 1}},
        extra_properties={"some-new-key": "raw # kept verbatim"},
    )
    assert text == (
        "[property]\ngpu-id=0\nnet-scale-factor=1.0\noffsets=1.0;2.0;3.0\nbatch-size=4\n"
        "maintain-aspect-ratio=1\nsome-new-key=raw # kept verbatim\n\n"
        "[class-attrs-all]\npre-cluster-threshold=0.2\n\n[class-attrs-2]\ntopk=1\n\n[class-attrs-10]\ntopk=5\n"
    )
    assert list(NVINFER_PROPERTY_KEYS).index("gpu-id") < list(NVINFER_PROPERTY_KEYS).index("batch-size")


def test_render_gie_preprocess_groups_and_user_configs() -> None:
    text = render_gie(
        GieFormat.NVDSPREPROCESS,
        {"tensor-name": "input_1", "processing-width": 640},
        groups=[{"roi-params-src-10": (0, 0, 1, 1), "roi-params-src-2": [1, 1, 2, 2], "src-ids": (-1,)}],
        user_configs={"pixel-normalization-factor": 0.003921568},
    )
    assert text == (
        "[property]\nprocessing-width=640\ntensor-name=input_1\n\n[user-configs]\n"
        "pixel-normalization-factor=0.003921568\n\n[group-0]\nsrc-ids=-1\nroi-params-src-2=1;1;2;2\n"
        "roi-params-src-10=0;0;1;1\n"
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"properties": {"batch-size": "auto"}}, ValueError),
        ({"properties": {"no-such-key": 1}}, ValueError),
        ({"properties": {"gpu-id": "0"}}, TypeError),
        ({"properties": {}, "groups": [{"src-ids": [0]}]}, ValueError),
        ({"properties": {}, "class_attrs": {"x": {}}}, ValueError),
        ({"properties": {"gpu-id": 0}, "extra_properties": {"gpu-id": "1"}}, ValueError),
    ],
)
def test_render_gie_rejects_unrenderable_input(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        render_gie(GieFormat.NVINFER, **kwargs)


def test_render_gie_mapping_validates_through_the_models() -> None:
    gie = {"role": "secondary", "properties": {"infer-dims": "3;224;224", "process-mode": 2}}
    assert render_gie_mapping(gie) == "[property]\nprocess-mode=2\ninfer-dims=3;224;224\n"
    with pytest.raises(ValueError, match="network-mode"):
        render_gie_mapping({"role": "primary", "properties": {"network-mode": 7}})


# ---------------------------------------------------------------------------------------------------------------
# Importing


PGIE = """\
[property]
gpu-id=0
net-scale-factor=0.0039215697906911373
model-engine-file=model_b4_gpu0_fp16.engine
batch-size=4
network-mode=2 # 0: FP32 1: INT8 2: FP16
num-detected-classes=4
infer-dims=3;544;960
output-blob-names=a;b
maintain-aspect-ratio=1
some-new-key=raw value # with comment
labelfile=labels.txt

[class-attrs-all]
pre-cluster-threshold=0.2
topK=20

[class-attrs-3]
threshold=0.4
"""


def test_import_nvinfer_shape_and_values() -> None:
    result = import_keyfile(PGIE, "configs/Face ID_primary.txt")
    assert result.format is GieFormat.NVINFER
    assert result.gie == {
        "name": "face-id-primary",
        "role": "primary",
        "file": "Face ID_primary.txt",
        "properties": {
            "gpu-id": 0,
            "net-scale-factor": 0.0039215697906911373,
            "model-engine-file": "model_b4_gpu0_fp16.engine",
            "batch-size": 4,
            "network-mode": 2,
            "num-detected-classes": 4,
            "infer-dims": [3, 544, 960],
            "output-blob-names": ["a", "b"],
            "maintain-aspect-ratio": True,
        },
        "classAttrs": {"all": {"pre-cluster-threshold": 0.2}, "3": {"threshold": 0.4}},
        "extraProperties": {"some-new-key": "raw value # with comment", "labelfile": "labels.txt"},
    }
    by_rule = {(f.rule, f.location.line if f.location else 0): f for f in result.findings}
    assert ("keyfile-inline-comment", 6) in by_rule
    assert by_rule[("keyfile-inline-comment", 6)].location.column == 16  # type: ignore[union-attr]
    assert "did you mean labelfile-path?" in by_rule[("keyfile-unknown-key", 12)].message
    assert "extraProperties" in by_rule[("keyfile-unknown-key", 11)].message
    assert "did you mean topk?" in by_rule[("keyfile-unknown-key", 16)].message
    assert "use pre-cluster-threshold" in by_rule[("keyfile-deprecated-key", 19)].message
    assert not result.has_errors


@pytest.mark.parametrize(
    ("typo", "group", "suggestion"),
    [
        ("min-boxes", "class-attrs-all", "minBoxes"),
        ("minboxes", "class-attrs-all", "minBoxes"),
        ("topK", "class-attrs-all", "topk"),
        ("nms-iou-thresh", "class-attrs-all", "nms-iou-threshold"),
        ("pre-cluster-threshhold", "class-attrs-all", "pre-cluster-threshold"),
        ("net-scale-factors", "property", "net-scale-factor"),
        ("model-engine", "property", "model-engine-file"),
        ("labelfile", "property", "labelfile-path"),
        ("infer-dim", "property", "infer-dims"),
        ("output-blob-name", "property", "output-blob-names"),
        ("operate-on-class-id", "property", "operate-on-class-ids"),
        ("gie-id", "property", "gie-unique-id"),
        ("unique-id", "property", "gie-unique-id"),
        ("maintain-aspect-ration", "property", "maintain-aspect-ratio"),
        ("reinfer-interval", "property", "secondary-reinfer-interval"),
        ("is-classifer", "property", "network-type"),
    ],
)
def test_typos_get_a_suggestion(typo: str, group: str, suggestion: str) -> None:
    table = NVINFER_PROPERTY_KEYS if group == "property" else NVINFER_CLASS_ATTRS_KEYS
    assert suggest_key(typo, table) == suggestion
    text = f"[property]\nbatch-size=1\n[{group}]\n{typo}=1\n"
    result = import_keyfile(text, "f.txt")
    unknown = [f for f in result.findings if f.rule == "keyfile-unknown-key"]
    assert len(unknown) == 1
    assert unknown[0].severity is Severity.WARNING
    assert f"did you mean {suggestion}?" in unknown[0].message


def test_key_in_the_wrong_group_is_pointed_there() -> None:
    result = import_keyfile("[property]\nbatch-size=1\npre-cluster-threshold=0.3\n", "f.txt")
    (finding,) = [f for f in result.findings if f.rule == "keyfile-unknown-key"]
    assert "[class-attrs-all]" in finding.message


@pytest.mark.parametrize(
    ("text", "expected_network_type", "message"),
    [
        ("[property]\nprocess-mode=2\nis-classifier=1\n", 1, "imported as network-type 1"),
        ("[property]\nis-classifier=0\n", 0, "imported as network-type 0"),
        ("[property]\nis-classifier=1\nnetwork-type=100\n", 100, "ignored because network-type is set"),
    ],
)
def test_legacy_is_classifier(text: str, expected_network_type: int, message: str) -> None:
    result = import_keyfile(text, "sgie.txt")
    props = result.gie["properties"]
    assert "is-classifier" not in props
    assert props["network-type"] == expected_network_type
    (finding,) = [f for f in result.findings if f.rule == "keyfile-deprecated-key"]
    assert message in finding.message


def test_role_secondary_from_process_mode_and_dedup_last_wins() -> None:
    result = import_keyfile("[property]\nprocess-mode=1\ngpu-id=0\nprocess-mode=2\n", "s.txt")
    assert result.gie["role"] == "secondary"
    assert list(result.gie["properties"]) == ["process-mode", "gpu-id"]
    assert result.gie["properties"]["process-mode"] == 2
    assert rules(result.findings) == ["keyfile-duplicate-key"]


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("pre-cluster-threshold=0.4 # comment", "keyfile-type-error"),
        ("maintain-aspect-ratio=1 # a must", "keyfile-type-error"),
        ("offsets=1;2;3 # BGR", "keyfile-type-error"),
        ("labelfile-path=C:\\models\\labels.txt", "keyfile-invalid-escape"),
        ("network-mode=5", "keyfile-invalid-value"),
        ("batch-size=0", "keyfile-invalid-value"),
        ("infer-dims=3;224", "keyfile-invalid-value"),
    ],
)
def test_values_deepstream_rejects_are_errors_and_not_imported(line: str, rule: str) -> None:
    group = "class-attrs-all" if line.startswith("pre-cluster") else "property"
    text = f"[property]\ngpu-id=0\n[{group}]\n{line}\n" if group != "property" else f"[property]\n{line}\n"
    result = import_keyfile(text, "bad.txt")
    errors = [f for f in result.findings if f.is_error]
    assert [f.rule for f in errors] == [rule]
    assert errors[0].location is not None and errors[0].location.line == text.count("\n")
    key = line.split("=", maxsplit=1)[0]
    imported = result.gie["properties"] if group == "property" else result.gie["classAttrs"]["all"]
    assert (key in imported) is (rule == "keyfile-invalid-value")


def test_error_messages_do_not_echo_values() -> None:
    result = import_keyfile(
        "[property]\nlabelfile-path=C:\\hunter2\\x\nnetwork-mode=hunter2\ntlt-model-key=hunter2 # c\n",
        "f.txt",
    )
    assert result.findings
    assert all("hunter2" not in f.message for f in result.findings)


def test_class_attrs_checks() -> None:
    text = "[property]\nnum-detected-classes=2\n[class-attrs-1]\ntopk=1\n[class-attrs-2]\ntopk=1\n[class-attrs-x]\n"
    result = import_keyfile(text, "f.txt")
    errors = [(f.rule, f.location.line if f.location else 0) for f in result.findings if f.is_error]
    assert errors == [("keyfile-invalid-group", 5), ("keyfile-invalid-group", 7)]
    assert list(result.gie["classAttrs"]) == ["1", "2"]
    classifier = import_keyfile("[property]\nnetwork-type=1\n[class-attrs-all]\ntopk=1\n", "f.txt")
    assert rules(classifier.findings) == ["keyfile-ignored-group"]


PREPROCESS = """\
[property]
enable=1
target-unique-ids=1
network-input-shape= 8;3;544;960
processing-width=960
processing-height=544
network-input-order=0
network-color-format=0
tensor-data-type=0
tensor-name=input_1:0
scaling-pool-memory-type=0
scaling-filter=0
custom-lib-path=/opt/lib/libcustom2d_preprocess.so
custom-tensor-preparation-function=CustomTensorPreparation
[user-configs]
pixel-normalization-factor=0.003921568
mean-file=mean.ppm
count=3
[group-1]
src-ids=2
process-on-roi=0
[group-0]
src-ids=0;1
process-on-roi=1
roi-params-src-0=0;540;900;500;
roi-params-src-1=0;540;900;500
"""


def test_import_preprocess() -> None:
    result = import_keyfile(PREPROCESS, "config_preprocess.txt")
    assert result.format is GieFormat.NVDSPREPROCESS
    gie = result.gie
    assert (gie["name"], gie["role"], "format" in gie) == ("config-preprocess", "preprocess", False)
    assert gie["properties"]["network-input-shape"] == [8, 3, 544, 960]
    assert gie["groups"] == [
        {
            "src-ids": [0, 1],
            "process-on-roi": True,
            "roi-params-src-0": [0, 540, 900, 500],
            "roi-params-src-1": [0, 540, 900, 500],
        },
        {"src-ids": [2], "process-on-roi": False},
    ]
    assert gie["userConfigs"] == {
        "pixel-normalization-factor": 0.003921568,
        "mean-file": "mean.ppm",
        "count": 3,
    }
    assert result.findings == []


def test_preprocess_missing_mandatory_keys() -> None:
    result = import_keyfile("[property]\ntensor-name=x\n[group-0]\nsrc-ids=-1\n", "p.txt")
    missing = [f for f in result.findings if f.rule == "keyfile-missing-key"]
    assert len(missing) == 2
    assert "processing-width" in missing[0].message and "tensor-name" not in missing[0].message
    assert "process-on-roi" in missing[1].message


def test_ccm_align_detected_and_format_written() -> None:
    text = "[property]\nenable=1\nnetwork-input-shape=32;3;112;112\ntensor-name=conv1\ninput-object-min-width=50\n"
    result = import_keyfile(text, "faceid_align_config.txt")
    assert result.format is GieFormat.CCM_ALIGN
    assert (result.gie["role"], result.gie["format"]) == ("preprocess", "ccm-align")
    assert result.findings == []


@pytest.mark.parametrize(
    ("text", "file", "fragment"),
    [
        ("[tracker]\ntracker-width=640\n", "tracker.txt", "tracker config"),
        (
            "[application]\nenable-perf-measurement=1\n[streammux]\nbatch-size=1\n",
            "app.txt",
            "deepstream-app",
        ),
        ("[something]\nk=1\n", "x.txt", "no [property] group"),
        ("[property]\nfoo=1\n", "x.txt", "no nvinfer or nvdspreprocess keys"),
        (
            "application:\n  enable-perf-measurement: 1\nstreammux:\n  batch-size: 1\n",
            "app.yml",
            "deepstream-app",
        ),
        ("property:\n  gpu-id: [0]\n", "pgie.yml", "is a list"),
    ],
)
def test_not_a_gie(text: str, file: str, fragment: str) -> None:
    result = import_keyfile(text, file)
    assert result.gie == {}
    assert result.format is None
    assert [f.rule for f in result.findings if f.is_error] == ["keyfile-not-a-gie"]
    assert any(fragment in f.message for f in result.findings)


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("faceid_primary.txt", "faceid-primary"),
        ("/a/b/CCM__Sample_Configs__X.txt", "ccm--sample-configs--x"),
        ("__weird__.txt", "weird"),
        ("x" * 80 + ".txt", "x" * 63),
        ("___.txt", "gie"),
    ],
)
def test_gie_name(file: str, name: str) -> None:
    assert gie_name(file) == name
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", gie_name(file))


def test_load_errors_surface_in_import() -> None:
    result = import_keyfile("[property] # x\nbatch-size=2\n", "f.txt")
    assert "keyfile-load-error" in rules(result.findings)
    assert result.has_errors


def test_imported_gie_renders_back_to_the_same_values() -> None:
    result = import_keyfile(PGIE, "pgie.txt")
    rendered = render_gie_mapping(result.gie)
    again = import_keyfile(rendered, "pgie.txt")
    assert again.gie == result.gie
    assert not again.has_errors
    assert {f.rule for f in again.findings} == {"keyfile-unknown-key", "keyfile-deprecated-key"}
    assert math.isclose(again.gie["properties"]["net-scale-factor"], 0.0039215697906911373, rel_tol=0)
