"""model-engine-file: auto / templates follow batch size, GPU and precision; the engine-name rule stays quiet."""

from __future__ import annotations

from typing import Any

import pytest

from dsfleet.policies.engine import evaluate
from dsfleet.resolution.instances import resolve_instance
from tests.support.fleets import camera, fleet_of, instance, node

ONNX = "/models/det.onnx"


def _profile(engine: Any, **props: Any) -> dict[str, Any]:
    base = {"batch-size": "auto", "onnx-file": ONNX, "network-mode": 2, "num-detected-classes": 4,
            "cluster-mode": 2, "gie-unique-id": 1, "model-engine-file": engine}  # fmt: skip
    base.update(props)
    return {
        "apiVersion": "dsfleet/v1",
        "kind": "InferenceProfile",
        "metadata": {"name": "det"},
        "spec": {"gies": [{"name": "pgie", "role": "primary", "file": "pgie.txt", "properties": base}]},
    }


def _resolved(profile: dict[str, Any], cams: int = 3, layout: str = "deepstream-app") -> dict[str, Any]:
    names = [f"cam-{i}" for i in range(cams)]
    docs = [node("n1"), profile, *(camera(n, str(i + 1)) for i, n in enumerate(names))]
    docs.append(instance("ds", "n1", names, layout=layout, gpu=1))
    fleet = fleet_of(docs)
    res = resolve_instance(fleet, fleet.instances["ds"])
    assert not res.problems, res.problems
    findings = [f for f in evaluate(fleet) if f.rule == "engine-name"]
    assert not findings, [f.message for f in findings]
    return res.gies[0].properties


@pytest.mark.parametrize(
    ("engine", "props", "cams", "expected"),
    [
        ("auto", {}, 3, f"{ONNX}_b3_gpu0_fp16.engine"),
        ("auto", {}, 7, f"{ONNX}_b7_gpu0_fp16.engine"),
        ("auto", {"network-mode": 1}, 2, f"{ONNX}_b2_gpu0_fp16.engine"),  # INT8 without calibration → fp16
        ("auto", {"network-mode": 1, "int8-calib-file": "cal.bin"}, 2, f"{ONNX}_b2_gpu0_int8.engine"),
        (
            "auto",
            {"engine-create-func-name": "f", "custom-lib-path": "l.so"},
            4,
            "../build/model_b4_gpu0_fp16.engine",
        ),
        ("e/m_b{batch}_gpu{gpu}_{precision}.engine", {}, 5, "e/m_b5_gpu0_fp16.engine"),
        ("fixed.engine", {}, 5, "fixed.engine"),
    ],
)
def test_engine_follows_the_settings(engine: str, props: dict[str, Any], cams: int, expected: str) -> None:
    assert _resolved(_profile(engine, **props), cams)["model-engine-file"] == expected


def test_auto_without_a_model_is_an_error() -> None:
    profile = _profile("auto")
    del profile["spec"]["gies"][0]["properties"]["onnx-file"]
    docs = [node("n1"), profile, camera("cam-0", "1"), instance("ds", "n1", ["cam-0"])]
    fleet = fleet_of(docs)
    findings = [f for f in evaluate(fleet) if f.rule == "engine-auto-no-model"]
    assert len(findings) == 1 and "needs a model file" in findings[0].message


@pytest.mark.parametrize("bad", ["m_{batchsize}.engine", "m_{batch.engine", "m_{batch:3}.engine"])
def test_template_placeholders_are_checked(bad: str) -> None:
    from dsfleet.schemas.manifests import ANY_MANIFEST

    with pytest.raises(ValueError, match="placeholder"):
        ANY_MANIFEST.validate_python(_profile(bad))
