"""The credentials rule finds a credential in any string of an instance or a profile (the walk over every string
is skipped only when a model's JSON has neither ``@`` nor ``?``, which every credential needs)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policies.engine import evaluate
from policies.fleet_rules import _may_carry_credentials
from tests.fleets import PROFILE, camera, fleet_of, instance, node

RULE = "camera-url-credentials"


def _profile_with(value: str) -> dict[str, Any]:
    profile = copy.deepcopy(PROFILE)
    profile["spec"]["gies"][0]["properties"]["custom-lib-path"] = value
    return profile


def _messages(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(f.message for f in evaluate(fleet_of(docs)) if f.rule == RULE)


@pytest.mark.parametrize(
    "value",
    ["rtsp://user:pw@10.0.0.5/x", "https://models.example/m.onnx?token=abc", 'rtsp://u:p@h/"quoted"\\x'],
)
def test_a_credential_in_a_profile_string_is_found(value: str) -> None:
    docs = [node("n1"), camera("c1", "1"), _profile_with(value), instance("a", "n1", ["c1"])]
    assert _messages(docs) == [
        "spec.gies[0].properties.custom-lib-path: carries credentials (not shown); move them to a secret"
    ]


def test_a_credential_in_an_instance_connection_string_is_found() -> None:
    docs = [node("n1"), camera("c1", "1"), PROFILE, instance("a", "n1", ["c1"], layout="ccm")]
    docs[-1]["spec"]["app"]["kafkaConnectionStr"] = "user:secret@127.0.0.1:9092"
    assert len(_messages(docs)) == 1


def test_clean_models_skip_the_walk_and_find_nothing() -> None:
    docs = [node("n1"), camera("c1", "1"), PROFILE, instance("a", "n1", ["c1"])]
    assert _messages(docs) == []
    assert not _may_carry_credentials('{"file":"pgie.txt","url":"rtsp://127.0.0.1:8554/c1"}')
    assert _may_carry_credentials('{"a":"b?password=x"}') and _may_carry_credentials('{"a":"u@h:9092"}')


def _loaded_rule_messages(tmp_path: Any, files: dict[str, str]) -> tuple[list[str], frozenset[str]]:
    from reconciler.loading.manifests import load_manifests

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    loaded = load_manifests([tmp_path])
    messages = sorted(
        f"{f.location.file}: {f.message}" for f in loaded.findings if f.rule == RULE and f.location
    )
    return messages, loaded.fleet.credential_free_files


CLEAN_NODE = "apiVersion: dsfleet/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  gpus: [0]\n"


def test_files_without_credential_marks_are_skipped_and_files_with_them_are_checked(tmp_path: Any) -> None:
    camera_doc = (
        "apiVersion: dsfleet/v1\nkind: Camera\nmetadata:\n  name: c1\nspec:\n  cameraId: '1'\n  url: {url}\n"
    )
    messages, free = _loaded_rule_messages(
        tmp_path,
        {
            "nodes.yaml": CLEAN_NODE,
            "plain.yaml": camera_doc.format(url="rtsp://127.0.0.1:8554/c1"),
            "userinfo.yaml": camera_doc.format(url="rtsp://u:p@127.0.0.1/c2").replace("c1", "c2"),
            "escaped.yaml": camera_doc.format(url='"rtsp://u:p\\x40127.0.0.1/c3"').replace("c1", "c3"),
        },
    )
    assert {f.rsplit("/", 1)[-1] for f in free} == {"nodes.yaml", "plain.yaml"}
    assert [m.split(": ", 1)[0].rsplit("/", 1)[-1] for m in messages] == ["escaped.yaml", "userinfo.yaml"]


def test_the_skip_never_changes_the_findings_of_the_repository_manifests() -> None:
    """Every manifest the repository ships (examples, golden cases): the rule finds the same with the skip as
    when it checks every file."""
    import dataclasses
    from pathlib import Path

    from policies.engine import evaluate as run_rules
    from reconciler.loading.manifests import load_manifests

    root = Path(__file__).resolve().parents[2]
    for folder in [root / "manifests", *sorted((root / "tests" / "golden").glob("*/*"))]:
        if not folder.is_dir():
            continue
        fleet = load_manifests([folder], run_policies=False).fleet
        unskipped = dataclasses.replace(fleet, credential_free_files=frozenset())
        with_skip = sorted(f.message for f in run_rules(fleet) if f.rule == RULE)
        assert with_skip == sorted(f.message for f in run_rules(unskipped) if f.rule == RULE), folder
