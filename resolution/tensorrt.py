"""TensorRT engine names (pure): what nvinfer calls the engine it builds, and which keys make it build one.

nvinfer writes a built engine to ``<model path>_b<batch>_gpu<id>_<precision>.engine`` next to the
model (``$CWD/model_b…`` with ``engine-create-func-name``), where the precision is the *effective* one (INT8
without a calibration file builds FP16). A ``model-engine-file`` that names anything else makes every start
rebuild. ``model-engine-file: auto`` renders that name; a template renders ``{batch}``, ``{gpu}`` (always 0: the
container sees one GPU) and ``{precision}``.

``batch-size: auto`` is the number of streams the pipeline batches (:func:`batch_streams`): the camera count, or,
with nvmultiurisrcbin (``[source-list] use-nvmultiurisrcbin``), its ``max-batch-size``: cameras added and removed
through DeepStream's REST API then keep the engine (and its name) instead of rebuilding it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dsfleet.schemas.deepstream import AUTO
from dsfleet.schemas.streamapi import max_batch_size

PRECISIONS = {0: "fp32", 1: "int8", 2: "fp16", 3: "best"}
MODEL_KEYS = ("onnx-file", "tlt-encoded-model", "uff-file", "model-file")
"""Model files nvinfer builds an engine from, in the order it prefers them."""
CUSTOM_ENGINE_DIR = "../build"
"""Where ``$CWD/model_b…`` lands seen from /workspace/configs (the container's working directory is the engine
volume, /workspace/build)."""

ENGINE_KEYS = (
    "batch-size",
    "network-mode",
    "int8-calib-file",
    "onnx-file",
    "tlt-encoded-model",
    "uff-file",
    "model-file",
    "proto-file",
    "custom-network-config",
    "engine-create-func-name",
    "infer-dims",
    "input-dims",
    "uff-input-dims",
    "force-implicit-batch-dim",
    "output-io-formats",
    "layer-device-precision",
    "model-engine-file",
)
"""Keys of an nvinfer ``[property]`` group whose change makes nvinfer build a new engine."""


def effective_precision(props: Mapping[str, Any]) -> str:
    mode = props.get("network-mode", 0)
    if mode == 1 and "int8-calib-file" not in props:
        return "fp16"
    return PRECISIONS.get(mode, "fp32")


def is_engine_template(value: Any) -> bool:
    return isinstance(value, str) and (value == AUTO or "{" in value)


def engine_file(value: str, props: Mapping[str, Any]) -> str | None:
    """The rendered ``model-engine-file`` for ``auto`` or a template; None when ``auto`` has no model to name
    the engine after."""
    batch = int(props.get("batch-size", 1))
    precision = effective_precision(props)
    if value != AUTO:
        return value.format(batch=batch, gpu=0, precision=precision)
    suffix = f"_b{batch}_gpu0_{precision}.engine"
    if "engine-create-func-name" in props:
        return f"{CUSTOM_ENGINE_DIR}/model{suffix}"
    for key in MODEL_KEYS:
        model = props.get(key)
        if isinstance(model, str) and model:
            return model + suffix
    return None


def batch_streams(cameras: int, source_list: Mapping[str, Any] | None) -> int:
    """What ``batch-size: auto`` resolves to: ``max-batch-size`` for nvmultiurisrcbin (``source_list``: the
    instance's ``[source-list]`` settings), else the number of cameras (at least 1)."""
    limit = max_batch_size(source_list) if source_list is not None else None
    return limit if limit is not None else max(cameras, 1)
