"""dsfleet.schemas.deepstream: key tables, generated models, normalisation, errors and JSON Schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from dsfleet.schemas.deepstream import (
    CCM_ALIGN_KEYS,
    NVINFER_CLASS_ATTRS_KEYS,
    NVINFER_PROPERTY_KEYS,
    PREPROCESS_GROUP_KEYS,
    PREPROCESS_MANDATORY_KEYS,
    PREPROCESS_PROPERTY_KEYS,
    PROPERTY_MODELS,
    PROPERTY_TABLES,
    CcmAlignProperties,
    ClassAttrs,
    GieFormat,
    KeySpec,
    NvinferProperties,
    PathKind,
    PreprocessGroup,
    PreprocessProperties,
    ValueKind,
    keys_of,
    spec_for,
)


def words(text: str) -> list[str]:
    return text.split()


# Every key NVIDIA's DeepStream plugin manuals name, by section.
REFERENCE_NVINFER_PROPERTY = words(
    """
gpu-id gie-unique-id process-mode network-type batch-size network-mode model-engine-file onnx-file
tlt-encoded-model tlt-model-key model-file proto-file uff-file uff-input-blob-name uff-input-order input-dims
uff-input-dims infer-dims network-input-order force-implicit-batch-dim workspace-size int8-calib-file
net-scale-factor offsets mean-file model-color-format maintain-aspect-ratio symmetric-padding scaling-filter
scaling-compute-hw labelfile-path num-detected-classes cluster-mode enable-dbscan interval operate-on-gie-id
operate-on-class-ids filter-out-class-ids input-object-min-width input-object-min-height input-object-max-width
input-object-max-height classifier-threshold classifier-async-mode classifier-type secondary-reinfer-interval
segmentation-threshold segmentation-output-order output-tensor-meta output-instance-mask output-blob-names
output-io-formats layer-device-precision custom-lib-path parse-bbox-func-name parse-bbox-instance-mask-func-name
parse-classifier-func-name engine-create-func-name custom-network-config input-tensor-from-meta
tensor-meta-pool-size crop-objects-to-roi-boundary enable-dla use-dla-core auto-inc-mem max-gpu-mem-per
disable-output-host-copy dump-input-tensor dump-output-tensor overwrite-input-tensor overwrite-output-tensor
ip-tensor-file op-tensor-files raw-output-file-write is-classifier
"""
)
REFERENCE_CLASS_ATTRS = words(
    """
pre-cluster-threshold threshold post-cluster-threshold nms-iou-threshold topk eps minBoxes dbscan-min-score
group-threshold roi-top-offset roi-bottom-offset detected-min-w detected-min-h detected-max-w detected-max-h
border-color bg-color
"""
)
REFERENCE_PREPROCESS_PROPERTY = words(
    """
enable unique-id gpu-id process-on-frame target-unique-ids operate-on-gie-id processing-width processing-height
maintain-aspect-ratio symmetric-padding tensor-buf-pool-size scaling-buf-pool-size network-input-shape
network-input-order network-color-format tensor-data-type tensor-name scaling-filter scaling-pool-compute-hw
scaling-pool-memory-type custom-lib-path custom-tensor-preparation-function
"""
)
REFERENCE_PREPROCESS_GROUP = words(
    """
src-ids process-on-roi roi-params-src-<id> process-on-all-objects operate-on-class-ids input-object-min-width
input-object-min-height input-object-max-width input-object-max-height custom-input-transformation-function
draw-roi roi-color
"""
)
CCM_SAMPLE_KEYS = words(
    """
enable gpu-id target-unique-ids network-input-shape tensor-data-type tensor-name tensor-buf-pool-size
input-object-min-width input-object-max-width input-object-min-height input-object-max-height
processing-width processing-height network-color-format maintain-aspect-ratio
"""
)


@pytest.mark.parametrize(
    ("model", "table", "expected"),
    [
        (NvinferProperties, NVINFER_PROPERTY_KEYS, REFERENCE_NVINFER_PROPERTY),
        (ClassAttrs, NVINFER_CLASS_ATTRS_KEYS, REFERENCE_CLASS_ATTRS),
        (PreprocessProperties, PREPROCESS_PROPERTY_KEYS, REFERENCE_PREPROCESS_PROPERTY),
        (PreprocessGroup, PREPROCESS_GROUP_KEYS, REFERENCE_PREPROCESS_GROUP),
        (CcmAlignProperties, CCM_ALIGN_KEYS, CCM_SAMPLE_KEYS),
    ],
)
def test_tables_cover_every_reference_key(
    model: type[BaseModel], table: dict[str, KeySpec], expected: list[str]
) -> None:
    assert set(expected) <= set(table)
    assert keys_of(model) == frozenset(table)
    assert all(spec.name == key for key, spec in table.items())
    assert all(spec.description for spec in table.values())


def test_mandatory_preprocess_keys_are_known() -> None:
    assert len(PREPROCESS_MANDATORY_KEYS) == 11
    assert set(PREPROCESS_MANDATORY_KEYS) <= set(PREPROCESS_PROPERTY_KEYS)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("batch-size", ValueKind.INT),
        ("net-scale-factor", ValueKind.DOUBLE),
        ("maintain-aspect-ratio", ValueKind.BOOL),
        ("is-classifier", ValueKind.BOOL),
        ("enable-dbscan", ValueKind.BOOL),
        ("model-engine-file", ValueKind.STRING),
        ("infer-dims", ValueKind.INT_LIST),
        ("offsets", ValueKind.DOUBLE_LIST),
        ("output-blob-names", ValueKind.STRING_LIST),
    ],
)
def test_getter_kinds(key: str, kind: ValueKind) -> None:
    assert NVINFER_PROPERTY_KEYS[key].kind is kind


def test_spec_metadata() -> None:
    nv = NVINFER_PROPERTY_KEYS
    assert nv["network-mode"].choices == {0: "FP32", 1: "INT8", 2: "FP16", 3: "BEST"}
    assert nv["network-mode"].choices_since == {3: "7.0"}
    assert (nv["infer-dims"].length, nv["offsets"].max_length) == (3, 4)
    assert NVINFER_CLASS_ATTRS_KEYS["border-color"].length == 4
    assert {k for k in nv if nv[k].since == "7.0"} >= {"disable-output-host-copy", "dump-input-tensor"}
    assert nv["auto-inc-mem"].since == "6.3"
    assert {k: s.deprecated for k, s in nv.items() if s.deprecated} == {
        "is-classifier": "network-type",
        "input-dims": "infer-dims",
        "uff-input-dims": "infer-dims",
        "enable-dbscan": "cluster-mode",
    }
    assert NVINFER_CLASS_ATTRS_KEYS["threshold"].deprecated == "pre-cluster-threshold"
    paths = {k for k, s in nv.items() if s.path}
    assert {"model-engine-file", "onnx-file", "custom-lib-path", "labelfile-path", "int8-calib-file"} <= paths
    assert nv[
        "custom-network-config"
    ].cwd_relative  # nvinfer passes it on unresolved: the working directory's
    assert {k for k, s in nv.items() if s.path_kind is PathKind.CONFIG} == {"labelfile-path"}


def test_spec_for_handles_the_roi_pattern() -> None:
    assert (
        spec_for(PREPROCESS_GROUP_KEYS, "roi-params-src-12") is PREPROCESS_GROUP_KEYS["roi-params-src-<id>"]
    )
    assert spec_for(PREPROCESS_GROUP_KEYS, "roi-params-src-x") is None
    assert spec_for(NVINFER_PROPERTY_KEYS, "roi-params-src-0") is None
    assert spec_for(NVINFER_PROPERTY_KEYS, "gpu-id") is NVINFER_PROPERTY_KEYS["gpu-id"]
    assert spec_for(NVINFER_PROPERTY_KEYS, "GPU-ID") is None


def test_property_tables_and_models_by_format() -> None:
    assert PROPERTY_TABLES[GieFormat.NVINFER] is NVINFER_PROPERTY_KEYS
    assert PROPERTY_TABLES[GieFormat.NVDSPREPROCESS] is PREPROCESS_PROPERTY_KEYS
    assert PROPERTY_TABLES[GieFormat.CCM_ALIGN] is CCM_ALIGN_KEYS
    assert PROPERTY_MODELS[GieFormat.CCM_ALIGN] is CcmAlignProperties
    assert GieFormat("ccm-align") is GieFormat.CCM_ALIGN


# ---------------------------------------------------------------------------------------------------------------
# Normalisation


@pytest.mark.parametrize(
    ("key", "a", "b", "dumped"),
    [
        ("infer-dims", "3;112;112", [3, 112, 112], (3, 112, 112)),
        ("infer-dims", " 3 ; 112;112; ", (3, 112, 112), (3, 112, 112)),
        ("offsets", "104.0;117;123.5", [104, 117.0, 123.5], (104.0, 117.0, 123.5)),
        ("offsets", "", [], ()),
        ("output-blob-names", "a; b;", ["a", "b"], ("a", "b")),
        ("operate-on-class-ids", "0;", [0], (0,)),
        ("maintain-aspect-ratio", 1, True, True),
        ("maintain-aspect-ratio", 0, False, False),
        ("net-scale-factor", 1, 1.0, 1.0),
        ("batch-size", "auto", "auto", "auto"),
    ],
)
def test_equivalent_inputs_give_equal_models(key: str, a: Any, b: Any, dumped: Any) -> None:
    ma = NvinferProperties.model_validate({key: a})
    mb = NvinferProperties.model_validate({key: b})
    assert ma == mb
    assert ma.model_dump(by_alias=True, exclude_none=True) == {key: dumped}
    assert type(ma.model_dump(by_alias=True)[key]) is type(dumped)


def test_dump_is_by_alias_and_excludes_unset() -> None:
    model = NvinferProperties.model_validate({"gpu-id": 0, "model_engine_file": "m.engine"})
    assert model.model_dump(by_alias=True, exclude_none=True) == {
        "gpu-id": 0,
        "model-engine-file": "m.engine",
    }
    assert model.values_by_key() == {"gpu-id": 0, "model-engine-file": "m.engine"}
    assert model.model_dump(by_alias=True, exclude_none=True, mode="json") == {
        "gpu-id": 0,
        "model-engine-file": "m.engine",
    }


def test_models_are_frozen() -> None:
    model = NvinferProperties.model_validate({"gpu-id": 0})
    with pytest.raises(ValidationError):
        model.gpu_id = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        (NvinferProperties, {"network-mode": 4}, "must be one of 0 (FP32), 1 (INT8), 2 (FP16), 3 (BEST)"),
        (NvinferProperties, {"network-type": 4}, "100 (Other)"),
        (NvinferProperties, {"process-mode": 0}, "must be one of 1 (Primary), 2 (Secondary)"),
        (NvinferProperties, {"batch-size": 0}, "must be between 1 and 1024"),
        (NvinferProperties, {"batch-size": 1025}, "must be between 1 and 1024"),
        (NvinferProperties, {"batch-size": "many"}, 'must be an integer or "auto"'),
        (NvinferProperties, {"gie-unique-id": 0}, "must be at least 1"),
        (NvinferProperties, {"net-scale-factor": 0}, "must be greater than 0"),
        (NvinferProperties, {"gpu-id": True}, "must be an integer"),
        (NvinferProperties, {"gpu-id": 0.0}, "must be an integer"),
        (NvinferProperties, {"gpu-id": "0"}, "must be an integer"),
        (NvinferProperties, {"gpu-id": 2**31}, "32-bit"),
        (NvinferProperties, {"net-scale-factor": True}, "must be a number"),
        (NvinferProperties, {"net-scale-factor": "0.5"}, "must be a number"),
        (NvinferProperties, {"net-scale-factor": float("inf")}, "finite"),
        (NvinferProperties, {"maintain-aspect-ratio": 2}, "must be a boolean"),
        (NvinferProperties, {"maintain-aspect-ratio": "true"}, "must be a boolean"),
        (NvinferProperties, {"model-engine-file": 5}, "must be a string"),
        (NvinferProperties, {"infer-dims": [3, 224]}, "exactly 3 items"),
        (NvinferProperties, {"infer-dims": "3;224;0"}, "item 3: must be at least 1"),
        (NvinferProperties, {"infer-dims": [3, True, 4]}, "item 2: must be an integer"),
        (NvinferProperties, {"infer-dims": "3;x;4"}, "item 2: must be an integer"),
        (NvinferProperties, {"infer-dims": "3;;4"}, "item 2: is empty"),
        (NvinferProperties, {"infer-dims": 3}, "a list or a ';'-separated string"),
        (NvinferProperties, {"offsets": [1, 2, 3, 4, 5]}, "at most 4 items"),
        (NvinferProperties, {"offsets": "1/255"}, "plain decimal"),
        (NvinferProperties, {"infer-dims": "auto;3;3"}, "item 1: must be an integer"),
        (ClassAttrs, {"nms-iou-threshold": 1.5}, "must be between 0 and 1"),
        (ClassAttrs, {"border-color": [1, 0, 0]}, "exactly 4 items"),
        (ClassAttrs, {"topk": -1}, "must be at least 0"),
        (PreprocessProperties, {"tensor-data-type": 6}, "5 (FP16)"),
        (PreprocessProperties, {"network-input-shape": "8;auto;3"}, "item 2: must be an integer"),
        (PreprocessGroup, {"roi-params-src-0": "0;0;10"}, "multiple of 4"),
        (PreprocessGroup, {"roi-params-src-<id>": "0;0;1;1"}, "with a source id"),
        (NvinferProperties, {"min-boxes": 1}, "Extra inputs are not permitted"),
        (ClassAttrs, {"minboxes": 1}, "Extra inputs are not permitted"),
    ],
)
def test_errors_read_well(model: type[BaseModel], data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert message in str(info.value)


def test_errors_never_echo_the_input() -> None:
    secret = "hunter2-s3cret"
    for data in ({"network-mode": secret}, {"infer-dims": f"3;{secret};4"}, {"offsets": [secret]}):
        with pytest.raises(ValidationError) as info:
            NvinferProperties.model_validate(data)
        assert secret not in str(info.value)
        assert all(secret not in e["msg"] for e in info.value.errors())


def test_valid_values_pass() -> None:
    NvinferProperties.model_validate(
        {
            "network-mode": 3,
            "network-type": 100,
            "batch-size": 1024,
            "offsets": [0, 0.5],
            "operate-on-gie-id": -1,
            "is-classifier": 0,
            "output-io-formats": "out:fp16:chw;b:int8:hwc8",
        }
    )
    ClassAttrs.model_validate({"minBoxes": 3, "border-color": "1;0;0;1", "nms-iou-threshold": 1})


def test_auto_network_input_shape_first_element_only() -> None:
    for model in (PreprocessProperties, CcmAlignProperties):
        a = model.model_validate({"network-input-shape": "auto;3;544;960"})
        b = model.model_validate({"network-input-shape": ["auto", 3, 544, 960]})
        assert a == b
        assert a.values_by_key() == {"network-input-shape": ("auto", 3, 544, 960)}


def test_preprocess_group_roi_keys_round_trip() -> None:
    group = PreprocessGroup.model_validate(
        {
            "src-ids": "-1",
            "process-on-roi": 1,
            "roi-params-src-10": "0;0;1;1;",
            "roi-params-src-2": [1, 2, 3, 4],
        }
    )
    dumped = group.values_by_key()
    assert dumped == {
        "src-ids": (-1,),
        "process-on-roi": True,
        "roi-params-src-2": (1, 2, 3, 4),
        "roi-params-src-10": (0, 0, 1, 1),
    }
    assert list(dumped) == ["src-ids", "process-on-roi", "roi-params-src-2", "roi-params-src-10"]
    assert PreprocessGroup.model_validate(dumped) == group
    assert PreprocessGroup.model_validate({}).values_by_key() == {}


# ---------------------------------------------------------------------------------------------------------------
# JSON Schema


def test_json_schema_has_descriptions_enums_and_patterns() -> None:
    schema = NvinferProperties.model_json_schema(by_alias=True)
    json.dumps(schema)
    props = schema["properties"]
    assert schema["additionalProperties"] is False
    assert set(props) == set(NVINFER_PROPERTY_KEYS)
    assert props["network-mode"]["enum"] == [0, 1, 2, 3]
    assert "FP16" in " ".join(props["network-mode"]["enumDescriptions"])
    assert all(p.get("description") for p in props.values())
    assert {"const": "auto"} in props["batch-size"]["anyOf"]
    assert props["is-classifier"]["deprecated"] is True
    assert "network-type" in props["is-classifier"]["description"]
    array = props["infer-dims"]["anyOf"][0]
    assert (array["minItems"], array["maxItems"], array["items"]["minimum"]) == (3, 3, 1)
    assert props["disable-output-host-copy"]["x-deepstream-since"] == "7.0"

    group = PreprocessGroup.model_json_schema(by_alias=True)
    assert "roi-params-src-<id>" not in group["properties"]
    (pattern,) = group["patternProperties"]
    assert "roi-params-src-" in pattern
    for model in (ClassAttrs, PreprocessProperties, CcmAlignProperties):
        json.dumps(model.model_json_schema(by_alias=True))


@given(st.lists(st.integers(1, 4096), min_size=3, max_size=3))
def test_list_string_and_list_forms_agree(dims: list[int]) -> None:
    as_string = ";".join(str(d) for d in dims)
    assert NvinferProperties.model_validate({"infer-dims": as_string}) == NvinferProperties.model_validate(
        {"infer-dims": dims}
    )
