"""The manifest kinds (docs/manifests/index.md): Node, Camera, DsInstance, InferenceProfile, Policy.

Every document has ``apiVersion: dsfleet/v1``, ``kind``, ``metadata`` and ``spec``. Models are frozen and reject
unknown fields. DeepStream keys keep DeepStream's spelling (``batch-size``); dsfleet's own fields are camelCase.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)

from dsfleet.schemas.base import DnsLabel, FrozenModel
from dsfleet.schemas.deepstream import (
    AppGie,
    AppImgSave,
    AppMessageConsumer,
    AppMessageConverter,
    AppNvdsAnalytics,
    AppOsd,
    AppSink,
    AppSourceAttrAll,
    AppSourceList,
    AppTests,
    AppTiledDisplay,
    AppTracker,
    CcmAlignProperties,
    ClassAttrs,
    GieFormat,
    NvinferProperties,
    PreprocessGroup,
    PreprocessProperties,
)
from dsfleet.schemas.nodeconfigs import DEFAULT_STRATEGY, HealthCheck, UpdateStrategy
from dsfleet.schemas.rollouts import RolloutStrategy

LABEL_KEY_RE = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
FILE_NAME_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
IMAGE_REF_RE = r"^[^\s]+$"
LabelKey = Annotated[str, Field(pattern=LABEL_KEY_RE, max_length=253)]
LabelValue = Annotated[StrictStr, Field(max_length=63)]
EnvName = Annotated[str, Field(pattern=ENV_NAME_RE)]
FileName = Annotated[str, Field(pattern=FILE_NAME_RE, max_length=128)]
ImageRef = Annotated[StrictStr, Field(min_length=1, max_length=512, pattern=IMAGE_REF_RE)]

ApiVersion = Literal["dsfleet/v1"]
KIND_NAMES = ("Node", "Camera", "DsInstance", "InferenceProfile", "Policy")


class Metadata(FrozenModel):
    name: DnsLabel
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    annotations: dict[str, StrictStr] = Field(default_factory=dict)


def _normalize_node_id(value: Any) -> Any:
    if isinstance(value, str):
        compact = value.replace("-", "").lower()
        if re.fullmatch(r"[0-9a-f]{32}", compact):
            return compact
    return value


NodeId = Annotated[
    str,
    BeforeValidator(_normalize_node_id),
    Field(pattern=r"^[0-9a-f]{32}$", description="machine-id: 32 hex digits or a UUID (normalized)"),
]


class _Manifest(FrozenModel):
    """What every kind has: ``apiVersion`` and ``metadata`` (each kind adds its ``kind`` and ``spec``)."""

    apiVersion: ApiVersion
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name


# --------------------------------------------------------------------------------------------------- Node
class NodeSpec(FrozenModel):
    hostname: StrictStr | None = Field(
        None, description="host name the agent announces; default: the node name"
    )
    nodeId: NodeId | None = None
    capacity: Annotated[StrictInt, Field(ge=0)] | None = Field(None, description="max cameras on this node")
    gpus: tuple[Annotated[StrictInt, Field(ge=0)], ...] = Field((0,), description="host GPU ids")
    image: ImageRef | None = Field(None, description="default DeepStream image for instances on this node")

    @field_validator("gpus")
    @classmethod
    def _unique_gpus(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) != len(value):
            raise ValueError("GPU ids must be unique")
        return value


class Node(_Manifest):
    kind: Literal["Node"]
    spec: NodeSpec = Field(default_factory=NodeSpec)

    @property
    def hostname(self) -> str:
        return self.spec.hostname or self.metadata.name


# --------------------------------------------------------------------------------------------------- Camera
class CameraType(StrEnum):
    RTSP = "rtsp"
    FILE = "file"
    HTTP = "http"
    USB = "usb"
    """A V4L2 camera on the host (deepstream-app source type 1): ``device`` is passed into the container."""
    CSI = "csi"
    """A Jetson CSI camera (deepstream-app source type 5), by ``sensorId`` (the Argus socket is mounted)."""


_SCHEME_TYPES = {
    "rtsp": CameraType.RTSP,
    "rtsps": CameraType.RTSP,
    "file": CameraType.FILE,
    "http": CameraType.HTTP,
    "https": CameraType.HTTP,
    "v4l2": CameraType.USB,
    "csi": CameraType.CSI,
}
DEVICE_CAMERAS = (CameraType.USB, CameraType.CSI)
_V4L2_DEVICE_RE = re.compile(r"^/dev/video([0-9]+)$")
_FPS_RE = r"^[1-9][0-9]*(/[1-9][0-9]*)?$"


def url_scheme(url: str) -> str | None:
    """The scheme of a camera URL (lower case), or None. ``file:/path`` (one slash, as GStreamer and NVIDIA's own
    samples write it) is a file URL; every other scheme needs ``://``."""
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or not scheme:
        return None
    if rest.startswith("//") or (scheme == "file" and rest.startswith("/")):
        return scheme
    return None


def v4l2_device_node(device: str) -> int | None:
    """``/dev/video3`` → 3 (deepstream-app's ``camera-v4l2-dev-node``)."""
    match = _V4L2_DEVICE_RE.match(device)
    return int(match.group(1)) if match else None


def _id_to_str(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class SecretCredentials(FrozenModel):
    secretRef: DnsLabel = Field(
        description="name of a secret on the agent host: <state-dir>/secrets/<ref>/{username,password} "
        "or env DSFLEET_SECRET_<REF>_USERNAME/_PASSWORD"
    )


def _device_url(data: Any) -> Any:
    """A USB or CSI camera's ``url`` is its address, from ``device`` / ``sensorId`` (``v4l2:///dev/video0``,
    ``csi://0``); a ``v4l2://`` or ``csi://`` URL gives them in turn."""
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    kind, url = out.get("type"), out.get("url")
    scheme = url_scheme(url) if isinstance(url, str) else None
    if kind is None and scheme in ("v4l2", "csi"):
        kind = out["type"] = "usb" if scheme == "v4l2" else "csi"
        rest = url.partition("://")[2] if isinstance(url, str) else ""
        if kind == "usb" and "device" not in out:
            out["device"] = rest
        elif kind == "csi" and "sensorId" not in out and rest.isdigit():
            out["sensorId"] = int(rest)
    if kind == "usb" and "url" not in out:
        if not isinstance(out.get("device"), str):
            raise ValueError("a usb camera needs device (/dev/videoN)")
        out["url"] = f"v4l2://{out['device']}"
    elif kind == "csi" and "url" not in out:
        if type(out.get("sensorId")) is not int:
            raise ValueError("a csi camera needs sensorId")
        out["url"] = f"csi://{out['sensorId']}"
    return out


class CameraSpec(FrozenModel):
    cameraId: Annotated[StrictStr, BeforeValidator(_id_to_str), Field(min_length=1, max_length=128)] = Field(
        description="the application's camera id (a string, as in source_list.json)"
    )
    url: Annotated[StrictStr, Field(min_length=1, max_length=2048)] = Field(
        description="rtsp://, rtsps://, file:// (or file:/path), http(s):// — never with credentials (use "
        "credentials.secretRef); for a USB or CSI camera its address, from device / sensorId (v4l2:///dev/video0, "
        "csi://0)"
    )
    credentials: SecretCredentials | None = None
    encoding: Literal["h264", "h265"] = "h264"
    type: CameraType | None = Field(
        None,
        description="default: from the URL scheme; usb (V4L2, with device) and csi (Jetson, with sensorId)",
    )
    device: Annotated[StrictStr, Field(pattern=_V4L2_DEVICE_RE.pattern)] | None = Field(
        None, description="usb: the V4L2 device node on the host (/dev/videoN), passed into the container"
    )
    sensorId: Annotated[StrictInt, Field(ge=0, le=255)] | None = Field(
        None, description="csi: the Jetson camera sensor id"
    )
    width: Annotated[StrictInt, Field(ge=1, le=16384)] | None = None
    height: Annotated[StrictInt, Field(ge=1, le=16384)] | None = None
    fps: Annotated[StrictInt, Field(ge=1, le=1000)] | Annotated[StrictStr, Field(pattern=_FPS_RE)] | None = (
        Field(None, description="usb / csi: the capture frame rate, 30 or a fraction such as 30000/1001")
    )
    stream: StrictBool = Field(
        False, description="ccm layout: the older app's per-source stream flag (source_list.json 'stream')"
    )

    _device_url = model_validator(mode="before")(_device_url)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if url_scheme(value) not in _SCHEME_TYPES:
            raise ValueError(
                "URL must start with rtsp://, rtsps://, file:// (or file:/), http://, https://, v4l2:// or csi://"
            )
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> CameraSpec:
        kind = self.source_type
        if kind is CameraType.USB and self.device is None:
            raise ValueError("a usb camera needs device (/dev/videoN)")
        if kind is CameraType.CSI and self.sensorId is None:
            raise ValueError("a csi camera needs sensorId")
        if kind not in DEVICE_CAMERAS and (self.device is not None or self.sensorId is not None):
            raise ValueError("device and sensorId are for usb and csi cameras (type: usb / csi)")
        if kind is CameraType.USB and self.url != f"v4l2://{self.device}":
            raise ValueError("a usb camera's url is v4l2://<device> (or leave url out)")
        if kind is CameraType.CSI and self.url != f"csi://{self.sensorId}":
            raise ValueError("a csi camera's url is csi://<sensorId> (or leave url out)")
        if kind in DEVICE_CAMERAS and self.credentials is not None:
            raise ValueError("usb and csi cameras take no credentials")
        return self

    @property
    def source_type(self) -> CameraType:
        if self.type is not None:
            return self.type
        return _SCHEME_TYPES[url_scheme(self.url) or ""]

    @property
    def fps_fraction(self) -> tuple[int, int] | None:
        """``fps`` as deepstream-app's ``camera-fps-n`` / ``camera-fps-d``."""
        if self.fps is None:
            return None
        if isinstance(self.fps, int):
            return self.fps, 1
        n, _, d = self.fps.partition("/")
        return int(n), int(d or 1)


class Camera(_Manifest):
    kind: Literal["Camera"]
    spec: CameraSpec


# --------------------------------------------------------------------------------------------------- DsInstance
BatchSize = Annotated[StrictInt, Field(ge=1, le=1024)] | Literal["auto"]


class StreammuxSettings(FrozenModel):
    """``[streammux]`` (deepstream-app) / the ``streammux_*`` settings of the ccm app."""

    width: Annotated[StrictInt, Field(ge=1, le=16384)] | None = None
    height: Annotated[StrictInt, Field(ge=1, le=16384)] | None = None
    batch_size: BatchSize = Field("auto", alias="batch-size")
    buffer_pool_size: Annotated[StrictInt, Field(ge=1, le=1024)] | None = Field(
        None, alias="buffer-pool-size"
    )
    nvbuf_memory_type: Annotated[StrictInt, Field(ge=0, le=4)] | None = Field(
        None,
        alias="nvbuf-memory-type",
        description="0 default, 1 CUDA pinned, 2 CUDA device, 3 CUDA unified, 4 surface array",
    )
    batched_push_timeout: Annotated[StrictInt, Field(ge=-1)] | None = Field(
        None, alias="batched-push-timeout"
    )
    live_source: StrictBool | None = Field(None, alias="live-source")
    enable_padding: StrictBool | None = Field(None, alias="enable-padding")
    attach_sys_ts_as_ntp: StrictBool | None = Field(None, alias="attach-sys-ts-as-ntp")
    config_file: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None,
        alias="config-file",
        description="deepstream-app: the new nvstreammux's config (USE_NEW_NVSTREAMMUX=yes): a file of app.files by "
        "name, or a path in the container",
    )


Threshold = Annotated[StrictFloat, Field(ge=0.0, le=1.0)]


class CcmApp(FrozenModel):
    """The older system's ``app_conf.json`` (layout ``ccm``)."""

    appType: Annotated[StrictStr, Field(pattern=r"^[A-Z][A-Z0-9_]*$")] = "NORMAL"
    faceRawMetaTopic: Annotated[StrictStr, Field(min_length=1, max_length=249)] = "RawFaceMeta"
    motRawMetaTopic: Annotated[StrictStr, Field(min_length=1, max_length=249)] = "RawMotMeta"
    visualTopic: Annotated[StrictStr, Field(min_length=1, max_length=249)] = "RawImage"
    kafkaConnectionStr: Annotated[StrictStr, Field(min_length=1, max_length=1024)] = Field(
        description="bootstrap servers the app publishes to, host:port[,host:port]"
    )
    faceConfidenceThreshold: Threshold = 0.7
    motConfidenceThreshold: Threshold = 0.6
    streammux: StreammuxSettings = Field(default_factory=StreammuxSettings)


class ApplicationGroup(FrozenModel):
    """``[application]``: unset keys keep deepstream-app's defaults (perf measurement off, so no FPS reported:
    rule ``perf-measurement``)."""

    enable_perf_measurement: StrictBool | None = Field(
        None,
        alias="enable-perf-measurement",
        description="print **PERF: lines, which the agent reports as FPS (deepstream-app's default: off)",
    )
    perf_measurement_interval_sec: Annotated[StrictInt, Field(ge=1)] | None = Field(
        None, alias="perf-measurement-interval-sec", description="seconds between **PERF: lines"
    )
    gie_kitti_output_dir: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None, alias="gie-kitti-output-dir", description="write each GIE's detections in KITTI format here"
    )
    kitti_track_output_dir: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None, alias="kitti-track-output-dir", description="write the tracker's output in KITTI format here"
    )
    reid_track_output_dir: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None, alias="reid-track-output-dir", description="write the tracker's re-identification output here"
    )
    terminated_track_output_dir: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None, alias="terminated-track-output-dir", description="write terminated tracks here"
    )
    shadow_track_output_dir: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None, alias="shadow-track-output-dir", description="write shadow tracks here"
    )


class SourceDefaults(FrozenModel):
    """Settings applied to every source (``[source-attr-all]`` / each ``[sourceN]``)."""

    latency: Annotated[StrictInt, Field(ge=0)] | None = None
    cudadec_memtype: Annotated[StrictInt, Field(ge=0, le=2)] | None = Field(None, alias="cudadec-memtype")
    drop_frame_interval: Annotated[StrictInt, Field(ge=0)] | None = Field(None, alias="drop-frame-interval")
    select_rtp_protocol: Literal[0, 4] | None = Field(None, alias="select-rtp-protocol")
    rtsp_reconnect_interval_sec: Annotated[StrictInt, Field(ge=0)] | None = Field(
        None, alias="rtsp-reconnect-interval-sec"
    )
    num_extra_surfaces: Annotated[StrictInt, Field(ge=0)] | None = Field(None, alias="num-extra-surfaces")
    type: Literal[2, 4] | None = Field(
        None,
        description="the source type of rtsp:// cameras: 4 (RTSP: rtspsrc, with reconnection; the default) or 2 (URI: "
        "uridecodebin, as a MultiURI type 3 source becomes)",
    )


TrackerGroup = AppTracker
"""``[tracker]``: every key of NVIDIA's table (``dsfleet.schemas.deepstream.APP_TRACKER_KEYS``), typed and range-checked."""
OsdGroup = AppOsd
TiledDisplayGroup = AppTiledDisplay
SinkGroup = AppSink
"""``[sinkN]``: 1 fake, 2 EGL, 3 file, 4 RTSP out, 5 overlay, 6 message broker (2 and 5 need a display)."""

PropertyValue = (
    StrictBool | StrictInt | StrictFloat | StrictStr | tuple[StrictInt | StrictFloat | StrictStr, ...]
)

AppGroupName = Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]*$")]
AppExtraKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]


def _default_sinks() -> tuple[AppSink, ...]:
    return (AppSink(),)


class DeepstreamApp(FrozenModel):
    """Groups of NVIDIA's ``deepstream-app`` config (layout ``deepstream-app``); GIE groups come from the profile."""

    application: ApplicationGroup = Field(default_factory=ApplicationGroup)
    streammux: StreammuxSettings = Field(default_factory=StreammuxSettings)
    sources: SourceDefaults = Field(default_factory=SourceDefaults)
    source_list: AppSourceList | None = Field(
        None,
        alias="source-list",
        description="[source-list] (DS 6.2+): all cameras in one list instead of one [sourceN] each; list, "
        "num-source-bins and sensor-id-list are rendered from the cameras (secret placeholders included)",
    )
    source_attr_all: AppSourceAttrAll | None = Field(
        None, alias="source-attr-all", description="[source-attr-all]: the attributes of every listed source"
    )
    gies: dict[DnsLabel, AppGie] = Field(
        default_factory=dict,
        description="per GIE name: app-level keys of its [primary-gie] / [secondary-gieN] / [pre-process] group "
        "that nvinfer does not read (bbox-border-colorN, bbox-bg-colorN, nvbuf-memory-type, plugin-type, "
        "input-tensor-meta, infer-raw-output-dir, enable); the keys nvinfer reads too come from the profile",
    )
    tracker: AppTracker | None = None
    osd: AppOsd | None = None
    tiled_display: AppTiledDisplay | None = Field(None, alias="tiled-display")
    sinks: tuple[AppSink, ...] = Field(default_factory=_default_sinks)
    file_loop: StrictBool | None = Field(None, alias="file-loop", description="[tests] file-loop")
    tests: AppTests | None = Field(None, description="[tests] (file-loop, pipeline-recreate-sec)")
    message_converter: AppMessageConverter | None = Field(None, alias="message-converter")
    message_consumers: tuple[AppMessageConsumer, ...] = Field(
        (), alias="message-consumers", description="[message-consumer0], [message-consumer1], … (at most 16)"
    )
    nvds_analytics: AppNvdsAnalytics | None = Field(None, alias="nvds-analytics")
    img_save: AppImgSave | None = Field(None, alias="img-save")
    files: dict[FileName, StrictStr] = Field(
        default_factory=dict,
        description="text files rendered beside deepstream_app_config.txt, by name: the tracker, analytics, "
        "message converter configs, … the groups name (a key names one by its bare name)",
    )
    extraGroups: dict[AppGroupName, dict[AppExtraKey, PropertyValue]] = Field(
        default_factory=dict,
        description="escape hatch: groups dsfleet does not know yet, written verbatim after the others, or "
        "keys added to a group it renders (with a warning)",
    )

    @field_validator("message_consumers")
    @classmethod
    def _consumers(cls, value: tuple[AppMessageConsumer, ...]) -> tuple[AppMessageConsumer, ...]:
        if len(value) > 16:
            raise ValueError("deepstream-app reads at most 16 message consumers")
        return value


BROKER_CONNECTION_KEYS = {"sinks": "msg-broker-conn-str", "message-consumers": "conn-str"}
"""Where a deepstream-app instance's broker connection strings sit (``spec.app.<list>[i].<key>``): rule
``broker-credentials`` reports credentials in them (the generic ``camera-url-credentials`` skips them)."""


def broker_connection_path(path: tuple[str | int, ...]) -> bool:
    """True for the path (under ``spec``) of a broker connection string of a deepstream-app instance."""
    return len(path) == 4 and path[0] == "app" and BROKER_CONNECTION_KEYS.get(str(path[1])) == path[3]


class RestartPolicy(StrEnum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class LabelSelector(FrozenModel):
    matchLabels: dict[LabelKey, LabelValue] = Field(min_length=1)


class EnvSecretRef(FrozenModel):
    secretRef: DnsLabel
    key: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = "password"


EnvValue = StrictStr | EnvSecretRef


class Mount(FrozenModel):
    type: Literal["bind", "volume"] = "bind"
    source: Annotated[StrictStr, Field(min_length=1)]
    target: Annotated[StrictStr, Field(pattern=r"^/")]
    readOnly: StrictBool = True


class InstanceSync(FrozenModel):
    """Per-instance overrides of the fleet's sync settings (``Policy.spec.sync``)."""

    selfHeal: StrictBool | None = Field(
        None, description="heal drift (stopped/removed/edited) on the host; default: the fleet's setting"
    )


class _InstanceSpecBase(FrozenModel):
    node: DnsLabel | None = Field(None, description="the Node to run on; omitted = defined but not placed")
    gpu: Annotated[StrictInt, Field(ge=0)] = Field(
        0, description="host GPU id (the container sees it as GPU 0)"
    )
    image: ImageRef | None = Field(None, description="default: the node's image")
    cameras: tuple[DnsLabel, ...] = ()
    cameraSelector: LabelSelector | None = None
    profile: DnsLabel | None = None
    overrides: dict[DnsLabel, dict[str, PropertyValue | None]] = Field(
        default_factory=dict, description="per GIE name: [property] keys to set (null deletes a key)"
    )
    restartPolicy: RestartPolicy = RestartPolicy.ALWAYS
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    paused: StrictBool = Field(False, description="true = the container is stopped and stays stopped")
    command: tuple[StrictStr, ...] | None = None
    workingDir: Annotated[StrictStr, Field(pattern=r"^/")] | None = None
    mounts: tuple[Mount, ...] = ()
    shmSize: Annotated[StrictStr, Field(pattern=r"^[0-9]+[bkmg]?$")] = "1g"
    networkMode: Literal["host", "none", "bridge"] = "host"
    ipc: Literal["host", "private", "shareable"] | None = None
    privileged: StrictBool = False
    securityOpt: tuple[StrictStr, ...] = ()
    healthCheck: HealthCheck | None = None
    sync: InstanceSync | None = None
    updateStrategy: UpdateStrategy = Field(
        DEFAULT_STRATEGY,
        description="how a container-spec change replaces the container: CreateBeforeStop (the new one created, "
        "then the old stopped and the new started; a failure keeps the old running), StartBeforeStop (the new one "
        "running, and healthy with a health check, before the old stops: no gap, both hold the cameras and GPU "
        "memory for a moment), Recreate (the old removed first, for hosts that cannot hold both)",
    )

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("camera names must be unique within an instance")
        return value


class CcmInstanceSpec(_InstanceSpecBase):
    layout: Literal["ccm"]
    app: CcmApp


class DeepstreamAppInstanceSpec(_InstanceSpecBase):
    layout: Literal["deepstream-app"]
    app: DeepstreamApp = Field(default_factory=DeepstreamApp)


def _layout_of(value: Any) -> str | None:
    if isinstance(value, Mapping):
        layout = value.get("layout")
        return layout if isinstance(layout, str) else None
    return getattr(value, "layout", None)


InstanceSpec = Annotated[
    Annotated[CcmInstanceSpec, Tag("ccm")] | Annotated[DeepstreamAppInstanceSpec, Tag("deepstream-app")],
    Discriminator(
        _layout_of,
        custom_error_type="invalid_layout",
        custom_error_message="layout must be 'ccm' or 'deepstream-app'",
    ),
]


class DsInstance(_Manifest):
    kind: Literal["DsInstance"]
    spec: InstanceSpec


# --------------------------------------------------------------------------------------------------- InferenceProfile
class GieRole(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    PREPROCESS = "preprocess"


ExtraValue = (
    StrictBool | StrictInt | StrictFloat | StrictStr | tuple[StrictInt | StrictFloat | StrictStr, ...]
)


class _GieBase(FrozenModel):
    name: DnsLabel
    role: GieRole
    file: FileName = Field(description="the rendered file's name (in /workspace/configs)")
    extraProperties: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], ExtraValue] = Field(
        default_factory=dict,
        description="escape hatch: [property] keys dsfleet does not know, written verbatim (with a warning)",
    )


class NvinferGie(_GieBase):
    format: Literal[GieFormat.NVINFER] = GieFormat.NVINFER
    properties: NvinferProperties = Field(default_factory=NvinferProperties)
    classAttrs: dict[Annotated[str, Field(pattern=r"^(all|[0-9]+)$")], ClassAttrs] = Field(
        default_factory=dict, description="'all' or a class id → [class-attrs-*] keys"
    )

    @model_validator(mode="after")
    def _role(self) -> NvinferGie:
        if self.role is GieRole.PREPROCESS:
            raise ValueError("an nvinfer GIE has role primary or secondary")
        return self


class PreprocessGie(_GieBase):
    format: Literal[GieFormat.NVDSPREPROCESS] = GieFormat.NVDSPREPROCESS
    properties: PreprocessProperties = Field(default_factory=PreprocessProperties)
    groups: tuple[PreprocessGroup, ...] = ()
    userConfigs: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], ExtraValue] = Field(
        default_factory=dict
    )


class CcmAlignGie(_GieBase):
    format: Literal[GieFormat.CCM_ALIGN]
    properties: CcmAlignProperties = Field(default_factory=CcmAlignProperties)


def _gie_format(value: Any) -> str | None:
    if isinstance(value, Mapping):
        fmt = value.get("format")
        if fmt is None:
            return (
                str(GieFormat.NVDSPREPROCESS) if value.get("role") == "preprocess" else str(GieFormat.NVINFER)
            )
        return fmt if isinstance(fmt, str) else None
    fmt = getattr(value, "format", None)
    return str(fmt) if fmt is not None else None


Gie = Annotated[
    Annotated[NvinferGie, Tag(str(GieFormat.NVINFER))]
    | Annotated[PreprocessGie, Tag(str(GieFormat.NVDSPREPROCESS))]
    | Annotated[CcmAlignGie, Tag(str(GieFormat.CCM_ALIGN))],
    Discriminator(
        _gie_format,
        custom_error_type="invalid_format",
        custom_error_message="format must be 'nvinfer', 'nvdspreprocess' or 'ccm-align'",
    ),
]


class InferenceProfileSpec(FrozenModel):
    deepstreamVersion: Annotated[StrictStr, Field(pattern=r"^[0-9]+\.[0-9]+$")] | None = Field(
        None, description="gates version-specific keys; default: from the image tag, else 7.0"
    )
    gies: tuple[Gie, ...] = Field(min_length=1)
    files: dict[FileName, StrictStr] = Field(
        default_factory=dict,
        description="text files rendered beside the GIE files of every instance of this profile, by name (labels: "
        "labelfile-path: labels.txt)",
    )


class InferenceProfile(_Manifest):
    kind: Literal["InferenceProfile"]
    spec: InferenceProfileSpec


# --------------------------------------------------------------------------------------------------- Policy
class RuleSeverity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    OFF = "off"


class RuleMatch(FrozenModel):
    """Which instances a rule setting applies to (all of the given conditions must hold)."""

    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="the instance's metadata.labels include all of these"
    )
    layout: Literal["ccm", "deepstream-app"] | None = Field(None, description="the instance's spec.layout")
    instances: tuple[DnsLabel, ...] = Field((), description="instance names (any of them)")

    def matches(self, instance: DsInstance) -> bool:
        if self.layout is not None and instance.spec.layout != self.layout:
            return False
        if self.instances and instance.name not in self.instances:
            return False
        have = instance.metadata.labels
        return all(have.get(k) == v for k, v in self.labels.items())


class RuleSetting(FrozenModel):
    severity: RuleSeverity | None = None
    match: RuleMatch | None = Field(
        None,
        description="apply this severity only to the findings of matching instances (others keep the rule's "
        "default or an unscoped setting)",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    reason: StrictStr | None = Field(None, description="why a rule is relaxed (required to relax one)")


class SyncPolicy(FrozenModel):
    """How the fleet is kept in sync (Argo CD's sync policy, as operators know it)."""

    mode: Literal["auto", "manual"] | None = Field(
        None,
        description="auto: every accepted revision is applied; manual: its plan waits for an apply request",
    )
    prune: StrictBool | None = Field(
        None, description="remove containers of instances no longer in the manifests (default true)"
    )
    selfHeal: StrictBool | None = Field(
        None,
        description="agents heal drift: restart stopped, recreate removed, rewrite edited files (default true)",
    )


class PolicySpec(FrozenModel):
    sync: SyncPolicy | None = None
    rules: dict[Annotated[str, Field(pattern=r"^[a-z0-9-]+$")], RuleSetting] = Field(default_factory=dict)
    allowedImages: tuple[Annotated[StrictStr, Field(min_length=1)], ...] | None = Field(
        None, description="image patterns (fnmatch globs); when set, every instance image must match one"
    )
    maxCamerasPerInstance: Annotated[StrictInt, Field(ge=1)] | None = None
    requireCredentialsBySecretRef: StrictBool | None = None
    forbidPrivileged: StrictBool | None = None
    rollout: RolloutStrategy | None = Field(None, description="waves gated on health (docs: rollouts)")


class Policy(_Manifest):
    kind: Literal["Policy"]
    spec: PolicySpec = Field(default_factory=PolicySpec)


Manifest = Node | Camera | DsInstance | InferenceProfile | Policy

MODELS: dict[str, type[Node] | type[Camera] | type[DsInstance] | type[InferenceProfile] | type[Policy]] = {
    "Node": Node,
    "Camera": Camera,
    "DsInstance": DsInstance,
    "InferenceProfile": InferenceProfile,
    "Policy": Policy,
}

ANY_MANIFEST: TypeAdapter[Manifest] = TypeAdapter(
    Annotated[
        Annotated[Node, Tag("Node")]
        | Annotated[Camera, Tag("Camera")]
        | Annotated[DsInstance, Tag("DsInstance")]
        | Annotated[InferenceProfile, Tag("InferenceProfile")]
        | Annotated[Policy, Tag("Policy")],
        Discriminator(lambda v: v.get("kind") if isinstance(v, Mapping) else getattr(v, "kind", None)),
    ]
)
