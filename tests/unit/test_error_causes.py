"""Errors that point at the cause: invalid documents still count as defined, duplicate keys do not stop a file,
tabs and UTF-16 say so, references suggest the nearest names, a node's default image says where it came from."""

from __future__ import annotations

from typing import Any

import pytest

from dsfleet.policies.engine import evaluate
from dsfleet.policies.registry import did_you_mean
from dsfleet.reconciler.loading.manifestsets import parse_file
from dsfleet.reconciler.loading.yamlfiles import decode_text, parse_yaml
from tests.support.fleets import PROFILE, camera, fleet_of, instance, node


@pytest.mark.parametrize(
    "data",
    [
        "apiVersion: dsfleet/v1\n".encode("utf-16"),
        "apiVersion: dsfleet/v1\n".encode("utf-16-le"),
        "apiVersion: dsfleet/v1\n".encode("utf-16-be"),
    ],
)
def test_utf16_says_save_as_utf8(data: bytes) -> None:
    text, problem = decode_text(data)
    assert text is None and problem is not None
    assert problem.message == "UTF-16 is not supported, save the file as UTF-8"


def test_a_tab_used_for_indentation_says_so() -> None:
    parsed = parse_yaml("kind: Node\nmetadata:\n\tname: x\n")
    (problem,) = parsed.problems
    assert "a tab is used for indentation" in problem.message and problem.line == 3


def test_a_duplicate_key_is_reported_and_the_rest_of_the_file_is_still_validated() -> None:
    text = (
        "apiVersion: dsfleet/v1\nkind: Node\nmetadata: {name: a}\nspec: {gpus: [0]}\nspec: {gpus: [1]}\n---\n"
        "apiVersion: dsfleet/v1\nkind: Node\nmetadata: {name: b}\nspec: {gpuz: [0]}\n"
    )
    parsed = parse_file("f.yaml", text.encode())
    rules = sorted(f.rule for f in parsed.findings)
    assert rules == ["unknown-field", "yaml-duplicate-key"]
    ((_, first),) = parsed.manifests
    assert first.name == "a" and first.spec.gpus == (0,)  # type: ignore[union-attr]
    assert parsed.invalid == ((1, "Node", "b"),)


def test_a_reference_to_an_invalid_document_says_so_and_false_errors_are_gone() -> None:
    from dsfleet.reconciler.loading.manifestsets import build_fleet

    text = (
        "apiVersion: dsfleet/v1\nkind: Node\nmetadata: {name: n1}\nsepc: {gpus: [0]}\n---\n"
        "apiVersion: dsfleet/v1\nkind: DsInstance\nmetadata: {name: i}\nspec:\n  node: n1\n"
        "  layout: deepstream-app\n  cameras: []\n  profile: det\n"
    )
    fleet, _ = build_fleet([("f.yaml", parse_file("f.yaml", text.encode()))])
    messages = {f.rule: f.message for f in evaluate(fleet)}
    assert (
        messages["instance-node-exists"]
        == "spec.node: Node 'n1' is defined in an invalid document, see above"
    )
    assert "instance-image-missing" not in messages


@pytest.mark.parametrize(
    ("word", "names", "hint"),
    [
        ("gate-l", ["gate-1", "lobby-1"], "; did you mean 'gate-1'?"),
        ("node", ["Node", "Camera"], "; did you mean 'Node'?"),
        ("zzz", ["gate-1"], ""),
        ("cam-x", ["cam-a", "cam-b", "other"], "; did you mean one of 'cam-a', 'cam-b'?"),
    ],
)
def test_did_you_mean_lists_the_nearest_names(word: str, names: list[str], hint: str) -> None:
    assert did_you_mean(word, names) == hint


def _docs(**spec: Any) -> list[dict[str, Any]]:
    return [node("n1"), camera("c1", "1"), PROFILE, instance("a", "n1", ["c1"], **spec)]


def test_an_image_from_the_node_default_says_so() -> None:
    policy = {
        "apiVersion": "dsfleet/v1",
        "kind": "Policy",
        "metadata": {"name": "p"},
        "spec": {"allowedImages": ["registry.local/*"]},
    }
    (hit,) = [f for f in evaluate(fleet_of([*_docs(), policy])) if f.rule == "allowed-images"]
    assert "(from Node n1's image)" in hit.message


def test_an_override_of_an_unknown_gie_suggests_the_nearest() -> None:
    findings = evaluate(fleet_of(_docs(overrides={"pgi": {"batch-size": 2}})))
    (hit,) = [f for f in findings if f.rule == "override-unknown-gie"]
    assert hit.message.endswith("has no GIE named 'pgi'; did you mean 'pgie'?")


def test_schema_takes_kinds_in_any_case_and_suggests_the_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    from dsfleet.reconciler.cli.main import main

    assert main(["schema", "camera"]) == 0
    assert '"title": "dsfleet Camera"' in capsys.readouterr().out
    assert main(["schema", "Camra"]) == 2
    assert "did you mean 'Camera'?" in capsys.readouterr().err
