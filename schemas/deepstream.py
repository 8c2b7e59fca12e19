"""Typed DeepStream config keys: one table per key group, and pydantic models generated from the tables.

The tables (``NVINFER_PROPERTY_KEYS``, ``NVINFER_CLASS_ATTRS_KEYS``, ``PREPROCESS_PROPERTY_KEYS``,
``PREPROCESS_GROUP_KEYS``, ``CCM_ALIGN_KEYS``) are the single source of truth: for every key they say which GLib
getter DeepStream reads it with (``ValueKind``), the range or enumeration the parser checks, list lengths, the
DeepStream version that added it, its replacement if it is deprecated, and whether it is a file path. The models
(``NvinferProperties``, ``ClassAttrs``, ``PreprocessProperties``, ``PreprocessGroup``, ``CcmAlignProperties``) are
built from the tables; the key-file renderer uses the table order as the order of keys in a group.

Models address fields by DeepStream spelling (``model.model_dump(by_alias=True, exclude_none=True)``); every field
is optional. Accepted input forms, and what they normalise to:

* INT: a strict int (no bool, float or string) within the range / enumeration.
* DOUBLE: an int or a float, stored as float; finite.
* BOOL: ``true``/``false`` or ``1``/``0``, stored as bool.
* STRING: a string.
* lists: a YAML list, or a ``;``-separated string (a trailing ``;`` and spaces around items are fine), stored as
  a tuple of typed items. ``"3;112;112"`` and ``[3, 112, 112]`` give equal models.

dsfleet extensions: ``batch-size: auto`` (nvinfer; the instance's camera count), ``auto`` as the first
(batch) element of ``network-input-shape`` (nvdspreprocess, CCM align), and ``model-engine-file: auto`` or a
template with ``{batch}``, ``{gpu}``, ``{precision}`` (nvinfer: the name nvinfer gives the engine it builds, so it
follows batch size, GPU and precision). They must be resolved before rendering.

Error messages never contain the input value (``hide_input_in_errors`` and ``PydanticCustomError`` templates).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    create_model,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dsfleet.schemas.placeholders import SECRET_FIELDS

__all__ = [
    "AUTO",
    "CCM_ALIGN_KEYS",
    "INT32_MAX",
    "INT32_MIN",
    "NVINFER_CLASS_ATTRS_KEYS",
    "NVINFER_PROPERTY_KEYS",
    "PREPROCESS_GROUP_KEYS",
    "PREPROCESS_MANDATORY_KEYS",
    "PREPROCESS_PROPERTY_KEYS",
    "PROPERTY_MODELS",
    "PROPERTY_TABLES",
    "ROI_PARAMS_KEY",
    "ROI_PARAMS_RE",
    "CcmAlignProperties",
    "ClassAttrs",
    "DeepStreamKeys",
    "GieFormat",
    "KeySpec",
    "NvinferProperties",
    "PathKind",
    "PreprocessGroup",
    "PreprocessProperties",
    "ValueKind",
    "key_description",
    "key_json_schema",
    "keys_of",
    "range_text",
    "spec_for",
    "validate_value",
]

AUTO: Final = "auto"
ENGINE_TEMPLATE_FIELDS: Final = ("batch", "gpu", "precision")
"""The placeholders a ``model-engine-file`` template may use."""
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1

ROI_PARAMS_KEY: Final = "roi-params-src-<id>"
"""How the ``roi-params-src-<source id>`` key pattern of ``[group-N]`` is spelled in the tables."""
ROI_PARAMS_RE: Final = re.compile(r"^roi-params-src-([0-9]+)$")


class ValueKind(StrEnum):
    """The GLib getter DeepStream reads a key with."""

    INT = "int"
    DOUBLE = "double"
    BOOL = "bool"
    STRING = "string"
    INT_LIST = "int-list"
    DOUBLE_LIST = "double-list"
    STRING_LIST = "string-list"

    @property
    def is_list(self) -> bool:
        return self in (ValueKind.INT_LIST, ValueKind.DOUBLE_LIST, ValueKind.STRING_LIST)

    @property
    def item_kind(self) -> ValueKind:
        """The kind of one list item (the kind itself for scalars)."""
        return _ITEM_KIND.get(self, self)


_ITEM_KIND: Final = {
    ValueKind.INT_LIST: ValueKind.INT,
    ValueKind.DOUBLE_LIST: ValueKind.DOUBLE,
    ValueKind.STRING_LIST: ValueKind.STRING,
}


class GieFormat(StrEnum):
    NVINFER = "nvinfer"
    NVDSPREPROCESS = "nvdspreprocess"
    CCM_ALIGN = "ccm-align"


class PathKind(StrEnum):
    """What a path key names, which says where the file comes from once dsfleet renders the instance."""

    CONFIG = "config"
    """A small text file (labels, tracker, analytics, message converter configs): imported into the manifests and
    rendered with the instance, beside the file that names it."""
    MODEL = "model"
    """Models, engines, calibration tables, libraries: an explicit path in the container (the image, or a models
    mount declared on the instance)."""
    OUTPUT = "output"
    """Written by DeepStream (output files and directories)."""


@dataclass(frozen=True)
class KeySpec:
    """One DeepStream key.

    For lists, ``minimum``/``maximum``/``choices`` apply to each item. ``length`` is an exact item count,
    ``max_length`` an upper bound, ``length_multiple`` a required multiple (ROI lists: 4 per ROI).
    ``choices_since`` names the DeepStream version that added an enumeration value (``network-mode`` 3).
    """

    name: str
    kind: ValueKind
    minimum: float | None = None
    maximum: float | None = None
    choices: Mapping[int, str] | None = None
    length: int | None = None
    max_length: int | None = None
    since: str | None = None
    deprecated: str | None = None
    path: bool = False
    description: str = ""
    exclusive_minimum: bool = False
    length_multiple: int | None = None
    choices_since: Mapping[int, str] | None = None
    secret: bool = False
    """The value may be ``{secretRef: NAME, key: password}``: the whole string comes from the agent's secret store
    (rendered as ``${secret:NAME:password}``, :class:`SecretValue`)."""
    getter: ValueKind | None = None
    """The GLib getter DeepStream really reads the key with when it is not the one of ``kind``: most deepstream-app
    switches (``enable``, ``show-clock``, …) are read with ``g_key_file_get_integer`` and tested for non-zero, so
    ``enable=2`` loads and ``enable=true`` does not."""
    accepts_bool: bool = False
    """An INT key that also takes ``true``/``false`` in a manifest (stored as 1/0): ``[tiled-display] enable``,
    0/1/2, was a boolean in earlier manifests."""
    path_kind: PathKind | None = None
    """What the file a path key names is (implies ``path``): see :class:`PathKind`."""
    cwd_relative: bool = False
    """DeepStream does not resolve this path against the config file's directory: a relative value is relative to
    the working directory (or searched, for a library name without ``/``)."""

    def __post_init__(self) -> None:
        if self.path_kind is not None and not self.path:
            object.__setattr__(self, "path", True)  # a path of a known kind is a path

    @property
    def read_kind(self) -> ValueKind:
        """The getter DeepStream reads the key with."""
        return self.getter or self.kind

    @property
    def is_path(self) -> bool:
        return self.path or self.path_kind is not None

    def choices_text(self) -> str:
        """``0 (FP32), 1 (INT8), …`` or ``""``."""
        if not self.choices:
            return ""
        return ", ".join(f"{value} ({meaning})" for value, meaning in self.choices.items())


def _table(*specs: KeySpec) -> dict[str, KeySpec]:
    table: dict[str, KeySpec] = {}
    for spec in specs:
        if spec.name in table:  # pragma: no cover - a mistake in the tables below
            raise ValueError(f"duplicate key spec {spec.name}")
        table[spec.name] = spec
    return table


_I = ValueKind.INT
_D = ValueKind.DOUBLE
_B = ValueKind.BOOL
_S = ValueKind.STRING
_IL = ValueKind.INT_LIST
_DL = ValueKind.DOUBLE_LIST
_SL = ValueKind.STRING_LIST

_COLOR_FORMATS: Final = {0: "RGB", 1: "BGR", 2: "GRAY"}
_SCALING_FILTERS: Final = {
    0: "Nearest",
    1: "Bilinear",
    2: "Algo1",
    3: "Algo2",
    4: "Algo3",
    5: "Algo4",
    6: "Default",
}
_COMPUTE_HW: Final = {0: "Default", 1: "GPU", 2: "VIC (Jetson only)"}
_TENSOR_DATA_TYPES: Final = {0: "FP32", 1: "UINT8", 2: "INT8", 3: "UINT32", 4: "INT32", 5: "FP16"}
_MEMORY_TYPES: Final = {
    0: "Default",
    1: "CUDA pinned",
    2: "CUDA device",
    3: "CUDA unified",
    4: "Surface array (Jetson)",
}


def _object_size_keys(where: str) -> tuple[KeySpec, ...]:
    return tuple(
        KeySpec(
            f"input-object-{bound}-{dim}",
            _I,
            minimum=0,
            description=f"Only infer on objects whose {dim} is at {'least' if bound == 'min' else 'most'} "
            f"this many pixels ({where}); 0 = no limit.",
        )
        for bound, dim in (("min", "width"), ("min", "height"), ("max", "width"), ("max", "height"))
    )


NVINFER_PROPERTY_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec(
        "gpu-id", _I, minimum=0, description="CUDA device, relative to the GPUs visible in the container."
    ),
    KeySpec(
        "net-scale-factor",
        _D,
        minimum=0,
        exclusive_minimum=True,
        description="Pixel normalisation factor: y = net-scale-factor * (x - mean).",
    ),
    KeySpec(
        "offsets",
        _DL,
        minimum=0,
        max_length=4,
        description="Per-channel mean subtracted before scaling, one value per channel.",
    ),
    KeySpec(
        "mean-file", _S, path_kind=PathKind.MODEL, description="Mean image (PPM); an alternative to offsets."
    ),
    KeySpec("model-color-format", _I, choices=_COLOR_FORMATS, description="Colour format the model expects."),
    KeySpec(
        "onnx-file", _S, path_kind=PathKind.MODEL, description="ONNX model to build the TensorRT engine from."
    ),
    KeySpec("tlt-encoded-model", _S, path_kind=PathKind.MODEL, description="TAO/TLT encoded model (.etlt)."),
    KeySpec("tlt-model-key", _S, description="Key to decode the TAO/TLT encoded model."),
    KeySpec(
        "model-file",
        _S,
        path_kind=PathKind.MODEL,
        description="Caffe model (legacy) or custom model weights file.",
    ),
    KeySpec("proto-file", _S, path_kind=PathKind.MODEL, description="Caffe prototxt (legacy)."),
    KeySpec(
        "uff-file", _S, path_kind=PathKind.MODEL, description="UFF model (legacy; TensorRT >= 10 drops UFF)."
    ),
    KeySpec("uff-input-blob-name", _S, description="Name of the input layer of a UFF/ONNX model."),
    KeySpec("uff-input-order", _I, choices={0: "NCHW", 1: "NHWC", 2: "NC"}, description="UFF input order."),
    KeySpec(
        "uff-input-dims",
        _IL,
        length=4,
        deprecated="infer-dims",
        description="c;h;w;order of a UFF input; ignored when infer-dims is set.",
    ),
    KeySpec(
        "input-dims",
        _IL,
        length=4,
        deprecated="infer-dims",
        description="c;h;w;order of the input; ignored when infer-dims is set.",
    ),
    KeySpec(
        "custom-network-config",
        _S,
        path_kind=PathKind.MODEL,
        cwd_relative=True,
        description="Custom network config (e.g. darknet .cfg), opened by the custom library; nvinfer does not "
        "resolve it.",
    ),
    KeySpec(
        "model-engine-file",
        _S,
        path_kind=PathKind.MODEL,
        description="Serialized TensorRT engine; should match <model>_b<batch>_gpu<id>_<mode>.engine. dsfleet "
        "also accepts 'auto' (that name, from the model file, batch-size and network-mode) or a template with "
        "{batch}, {gpu}, {precision}.",
    ),
    KeySpec(
        "int8-calib-file",
        _S,
        path_kind=PathKind.MODEL,
        description="INT8 calibration table (to build INT8 engines).",
    ),
    KeySpec("labelfile-path", _S, path_kind=PathKind.CONFIG, description="Labels file."),
    KeySpec(
        "batch-size",
        _I,
        minimum=1,
        maximum=1024,
        description="Maximum batch of the engine. dsfleet also accepts 'auto' (the instance's camera count).",
    ),
    KeySpec(
        "network-mode",
        _I,
        choices={0: "FP32", 1: "INT8", 2: "FP16", 3: "BEST"},
        choices_since={3: "7.0"},
        description="Engine precision; 3 (BEST) needs DeepStream 7.0.",
    ),
    KeySpec(
        "network-type",
        _I,
        choices={0: "Detector", 1: "Classifier", 2: "Segmentation", 3: "InstanceSegmentation", 100: "Other"},
        description="What the network outputs; 100 = raw tensors (with output-tensor-meta).",
    ),
    KeySpec(
        "is-classifier",
        _B,
        deprecated="network-type",
        description="Legacy: converted to network-type 1/0 when network-type is absent, otherwise ignored.",
    ),
    KeySpec(
        "process-mode", _I, choices={1: "Primary", 2: "Secondary"}, description="Full frames or objects."
    ),
    KeySpec("gie-unique-id", _I, minimum=1, description="ID stamped on metadata; unique in a pipeline."),
    KeySpec(
        "operate-on-gie-id",
        _I,
        minimum=-1,
        description="Secondary mode: only objects from this gie-unique-id (-1 = any).",
    ),
    KeySpec(
        "operate-on-class-ids", _IL, minimum=0, description="Secondary mode: only objects of these classes."
    ),
    KeySpec("filter-out-class-ids", _IL, minimum=0, description="Detector: drop these classes."),
    KeySpec("num-detected-classes", _I, minimum=0, description="Number of classes; required for detectors."),
    KeySpec("interval", _I, minimum=0, description="Batches to skip between inferences (primary mode)."),
    KeySpec("infer-dims", _IL, minimum=1, length=3, description="Input dimensions c;h;w."),
    KeySpec("network-input-order", _I, choices={0: "NCHW", 1: "NHWC"}, description="Input tensor order."),
    KeySpec("force-implicit-batch-dim", _B, description="Build the engine with an implicit batch dimension."),
    KeySpec("workspace-size", _I, description="TensorRT builder workspace in MB; <= 0 uses the default."),
    KeySpec("maintain-aspect-ratio", _B, description="Letterbox when scaling."),
    KeySpec("symmetric-padding", _B, description="Pad on both sides (with maintain-aspect-ratio)."),
    KeySpec("scaling-filter", _I, choices=_SCALING_FILTERS, description="Scaling interpolation."),
    KeySpec("scaling-compute-hw", _I, choices=_COMPUTE_HW, description="Scaling hardware; 2 only on Jetson."),
    KeySpec(
        "cluster-mode",
        _I,
        choices={0: "GroupRectangles", 1: "DBSCAN", 2: "NMS", 3: "DBSCAN+NMS", 4: "None"},
        description="Box clustering; instance segmentation requires 4.",
    ),
    KeySpec(
        "enable-dbscan", _B, deprecated="cluster-mode", description="Legacy switch for DBSCAN clustering."
    ),
    *_object_size_keys("secondary mode"),
    KeySpec("classifier-threshold", _D, minimum=0, description="Minimum classifier confidence."),
    KeySpec("classifier-async-mode", _B, description="Asynchronous classification (secondary classifiers)."),
    KeySpec("classifier-type", _S, description="Label of the classifier in its metadata."),
    KeySpec(
        "secondary-reinfer-interval",
        _I,
        minimum=0,
        description="Frames after which a tracked object is inferred again.",
    ),
    KeySpec("segmentation-threshold", _D, minimum=0, description="Segmentation confidence threshold."),
    KeySpec("segmentation-output-order", _I, choices={0: "NCHW", 1: "NHWC"}, description="Output order."),
    KeySpec("output-blob-names", _SL, description="Output layer names."),
    KeySpec("output-io-formats", _SL, description="layer:type:format entries (e.g. out:fp16:chw)."),
    KeySpec("layer-device-precision", _SL, description="layer:device:precision entries."),
    KeySpec("output-tensor-meta", _B, description="Attach raw output tensors as metadata."),
    KeySpec("output-instance-mask", _B, description="Output instance masks; requires cluster-mode 4."),
    KeySpec("input-tensor-from-meta", _B, description="Use tensors prepared by nvdspreprocess."),
    KeySpec("tensor-meta-pool-size", _I, minimum=2, description="Size of the output tensor buffer pool."),
    KeySpec("crop-objects-to-roi-boundary", _B, description="Clip object crops to the ROI."),
    KeySpec(
        "custom-lib-path", _S, path_kind=PathKind.MODEL, description="Custom parser / engine library (.so)."
    ),
    KeySpec("parse-bbox-func-name", _S, description="Bounding-box parser symbol in custom-lib-path."),
    KeySpec("parse-bbox-instance-mask-func-name", _S, description="Instance-mask parser symbol."),
    KeySpec("parse-classifier-func-name", _S, description="Classifier parser symbol in custom-lib-path."),
    KeySpec("engine-create-func-name", _S, description="Custom engine builder symbol in custom-lib-path."),
    KeySpec("enable-dla", _B, description="Run on a DLA core (Jetson)."),
    KeySpec("use-dla-core", _I, minimum=0, description="DLA core index (Jetson)."),
    KeySpec("auto-inc-mem", _I, minimum=0, since="6.3", description="Let the output pool grow on demand."),
    KeySpec(
        "max-gpu-mem-per",
        _I,
        minimum=0,
        maximum=100,
        since="6.3",
        description="Upper bound (% of GPU memory) for auto-inc-mem.",
    ),
    KeySpec(
        "disable-output-host-copy",
        _I,
        choices={0: "copy outputs to host", 1: "no host copy"},
        since="7.0",
        description="Skip copying output tensors to host memory.",
    ),
    KeySpec("dump-input-tensor", _I, minimum=0, since="7.0", description="Debug: dump input tensors."),
    KeySpec("dump-output-tensor", _I, minimum=0, since="7.0", description="Debug: dump output tensors."),
    KeySpec(
        "overwrite-input-tensor", _I, minimum=0, since="7.0", description="Debug: replace input tensors."
    ),
    KeySpec("overwrite-output-tensor", _I, minimum=0, since="7.0", description="Debug: replace outputs."),
    KeySpec(
        "ip-tensor-file", _S, path_kind=PathKind.MODEL, since="7.0", description="Debug: input tensor file."
    ),
    KeySpec("op-tensor-files", _SL, since="7.0", description="Debug: output tensor files."),
    KeySpec("raw-output-file-write", _B, since="7.0", description="Debug: write raw outputs to files."),
)
"""``[property]`` of an nvinfer config, in the order dsfleet writes them."""

NVINFER_CLASS_ATTRS_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("pre-cluster-threshold", _D, minimum=0, description="Confidence threshold before clustering."),
    KeySpec(
        "threshold",
        _D,
        minimum=0,
        deprecated="pre-cluster-threshold",
        description="Legacy alias of pre-cluster-threshold.",
    ),
    KeySpec("post-cluster-threshold", _D, minimum=0, description="Confidence threshold after clustering."),
    KeySpec(
        "nms-iou-threshold", _D, minimum=0, maximum=1, description="NMS IoU threshold (cluster-mode 2, 3)."
    ),
    KeySpec("topk", _I, minimum=0, description="Keep the top K boxes after NMS."),
    KeySpec("eps", _D, minimum=0, description="DBSCAN / group-rectangles epsilon."),
    KeySpec("minBoxes", _I, minimum=0, description="DBSCAN minimum boxes per cluster (camelCase key)."),
    KeySpec("dbscan-min-score", _D, minimum=0, description="DBSCAN minimum cluster score."),
    KeySpec("group-threshold", _I, minimum=0, description="groupRectangles threshold (cluster-mode 0)."),
    KeySpec("roi-top-offset", _I, minimum=0, description="Ignore boxes in this top band (pixels)."),
    KeySpec("roi-bottom-offset", _I, minimum=0, description="Ignore boxes in this bottom band (pixels)."),
    KeySpec("detected-min-w", _I, minimum=0, description="Drop boxes narrower than this; 0 = no limit."),
    KeySpec("detected-min-h", _I, minimum=0, description="Drop boxes lower than this; 0 = no limit."),
    KeySpec("detected-max-w", _I, minimum=0, description="Drop boxes wider than this; 0 = no limit."),
    KeySpec("detected-max-h", _I, minimum=0, description="Drop boxes higher than this; 0 = no limit."),
    KeySpec("border-color", _DL, minimum=0, maximum=1, length=4, description="OSD box colour r;g;b;a."),
    KeySpec("bg-color", _DL, minimum=0, maximum=1, length=4, description="OSD box background r;g;b;a."),
)
"""``[class-attrs-all]`` / ``[class-attrs-<N>]`` of an nvinfer config."""

PREPROCESS_PROPERTY_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, description="Enable the element (0 = pass-through)."),
    KeySpec(
        "target-unique-ids", _IL, minimum=1, description="gie-unique-id(s) of the nvinfer(s) that use it."
    ),
    KeySpec("operate-on-gie-id", _I, minimum=-1, description="Object mode: objects from this GIE."),
    KeySpec(
        "network-input-order", _I, choices={0: "NCHW", 1: "NHWC", 2: "CUSTOM"}, description="Tensor order."
    ),
    KeySpec("process-on-frame", _B, description="1 = frames/ROIs (primary), 0 = objects (secondary)."),
    KeySpec("unique-id", _I, minimum=0, description="ID of this element's metadata."),
    KeySpec(
        "gpu-id", _I, minimum=0, description="CUDA device, relative to the GPUs visible in the container."
    ),
    KeySpec("maintain-aspect-ratio", _B, description="Letterbox when scaling."),
    KeySpec("symmetric-padding", _B, description="Pad on both sides (with maintain-aspect-ratio)."),
    KeySpec("processing-width", _I, minimum=1, description="Scaling width."),
    KeySpec("processing-height", _I, minimum=1, description="Scaling height."),
    KeySpec("scaling-buf-pool-size", _I, minimum=1, description="Buffers in the scaling pool."),
    KeySpec("tensor-buf-pool-size", _I, minimum=1, description="Buffers in the tensor pool."),
    KeySpec(
        "network-input-shape",
        _IL,
        minimum=1,
        description="Tensor shape, batch first (e.g. 8;3;544;960). dsfleet accepts 'auto' as the batch.",
    ),
    KeySpec("network-color-format", _I, choices=_COLOR_FORMATS, description="Tensor colour format."),
    KeySpec("tensor-data-type", _I, choices=_TENSOR_DATA_TYPES, description="Tensor element type."),
    KeySpec("tensor-name", _S, description="The model's input layer name."),
    KeySpec("scaling-pool-memory-type", _I, choices=_MEMORY_TYPES, description="Scaling pool memory type."),
    KeySpec("scaling-pool-compute-hw", _I, choices=_COMPUTE_HW, description="Scaling hardware."),
    KeySpec("scaling-filter", _I, choices=_SCALING_FILTERS, description="Scaling interpolation."),
    KeySpec(
        "custom-lib-path", _S, path_kind=PathKind.MODEL, description="Custom preprocessing library (.so)."
    ),
    KeySpec(
        "custom-tensor-preparation-function", _S, description="Tensor preparation symbol in the library."
    ),
)
"""``[property]`` of an nvdspreprocess config."""

PREPROCESS_MANDATORY_KEYS: Final = (
    "processing-width",
    "processing-height",
    "network-input-order",
    "network-input-shape",
    "network-color-format",
    "tensor-data-type",
    "tensor-name",
    "custom-lib-path",
    "custom-tensor-preparation-function",
    "scaling-filter",
    "scaling-pool-memory-type",
)
"""nvdspreprocess refuses to start without these ``[property]`` keys."""

PREPROCESS_GROUP_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("src-ids", _IL, minimum=-1, description="Source ids of this group; -1 = all sources."),
    KeySpec("custom-input-transformation-function", _S, description="Transformation symbol in the library."),
    KeySpec("process-on-roi", _B, description="Frame mode: process the ROIs below instead of full frames."),
    KeySpec("process-on-all-objects", _B, description="Object mode: process all objects."),
    KeySpec(
        ROI_PARAMS_KEY,
        _IL,
        minimum=0,
        length_multiple=4,
        description="ROIs of source <id>: left;top;width;height, repeated per ROI.",
    ),
    KeySpec("operate-on-class-ids", _IL, minimum=0, description="Object mode: only these classes."),
    *_object_size_keys("object mode"),
    KeySpec("draw-roi", _B, description="Draw the ROIs on the frames."),
    KeySpec("roi-color", _DL, minimum=0, maximum=1, length=4, description="ROI colour r;g;b;a."),
)
"""``[group-<N>]`` of an nvdspreprocess config. ``roi-params-src-<id>`` is a key pattern."""

_P = PREPROCESS_PROPERTY_KEYS
CCM_ALIGN_KEYS: Final[dict[str, KeySpec]] = _table(
    _P["enable"],
    _P["gpu-id"],
    _P["target-unique-ids"],
    _P["network-input-shape"],
    _P["tensor-data-type"],
    _P["tensor-name"],
    _P["tensor-buf-pool-size"],
    *(NVINFER_PROPERTY_KEYS[f"input-object-{b}-{d}"] for b in ("min", "max") for d in ("width", "height")),
    _P["unique-id"],
    _P["operate-on-gie-id"],
    _P["processing-width"],
    _P["processing-height"],
    _P["network-input-order"],
    _P["network-color-format"],
    _P["maintain-aspect-ratio"],
    _P["symmetric-padding"],
    _P["scaling-buf-pool-size"],
    _P["scaling-filter"],
    _P["scaling-pool-compute-hw"],
    _P["scaling-pool-memory-type"],
)


# --------------------------------------------------------------------------------------------------------------
# deepstream-app groups, as deepstream_app_config_parser.c and deepstream_config_file_parser.c read them.
# ``gpu-id`` is left out of the groups dsfleet renders it into itself (always 0: the container sees one GPU).

APP_OSD_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Draw boxes and text (nvdsosd)."),
    KeySpec("process-mode", _I, choices={0: "CPU", 1: "GPU"}, description="Where OSD draws."),
    KeySpec("border-width", _I, minimum=0, description="Box border width (px)."),
    KeySpec("text-size", _I, minimum=1, description="Label font size."),
    KeySpec("display-text", _B, description="Draw labels."),
    KeySpec("display-bbox", _B, description="Draw boxes."),
    KeySpec("text-color", _DL, length=4, minimum=0, maximum=1, description="Label colour r;g;b;a (0..1)."),
    KeySpec(
        "text-bg-color", _DL, length=4, minimum=0, maximum=1, description="Label background r;g;b;a (0..1)."
    ),
    KeySpec("font", _S, description="Label font name (e.g. Serif)."),
    KeySpec("show-clock", _B, getter=_I, description="Draw a clock."),
    KeySpec("clock-x-offset", _I, minimum=0, description="Clock position x (px)."),
    KeySpec("clock-y-offset", _I, minimum=0, description="Clock position y (px)."),
    KeySpec("clock-text-size", _I, minimum=1, description="Clock font size."),
    KeySpec("clock-color", _DL, length=4, minimum=0, maximum=1, description="Clock colour r;g;b;a (0..1)."),
    KeySpec("display-mask", _B, description="Draw instance-segmentation masks."),
    KeySpec("hw-blend-color-attr", _S, description="Jetson hardware blending attributes."),
    KeySpec("nvbuf-memory-type", _I, choices=_MEMORY_TYPES, description="Buffer memory type."),
)

APP_TRACKER_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Run nvtracker."),
    KeySpec("tracker-width", _I, minimum=32, description="Tracker frame width (multiple of 32 for NvDCF)."),
    KeySpec("tracker-height", _I, minimum=32, description="Tracker frame height (multiple of 32 for NvDCF)."),
    KeySpec("ll-lib-file", _S, path_kind=PathKind.MODEL, description="Low-level tracker library."),
    KeySpec("ll-config-file", _S, path_kind=PathKind.CONFIG, description="Low-level tracker config (YAML)."),
    KeySpec("display-tracking-id", _B, getter=_I, description="Show tracking ids on the OSD."),
    KeySpec("compute-hw", _I, choices=_COMPUTE_HW, description="Scaling hardware."),
    KeySpec("enable-batch-process", _B, description="Process the batch at once (low-level library)."),
    KeySpec("enable-past-frame", _B, description="Report past-frame data."),
    KeySpec("tracking-id-reset-mode", _I, minimum=0, maximum=3, description="When tracking ids reset."),
    KeySpec("tracking-surface-type", _I, minimum=0, description="Surface type to track on (360° cameras)."),
    KeySpec("user-meta-pool-size", _I, minimum=1, description="Tracker user-meta pool size."),
    KeySpec("sub-batches", _S, description="Sub-batches, e.g. 0,1;2,3."),
    KeySpec("sub-batch-err-recovery-trial-cnt", _I, minimum=-1, description="Retries of a failed sub-batch."),
    KeySpec("input-tensor-meta", _B, description="Use tensor meta from a preprocess GIE."),
    KeySpec("tensor-meta-gie-id", _I, minimum=0, description="GIE whose tensor meta the tracker uses."),
)

APP_TILED_DISPLAY_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec(
        "enable",
        _I,
        choices={0: "off", 1: "tile the sources", 2: "tile, with a parallel demuxer"},
        accepts_bool=True,
        description="Tile the sources into one frame (2: beside a demuxer, in parallel).",
    ),
    KeySpec("rows", _I, minimum=1, description="Tile rows."),
    KeySpec("columns", _I, minimum=1, description="Tile columns."),
    KeySpec("width", _I, minimum=1, description="Tiled frame width."),
    KeySpec("height", _I, minimum=1, description="Tiled frame height."),
    KeySpec("nvbuf-memory-type", _I, choices=_MEMORY_TYPES, description="Buffer memory type."),
    KeySpec("compute-hw", _I, choices=_COMPUTE_HW, description="Scaling hardware."),
    KeySpec("buffer-pool-size", _I, minimum=1, description="Output buffer pool size."),
    KeySpec("square-seq-grid", _B, description="Square grid in source order."),
)

SINK_TYPES: Final = {1: "Fake", 2: "EGL", 3: "File", 4: "RTSP streaming", 5: "Overlay", 6: "MsgConv+Broker"}

APP_SINK_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Create this sink."),
    KeySpec("type", _I, choices=SINK_TYPES, description="Sink type (2 and 5 need a display)."),
    KeySpec("sync", _I, minimum=0, maximum=1, description="Render in sync with the clock."),
    KeySpec("qos", _B, description="Generate QoS events."),
    KeySpec("source-id", _I, minimum=0, description="Source of a demuxed sink / broker sink."),
    KeySpec("container", _I, choices={1: "mp4", 2: "mkv"}, description="File container."),
    KeySpec("codec", _I, choices={1: "H264", 2: "H265", 3: "MPEG4"}, description="Encoder codec."),
    KeySpec("enc-type", _I, choices={0: "Hardware", 1: "Software"}, description="Encoder."),
    KeySpec("bitrate", _I, minimum=1, description="Encoder bit rate (bit/s)."),
    KeySpec("output-file", _S, path_kind=PathKind.OUTPUT, cwd_relative=True, description="File sink output."),
    KeySpec("rtsp-port", _I, minimum=1, maximum=65535, description="RTSP server port."),
    KeySpec("udp-port", _I, minimum=1, maximum=65535, description="UDP port of the RTSP stream."),
    KeySpec("msg-conv-config", _S, path_kind=PathKind.CONFIG, description="nvmsgconv config (type 6)."),
    KeySpec("msg-conv-payload-type", _I, minimum=0, description="Payload schema (0 full, 1 minimal, …)."),
    KeySpec(
        "msg-broker-proto-lib",
        _S,
        path_kind=PathKind.MODEL,
        cwd_relative=True,
        description="Broker protocol adapter (type 6).",
    ),
    KeySpec(
        "msg-broker-conn-str",
        _S,
        secret=True,
        description="Broker connection string, e.g. host;port (type 6); {secretRef: NAME} when it carries "
        "credentials (the whole string is the secret's password).",
    ),
    KeySpec("topic", _S, description="Broker topic (type 6)."),
    KeySpec("link-to-demux", _B, getter=_I, description="Link the sink to the demuxer's source-id output."),
    KeySpec("profile", _I, minimum=0, description="Encoder profile."),
    KeySpec("iframeinterval", _I, minimum=0, description="Encoder I-frame interval."),
    KeySpec("sw-preset", _I, minimum=0, description="Software encoder preset."),
    KeySpec("udp-buffer-size", _I, minimum=0, description="UDP buffer size (RTSP streaming)."),
    KeySpec("output-io-mode", _I, minimum=0, description="Encoder output io-mode."),
    KeySpec("copy-meta", _B, getter=_I, description="Copy metadata to the encoded stream."),
    KeySpec("color-range", _I, minimum=0, description="Colour range."),
    KeySpec("width", _I, minimum=0, description="Render/overlay width."),
    KeySpec("height", _I, minimum=0, description="Render/overlay height."),
    KeySpec("offset-x", _I, minimum=0, description="Overlay x offset."),
    KeySpec("offset-y", _I, minimum=0, description="Overlay y offset."),
    KeySpec("display-id", _I, minimum=0, description="Overlay display id."),
    KeySpec("overlay-id", _I, minimum=0, description="Overlay id."),
    KeySpec("conn-id", _I, minimum=0, description="DRM connector id."),
    KeySpec("plane-id", _I, minimum=0, description="DRM plane id."),
    KeySpec("set-mode", _B, getter=_I, description="DRM: set the display mode."),
    KeySpec("nvbuf-memory-type", _I, choices=_MEMORY_TYPES, description="Buffer memory type."),
    KeySpec("msg-conv-msg2p-lib", _S, path_kind=PathKind.MODEL, description="Custom payload library."),
    KeySpec("msg-conv-comp-id", _I, minimum=0, description="nvmsgconv component id."),
    KeySpec("msg-conv-frame-interval", _I, minimum=1, description="Frames between payloads."),
    KeySpec("msg-conv-msg2p-new-api", _B, description="Use the new nvmsgconv API."),
    KeySpec("msg-conv-dummy-payload", _B, description="Send dummy payloads."),
    KeySpec("multiple-payloads", _B, description="Several payloads per frame."),
    KeySpec(
        "debug-payload-dir", _S, path_kind=PathKind.OUTPUT, description="Write payloads to this directory."
    ),
    KeySpec(
        "msg-broker-config",
        _S,
        path_kind=PathKind.CONFIG,
        description="Broker adapter config (credentials go here).",
    ),
    KeySpec("msg-broker-comp-id", _I, minimum=0, description="nvmsgbroker component id."),
    KeySpec("new-api", _B, description="Use the new nvmsgbroker API."),
    KeySpec("sleep-time", _I, minimum=0, description="Broker worker sleep time (ms)."),
    KeySpec("disable-msgconv", _B, getter=_I, description="Broker sink without nvmsgconv."),
)

APP_MESSAGE_CONVERTER_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Run a standalone nvmsgconv."),
    KeySpec("msg-conv-config", _S, path_kind=PathKind.CONFIG, description="nvmsgconv config."),
    KeySpec("msg-conv-payload-type", _I, minimum=0, description="Payload schema."),
    KeySpec("msg-conv-msg2p-lib", _S, path_kind=PathKind.MODEL, description="Custom payload library."),
    KeySpec("msg-conv-comp-id", _I, minimum=0, description="Component id."),
    KeySpec(
        "debug-payload-dir", _S, path_kind=PathKind.OUTPUT, description="Write payloads to this directory."
    ),
    KeySpec("multiple-payloads", _B, description="Several payloads per frame."),
    KeySpec("msg-conv-msg2p-new-api", _B, description="Use the new nvmsgconv API."),
    KeySpec("msg-conv-frame-interval", _I, minimum=1, description="Frames between payloads."),
    KeySpec("msg-conv-dummy-payload", _B, description="Send dummy payloads."),
)

APP_MESSAGE_CONSUMER_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Consume cloud-to-device messages."),
    KeySpec(
        "proto-lib", _S, path_kind=PathKind.MODEL, cwd_relative=True, description="Broker protocol adapter."
    ),
    KeySpec(
        "conn-str",
        _S,
        secret=True,
        description="Broker connection string (host;port); {secretRef: NAME} when it carries credentials "
        "(the whole string is the secret's password).",
    ),
    KeySpec(
        "config-file", _S, path_kind=PathKind.CONFIG, description="Adapter config (credentials go here)."
    ),
    KeySpec("subscribe-topic-list", _SL, description="Topics to subscribe to."),
    KeySpec("sensor-list-file", _S, path_kind=PathKind.CONFIG, description="Sensor id ↔ name list."),
)

APP_NVDS_ANALYTICS_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Run nvdsanalytics."),
    KeySpec("config-file", _S, path_kind=PathKind.CONFIG, description="nvdsanalytics config."),
)

APP_IMG_SAVE_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Save object/frame images."),
    KeySpec(
        "output-folder-path", _S, path_kind=PathKind.OUTPUT, cwd_relative=True, description="Where images go."
    ),
    KeySpec("save-img-cropped-obj", _B, getter=_D, description="Save cropped objects."),
    KeySpec("save-img-full-frame", _B, getter=_D, description="Save full frames."),
    KeySpec(
        "frame-to-skip-rules-path",
        _S,
        path_kind=PathKind.CONFIG,
        cwd_relative=True,
        description="Frame skipping rules (CSV).",
    ),
    KeySpec("second-to-skip-interval", _D, minimum=0, description="Seconds between saves of an object."),
    KeySpec("min-confidence", _D, minimum=0, maximum=1, description="Lowest confidence saved."),
    KeySpec("max-confidence", _D, minimum=0, maximum=1, description="Highest confidence saved."),
    KeySpec("min-box-width", _I, minimum=0, description="Smallest box width saved."),
    KeySpec("min-box-height", _I, minimum=0, description="Smallest box height saved."),
)

SOURCE_TYPES: Final = {
    1: "CameraV4L2",
    2: "URI",
    3: "MultiURI",
    4: "RTSP",
    5: "CSI (Jetson)",
    6: "Audio WAV",
    7: "Audio URI",
    8: "ALSA",
    9: "IPC",
}

APP_SOURCE_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Create the sources."),
    KeySpec("type", _I, choices=SOURCE_TYPES, description="Source type (with a source list, from each URI)."),
    KeySpec("num-sources", _I, minimum=1, maximum=1024, description="MultiURI: copies of the source."),
    KeySpec("cudadec-memtype", _I, choices={0: "Device", 1: "Pinned", 2: "Unified"}, description="Decoder memory."),
    KeySpec("nvbuf-memory-type", _I, choices=_MEMORY_TYPES, description="Buffer memory type."),
    KeySpec("latency", _I, minimum=0, description="RTSP jitterbuffer latency (ms)."),
    KeySpec("drop-frame-interval", _I, minimum=0, description="Decode every Nth frame (0 = all)."),
    KeySpec("num-decode-surfaces", _I, minimum=1, description="Decoder surfaces."),
    KeySpec("num-extra-surfaces", _I, minimum=0, description="Extra decoder surfaces."),
    KeySpec("intra-decode-enable", _B, getter=_I, description="Decode only I-frames."),
    KeySpec("low-latency-decode", _B, getter=_I, description="Low-latency decode mode."),
    KeySpec("select-rtp-protocol", _I, choices={0: "auto (UDP, then TCP)", 4: "TCP only"},
            description="RTSP transport."),
    KeySpec("rtsp-reconnect-interval-sec", _I, minimum=0, description="Reconnect after N s without data (0 = off)."),
    KeySpec("rtsp-reconnect-attempts", _I, minimum=-1, description="Reconnect attempts (-1 = forever)."),
    KeySpec("udp-buffer-size", _I, minimum=0, description="RTSP UDP buffer size (bytes)."),
    KeySpec("camera-width", _I, minimum=1, description="Camera capture width."),
    KeySpec("camera-height", _I, minimum=1, description="Camera capture height."),
    KeySpec("camera-fps-n", _I, minimum=1, description="Camera frame-rate numerator."),
    KeySpec("camera-fps-d", _I, minimum=1, description="Camera frame-rate denominator."),
    KeySpec("camera-v4l2-dev-node", _I, minimum=0, description="USB camera: N of /dev/videoN (from the Camera)."),
    KeySpec("camera-csi-sensor-id", _I, minimum=0, description="CSI camera: the sensor id (from the Camera)."),
    KeySpec("video-format", _S, description="Camera video format (e.g. NV12)."),
    KeySpec("smart-record", _I, choices={0: "off", 1: "cloud events", 2: "cloud events and local"},
            description="Smart recording trigger."),
    KeySpec("smart-rec-dir-path", _S, path_kind=PathKind.OUTPUT, cwd_relative=True, description="Smart recording directory."),
    KeySpec("smart-rec-file-prefix", _S, description="Smart recording file prefix."),
    KeySpec("smart-rec-cache", _I, minimum=0, description="Smart recording cache (s)."),
    KeySpec("smart-rec-container", _I, choices={0: "mp4", 1: "mkv"}, description="Smart recording container."),
    KeySpec("smart-rec-start-time", _I, minimum=0, description="Seconds before the event to record."),
    KeySpec("smart-rec-default-duration", _I, minimum=0, description="Default recording duration (s)."),
    KeySpec("smart-rec-duration", _I, minimum=0, description="Recording duration (s)."),
    KeySpec("smart-rec-interval", _I, minimum=0, description="Seconds between recordings."),
    KeySpec("extract-sei-type5-data", _B, getter=_I, description="Extract SEI type 5 user data."),
)  # fmt: skip
"""``[sourceN]`` / ``[source-attr-all]`` keys (S70 ``deepstream_config_file_parser.c`` ``parse_source``); ``gpu-id``
is rendered 0, ``uri`` and ``camera-id`` come from the Camera manifests."""

SOURCE_LIST_DERIVED_KEYS: Final = ("num-source-bins", "list", "sensor-id-list")
"""``[source-list]`` keys dsfleet renders from the instance's cameras (never written in a manifest)."""

APP_SOURCE_LIST_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("num-source-bins", _I, minimum=0, maximum=1024, description="Number of URIs in list (rendered)."),
    KeySpec("list", _SL, max_length=1024, description="The source URIs (rendered from the cameras)."),
    KeySpec("sensor-id-list", _SL, max_length=1024, description="Sensor ids (rendered: the cameras' cameraId)."),
    KeySpec("sensor-name-list", _SL, max_length=1024,
            description="Sensor names, one per camera (default: the Camera manifests' names)."),
    KeySpec("use-nvmultiurisrcbin", _B, since="6.2",
            description="One nvmultiurisrcbin for all sources (REST API to add/remove streams)."),
    KeySpec("max-batch-size", _I, minimum=1, maximum=1024, since="6.2",
            description="nvmultiurisrcbin: most sources at once (streammux batch)."),
    KeySpec("http-ip", _S, since="6.2", description="nvmultiurisrcbin REST server address."),
    KeySpec("http-port", _S, since="6.2", description="nvmultiurisrcbin REST server port (a string, e.g. 9000)."),
    KeySpec("sgie-batch-size", _I, minimum=1, maximum=1024, description="Batch size of every secondary GIE."),
    KeySpec("stream-name-display", _B, description="Show each stream's sensor name on the OSD."),
    KeySpec("low-latency-mode", _B, getter=_I, description="nvmultiurisrcbin low-latency decode."),
)  # fmt: skip
"""``[source-list]`` (nvmultiurisrcbin, DS 6.2+; S70 ``parse_source_list``); ``list``, ``num-source-bins`` and
``sensor-id-list`` are rendered from the cameras (:data:`SOURCE_LIST_DERIVED_KEYS`)."""

BBOX_COLOR_KEYS: Final = ("bbox-border-color<N>", "bbox-bg-color<N>")
"""How the per-class OSD colour keys of a GIE group are spelled in the tables (``bbox-border-color0``, …)."""
BBOX_COLOR_RE: Final = re.compile(r"^(bbox-border-color|bbox-bg-color)([0-9]+)$")

APP_GIE_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Create this GIE."),
    KeySpec("config-file", _S, path=True, description="The GIE's own config (mandatory; the profile's file)."),
    KeySpec("gie-unique-id", _I, minimum=1, description="ID stamped on metadata; unique in a pipeline."),
    KeySpec("operate-on-gie-id", _I, minimum=-1, description="Secondary: objects from this gie-unique-id."),
    KeySpec("operate-on-class-ids", _IL, minimum=0, description="Secondary: objects of these classes."),
    KeySpec("batch-size", _I, minimum=1, maximum=1024, description="Frames/objects per batch."),
    KeySpec("interval", _I, minimum=0, description="Batches to skip between inferences."),
    KeySpec("model-engine-file", _S, path_kind=PathKind.MODEL, description="Serialized TensorRT engine."),
    KeySpec("labelfile-path", _S, path_kind=PathKind.CONFIG, description="Labels deepstream-app reads itself (nvinfer does not get it)."),
    KeySpec("nvbuf-memory-type", _I, choices=_MEMORY_TYPES, description="Buffer memory type."),
    KeySpec("plugin-type", _I, choices={0: "nvinfer", 1: "nvinferserver"}, description="Inference plugin."),
    KeySpec("input-tensor-meta", _B, description="Infer on tensors prepared by nvdspreprocess."),
    KeySpec("infer-raw-output-dir", _S, path_kind=PathKind.OUTPUT, description="Dump raw inference output here."),
    KeySpec("bbox-border-color<N>", _DL, length=4, minimum=0, maximum=1,
            description="OSD box colour r;g;b;a (0..1) of class N (app only)."),
    KeySpec("bbox-bg-color<N>", _DL, length=4, minimum=0, maximum=1,
            description="OSD box fill r;g;b;a (0..1) of class N (app only)."),
)  # fmt: skip
"""``[primary-gie]`` / ``[secondary-gie<N>]`` of the app config (S70 ``parse_gie``): app-level keys override the
GIE file's. The keys nvinfer also reads are set in the profile (``properties``) or ``spec.overrides`` and
rendered into both files (:data:`APP_GIE_SHARED_KEYS`); the others in ``app.gies.<name>``."""

APP_GIE_SHARED_KEYS: Final = (
    "config-file", "gie-unique-id", "operate-on-gie-id", "operate-on-class-ids", "batch-size", "interval",
    "model-engine-file",
)  # fmt: skip
"""The keys of a GIE group deepstream-app sets on nvinfer (``deepstream_primary_gie_bin.c``,
``deepstream_secondary_gie_bin.c``: ``unique-id``, ``infer-on-gie-id``, ``infer-on-class-ids``, ``batch-size``,
``interval``, ``model-engine-file``; ``gpu-id`` and ``input-tensor-meta`` too, and ``process-mode`` by the group),
so the profile's GIE properties hold them. ``labelfile-path`` is not one: deepstream-app reads it itself."""

APP_APPLICATION_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable-perf-measurement", _B, getter=_I, description="Print **PERF: lines (FPS per source)."),
    KeySpec("perf-measurement-interval-sec", _I, minimum=1, description="Seconds between **PERF: lines."),
    KeySpec("gie-kitti-output-dir", _S, path_kind=PathKind.OUTPUT, description="KITTI output of the GIEs."),
    KeySpec(
        "kitti-track-output-dir", _S, path_kind=PathKind.OUTPUT, description="KITTI output of the tracker."
    ),
    KeySpec("reid-track-output-dir", _S, path_kind=PathKind.OUTPUT, description="Re-identification output."),
    KeySpec("terminated-track-output-dir", _S, path_kind=PathKind.OUTPUT, description="Terminated tracks."),
    KeySpec("shadow-track-output-dir", _S, path_kind=PathKind.OUTPUT, description="Shadow tracks."),
    KeySpec("global-gpu-id", _I, minimum=0, description="GPU of every component without its own gpu-id."),
)
"""``[application]`` (S70 ``parse_app``); ``global-gpu-id`` is rendered as the instance's ``spec.gpu``."""

APP_STREAMMUX_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("width", _I, minimum=1, maximum=16384, description="Output width (required by the legacy mux)."),
    KeySpec(
        "height", _I, minimum=1, maximum=16384, description="Output height (required by the legacy mux)."
    ),
    KeySpec("batch-size", _I, minimum=1, maximum=1024, description="Frames per batch (the camera count)."),
    KeySpec("buffer-pool-size", _I, minimum=1, maximum=1024, description="Output buffer pool size."),
    KeySpec("nvbuf-memory-type", _I, choices=_MEMORY_TYPES, description="Buffer memory type."),
    KeySpec(
        "batched-push-timeout",
        _I,
        minimum=-1,
        description="Microseconds to wait for a full batch (-1: wait).",
    ),
    KeySpec("live-source", _B, getter=_I, description="The sources are live (RTSP, cameras)."),
    KeySpec("enable-padding", _B, getter=_I, description="Keep the aspect ratio by padding."),
    KeySpec("attach-sys-ts-as-ntp", _B, getter=_I, description="Attach the system time as NTP timestamp."),
    KeySpec("config-file", _S, path_kind=PathKind.CONFIG, description="The new nvstreammux's config."),
    KeySpec("sync-inputs", _B, getter=_I, description="Synchronise the inputs (new nvstreammux)."),
    KeySpec("frame-num-reset-on-eos", _B, description="Reset frame numbers at end of stream."),
    KeySpec("frame-num-reset-on-stream-reset", _B, description="Reset frame numbers on a stream reset."),
    KeySpec("async-process", _B, description="Process asynchronously."),
    KeySpec("drop-pipeline-eos", _B, description="Keep running when every source has ended."),
    KeySpec("num-surfaces-per-frame", _I, minimum=1, description="Surfaces per frame (dewarper)."),
)
"""``[streammux]`` (S70 ``parse_streammux``; ``frame-duration`` and ``max-latency`` are 64-bit and kept
verbatim). ``batch-size`` is the instance's ``streammux.batch-size`` (``auto``: the camera count)."""

APP_SECONDARY_PRE_PROCESS_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Run this nvdspreprocess on objects."),
    KeySpec("operate-on-gie-id", _I, minimum=-1, description="Objects of this GIE (set on the element)."),
    KeySpec("config-file", _S, path=True, description="The nvdspreprocess config (the profile's file)."),
)
"""``[secondary-pre-process<N>]`` (S70 ``parse_preprocess``): created only when ``operate-on-gie-id`` is the
primary GIE's ``gie-unique-id``; from a preprocess GIE with ``process-on-frame: false``."""

APP_PRE_PROCESS_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("enable", _B, getter=_I, description="Run nvdspreprocess."),
    KeySpec("config-file", _S, path=True, description="The nvdspreprocess config (the profile's file)."),
)
"""``[pre-process]`` of the app config (S70 ``parse_preprocess``)."""

APP_TESTS_KEYS: Final[dict[str, KeySpec]] = _table(
    KeySpec("file-loop", _B, getter=_I, description="Loop file sources."),
    KeySpec("pipeline-recreate-sec", _I, minimum=0, description="Recreate the pipeline every N seconds."),
)
"""``[property]`` of the older CCM app's own face-align plugin config (nvdspreprocess-like keys, a custom reader)."""

PROPERTY_TABLES: Final[dict[GieFormat, dict[str, KeySpec]]] = {
    GieFormat.NVINFER: NVINFER_PROPERTY_KEYS,
    GieFormat.NVDSPREPROCESS: PREPROCESS_PROPERTY_KEYS,
    GieFormat.CCM_ALIGN: CCM_ALIGN_KEYS,
}


def spec_for(table: Mapping[str, KeySpec], key: str) -> KeySpec | None:
    """The spec of ``key`` in ``table``; ``roi-params-src-3`` finds the ``roi-params-src-<id>`` pattern."""
    spec = table.get(key)
    if spec is None and ROI_PARAMS_RE.match(key) and ROI_PARAMS_KEY in table:
        return table[ROI_PARAMS_KEY]
    bbox = BBOX_COLOR_RE.match(key) if spec is None else None
    if bbox is not None:
        return table.get(f"{bbox.group(1)}<N>")
    return spec


# --------------------------------------------------------------------------------------------------------------
# Value validation (shared by the models; messages never contain the input)


def _err(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def range_text(spec: KeySpec) -> str:
    """What the value (or each list item) must be, in words; ``""`` when anything goes."""
    if spec.choices:
        return f"one of {spec.choices_text()}"
    low, high = spec.minimum, spec.maximum
    if low is not None and high is not None:
        return f"between {_num(low)} and {_num(high)}"
    if low is not None:
        return f"greater than {_num(low)}" if spec.exclusive_minimum else f"at least {_num(low)}"
    if high is not None:
        return f"at most {_num(high)}"
    return ""


def _in_range(spec: KeySpec, value: float) -> bool:
    if spec.choices:
        return int(value) in spec.choices
    if spec.minimum is not None and (
        value < spec.minimum or (spec.exclusive_minimum and value == spec.minimum)
    ):
        return False
    return spec.maximum is None or value <= spec.maximum


def _check_int(spec: KeySpec, value: object, prefix: str = "") -> int:
    if type(value) is not int:
        raise _err("ds_int", f"{prefix}must be an integer")
    if not INT32_MIN <= value <= INT32_MAX:
        raise _err("ds_range", f"{prefix}must fit a 32-bit signed integer")
    if not _in_range(spec, value):
        raise _err("ds_choice" if spec.choices else "ds_range", f"{prefix}must be {range_text(spec)}")
    return value


def _check_double(spec: KeySpec, value: object, prefix: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _err("ds_double", f"{prefix}must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise _err("ds_double", f"{prefix}must be a finite number")
    if not _in_range(spec, number):
        raise _err("ds_range", f"{prefix}must be {range_text(spec)}")
    return number


def _check_string(value: object, prefix: str = "") -> str:
    if not isinstance(value, str):
        raise _err("ds_string", f"{prefix}must be a string")
    if "\x00" in value:
        raise _err("ds_string", f"{prefix}must not contain a NUL character")
    return value


def _check_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise _err("ds_bool", "must be a boolean: true, false, 1 or 0")


_PLAIN_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
_PLAIN_DOUBLE_RE: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _split_list_string(text: str) -> list[str]:
    """``"3; 112;112;"`` → ``["3", "112", "112"]`` (a trailing ``;`` and spaces around items are fine)."""
    items = [item.strip(" \t") for item in text.split(";")]
    if items and items[-1] == "":
        items.pop()
    return items


def _list_item(spec: KeySpec, item: object, index: int, from_string: bool, auto_first: bool) -> object:
    prefix = f"item {index + 1}: "
    kind = spec.kind.item_kind
    if auto_first and index == 0 and item == AUTO:
        return AUTO
    if from_string:
        assert isinstance(item, str)
        if item == "":
            raise _err("ds_list", f"{prefix}is empty")
        if kind is ValueKind.INT:
            if not _PLAIN_INT_RE.fullmatch(item):
                raise _err("ds_int", f"{prefix}must be an integer")
            item = int(item)
        elif kind is ValueKind.DOUBLE:
            if not _PLAIN_DOUBLE_RE.fullmatch(item):
                raise _err("ds_double", f"{prefix}must be a plain decimal number")
            item = float(item)
    if kind is ValueKind.INT:
        return _check_int(spec, item, prefix)
    if kind is ValueKind.DOUBLE:
        return _check_double(spec, item, prefix)
    return _check_string(item, prefix)


def _check_list(spec: KeySpec, value: object, auto_first: bool) -> tuple[object, ...]:
    if isinstance(value, str):
        raw_items: list[object] = list(_split_list_string(value))
        from_string = True
    elif isinstance(value, list | tuple):
        raw_items = list(value)
        from_string = False
    else:
        raise _err("ds_list", "must be a list or a ';'-separated string")
    items = tuple(_list_item(spec, item, i, from_string, auto_first) for i, item in enumerate(raw_items))
    if spec.length is not None and len(items) != spec.length:
        raise _err("ds_length", f"must have exactly {spec.length} items")
    if spec.max_length is not None and len(items) > spec.max_length:
        raise _err("ds_length", f"must have at most {spec.max_length} items")
    if spec.length_multiple is not None and len(items) % spec.length_multiple:
        raise _err("ds_length", f"must have a multiple of {spec.length_multiple} items")
    return items


def check_engine_template(value: str) -> str:
    """``auto`` or a name whose ``{…}`` placeholders are all in ``ENGINE_TEMPLATE_FIELDS`` (no format specs)."""
    if value == AUTO:
        return value
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError:
        raise _err(
            "ds_template", "has an unmatched '{' or '}' (placeholders: {batch}, {gpu}, {precision})"
        ) from None
    for _text, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in ENGINE_TEMPLATE_FIELDS or spec or conversion:
            raise _err("ds_template", "may use only the placeholders {batch}, {gpu} and {precision}")
    return value


@dataclass(frozen=True)
class SecretValue:
    """A key's whole value taken from a secret on the agent host: ``{secretRef: NAME, key: password}`` (like an env
    ``secretRef``); rendered as the placeholder ``${secret:NAME:KEY}`` (``dsfleet.schemas.placeholders``)."""

    secretRef: str
    key: str = "password"


_SECRET_REF_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _check_secret_value(value: Mapping[Any, Any]) -> SecretValue:
    unknown = sorted(str(k) for k in value if k not in ("secretRef", "key"))
    if unknown:
        raise _err("ds_secret", f"a secret value takes secretRef and key (not {', '.join(unknown)})")
    ref = value.get("secretRef")
    if not isinstance(ref, str) or len(ref) > 63 or not _SECRET_REF_RE.fullmatch(ref):
        raise _err("ds_secret", "secretRef must name a secret (a DNS label: a-z, 0-9, '-')")
    key = value.get("key", "password")
    if key not in SECRET_FIELDS:
        raise _err("ds_secret", f"key must be one of {', '.join(SECRET_FIELDS)}")
    return SecretValue(ref, key)


def validate_value(spec: KeySpec, value: object, *, auto: bool = False) -> object:
    """Validate and normalise one value for ``spec`` (raises ``PydanticCustomError``).

    ``auto`` allows dsfleet's ``"auto"``: the whole value for an INT, the first item of an INT_LIST; for a
    STRING (``model-engine-file``) ``auto`` or an engine-name template (:func:`check_engine_template`).
    """
    if value is None:
        return None
    if spec.secret and isinstance(value, SecretValue):
        return value
    if spec.secret and isinstance(value, Mapping):
        return _check_secret_value(value)
    kind = spec.kind
    if kind is ValueKind.INT:
        if auto and value == AUTO:
            return AUTO
        if spec.accepts_bool and isinstance(value, bool):
            return int(value)
        try:
            return _check_int(spec, value)
        except PydanticCustomError as exc:
            if auto and exc.type == "ds_int":
                raise _err("ds_int", 'must be an integer or "auto"') from None
            raise
    if kind is ValueKind.DOUBLE:
        return _check_double(spec, value)
    if kind is ValueKind.BOOL:
        return _check_bool(value)
    if kind is ValueKind.STRING:
        text = _check_string(value)
        return check_engine_template(text) if auto else text
    return _check_list(spec, value, auto)


# --------------------------------------------------------------------------------------------------------------
# JSON Schema of one key


def _number_schema(spec: KeySpec, json_type: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": json_type}
    if spec.choices:
        schema["enum"] = list(spec.choices)
        schema["enumDescriptions"] = [f"{k}: {v}" for k, v in spec.choices.items()]
        return schema
    if spec.minimum is not None:
        schema["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
    if spec.maximum is not None:
        schema["maximum"] = spec.maximum
    if json_type == "integer":
        schema.setdefault("minimum", INT32_MIN)
        schema.setdefault("maximum", INT32_MAX)
    return schema


def key_json_schema(spec: KeySpec, *, auto: bool = False) -> dict[str, Any]:
    """The JSON Schema of one key's value (without its description)."""
    kind = spec.kind
    if kind is ValueKind.INT:
        schema = _number_schema(spec, "integer")
        if spec.accepts_bool:
            return {"anyOf": [schema, {"type": "boolean"}]}
        return {"anyOf": [schema, {"const": AUTO}]} if auto else schema
    if kind is ValueKind.DOUBLE:
        return _number_schema(spec, "number")
    if kind is ValueKind.BOOL:
        return {"anyOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]}
    if kind is ValueKind.STRING and spec.secret:
        ref = {
            "type": "object",
            "properties": {
                "secretRef": {"type": "string", "pattern": _SECRET_REF_RE.pattern, "maxLength": 63},
                "key": {"enum": list(SECRET_FIELDS), "default": "password"},
            },
            "required": ["secretRef"],
            "additionalProperties": False,
        }
        return {"anyOf": [{"type": "string"}, ref]}
    if kind is ValueKind.STRING:
        return {"type": "string"}
    item_kind = kind.item_kind
    if item_kind is ValueKind.INT:
        item: dict[str, Any] = _number_schema(spec, "integer")
    elif item_kind is ValueKind.DOUBLE:
        item = _number_schema(spec, "number")
    else:
        item = {"type": "string"}
    array: dict[str, Any] = {"type": "array"}
    if auto:
        array["prefixItems"] = [{"anyOf": [item, {"const": AUTO}]}]
    array["items"] = item
    if spec.length is not None:
        array["minItems"] = array["maxItems"] = spec.length
    if spec.max_length is not None:
        array["maxItems"] = spec.max_length
    return {"anyOf": [array, {"type": "string", "description": "';'-separated items"}]}


def key_description(spec: KeySpec) -> str:
    parts = [spec.description.rstrip(".") + "." if spec.description else f"DeepStream key {spec.name}."]
    parts.append(f"GLib type: {spec.kind.value}.")
    if spec.getter is ValueKind.INT and spec.kind is ValueKind.BOOL:
        parts.append(
            "deepstream-app reads it as an integer: 0 is off, any other integer on (not true/false)."
        )
    elif spec.getter is not None:
        parts.append(f"deepstream-app reads it as a {spec.getter.value}.")
    if spec.accepts_bool:
        parts.append("true/false are taken as 1/0.")
    if spec.is_path and spec.cwd_relative:
        parts.append("A path; DeepStream does not resolve it against the config file's directory.")
    elif spec.is_path:
        parts.append("A path, resolved relative to the config file's directory.")
    if spec.since:
        parts.append(f"Needs DeepStream {spec.since} or later.")
    if spec.deprecated:
        parts.append(f"Deprecated: use {spec.deprecated}.")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------------------
# Models


class DeepStreamKeys(BaseModel):
    """Base of the generated key models: frozen, unknown keys rejected, fields by DeepStream spelling."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        protected_namespaces=(),
        hide_input_in_errors=True,
    )

    def values_by_key(self) -> dict[str, Any]:
        """The set keys, DeepStream spelling, in table order (``model_dump(by_alias=True, exclude_none=True)``)."""
        return self.model_dump(by_alias=True, exclude_none=True)


def _field_name(key: str) -> str:
    return key.replace("-", "_").replace("<", "").replace(">", "")


def _field_for(spec: KeySpec, auto: bool, default: Any = None) -> tuple[Any, Any]:
    def validator(value: object) -> object:
        return validate_value(spec, value, auto=auto)

    # A before-validator on Any (not a plain one): the value the function returns is kept as is either way, but
    # a plain validator also makes every dump call back into Python for each field (three times slower dumps)
    annotated = Annotated[
        Any,
        BeforeValidator(validator),
        WithJsonSchema(key_json_schema(spec, auto=auto)),
    ]
    extra: dict[str, Any] = {}
    if spec.deprecated:
        extra["deprecated"] = True
    if spec.since:
        extra["x-deepstream-since"] = spec.since
    return (
        annotated,
        Field(
            default=default,
            alias=spec.name,
            title=spec.name,
            description=key_description(spec),
            json_schema_extra=extra or None,
        ),
    )


def _build(
    name: str,
    table: Mapping[str, KeySpec],
    doc: str,
    base: type[DeepStreamKeys] = DeepStreamKeys,
    auto_keys: frozenset[str] = frozenset(),
    defaults: Mapping[str, Any] | None = None,
) -> type[DeepStreamKeys]:
    """``defaults``: keys that have a dsfleet default (rendered unless set to another value)."""
    given = defaults or {}
    fields: dict[str, Any] = {
        _field_name(key): _field_for(spec, key in auto_keys, given.get(key)) for key, spec in table.items()
    }
    model = create_model(name, __base__=base, __module__=__name__, __doc__=doc, **fields)
    return model


class _RoiParamsGroup(DeepStreamKeys):
    """Moves ``roi-params-src-<id>`` keys into one mapping field on input and back out on dump."""

    @model_validator(mode="before")
    @classmethod
    def _collect_roi_params(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        if ROI_PARAMS_KEY in data:
            raise _err("ds_key", f"write {ROI_PARAMS_KEY} with a source id, e.g. roi-params-src-0")
        out: dict[str, Any] = {}
        rois: dict[int, Any] = {}
        for key, value in data.items():
            match = ROI_PARAMS_RE.match(key) if isinstance(key, str) else None
            if match:
                rois[int(match.group(1))] = value
            else:
                out[key] = value
        if rois:
            out[ROI_PARAMS_KEY] = rois
        return out

    @model_serializer(mode="wrap")
    def _expand_roi_params(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if not isinstance(data, dict):  # pragma: no cover - pydantic always gives a dict here
            return data  # type: ignore[no-any-return]
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in (ROI_PARAMS_KEY, _field_name(ROI_PARAMS_KEY)):
                if value is not None:
                    for source_id in sorted(value, key=int):
                        out[f"roi-params-src-{source_id}"] = value[source_id]
            else:
                out[key] = value
        return out


def _roi_field_validator(spec: KeySpec) -> Callable[[object], object]:
    def validate(value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise _err("ds_roi", "must map source ids to ROI lists")
        result: dict[int, object] = {}
        for source_id, rois in value.items():
            if isinstance(source_id, bool) or not isinstance(source_id, int | str):
                raise _err("ds_roi", "source ids must be integers")
            sid = int(source_id)
            try:
                result[sid] = _check_list(spec, rois, False)
            except PydanticCustomError as exc:
                raise _err(exc.type, f"roi-params-src-{sid}: {exc.message()}") from None
        return result

    return validate


def _build_preprocess_group() -> type[DeepStreamKeys]:
    fields: dict[str, Any] = {}
    for key, spec in PREPROCESS_GROUP_KEYS.items():
        if key == ROI_PARAMS_KEY:
            fields[_field_name(key)] = (
                Annotated[Any, BeforeValidator(_roi_field_validator(spec)), WithJsonSchema({})],
                Field(default=None, alias=key),
            )
        else:
            fields[_field_name(key)] = _field_for(spec, False)

    def schema_extra(schema: dict[str, Any]) -> None:
        schema.get("properties", {}).pop(ROI_PARAMS_KEY, None)
        roi = PREPROCESS_GROUP_KEYS[ROI_PARAMS_KEY]
        value_schema = key_json_schema(roi)
        value_schema["description"] = key_description(roi)
        schema["patternProperties"] = {ROI_PARAMS_RE.pattern: value_schema}

    base = type(
        "_PreprocessGroupBase",
        (_RoiParamsGroup,),
        {"model_config": ConfigDict(json_schema_extra=schema_extra), "__module__": __name__},
    )
    return create_model(
        "PreprocessGroup",
        __base__=base,
        __module__=__name__,
        __doc__="A ``[group-<N>]`` of an nvdspreprocess config (``roi-params-src-<id>`` keys allowed).",
        **fields,
    )


class _BboxColorGroup(DeepStreamKeys):
    """Moves ``bbox-border-color<N>`` / ``bbox-bg-color<N>`` keys into two mappings (class id → colour) on input and
    back out, by class id, on dump."""

    @model_validator(mode="before")
    @classmethod
    def _collect_colors(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        out: dict[str, Any] = {}
        colors: dict[str, dict[int, Any]] = {}
        for key, value in data.items():
            if key in BBOX_COLOR_KEYS:
                raise _err("ds_key", f"write {key} with a class id, e.g. {key[:-3]}0")
            if key in APP_GIE_SHARED_KEYS:
                raise _err(
                    "ds_key",
                    f"{key} is set in the profile's GIE properties or the instance's spec.overrides (dsfleet "
                    "writes it to the app group and the GIE file alike)"
                    if key != "config-file"
                    else "config-file is the profile GIE's file",
                )
            match = BBOX_COLOR_RE.match(key) if isinstance(key, str) else None
            if match:
                colors.setdefault(f"{match.group(1)}<N>", {})[int(match.group(2))] = value
            else:
                out[key] = value
        out.update(colors)
        return out

    @model_serializer(mode="wrap")
    def _expand_colors(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if not isinstance(data, dict):  # pragma: no cover - pydantic always gives a dict here
            return data  # type: ignore[no-any-return]
        out: dict[str, Any] = {}
        for key, value in data.items():
            pattern = next((p for p in BBOX_COLOR_KEYS if key in (p, _field_name(p))), None)
            if pattern is None:
                out[key] = value
            elif value is not None:
                for class_id in sorted(value, key=int):
                    out[f"{pattern[:-3]}{class_id}"] = value[class_id]
        return out


def _color_field_validator(spec: KeySpec) -> Callable[[object], object]:
    def validate(value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, Mapping):  # pragma: no cover - the before-validator builds the mapping
            raise _err("ds_color", "must map class ids to colours")
        result: dict[int, object] = {}
        for class_id, color in value.items():
            cid = int(class_id)
            try:
                result[cid] = _check_list(spec, color, False)
            except PydanticCustomError as exc:
                raise _err(exc.type, f"{spec.name[:-3]}{cid}: {exc.message()}") from None
        return result

    return validate


def _build_app_gie() -> type[DeepStreamKeys]:
    fields: dict[str, Any] = {}
    for key, spec in APP_GIE_KEYS.items():
        if key in APP_GIE_SHARED_KEYS:
            continue
        if key in BBOX_COLOR_KEYS:
            fields[_field_name(key)] = (
                Annotated[Any, BeforeValidator(_color_field_validator(spec)), WithJsonSchema({})],
                Field(default=None, alias=key),
            )
        else:
            fields[_field_name(key)] = _field_for(spec, False)

    def schema_extra(schema: dict[str, Any]) -> None:
        patterns: dict[str, Any] = {}
        for key in BBOX_COLOR_KEYS:
            schema.get("properties", {}).pop(key, None)
            value_schema = key_json_schema(APP_GIE_KEYS[key])
            value_schema["description"] = key_description(APP_GIE_KEYS[key])
            patterns[f"^{key[:-3]}[0-9]+$"] = value_schema
        schema["patternProperties"] = patterns

    base = type(
        "_AppGieBase",
        (_BboxColorGroup,),
        {"model_config": ConfigDict(json_schema_extra=schema_extra), "__module__": __name__},
    )
    return create_model(
        "AppGie",
        __base__=base,
        __module__=__name__,
        __doc__="App-level keys of a ``[primary-gie]`` / ``[secondary-gie<N>]`` group that nvinfer does not read "
        "(``bbox-border-color<N>`` with a class id).",
        **fields,
    )


if TYPE_CHECKING:
    # mypy sees the generated models as plain key models; build them with ``model_validate``.
    class NvinferProperties(DeepStreamKeys): ...

    class ClassAttrs(DeepStreamKeys): ...

    class PreprocessProperties(DeepStreamKeys): ...

    class PreprocessGroup(DeepStreamKeys): ...

    class CcmAlignProperties(DeepStreamKeys): ...

    class AppOsd(DeepStreamKeys): ...

    class AppTracker(DeepStreamKeys): ...

    class AppTiledDisplay(DeepStreamKeys): ...

    class AppSink(DeepStreamKeys): ...

    class AppMessageConverter(DeepStreamKeys): ...

    class AppMessageConsumer(DeepStreamKeys): ...

    class AppNvdsAnalytics(DeepStreamKeys): ...

    class AppImgSave(DeepStreamKeys): ...

    class AppTests(DeepStreamKeys): ...

    class AppSourceList(DeepStreamKeys): ...

    class AppSourceAttrAll(DeepStreamKeys): ...

    class AppGie(DeepStreamKeys): ...

    class AppPreProcess(DeepStreamKeys): ...

else:
    NvinferProperties = _build(
        "NvinferProperties",
        NVINFER_PROPERTY_KEYS,
        "The ``[property]`` group of an nvinfer config (``batch-size`` and ``model-engine-file`` may be "
        "``auto``).",
        auto_keys=frozenset({"batch-size", "model-engine-file"}),
    )
    ClassAttrs = _build(
        "ClassAttrs", NVINFER_CLASS_ATTRS_KEYS, "A ``[class-attrs-all]`` / ``[class-attrs-<N>]`` group."
    )
    PreprocessProperties = _build(
        "PreprocessProperties",
        PREPROCESS_PROPERTY_KEYS,
        "The ``[property]`` group of an nvdspreprocess config (``network-input-shape`` batch may be ``auto``).",
        auto_keys=frozenset({"network-input-shape"}),
    )
    PreprocessGroup = _build_preprocess_group()
    CcmAlignProperties = _build(
        "CcmAlignProperties",
        CCM_ALIGN_KEYS,
        "The ``[property]`` group of the CCM face-align plugin config.",
        auto_keys=frozenset({"network-input-shape"}),
    )

    AppOsd = _build("AppOsd", APP_OSD_KEYS, "deepstream-app ``[osd]``.", defaults={"enable": False})
    AppTracker = _build(
        "AppTracker",
        APP_TRACKER_KEYS,
        "deepstream-app ``[tracker]``.",
        defaults={
            "enable": True,
            "tracker-width": 640,
            "tracker-height": 384,
            "ll-lib-file": "/opt/nvidia/deepstream/deepstream/lib/libnvds_nvmultiobjecttracker.so",
        },
    )
    AppTiledDisplay = _build(
        "AppTiledDisplay",
        APP_TILED_DISPLAY_KEYS,
        "deepstream-app ``[tiled-display]``.",
        defaults={"enable": 0},
    )
    AppSink = _build(
        "AppSink", APP_SINK_KEYS, "deepstream-app ``[sink<N>]``.", defaults={"enable": True, "type": 1}
    )
    AppMessageConverter = _build(
        "AppMessageConverter", APP_MESSAGE_CONVERTER_KEYS, "deepstream-app ``[message-converter]``.",
        defaults={"enable": True},
    )  # fmt: skip
    AppMessageConsumer = _build(
        "AppMessageConsumer", APP_MESSAGE_CONSUMER_KEYS, "deepstream-app ``[message-consumer<N>]``.",
        defaults={"enable": True},
    )  # fmt: skip
    AppNvdsAnalytics = _build(
        "AppNvdsAnalytics", APP_NVDS_ANALYTICS_KEYS, "deepstream-app ``[nvds-analytics]``.",
        defaults={"enable": True},
    )  # fmt: skip
    AppImgSave = _build(
        "AppImgSave", APP_IMG_SAVE_KEYS, "deepstream-app ``[img-save]``.", defaults={"enable": True}
    )
    AppTests = _build("AppTests", APP_TESTS_KEYS, "deepstream-app ``[tests]``.")
    AppSourceList = _build(
        "AppSourceList",
        {k: v for k, v in APP_SOURCE_LIST_KEYS.items() if k not in SOURCE_LIST_DERIVED_KEYS},
        "deepstream-app ``[source-list]`` (``list``, ``num-source-bins``, ``sensor-id-list`` come from the "
        "cameras).",
    )
    AppSourceAttrAll = _build(
        "AppSourceAttrAll",
        APP_SOURCE_KEYS,
        "deepstream-app ``[source-attr-all]``.",
        defaults={"enable": True},
    )

    AppGie = _build_app_gie()
    AppPreProcess = _build(
        "AppPreProcess",
        {"enable": APP_PRE_PROCESS_KEYS["enable"]},
        "deepstream-app ``[pre-process]`` (``config-file`` is the profile's nvdspreprocess file).",
    )

APP_GROUP_TABLES: Final[dict[str, Mapping[str, KeySpec]]] = {
    "application": APP_APPLICATION_KEYS,
    "streammux": APP_STREAMMUX_KEYS,
    "osd": APP_OSD_KEYS,
    "tracker": APP_TRACKER_KEYS,
    "tiled-display": APP_TILED_DISPLAY_KEYS,
    "sink": APP_SINK_KEYS,
    "message-converter": APP_MESSAGE_CONVERTER_KEYS,
    "message-consumer": APP_MESSAGE_CONSUMER_KEYS,
    "nvds-analytics": APP_NVDS_ANALYTICS_KEYS,
    "img-save": APP_IMG_SAVE_KEYS,
    "tests": APP_TESTS_KEYS,
    "source-list": APP_SOURCE_LIST_KEYS,
    "source-attr-all": APP_SOURCE_KEYS,
    "primary-gie": APP_GIE_KEYS,
    "secondary-gie": APP_GIE_KEYS,
    "pre-process": APP_PRE_PROCESS_KEYS,
    "secondary-pre-process": APP_SECONDARY_PRE_PROCESS_KEYS,
}
"""deepstream-app groups dsfleet types (numbered groups by their prefix), for importers and docs."""

PROPERTY_MODELS: Final[dict[GieFormat, type[DeepStreamKeys]]] = {
    GieFormat.NVINFER: NvinferProperties,
    GieFormat.NVDSPREPROCESS: PreprocessProperties,
    GieFormat.CCM_ALIGN: CcmAlignProperties,
}


def keys_of(model_cls: type[BaseModel]) -> frozenset[str]:
    """The DeepStream spellings a key model accepts (``roi-params-src-<id>`` for the pattern)."""
    return frozenset(field.alias or name for name, field in model_cls.model_fields.items())
