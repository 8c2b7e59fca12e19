"""DeepStream YAML configs read as the key files they stand for: same groups, keys, value text and line numbers;
refusals where DeepStream itself would not read one value."""

from __future__ import annotations

import pytest

from dsfleet.reconciler.importers.keyfilereader import parse_keyfile
from dsfleet.reconciler.importers.nvinfer import import_keyfile
from dsfleet.reconciler.importers.yamlconfigs import ReadFile, YamlConfigError, yaml_to_keyfile

APP = """\
# a comment
application:
  enable-perf-measurement: 1

primary-gie:
  enable: 1
  bbox-border-color0: 1;0;0;1
  config-file: "pgie.yml"
  net-scale-factor: 0.0039215697906911373

source:
  csv-file-path: sources.csv
"""
CSV = "enable,type,uri,num-sources,gpu-id\n1,3,file:///a.mp4,2,0\n\n1,4,rtsp://127.0.0.1:8554/c,1,0\n"


def _files(files: dict[str, str]) -> ReadFile:
    return lambda ref: (files[ref], ref) if ref in files else None


def test_groups_keys_values_and_lines_are_the_yaml_s() -> None:
    text = yaml_to_keyfile(APP, "app.yml", _files({"sources.csv": CSV}))
    kf = parse_keyfile(text, "app.yml")
    assert kf.loaded
    pgie = kf.group("primary-gie")
    assert pgie is not None and pgie.line == 5
    entries = pgie.effective()
    assert {k: e.raw for k, e in entries.items()} == {
        "enable": "1",
        "bbox-border-color0": "1;0;0;1",
        "config-file": "pgie.yml",
        "net-scale-factor": "0.0039215697906911373",  # the text, not a float's repr
    }
    assert entries["config-file"].line == 8
    sources = [g for g in kf.groups if g.name.startswith("source")]
    assert [g.name for g in sources] == ["source0", "source1"]
    assert sources[1].effective()["uri"].raw == "rtsp://127.0.0.1:8554/c"
    assert "source" not in [g.name for g in kf.groups]


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("property:\n  output-blob-names: [a, b]\n", "f.yml:2:22", "is a list"),
        ("property:\n  a:\n    b: 1\n", "f.yml:3:5", "is a mapping"),
        ("property:\n  gpu-id:\n", "f.yml:2:10", "has no value"),
        ("property:\n  a: ' x'\n", "f.yml:2:6", "surrounding spaces"),
        ("property:\n  a: 1\n---\nproperty:\n  b: 2\n", "f.yml", "one mapping of groups"),
        ("- a\n- b\n", "f.yml", "one mapping of groups"),
        ("property: 1\n", "f.yml:1:1", "group of keys"),
        ("property:\n  a: [1\n", "f.yml:3:1", "invalid YAML"),
        ("source:\n  csv-file-path: missing.csv\n", "f.yml:2:3", "no such file"),
    ],
)
def test_what_deepstream_cannot_read_as_one_value_is_refused_with_its_place(
    text: str, where: str, says: str
) -> None:
    with pytest.raises(YamlConfigError) as err:
        yaml_to_keyfile(text, "f.yml", _files({}))
    assert str(err.value).startswith(f"{where}: error: ") and says in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("csv", "says"),
    [
        ("", "is empty"),
        ("enable,uri\n", "no source"),
        ("enable,uri\n1\n", "s.csv:2: error: 1 value for the 2 columns"),
    ],
)
def test_a_bad_sources_csv_is_refused_with_its_place(csv: str, says: str) -> None:
    with pytest.raises(YamlConfigError) as err:
        yaml_to_keyfile("source:\n  csv-file-path: s.csv\n", "f.yml", _files({"s.csv": csv}))
    assert says in str(err.value)


def test_flow_style_groups_are_read_in_order() -> None:
    text = yaml_to_keyfile("property: {gpu-id: 0, batch-size: 4}\nclass-attrs-all: {topk: 20}\n", "f.yml")
    kf = parse_keyfile(text, "f.yml")
    assert [(g.name, {k: e.raw for k, e in g.effective().items()}) for g in kf.groups] == [
        ("property", {"gpu-id": "0", "batch-size": "4"}),
        ("class-attrs-all", {"topk": "20"}),
    ]


def test_import_nvinfer_takes_a_yaml_gie_and_reports_refusals_at_their_line() -> None:
    ok = import_keyfile("property:\n  batch-size: 2\n  network-mode: 1\n  gie-unique-id: 1\n", "pgie.yml")
    assert not ok.has_errors and ok.gie["properties"]["batch-size"] == 2
    bad = import_keyfile("property:\n  batch-size: [1]\n", "pgie.yml")
    assert bad.has_errors
    location = bad.findings[0].location
    assert location is not None and (location.line, location.column) == (2, 15)
