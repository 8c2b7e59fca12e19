"""Import every real nvinfer / nvdspreprocess / CCM key file and compare with what the real GLib reads.

For each sample (SOURCES.tsv kinds nvinfer, preprocess, ccm; key files only):
* every key dsfleet types is read by GLib with DeepStream's getter for that key: same value, or both fail;
* the imported GIE holds exactly those values;
* the key file dsfleet renders back from the GIE loads in GLib to the same typed values, without inline comments
  or trailing whitespace.
All GLib reads go through two batched subprocesses (one for the originals, one for the renders).
"""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from ruamel.yaml import YAML

from dsfleet.reconciler.cli.imports import main
from dsfleet.reconciler.compiling.keyfilewriter import render_gie_mapping
from dsfleet.reconciler.importers.keyfilereader import KeyFile, parse_keyfile, read_typed
from dsfleet.reconciler.importers.nvinfer import ImportResult, import_keyfile
from dsfleet.schemas.deepstream import (
    NVINFER_CLASS_ATTRS_KEYS,
    PREPROCESS_GROUP_KEYS,
    PROPERTY_TABLES,
    GieFormat,
    KeySpec,
    spec_for,
)
from tests.support.glibcheck import (
    FAILS,
    GETTER_FACTS,
    LOAD_FACTS,
    GetterError,
    GlibChecker,
    GlibFile,
    getter_for,
)
from tests.support.prereqs import shared_samples_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
GIE_KINDS = ("nvinfer", "preprocess", "ccm")
GCC_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<sev>warning|error|note): .+$")


def sample_names() -> list[str]:
    """Key files of the GIE kinds listed in SOURCES.tsv (collected at import time; empty without samples)."""
    sources = shared_samples_dir() / "SOURCES.tsv"
    if not sources.is_file():
        return []
    names = []
    for row in sources.read_text(encoding="utf-8").splitlines():
        cols = row.split("\t")
        if len(cols) >= 5 and cols[0] in GIE_KINDS and cols[4].endswith(".txt"):
            names.append(cols[4])
    return sorted(names)


SAMPLES = sample_names()


def table_for(fmt: GieFormat, group: str) -> Mapping[str, KeySpec] | None:
    if group == "property":
        return PROPERTY_TABLES[fmt]
    if fmt is GieFormat.NVINFER and group.startswith("class-attrs-"):
        return NVINFER_CLASS_ATTRS_KEYS
    if fmt is GieFormat.NVDSPREPROCESS and group.startswith("group-"):
        return PREPROCESS_GROUP_KEYS
    return None


def typed_getters(keyfile: KeyFile, fmt: GieFormat) -> dict[str, dict[str, str]]:
    """{group: {key: DeepStream's getter}} for every key with a spec; unknown keys read as strings."""
    out: dict[str, dict[str, str]] = {}
    for group in keyfile.groups:
        table = table_for(fmt, group.name)
        getters: dict[str, str] = {}
        for key in group.effective():
            spec = spec_for(table, key) if table is not None else None
            getters[key] = getter_for(spec.kind) if spec is not None else "string"
        out[group.name] = getters
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, GetterError) or isinstance(b, GetterError):
        return isinstance(a, GetterError) and isinstance(b, GetterError)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b) and type(a) is type(b)


@dataclass
class SampleRun:
    name: str
    text: str
    keyfile: KeyFile
    result: ImportResult
    original: GlibFile
    rendered_text: str
    rendered_keyfile: KeyFile
    rendered: GlibFile


@pytest.fixture(scope="module")
def runs(glib: GlibChecker, samples_dir: Path) -> dict[str, SampleRun]:
    prepared = []
    for name in SAMPLES:
        text = (samples_dir / name).read_bytes().decode("utf-8")
        keyfile = parse_keyfile(text, name)
        result = import_keyfile(text, name)
        assert result.format is not None, name
        rendered_text = render_gie_mapping(result.gie)
        rendered_keyfile = parse_keyfile(rendered_text, name)
        prepared.append((name, text, keyfile, result, rendered_text, rendered_keyfile))
    requests = [(p[1], typed_getters(p[2], p[3].format)) for p in prepared]  # type: ignore[arg-type]
    requests += [(p[4], typed_getters(p[5], p[3].format)) for p in prepared]  # type: ignore[arg-type]
    results = glib.read(requests)
    count = len(prepared)
    return {
        p[0]: SampleRun(p[0], p[1], p[2], p[3], results[i], p[4], p[5], results[count + i])
        for i, p in enumerate(prepared)
    }


def test_samples_are_present(samples_dir: Path) -> None:
    assert len(SAMPLES) >= 15
    assert all((samples_dir / name).is_file() for name in SAMPLES)


@pytest.mark.parametrize("name", SAMPLES)
def test_typed_values_equal_what_glib_returns(runs: dict[str, SampleRun], name: str) -> None:
    run = runs[name]
    assert run.original.load_error is None
    assert run.keyfile.loaded
    fmt = run.result.format
    assert fmt is not None
    checked = 0
    for group in run.keyfile.groups:
        assert run.original.keys[group.name] == group.keys()  # duplicates listed as GLib lists them
        table = table_for(fmt, group.name)
        for key, entry in group.effective().items():
            spec = spec_for(table, key) if table is not None else None
            if spec is None:
                continue
            mine, _ = read_typed(spec, entry.raw)
            theirs = run.original.value(group.name, key)
            assert same(FAILS if mine is None else mine, theirs), (group.name, key)
            checked += 1
    assert checked > 0


def imported_values(result: ImportResult) -> dict[tuple[str, str], Any]:
    """(file group, key) → value as the GIE holds it (lists → tuples)."""

    def norm(value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    gie = result.gie
    out = {("property", k): norm(v) for k, v in gie["properties"].items()}
    for name, attrs in gie.get("classAttrs", {}).items():
        out.update({(f"class-attrs-{name}", k): norm(v) for k, v in attrs.items()})
    for index, group in enumerate(gie.get("groups", [])):
        out.update({(f"group-{index}", k): norm(v) for k, v in group.items()})
    return out


@pytest.mark.parametrize("name", SAMPLES)
def test_imported_gie_holds_the_glib_values(runs: dict[str, SampleRun], name: str) -> None:
    run = runs[name]
    group_names = {g.name: g.name for g in run.keyfile.groups}
    preprocess_groups = sorted((n for n in group_names if n.startswith("group-")), key=lambda n: int(n[6:]))
    for index, original in enumerate(preprocess_groups):
        group_names[f"group-{index}"] = original
    for (group, key), value in imported_values(run.result).items():
        source_group = group_names[group]
        if key == "network-type" and "network-type" not in run.original.values[source_group]:
            legacy = run.original.value(source_group, "is-classifier")
            assert value == (1 if legacy else 0)  # is-classifier converted as nvinfer does
            continue
        assert same(value, run.original.value(source_group, key)), (group, key)
    extra = run.result.gie.get("extraProperties", {})
    for key, raw in extra.items():
        assert run.keyfile.group("property").get(key).raw == raw  # type: ignore[union-attr]


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_import_without_errors(runs: dict[str, SampleRun], name: str) -> None:
    assert not runs[name].result.has_errors, [f.message for f in runs[name].result.findings if f.is_error]


def findings_of(runs: dict[str, SampleRun], fragment: str, rule: str) -> list[Any]:
    (name,) = [n for n in runs if fragment in n]
    return [f for f in runs[name].result.findings if f.rule == rule]


@pytest.mark.parametrize(("fragment", "count"), [("faceid_primary", 5), ("faceid_secondary", 2)])
def test_ccm_inline_comments_on_int_keys_are_warned(
    runs: dict[str, SampleRun], fragment: str, count: int
) -> None:
    warnings = findings_of(runs, fragment, "keyfile-inline-comment")
    assert len(warnings) == count
    (name,) = [n for n in runs if fragment in n]
    group = runs[name].keyfile.group("property")
    assert group is not None
    for finding in warnings:
        assert finding.severity.value == "warning"
        entry = next(e for e in group.entries if e.line == finding.location.line)
        spec = PROPERTY_TABLES[GieFormat.NVINFER][entry.key]
        assert spec.kind.value == "int"
        assert entry.raw[finding.location.column - entry.value_column] == "#"
        assert isinstance(runs[name].original.value("property", entry.key), int)  # GLib accepted it


def test_ccm_inline_comments_total_seven(runs: dict[str, SampleRun]) -> None:
    total = sum(
        len(findings_of(runs, fragment, "keyfile-inline-comment"))
        for fragment in ("faceid_primary", "faceid_secondary")
    )
    assert total == 7


@pytest.mark.parametrize("fragment", ["mot_sgie", "dstest2_sgie1"])
def test_duplicate_keys_are_warned(runs: dict[str, SampleRun], fragment: str) -> None:
    duplicates = findings_of(runs, fragment, "keyfile-duplicate-key")
    assert sorted(f.message.split()[2] for f in duplicates) == ["gpu-id", "process-mode"]
    assert all(f.severity.value == "warning" and f.notes for f in duplicates)
    (name,) = [n for n in runs if fragment in n]
    keys = runs[name].original.keys["property"]
    assert keys.count("gpu-id") == 2 and keys.count("process-mode") == 2


@pytest.mark.parametrize("name", SAMPLES)
def test_rendered_file_reads_back_the_same_in_glib(runs: dict[str, SampleRun], name: str) -> None:
    run = runs[name]
    assert run.rendered.load_error is None
    assert run.rendered_keyfile.findings == ()
    fmt = run.result.format
    assert fmt is not None
    renamed = {
        f"group-{i}": n
        for i, n in enumerate(
            sorted(
                (g.name for g in run.keyfile.groups if g.name.startswith("group-")), key=lambda n: int(n[6:])
            )
        )
    }
    compared = 0
    for group in run.rendered_keyfile.groups:
        source = renamed.get(group.name, group.name)
        assert len(set(group.keys())) == len(group.keys())
        for key in group.effective():
            theirs = run.rendered.value(group.name, key)
            if key == "network-type" and "network-type" not in run.original.values[source]:
                assert theirs == (1 if run.original.value(source, "is-classifier") else 0)
            else:
                assert same(theirs, run.original.value(source, key)), (group.name, key)
            compared += 1
    dropped = {
        (g, k)
        for g, keys in run.original.values.items()
        for k in keys
        if table_for(fmt, g) is not None
        and not any(
            k in rg.effective() for rg in run.rendered_keyfile.groups if renamed.get(rg.name, rg.name) == g
        )
    }
    assert dropped <= {("property", "is-classifier")}, dropped
    assert compared > 0


@pytest.mark.parametrize("name", SAMPLES)
def test_rendered_file_has_no_inline_comments_or_trailing_whitespace(
    runs: dict[str, SampleRun], name: str
) -> None:
    for line in runs[name].rendered_text.split("\n"):
        assert line == line.rstrip(" \t\r")
        if not line.lstrip().startswith("#"):
            assert not re.search(r"[ \t]#", line), line


def test_getter_facts_hold_in_real_glib(glib: GlibChecker) -> None:
    results = glib.read(
        [(f"[g]\nk={written}\n", {"g": {"k": getter}}) for getter, written, _ in GETTER_FACTS]
    )
    for (getter, written, expected), result in zip(GETTER_FACTS, results, strict=True):
        assert same(result.value("g", "k"), expected), (getter, written)


def test_load_facts_hold_in_real_glib(glib: GlibChecker) -> None:
    results = glib.read([(text, {}) for text, _ in LOAD_FACTS])
    for (text, loads), result in zip(LOAD_FACTS, results, strict=True):
        assert (result.load_error is None) is loads, text
        assert parse_keyfile(text, "f").loaded is loads


def test_not_gie_samples_are_reported(samples_dir: Path) -> None:
    rows = [r.split("\t") for r in (samples_dir / "SOURCES.tsv").read_text(encoding="utf-8").splitlines()]
    others = [c[4] for c in rows if len(c) >= 5 and c[0] in ("tracker-keyfile", "deepstream-app")]
    assert others
    for name in others:
        result = import_keyfile((samples_dir / name).read_text(encoding="utf-8"), name)
        assert result.gie == {}
        assert [f.rule for f in result.findings if f.is_error] == ["keyfile-not-a-gie"]


# ---------------------------------------------------------------------------------------------------------------
# CLI, end to end


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_cli_imports_samples_to_yaml(samples_dir: Path) -> None:
    paths = [str(samples_dir / name) for name in SAMPLES]
    status, out, err = run_cli("import-nvinfer", *paths)
    assert status == 0
    documents = list(YAML(typ="safe").load_all(out))
    assert len(documents) == len(paths)
    for path, document in zip(paths, documents, strict=True):
        # relative paths resolved against the file's directory, as nvinfer opens them
        origin = PurePosixPath(Path(path).resolve().parent)
        assert document == import_keyfile(Path(path).read_text(encoding="utf-8"), path, origin).gie
    relative = import_keyfile(
        (samples_dir / "CCM__coordinator__sample_configs__mot_primary.txt").read_text(), "x"
    )
    assert relative.gie["properties"]["model-engine-file"] == "../data/models/trt/deepsort_detector.trt"
    absolute = [
        d
        for p, d in zip(paths, documents, strict=True)
        if p.endswith("CCM__coordinator__sample_configs__mot_primary.txt")
    ]
    assert absolute[0]["properties"]["model-engine-file"] == str(
        PurePosixPath(samples_dir.resolve().parent / "data/models/trt/deepsort_detector.trt")
    )
    assert out.startswith(f"# from {paths[0]}\n")
    assert f"\n---\n# from {paths[1]}\n" in out
    lines = err.splitlines()
    assert lines
    for line in lines:
        match = GCC_LINE.match(line)
        assert match, line
        if match["sev"] != "note":
            assert re.search(r" \[keyfile-[a-z-]+\]$", line), line
    assert any("inline comment" in line and ": warning: " in line for line in lines)


def test_cli_render_output_loads_in_glib(glib: GlibChecker, samples_dir: Path) -> None:
    (name,) = [n for n in SAMPLES if "faceid_primary" in n]
    status, out, _ = run_cli("import-nvinfer", "--render", str(samples_dir / name))
    assert status == 0
    assert out.startswith("# rendered by dsfleet from ")
    result = glib.read_one(out, {"property": {"network-mode": "integer", "offsets": "double_list"}})
    assert result.load_error is None
    assert result.value("property", "network-mode") == 2
    assert result.value("property", "offsets") == (104.0, 117.0, 123.0)
    assert " # " not in out


def test_cli_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad_pgie.txt"
    bad.write_text(
        "[property]\nbatch-size=1\n[class-attrs-all]\npre-cluster-threshold=0.4 # no\n", encoding="utf-8"
    )
    status, out, err = run_cli("import-nvinfer", str(bad))
    assert status == 1
    assert f"{bad}:4:27: error: " in err and "[keyfile-type-error]" in err
    assert YAML(typ="safe").load(out)["name"] == "bad-pgie"

    status, _, err = run_cli("import-nvinfer", "--render", str(bad))
    assert status == 1

    status, _, err = run_cli("import-nvinfer", str(tmp_path / "missing.txt"))
    assert status == 2
    assert "cannot read the file" in err

    latin = tmp_path / "latin1.txt"
    latin.write_bytes(b"[property]\nlabelfile-path=caf\xe9.txt\n")
    assert run_cli("import-nvinfer", str(latin))[0] == 2

    assert run_cli("import-nvinfer")[0] == 2
    assert run_cli("no-such-command")[0] == 2


def test_cli_runs_as_a_process(samples_dir: Path) -> None:
    (name,) = [n for n in SAMPLES if "mot_sgie" in n]
    proc = subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli.imports", "import-nvinfer", str(samples_dir / name)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert YAML(typ="safe").load(proc.stdout)["role"] == "secondary"
    assert "duplicate key gpu-id" in proc.stderr
