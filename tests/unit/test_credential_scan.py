"""The credentials rule finds a credential in any string of an instance or a profile (the walk over every string
is skipped only when a model's JSON has neither ``@`` nor ``?``, which every credential needs)."""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsfleet.policies.engine import evaluate
from dsfleet.policies.rules.fleet import _may_carry_credentials
from dsfleet.reconciler.loading.manifestsets import load_manifests
from tests.support.fleets import PROFILE, camera, fleet_of, instance, node

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


def _loaded_rule_messages(tmp_path: Path, files: dict[str, str]) -> tuple[list[str], frozenset[str]]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    loaded = load_manifests([tmp_path])
    messages = sorted(
        f"{f.location.file}: {f.message}" for f in loaded.findings if f.rule == RULE and f.location
    )
    return messages, loaded.fleet.credential_free_files


CLEAN_NODE = "apiVersion: dsfleet/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  gpus: [0]\n"


CAMERA_DOC = "apiVersion: dsfleet/v1\nkind: Camera\nmetadata:\n  name: {name}\nspec:\n  cameraId: '{cid}'\n  url: {url}\n"


def test_files_without_credential_marks_are_skipped_and_files_with_them_are_checked(tmp_path: Path) -> None:
    camera_doc = CAMERA_DOC.replace("{name}", "c1").replace("{cid}", "1")
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


SECRETS = ("rtsp://u:p@127.0.0.1/x", "https://127.0.0.1/m.onnx?token=abc")
CLEAN = ("rtsp://127.0.0.1:8554/x", "/opt/models/m.onnx", "a#b;c")


def _spellings(value: str) -> list[str]:
    """The ways a YAML file can write ``value``: plain, quoted, and with ``@`` / ``?`` spelled as escapes."""
    escaped = value.replace("@", "\\x40").replace("?", "\\u003f")
    return [value, f"'{value}'", f'"{value}"', f'"{escaped}"']


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(SECRETS + CLEAN), st.integers(0, 3), st.booleans()), min_size=1, max_size=4
    )
)
def test_the_skip_never_changes_what_the_rule_finds(values: list[tuple[str, int, bool]]) -> None:
    """Files written in every spelling, with and without credentials: the findings of the rule with the skip are
    those of checking every file, and every credential is found."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "nodes.yaml").write_text(CLEAN_NODE)
        expected = 0
        for n, (value, how, as_profile) in enumerate(values):
            text = _spellings(value)[how]
            if as_profile:
                doc = _profile_with("PLACEHOLDER")
                doc["metadata"]["name"] = f"p{n}"
                body = json.dumps(doc).replace('"PLACEHOLDER"', text)
            else:
                body = CAMERA_DOC.format(name=f"c{n}", cid=n, url=text)
            (root / f"f{n}.yaml").write_text(body)
            expected += value in SECRETS
        fleet = load_manifests([root], run_policies=False).fleet
        with_skip = sorted(f.message for f in evaluate(fleet) if f.rule == RULE)
        unskipped = dataclasses.replace(fleet, credential_free_files=frozenset())
        assert with_skip == sorted(f.message for f in evaluate(unskipped) if f.rule == RULE)
        assert len(with_skip) == expected
