"""How deepstream-app reads the keys of its config file (pure): the getter of every key by group, the groups
dsfleet models and where they land, and the MultiURI ``%d`` expansion. Used by the importer
(:mod:`dsfleet.reconciler.importers.deepstreamapp`) and by round-trip checks."""

from __future__ import annotations

import re
from typing import Final

from dsfleet.schemas.deepstream import APP_GROUP_TABLES, APP_SOURCE_KEYS, KeySpec, ValueKind, spec_for
from dsfleet.schemas.placeholders import broker_connection_has_credentials

__all__ = [
    "APPLICATION_MODEL_KEYS",
    "CONNECTION_KEYS",
    "CREDENTIAL_LINE",
    "MODELLED",
    "NUMBERED",
    "OFF_BY_DEFAULT",
    "SET_ON_NVINFER",
    "SOURCE_DEFAULT_KEYS",
    "SOURCE_EXTRA_KEYS",
    "STREAMMUX_MODEL_KEYS",
    "group_kind",
    "has_credentials",
    "printf_d",
    "spec_of",
]

_I, _S = ValueKind.INT, ValueKind.STRING

SOURCE_EXTRA_KEYS: Final = {
    "uri": KeySpec("uri", _S),
    "camera-id": KeySpec("camera-id", _I),
    "gpu-id": KeySpec("gpu-id", _I),
    "source-id": KeySpec("source-id", _I),
    "alsa-device": KeySpec("alsa-device", _S),
    "smart-rec-video-cache": KeySpec("smart-rec-video-cache", _I),
}
SOURCE_DEFAULT_KEYS: Final = ("latency", "cudadec-memtype", "drop-frame-interval", "select-rtp-protocol",
                              "rtsp-reconnect-interval-sec", "num-extra-surfaces")  # fmt: skip
"""``[sourceN]`` keys ``app.sources`` holds (when every source sets them alike)."""
STREAMMUX_MODEL_KEYS: Final = ("width", "height", "batch-size", "buffer-pool-size", "nvbuf-memory-type",
                                "batched-push-timeout", "live-source", "enable-padding", "attach-sys-ts-as-ntp",
                                "config-file")  # fmt: skip
APPLICATION_MODEL_KEYS: Final = ("enable-perf-measurement", "perf-measurement-interval-sec",
                                  "gie-kitti-output-dir", "kitti-track-output-dir", "reid-track-output-dir",
                                  "terminated-track-output-dir", "shadow-track-output-dir")  # fmt: skip
SET_ON_NVINFER: Final = {
    "primary-gie": ("gie-unique-id", "batch-size", "interval", "model-engine-file"),
    "secondary-gie": ("gie-unique-id", "batch-size", "interval", "model-engine-file", "operate-on-gie-id",
                      "operate-on-class-ids"),
}  # fmt: skip
"""The keys of a GIE group deepstream-app sets on nvinfer after it loads the file, so they override the file's
(``deepstream_primary_gie_bin.c``, ``deepstream_secondary_gie_bin.c``); ``gpu-id`` and ``input-tensor-meta`` too."""
NUMBERED = re.compile(
    r"^(source|sink|secondary-gie|secondary-pre-process|message-consumer|dewarper)([0-9]+)$"
)
MODELLED = {"osd": "osd", "tracker": "tracker", "tiled-display": "tiled-display", "sink": "sinks",
             "message-converter": "message-converter", "message-consumer": "message-consumers",
             "nvds-analytics": "nvds-analytics", "img-save": "img-save", "tests": "tests"}  # fmt: skip
OFF_BY_DEFAULT = {"osd", "tracker", "tiled-display", "sink", "message-converter", "message-consumer",
                   "nvds-analytics", "img-save"}  # fmt: skip
"""Groups deepstream-app leaves off without ``enable`` (and whose dsfleet default may be on)."""
CONNECTION_KEYS = {"sink": "msg-broker-conn-str", "message-consumer": "conn-str"}
CREDENTIAL_LINE = re.compile(
    r"^\s*[^#;\s][^=]*?(password|passwd|secret|token|sharedaccesskey|sasl\.password)[^=]*=\s*\S", re.I
)


GPU_ID = KeySpec("gpu-id", _I)


def group_kind(group: str) -> str:
    m = NUMBERED.match(group)
    return m.group(1) if m else group


def spec_of(group: str, key: str) -> KeySpec | None:
    """The spec deepstream-app reads ``key`` of ``group`` with (None: a key dsfleet does not know)."""
    kind = group_kind(group)
    if key == "gpu-id":
        return GPU_ID
    if kind in ("source", "source-attr-all") and key in SOURCE_EXTRA_KEYS:
        return SOURCE_EXTRA_KEYS[key]
    if kind == "source":
        return spec_for(APP_SOURCE_KEYS, key)
    table = APP_GROUP_TABLES.get(kind)
    return spec_for(table, key) if table is not None else None


def printf_d(uri: str, number: int) -> str:
    """``g_strdup_printf (uri, number)`` for the ``%d`` MultiURI copies (``%%`` is one ``%``)."""
    out, i, used = [], 0, False
    while i < len(uri):
        if uri.startswith("%%", i):
            out.append("%")
            i += 2
        elif uri.startswith("%d", i) and not used:
            out.append(str(number))
            used = True
            i += 2
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def has_credentials(text: str) -> bool:
    """Whether a config file's text carries a password, token or credentials in a broker connection string."""
    for line in text.splitlines():
        if CREDENTIAL_LINE.match(line):
            return True
        _, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and broker_connection_has_credentials(value.strip()):
            return True
    return False
