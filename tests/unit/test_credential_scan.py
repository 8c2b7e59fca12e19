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
