"""Rendered DeepStream files, read back by real GLib with the typed getters DeepStream uses.

* every key file of every instance of the example fleet (and of a generated fleet) loads, and each value reads
  back equal to the value dsfleet meant;
* the example fleet's ``ccm`` instances are equivalent, key for key, to the older system's sample configs
  (same GLib-typed values; credentials become placeholders, addresses loopback).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dsfleet.reconciler.compiling.desired import desired_state
from dsfleet.reconciler.importers.keyfilereader import parse_keyfile
from dsfleet.schemas.deepstream import (
    NVINFER_CLASS_ATTRS_KEYS,
    PREPROCESS_GROUP_KEYS,
    PROPERTY_TABLES,
    GieFormat,
    spec_for,
)
from dsfleet.schemas.nodeconfigs import InstanceConfig
from tests.support.glibcheck import GlibChecker, getter_for

ROOT = Path(__file__).resolve().parents[2]
_INT = re.compile(r"^-?[0-9]+$")
_FLOAT = re.compile(r"^-?[0-9]*\.[0-9]+$")


def _getters(text: str, fmt: GieFormat | None) -> dict[str, dict[str, str]]:
    """Getter per key as DeepStream reads it: from the key tables, or by the value's shape for app configs."""
    kf = parse_keyfile(text, "rendered")
    assert kf.loaded and not kf.findings, [f.message for f in kf.findings]
    out: dict[str, dict[str, str]] = {}
    for group in kf.groups:
        table = None
        if fmt is not None:
            if group.name == "property":
                table = PROPERTY_TABLES[fmt]
            elif group.name.startswith("class-attrs-"):
                table = NVINFER_CLASS_ATTRS_KEYS
            elif group.name.startswith("group-"):
                table = PREPROCESS_GROUP_KEYS
        getters = {}
        for entry in group.entries:
            spec = spec_for(table, entry.key) if table is not None else None
            if spec is not None:
                getters[entry.key] = getter_for(spec.kind)
            elif _INT.match(entry.raw):
                getters[entry.key] = "integer"
            elif _FLOAT.match(entry.raw):
                getters[entry.key] = "double"
            else:
                getters[entry.key] = "string"
        out[group.name] = getters
    return out


def _key_files(
    config: InstanceConfig, fleet_formats: dict[str, GieFormat]
) -> list[tuple[str, str, GieFormat | None]]:
    return [(f.path, f.content, fleet_formats.get(f.path)) for f in config.files if f.path.endswith(".txt")]


def _formats(desired: Any, instance: str) -> dict[str, GieFormat]:
    return {g.file: g.format for g in desired.resolved[instance].gies}


def _expected(desired: Any, instance: str, path: str) -> dict[str, dict[str, Any]]:
    """What dsfleet meant to write into a GIE file, per group."""
    gie = next(g for g in desired.resolved[instance].gies if g.file == path)
    groups: dict[str, dict[str, Any]] = {"property": dict(gie.properties)}
    for key, attrs in gie.class_attrs.items():
        groups[f"class-attrs-{key}"] = dict(attrs)
    for i, group in enumerate(gie.groups):
        groups[f"group-{i}"] = dict(group)
    return groups


def _norm(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


@pytest.mark.parametrize("fleet_dir", ["manifests", "generated"])
def test_every_rendered_key_file_loads_in_glib_with_the_intended_values(
    glib: GlibChecker, fleet_dir: str, tmp_path: Path
) -> None:
    if fleet_dir == "generated":
        from benchmarks.fleetgen import generate

        path = generate(tmp_path / "fleet", nodes=3, cameras=36, instances_per_node=4)
    else:
        path = ROOT / fleet_dir
    desired = desired_state([path])
    assert desired.configs is not None
    batch: list[tuple[str, dict[str, dict[str, str]]]] = []
    meta: list[tuple[str, str, GieFormat | None]] = []
    for config in desired.configs.values():
        for inst in config.instances:
            formats = _formats(desired, inst.name)
            for path, text, fmt in _key_files(inst, formats):
                batch.append((text, _getters(text, fmt)))
                meta.append((inst.name, path, fmt))
    results = glib.read(batch)
    assert len(results) == len(batch) >= 12
    for (instance, path, fmt), (text, getters), result in zip(meta, batch, results, strict=True):
        assert result.load_error is None, (instance, path, result.load_error)
        for group, keys in getters.items():
            for key in keys:
                value = result.value(group, key)
                assert not hasattr(value, "message"), (instance, path, group, key, value)
        assert " #" not in text.split("\n", 1)[1] and all(line == line.rstrip() for line in text.splitlines())
        if fmt is None:
            continue
        for group, values in _expected(desired, instance, path).items():
            for key, want in values.items():
                assert _norm(result.value(group, key)) == _norm(want), (instance, path, group, key)


CCM_FILES = (
    "faceid_align_config.txt",
    "faceid_primary.txt",
    "faceid_secondary.txt",
    "mot_primary.txt",
    "mot_sgie.txt",
)


@pytest.mark.parametrize("instance", ["ccm-gate", "ccm-lobby"])
def test_ccm_instances_are_equivalent_to_the_older_samples(
    glib: GlibChecker, samples_dir: Path, instance: str
) -> None:
    desired = desired_state([ROOT / "manifests"])
    assert desired.configs is not None
    config = next(i for c in desired.configs.values() for i in c.instances if i.name == instance)
    rendered = {f.path: f.content for f in config.files}
    formats = _formats(desired, instance)
    batch = []
    for name in CCM_FILES:
        sample = (samples_dir / f"CCM__coordinator__sample_configs__{name}").read_text()
        getters = _getters(rendered[name], formats[name])
        sample_getters = _getters_lenient(sample, formats[name])
        # the same keys in the same groups (DeepStream's view: duplicates collapse, comments vanish)
        assert {g: set(k) for g, k in getters.items()} == {g: set(k) for g, k in sample_getters.items()}, name
        batch.extend([(rendered[name], getters), (sample, getters)])
    results = glib.read(batch)
    for i, name in enumerate(CCM_FILES):
        ours, theirs = results[2 * i], results[2 * i + 1]
        assert theirs.load_error is None and ours.load_error is None
        for group, keys in _getters(rendered[name], formats[name]).items():
            for key in keys:
                assert ours.value(group, key) == theirs.value(group, key), (name, group, key)

    app = json.loads(rendered["app_conf.json"])
    sample_app = json.loads((samples_dir / "CCM__coordinator__sample_configs__app_conf.json").read_text())
    assert set(app) == set(sample_app)
    assert {k: v for k, v in app.items() if k != "kafka_connection_str"} == {
        k: v for k, v in sample_app.items() if k != "kafka_connection_str"
    }
    assert app["kafka_connection_str"] == "127.0.0.1:9092"
    sources = json.loads(rendered["source_list.json"])["sources"]
    sample_sources = json.loads(
        (samples_dir / "CCM__coordinator__sample_configs__source_list.json").read_text()
    )["sources"]
    assert [set(s) for s in sources] == [set(s) for s in sample_sources]
    strip = ("address", "camera_id") if instance != "ccm-gate" else ("address",)
    assert [{k: v for k, v in s.items() if k not in strip} for s in sources] == [
        {k: v for k, v in s.items() if k not in strip} for s in sample_sources
    ]
    for source in sources:
        assert re.fullmatch(
            r"rtsp://\$\{secret:[a-z0-9-]+\}@127\.0\.0\.1:8554/[a-z0-9-]+/main", source["address"]
        )


def _getters_lenient(text: str, fmt: GieFormat) -> dict[str, dict[str, str]]:
    """Like ``_getters`` for the older samples, whose inline comments and duplicates are findings, not failures."""
    kf = parse_keyfile(text, "sample")
    assert kf.loaded
    out: dict[str, dict[str, str]] = {}
    for group in kf.groups:
        table = PROPERTY_TABLES[fmt] if group.name == "property" else NVINFER_CLASS_ATTRS_KEYS
        out[group.name] = {key: getter_for(spec_for(table, key).kind) for key in group.effective()}  # type: ignore[union-attr]
    return out
