"""Packaging and contracts: py.typed, this project's packages, console scripts, the exported JSON Schema."""

from __future__ import annotations

import importlib
from pathlib import Path

import jsonschema
import pytest

from dsfleet.reconciler.loading.yamlfiles import parse_yaml
from dsfleet.schemas.export import manifest_json_schema

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("schemas", "policies", "reconciler", "agent", "plumbing")


def test_the_namespace_imports_from_this_project_and_ships_py_typed() -> None:
    import dsfleet

    path = Path(dsfleet.__file__ or "").parent
    assert path.resolve() == ROOT / "dsfleet"
    assert (path / "py.typed").is_file()


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_source_folder_is_a_subpackage_of_the_namespace(name: str) -> None:
    module = importlib.import_module(f"dsfleet.{name}")
    assert Path(module.__file__ or "").resolve().parent == ROOT / name
    assert (ROOT / "dsfleet" / name).resolve() == ROOT / name


def test_console_scripts_are_declared() -> None:
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts["dsfleet"] == "dsfleet.reconciler.cli.main:entry"
    assert scripts["dsfleet-agent"] == "dsfleet.agent.cli:main"


def _documents() -> list[tuple[str, dict[str, object]]]:
    docs = []
    for path in sorted((ROOT / "manifests").rglob("*.yaml")):
        for doc in parse_yaml(path.read_text()).documents:
            if doc.data is not None:
                docs.append((f"{path.relative_to(ROOT)}#{doc.index}", doc.data))
    return docs


def test_the_json_schema_accepts_every_example_manifest_and_refuses_typos() -> None:
    validator = jsonschema.Draft202012Validator(manifest_json_schema())
    jsonschema.Draft202012Validator.check_schema(validator.schema)
    docs = _documents()
    assert len(docs) == 18
    for where, doc in docs:
        errors = [e.message[:200] for e in validator.iter_errors(doc)]
        assert not errors, (where, errors)
    typo = {
        "apiVersion": "dsfleet/v1",
        "kind": "Camera",
        "metadata": {"name": "c"},
        "spec": {"cameraID": "1", "url": "rtsp://h/x"},
    }
    assert list(validator.iter_errors(typo))
    wrong = {
        "apiVersion": "dsfleet/v1",
        "kind": "Node",
        "metadata": {"name": "n"},
        "spec": {"gpus": ["zero"]},
    }
    assert list(validator.iter_errors(wrong))


@pytest.mark.parametrize("kind", ["Node", "Camera", "DsInstance", "InferenceProfile", "Policy"])
def test_each_kind_has_its_own_schema(kind: str) -> None:
    schema = manifest_json_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == f"dsfleet {kind}"
    assert kind in str(schema["properties"]["kind"])
