"""What real deepstream-app configs lost on the way through dsfleet (issue 23), one cause per section: imported
as deepstream-app reads them, validated, and rendered back without the loss. GLib round trips of the same
causes: tests/integration/test_deepstream_fidelity.py; the whole corpus: test_deepstream_corpus.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dsfleet.policies.engine import evaluate
from dsfleet.reconciler.compiling.desired import desired_state
from dsfleet.reconciler.compiling.instances import compile_instance
from dsfleet.reconciler.compiling.rendering import render_instance
from dsfleet.reconciler.importers.deepstreamapp import AppImport, AppImportError, import_app
from dsfleet.reconciler.importers.nvinfer import import_keyfile
from dsfleet.resolution.instances import resolve_instance
from dsfleet.schemas.manifests import ANY_MANIFEST
from dsfleet.schemas.nodeconfigs import ContainerSpec, DeviceSpec, RestartPolicySpec, spec_hash
from tests.support.fleets import fleet_of, node

ORIGIN = "/opt/nvidia/deepstream/deepstream/samples/configs/deepstream-app"
PGIE = """[property]
gpu-id=0
net-scale-factor=0.0039215697906911373
onnx-file=../../models/Primary_Detector/resnet18_trafficcamnet.onnx
labelfile-path=../../models/Primary_Detector/labels.txt
batch-size=1
process-mode=1
network-mode=2
num-detected-classes=4
gie-unique-id=1
cluster-mode=2
"""
SGIE = """[property]
onnx-file=../../models/Secondary_VehicleMake/resnet18_vehiclemakenet.onnx
batch-size=16
process-mode=2
network-type=1
gie-unique-id=2
operate-on-gie-id=1
operate-on-class-ids=0
"""
FILES = {
    f"{ORIGIN}/config_infer_primary.txt": PGIE,
    f"{ORIGIN}/config_infer_secondary.txt": SGIE,
    "/opt/nvidia/deepstream/deepstream/samples/models/Primary_Detector/labels.txt": "Car\nBicycle\nPerson\nRoadsign\n",
    f"{ORIGIN}/osd_labels.txt": "car\nbike\nperson\nsign\n",
    f"{ORIGIN}/config_tracker_IOU.yml": "BaseConfig:\n  minDetectorConfidence: 0\n",
}
APP = """[application]
enable-perf-measurement=1
perf-measurement-interval-sec=5

[source0]
enable=1
type=3
uri=file://../../streams/sample_1080p_h264.mp4
num-sources=2

[streammux]
batch-size=2
width=1920
height=1080
batched-push-timeout=40000

[primary-gie]
enable=1
batch-size=2
gie-unique-id=1
config-file=config_infer_primary.txt

[sink0]
enable=1
type=1
"""


def imported(app: str = APP, files: dict[str, str] | None = None, **kw: Any) -> AppImport:
    tree = {**FILES, **(files or {})}
    return import_app(app, f"{ORIGIN}/app.txt", lambda p: (tree[p], p) if p in tree else None, origin=ORIGIN,
                      **kw)  # fmt: skip


def fleet(result: AppImport) -> Any:
    inst = dict(result.instance)
    inst["spec"] = {**inst["spec"], "node": "n1"}
    return fleet_of(
        [node("n1", gpus=4), *result.cameras, inst, *([result.profile] if result.profile else [])]
    )


def rendered(result: AppImport) -> dict[str, str]:
    f = fleet(result)
    name = result.instance["metadata"]["name"]
    return {r.path: r.content for r in render_instance(f, resolve_instance(f, f.instances[name]))}


def findings(result: AppImport) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for finding in evaluate(fleet(result)):
        out.setdefault(finding.rule, []).append(finding.message)
    return out


def group(text: str, name: str) -> list[str]:
    return text.split(f"[{name}]\n", 1)[1].split("\n\n", 1)[0].splitlines()


# ------------------------------------------------------------------------------------------------------------ cause 1
def test_an_app_level_labelfile_stays_the_apps_and_the_nvinfer_file_keeps_its_own() -> None:
    """deepstream-app reads [primary-gie] labelfile-path itself (for the OSD): nvinfer never gets it."""
    app = APP.replace("config-file=config_infer_primary.txt", "labelfile-path=osd_labels.txt\nconfig-file="
                      "config_infer_primary.txt")  # fmt: skip
    result = imported(app)
    assert result.profile is not None
    gie = result.profile["spec"]["gies"][0]
    assert gie["properties"]["labelfile-path"] == "labels.txt"  # the file's own, imported
    assert (
        result.instance["spec"]["app"]["gies"]["config-infer-primary"]["labelfile-path"] == "osd_labels.txt"
    )
    files = rendered(result)
    assert "labelfile-path=labels.txt" in files["config_infer_primary.txt"]
    assert "labelfile-path=osd_labels.txt" in group(files["deepstream_app_config.txt"], "primary-gie")
    assert files["osd_labels.txt"] == FILES[f"{ORIGIN}/osd_labels.txt"]
    assert files["labels.txt"] == "Car\nBicycle\nPerson\nRoadsign\n"


def test_only_the_keys_deepstream_app_sets_on_nvinfer_override_the_file() -> None:
    app = APP.replace("[sink0]", "[secondary-gie0]\nenable=1\ngie-unique-id=5\noperate-on-gie-id=1\noperate-on-"
                      "class-ids=0;2\nbatch-size=8\nconfig-file=config_infer_secondary.txt\n\n[sink0]")  # fmt: skip
    app = app.replace("gie-unique-id=1\n", "gie-unique-id=1\noperate-on-gie-id=7\ninterval=3\n", 1)
    result = imported(app)
    assert result.profile is not None
    primary, secondary = (g["properties"] for g in result.profile["spec"]["gies"])
    assert primary["interval"] == 3 and primary["batch-size"] == 2
    assert "operate-on-gie-id" not in primary  # a primary's is read, but set on no element: kept verbatim
    assert result.instance["spec"]["app"]["extraGroups"]["primary-gie"] == {"operate-on-gie-id": 7}
    assert secondary["gie-unique-id"] == 5 and secondary["operate-on-class-ids"] == [0, 2]
    assert secondary["batch-size"] == 8 and secondary["process-mode"] == 2


@pytest.mark.parametrize(
    ("file_key", "app_key", "imported_as"),
    [
        ("input-tensor-from-meta=1", "", False),  # deepstream-app always sets input-tensor-meta (default 0)
        ("", "input-tensor-meta=1", True),
        ("input-tensor-from-meta=0", "input-tensor-meta=1", True),
    ],
)
def test_input_tensor_meta_is_the_groups_as_deepstream_app_sets_it(
    file_key: str, app_key: str, imported_as: bool
) -> None:
    result = imported(APP.replace("gie-unique-id=1\n", f"gie-unique-id=1\n{app_key}\n", 1),
                      {f"{ORIGIN}/config_infer_primary.txt": PGIE + file_key + "\n"})  # fmt: skip
    assert result.profile is not None
    assert result.profile["spec"]["gies"][0]["properties"]["input-tensor-from-meta"] is imported_as
    text = rendered(result)["deepstream_app_config.txt"]
    assert ("input-tensor-meta=1" in group(text, "primary-gie")) is imported_as


def test_process_mode_follows_the_group() -> None:
    result = imported(
        APP, {f"{ORIGIN}/config_infer_primary.txt": PGIE.replace("process-mode=1", "process-mode=2")}
    )
    assert result.profile is not None
    assert result.profile["spec"]["gies"][0]["properties"]["process-mode"] == 1
    assert any("sets process-mode 1 on nvinfer" in w for w in result.warnings)


# ------------------------------------------------------------------------------------------------------------ cause 2
def test_tiled_display_enable_2_is_the_parallel_demuxer_not_a_refused_boolean() -> None:
    result = imported(APP.replace("[sink0]", "[tiled-display]\nenable=2\nrows=1\ncolumns=2\n\n[sink0]"))
    assert result.instance["spec"]["app"]["tiled-display"]["enable"] == 2
    assert "enable=2" in group(rendered(result)["deepstream_app_config.txt"], "tiled-display")
    assert not [r for r, m in findings(result).items() if r in ("schema", "type")]


def test_switches_are_integers_as_deepstream_app_reads_them() -> None:
    """deepstream-app reads enable with g_key_file_get_integer: 2 is on, true fails to parse."""
    result = imported(APP.replace("[sink0]\nenable=1", "[sink0]\nenable=2"))
    assert result.instance["spec"]["app"]["sinks"][0]["enable"] is True
    with pytest.raises(
        AppImportError, match=r"app\.txt:\d+:\d+: error: \[sink0\] enable: .*deepstream-app fails"
    ):
        imported(APP.replace("[sink0]\nenable=1", "[sink0]\nenable=true"))


def test_a_file_uri_with_one_slash_is_a_file_camera() -> None:
    camera = ANY_MANIFEST.validate_python(
        {"apiVersion": "dsfleet/v1", "kind": "Camera", "metadata": {"name": "c"},
         "spec": {"cameraId": "1", "url": "file:/opt/nvidia/deepstream/deepstream/samples/streams/a.mp4"}}
    )  # fmt: skip
    assert camera.spec.source_type.value == "file"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="must start with rtsp://"):
        ANY_MANIFEST.validate_python({"apiVersion": "dsfleet/v1", "kind": "Camera", "metadata": {"name": "c"},
                                      "spec": {"cameraId": "1", "url": "file:relative.mp4"}})  # fmt: skip


def test_an_azure_iot_edge_broker_sink_needs_no_connection_string() -> None:
    app = APP.replace("[sink0]\nenable=1\ntype=1", "[sink0]\nenable=1\ntype=6\nmsg-conv-config=msgconv.txt\n"
                      "msg-broker-proto-lib=/opt/nvidia/deepstream/deepstream/lib/libnvds_azure_edge_proto.so\n"
                      "topic=mytopic")  # fmt: skip
    assert "sink-broker-settings" not in findings(
        imported(app, {f"{ORIGIN}/msgconv.txt": "[sensor0]\nenable=1\n"})
    )
    kafka = app.replace("azure_edge", "kafka")
    assert "msg-broker-conn-str" in findings(imported(kafka))["sink-broker-settings"][0]


PREPROCESS = """[property]
enable=1
target-unique-ids=2
operate-on-gie-id=1
network-input-order=0
process-on-frame={frame}
unique-id=6
processing-width=224
processing-height=224
network-input-shape=16;3;224;224
network-color-format=1
tensor-data-type=0
tensor-name=input_1
scaling-pool-memory-type=0
scaling-filter=0
custom-lib-path=/opt/nvidia/deepstream/deepstream/lib/gst-plugins/libcustom2d_preprocess.so
custom-tensor-preparation-function=CustomTensorPreparation

[group-0]
src-ids=0;1
{group}
"""


@pytest.mark.parametrize(
    ("frame", "group_keys", "error"),
    [
        (0, "process-on-all-objects=1", None),  # NVIDIA's config_preprocess_sgie.txt: no process-on-roi
        (0, "process-on-all-objects=0\nroi-params-src-0=0;0;100;100", None),
        (0, "process-on-all-objects=0", "roi-params-src-<id>"),
        (0, "process-on-roi=1", "process-on-all-objects"),
        (1, "process-on-roi=0", None),
        (1, "process-on-all-objects=1", "process-on-roi"),
    ],
)
def test_preprocess_groups_need_the_keys_of_their_mode(
    frame: int, group_keys: str, error: str | None
) -> None:
    result = import_keyfile(PREPROCESS.format(frame=frame, group=group_keys), "pre.txt")
    errors = [f"{f.location.line}:{f.location.column} {f.message}" for f in result.findings if f.is_error]  # type: ignore[union-attr]
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1 and errors[0].startswith("19:1 [group-0] needs") and error in errors[0]


# ------------------------------------------------------------------------------------------------------------ cause 3
def test_a_secondary_pre_process_renders_its_file_and_runs_on_the_primary() -> None:
    app = APP.replace("[sink0]", "[secondary-pre-process0]\nenable=1\noperate-on-gie-id=1\nconfig-file=pre_sgie.txt"
                      "\n\n[secondary-gie0]\nenable=1\ngie-unique-id=2\noperate-on-gie-id=1\ninput-tensor-meta=1\n"
                      "config-file=config_infer_secondary.txt\n\n[sink0]")  # fmt: skip
    result = imported(
        app, {f"{ORIGIN}/pre_sgie.txt": PREPROCESS.format(frame=0, group="process-on-all-objects=1")}
    )
    assert "extraGroups" not in result.instance["spec"]["app"]
    files = rendered(result)
    assert "pre_sgie.txt" in files and "[group-0]" in files["pre_sgie.txt"]
    text = files["deepstream_app_config.txt"]
    assert group(text, "secondary-pre-process0") == [
        "enable=1",
        "operate-on-gie-id=1",
        "config-file=pre_sgie.txt",
    ]
    assert "input-tensor-meta=1" in group(text, "secondary-gie0")
    assert "[pre-process]" not in text
    assert "preprocess-targets" not in findings(result)


# ------------------------------------------------------------------------------------------------------------ cause 4
def test_a_bad_gie_file_is_refused_with_its_line_and_reason() -> None:
    bad = PGIE.replace("cluster-mode=2", "cluster-mode=2\nnetwork-type=7")
    with pytest.raises(AppImportError) as info:
        imported(APP, {f"{ORIGIN}/config_infer_primary.txt": bad})
    lines = str(info.value).splitlines()
    assert lines[0].startswith(
        f"{ORIGIN}/config_infer_primary.txt:12:14: error: network-type in [property]: must be"
    )
    assert (
        lines[-1]
        == f"{ORIGIN}/app.txt:17:1: note: [primary-gie] config-file names {ORIGIN}/config_infer_primary.txt"
    )


def test_a_gie_group_without_config_file_is_refused_at_the_group() -> None:
    with pytest.raises(
        AppImportError, match=r"app\.txt:17:1: error: \[primary-gie\] config-file is mandatory"
    ):
        imported(APP.replace("config-file=config_infer_primary.txt", ""))


# ------------------------------------------------------------------------------------------------------------ cause 5
def test_deepstream_apps_defaults_are_kept_not_changed() -> None:
    plain = APP.replace("[application]\nenable-perf-measurement=1\nperf-measurement-interval-sec=5\n\n", "")
    plain = plain.replace("batched-push-timeout=40000\n", "").replace("file://../../streams/sample_1080p_h264.mp4",
                                                                      "rtsp://127.0.0.1:8554/cam")  # fmt: skip
    result = imported(plain)
    text = rendered(result)["deepstream_app_config.txt"]
    assert "[application]" not in text and "enable-perf-measurement" not in text
    assert "batched-push-timeout" not in text and "live-source" not in text
    assert findings(result)["perf-measurement"]  # said, not silently switched on
    explicit = rendered(imported(APP.replace("batch-size=2\nwidth", "batch-size=2\nlive-source=1\nwidth")))
    assert "enable-perf-measurement=1" in explicit["deepstream_app_config.txt"]
    assert "live-source=1" in explicit["deepstream_app_config.txt"]


# ------------------------------------------------------------------------------------------------------------ cause 6
def test_relative_paths_are_resolved_and_text_files_imported() -> None:
    app = APP.replace("[sink0]", "[tracker]\nenable=1\ntracker-width=640\ntracker-height=384\nll-lib-file=/opt/"
                      "nvidia/deepstream/deepstream/lib/libnvds_nvmultiobjecttracker.so\nll-config-file="
                      "config_tracker_IOU.yml\n\n[sink0]")  # fmt: skip
    result = imported(app)
    assert result.profile is not None
    props = result.profile["spec"]["gies"][0]["properties"]
    assert (
        props["onnx-file"]
        == "/opt/nvidia/deepstream/deepstream/samples/models/Primary_Detector/resnet18_trafficcamnet.onnx"
    )
    assert props["labelfile-path"] == "labels.txt"
    assert result.profile["spec"]["files"] == {"labels.txt": "Car\nBicycle\nPerson\nRoadsign\n"}
    spec = result.instance["spec"]
    assert spec["app"]["tracker"]["ll-config-file"] == "config_tracker_IOU.yml"
    assert spec["app"]["files"] == {"config_tracker_IOU.yml": FILES[f"{ORIGIN}/config_tracker_IOU.yml"]}
    cameras = [c["spec"]["url"] for c in result.cameras]
    assert cameras == ["file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4"] * 2
    assert "mounts" not in spec  # the origin is in the image
    assert "relative-path" not in findings(result)


def test_a_host_directory_is_mounted_where_its_models_are() -> None:
    host = "/home/me/yolo"
    app = APP.replace("file://../../streams/sample_1080p_h264.mp4", "file://videos/a.mp4")
    tree = {f"{host}/config_infer_primary.txt": PGIE.replace("../../models/Primary_Detector/", "")}
    result = import_app(app, f"{host}/app.txt", lambda p: (tree[p], p) if p in tree else None, origin=host,
                        mount_origin=True)  # fmt: skip
    assert result.instance["spec"]["mounts"] == [
        {"type": "bind", "source": host, "target": host, "readOnly": True}
    ]
    assert result.profile is not None
    assert (
        result.profile["spec"]["gies"][0]["properties"]["onnx-file"] == f"{host}/resnet18_trafficcamnet.onnx"
    )


def test_a_relative_path_that_names_no_rendered_file_is_reported() -> None:
    result = imported(APP)
    assert result.profile is not None
    result.profile["spec"]["gies"][0]["properties"]["int8-calib-file"] = "cal_trt.bin"
    (hit,) = findings(result)["relative-path"]
    assert "int8-calib-file 'cal_trt.bin' is relative and names no file dsfleet renders" in hit
    result.profile["spec"]["gies"][0]["properties"]["int8-calib-file"] = "labels.txt"  # a rendered file
    assert "relative-path" not in findings(result)


def test_two_files_with_one_name_are_refused() -> None:
    result = imported(APP)
    assert result.profile is not None
    result.instance["spec"]["app"]["files"] = {"labels.txt": "other\n", "config_infer_primary.txt": "x\n"}
    hits = findings(result)["files-names"]
    assert len(hits) == 2 and any("labels.txt is also in the profile's files" in h for h in hits)


# ------------------------------------------------------------------------------------------------------------ cause 7
USB = """[source0]
enable=1
type=1
camera-width=640
camera-height=480
camera-fps-n=30
camera-fps-d=1
camera-v4l2-dev-node=2
"""
CSI = USB.replace("type=1", "type=5").replace("camera-v4l2-dev-node=2", "camera-csi-sensor-id=1")


@pytest.mark.parametrize(("source", "kind", "key"), [(USB, "usb", "device"), (CSI, "csi", "sensorId")])
def test_usb_and_csi_sources_become_cameras_and_render_back(source: str, kind: str, key: str) -> None:
    app = APP.split("[source0]", maxsplit=1)[0] + source + "\n[streammux]" + APP.split("[streammux]")[1]
    app = app.replace("batch-size=2", "batch-size=1")
    result = imported(app)
    (camera,) = result.cameras
    assert camera["spec"]["type"] == kind and camera["spec"][key] == {"usb": "/dev/video2", "csi": 1}[kind]
    assert camera["spec"]["width"] == 640 and camera["spec"]["fps"] == 30
    text = rendered(result)["deepstream_app_config.txt"]
    assert set(group(text, "source0")) >= set(source.strip().splitlines()[1:])
    f = fleet(result)
    res = resolve_instance(f, f.instances[result.instance["metadata"]["name"]])
    spec = compile_instance(f, res).container
    if kind == "usb":
        assert spec.devices == (DeviceSpec(pathOnHost="/dev/video2", pathInContainer="/dev/video2"),)
    else:
        assert spec.devices == () and any(m.target == "/tmp/argus_socket" for m in spec.mounts)


def test_a_source_list_takes_usb_and_csi_cameras() -> None:
    app = APP.split("[source0]", maxsplit=1)[0] + "[source-list]\nlist=usb:0;csi:1;rtsp://127.0.0.1:8554/a\n\n[source-attr-all]\n" \
        "enable=1\n\n[streammux]" + APP.split("[streammux]")[1].replace("batch-size=2", "batch-size=3")  # fmt: skip
    result = imported(app)
    assert [c["spec"].get("type") for c in result.cameras] == ["usb", "csi", None]
    assert "list=usb:0;csi:1;rtsp://127.0.0.1:8554/a\n" in rendered(result)["deepstream_app_config.txt"]
    assert "app-source-list" not in findings(result)


def test_usb_and_csi_cameras_are_not_for_the_ccm_app() -> None:
    docs = [node("n1"), {"apiVersion": "dsfleet/v1", "kind": "Camera", "metadata": {"name": "cam"},
            "spec": {"cameraId": "1", "type": "usb", "device": "/dev/video0"}}]  # fmt: skip
    from tests.support.fleets import PROFILE, instance

    ccm = instance("old", "n1", ["cam"], layout="ccm")
    hits = [f.message for f in evaluate(fleet_of([*docs, PROFILE, ccm])) if f.rule == "camera-kind-layout"]
    assert hits and "usb camera" in hits[0]


def test_a_camera_kind_needs_its_keys() -> None:
    def camera(spec: dict[str, Any]) -> Any:
        return ANY_MANIFEST.validate_python({"apiVersion": "dsfleet/v1", "kind": "Camera",
                                             "metadata": {"name": "c"}, "spec": {"cameraId": "1", **spec}})  # fmt: skip

    assert camera({"type": "usb", "device": "/dev/video1"}).spec.url == "v4l2:///dev/video1"
    assert camera({"url": "csi://3"}).spec.sensorId == 3
    for bad, says in [({"type": "usb"}, "needs device"), ({"type": "csi"}, "needs sensorId"),
                      ({"type": "usb", "device": "/dev/sda"}, "pattern"),
                      ({"url": "rtsp://h/a", "device": "/dev/video0"}, "for usb and csi cameras")]:  # fmt: skip
        with pytest.raises(ValueError, match=says):
            camera(bad)


def test_devices_leave_every_existing_spec_and_its_hash_unchanged() -> None:
    """ContainerSpec.devices is left out of the serialised spec when empty: the example fleet compiles to the spec
    hashes it had before the field existed (the golden container.json files predate it)."""
    base = ContainerSpec(image="i", engineVolume="v", restartPolicy=RestartPolicySpec(name="no"))
    assert "devices" not in base.model_dump(mode="json")
    device = DeviceSpec(pathOnHost="/dev/video0", pathInContainer="/dev/video0")
    with_device = base.model_copy(update={"devices": (device,)})
    assert with_device.model_dump(mode="json")["devices"][0]["pathOnHost"] == "/dev/video0"
    assert spec_hash(with_device) != spec_hash(base)
    assert ContainerSpec.model_validate(with_device.model_dump(mode="json")) == with_device
    golden = Path(__file__).parents[1] / "golden" / "render" / "example-fleet" / "expected"
    expected = {
        p.parent.name: json.loads(p.read_text())["specHash"] for p in golden.glob("*/*/container.json")
    }
    desired = desired_state([Path(__file__).parents[2] / "manifests"])
    assert desired.configs is not None
    got = {i.name: i.specHash for config in desired.configs.values() for i in config.instances}
    assert got == expected and len(got) == 3
