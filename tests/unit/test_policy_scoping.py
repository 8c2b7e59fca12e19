"""Rule scoping (``spec.rules.<id>.match``), the env-secret rule, and secrets masked in diffs."""

from __future__ import annotations

from typing import Any

import pytest

from dsfleet.policies.engine import evaluate
from dsfleet.reconciler.planning.plans import SENSITIVE, diff_fields
from dsfleet.reconciler.planning.reports import yaml_value
from tests.support.fleets import PROFILE, camera, fleet_of, instance, node


def _policy(rules: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "dsfleet/v1", "kind": "Policy", "metadata": {"name": "p"}, "spec": {"rules": rules}}


def _env_fleet(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    a = instance("a", "n1", ["c1"], env={"DB_PASSWORD": "x"})
    a["metadata"]["labels"] = {"team": "legacy"}
    b = instance("b", "n1", ["c2"], gpu=1, env={"DB_PASSWORD": "y"})
    return [node("n1"), camera("c1", "1"), camera("c2", "2"), PROFILE, a, b, *extra]


def _hits(docs: list[dict[str, Any]], rule: str) -> list[tuple[str, str]]:
    return sorted((f.severity.value, f.message) for f in evaluate(fleet_of(docs)) if f.rule == rule)


def test_a_literal_value_under_a_secret_looking_env_name_is_an_error() -> None:
    hits = _hits(_env_fleet(), "env-secret-literal")
    assert len(hits) == 2 and all(sev == "error" for sev, _ in hits)
    assert all("(not shown)" in msg and "'x'" not in msg and "'y'" not in msg for _, msg in hits)


@pytest.mark.parametrize(
    "match",
    [{"labels": {"team": "legacy"}}, {"instances": ["a"]}],
)
def test_a_policy_relaxes_a_rule_for_matching_instances_only(match: dict[str, Any]) -> None:
    policy = _policy(
        {"env-secret-literal": {"severity": "warning", "reason": "legacy app reads it", "match": match}}
    )
    hits = _hits(_env_fleet(policy), "env-secret-literal")
    assert [sev for sev, _ in hits] == ["error", "warning"]


def test_a_scoped_setting_by_layout() -> None:
    policy = _policy({"env-secret-literal": {"severity": "off", "reason": "r", "match": {"layout": "ccm"}}})
    assert len(_hits(_env_fleet(policy), "env-secret-literal")) == 2  # both are deepstream-app


def test_scoped_relaxation_still_needs_a_reason_and_secrets_rules_stay_strict() -> None:
    no_reason = _policy({"env-secret-literal": {"severity": "off", "match": {"instances": ["a"]}}})
    assert _hits(_env_fleet(no_reason), "policy-reason-required")
    url = _policy(
        {"camera-url-credentials": {"severity": "off", "reason": "r", "match": {"instances": ["a"]}}}
    )
    assert _hits(_env_fleet(url), "policy-not-relaxable")
    params = _policy(
        {
            "max-cameras-per-instance": {
                "severity": "error",
                "params": {"max": 1},
                "match": {"instances": ["a"]},
            }
        }
    )
    assert _hits(_env_fleet(params), "policy-scope")


def test_the_example_fleet_relaxes_streammux_batch_for_ccm_instances_only(tmp_path: Any) -> None:
    import shutil
    from pathlib import Path

    from dsfleet.reconciler.loading.manifestsets import load_manifests

    root = Path(__file__).resolve().parents[2] / "manifests"
    dest = tmp_path / "m"
    shutil.copytree(root, dest)
    traffic = dest / "instances" / "traffic.yaml"
    assert "streammux-batch" not in {f.rule for f in load_manifests([dest]).findings}
    text = traffic.read_text()
    assert "batch-size: auto" in text or "streammux" in text
    # a deepstream-app instance with a mismatched batch still gets the warning
    import yaml

    docs = list(yaml.safe_load_all(text))
    docs[0]["spec"]["app"].setdefault("streammux", {})["batch-size"] = 3
    traffic.write_text(yaml.safe_dump_all(docs))
    assert "streammux-batch" in {f.rule for f in load_manifests([dest]).findings}


def test_diffs_mask_values_from_secrets_and_speak_manifest_terms() -> None:
    old = {"env": {"DB_PASSWORD": "old"}, "envSecrets": {}, "gpus": ["0"], "restartPolicy": {"name": "no"}}
    new = {
        "env": {"DB_PASSWORD": "new"},
        "envSecrets": {"API_TOKEN": {"secretRef": "api", "key": "token"}},
        "gpus": ["1"],
        "restartPolicy": {"name": "on-failure", "maximumRetryCount": 5},
    }
    changes = {c.path: c for c in diff_fields(old, new)}
    assert set(changes) == {"env.DB_PASSWORD", "env.API_TOKEN", "gpu", "restartPolicy"}
    assert changes["env.DB_PASSWORD"].old == SENSITIVE and changes["env.DB_PASSWORD"].new == SENSITIVE
    assert changes["env.API_TOKEN"].new == SENSITIVE
    assert (changes["gpu"].old, changes["gpu"].new) == (0, 1)
    assert (changes["restartPolicy"].old, changes["restartPolicy"].new) == ("Never", "OnFailure")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (None, "null"),
        ("3", "'3'"),
        ("on", "'on'"),
        ({"a": [1, "x"]}, "{a: [1, x]}"),
        (0.5, "0.5"),
    ],
)
def test_diff_values_are_spelled_as_yaml(value: Any, text: str) -> None:
    assert yaml_value(value) == text
