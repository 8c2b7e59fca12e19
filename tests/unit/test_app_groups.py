"""deepstream-app groups: typed and range-checked like nvinfer keys; sink and broker rules; the escape hatch."""

from __future__ import annotations

from typing import Any

import pytest

from dsfleet.policies.engine import evaluate
from dsfleet.reconciler.compiling.rendering import render_instance
from dsfleet.resolution.instances import resolve_instance
from dsfleet.schemas.manifests import ANY_MANIFEST
from tests.support.fleets import PROFILE, camera, fleet_of, instance, node


def _fleet_with(app: dict[str, Any]) -> Any:
    inst = instance("ds", "n1", ["cam-a"])
    inst["spec"]["app"].update(app)
    return fleet_of([node("n1"), PROFILE, camera("cam-a", "1"), inst])


def _files(fleet: Any, name: str) -> dict[str, Any]:
    return {f.path: f for f in render_instance(fleet, resolve_instance(fleet, fleet.instances[name]))}


def _rules(app: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in evaluate(_fleet_with(app)):
        out.setdefault(f.rule, []).append(f.message)
    return out


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        ({"osd": {"text-color": [1, 1, 1]}}, "exactly 4 items"),
        ({"osd": {"clock-color": [2, 0, 0, 1]}}, "between 0 and 1"),
        ({"osd": {"process-mode": 2}}, "must be one of"),
        ({"tracker": {"tracker-width": 16}}, "at least 32"),
        ({"tracker": {"enable-past-frame": "yes"}}, "true"),
        ({"sinks": [{"type": 7}]}, "must be one of"),
        ({"sinks": [{"type": 4, "rtsp-port": 70000}]}, "between 1 and 65535"),
        ({"img-save": {"min-confidence": 1.5}}, "between 0 and 1"),
        ({"message-consumers": [{"subscribe-topic-lists": "a"}]}, "extra"),
        ({"tests": {"pipeline-recreate-sec": -1}}, "at least 0"),
    ],
)
def test_app_group_values_are_checked(app: dict[str, Any], fragment: str) -> None:
    inst = instance("ds", "n1", ["cam-a"])
    inst["spec"]["app"].update(app)
    with pytest.raises(ValueError) as info:
        ANY_MANIFEST.validate_python(inst)
    assert fragment.lower() in str(info.value).lower()


def test_display_sinks_warn_and_broker_sinks_need_their_settings() -> None:
    rules = _rules({"sinks": [{"type": 2}, {"type": 6, "topic": "t"}, {"type": 6, "disable-msgconv": True,
                    "msg-broker-proto-lib": "/x.so", "msg-broker-conn-str": "127.0.0.1;9092"}]})  # fmt: skip
    assert len(rules["sink-needs-display"]) == 1
    assert rules["sink-broker-settings"] == [
        "instance 'ds': sink1 (type 6) needs msg-broker-proto-lib, msg-conv-config"
    ]


@pytest.mark.parametrize(
    ("sink", "needs"),
    [
        ({"msg-broker-proto-lib": "/opt/nvidia/deepstream/deepstream/lib/libnvds_kafka_proto.so"},
         "msg-broker-conn-str (this adapter connects with it)"),
        ({"msg-broker-proto-lib": "/opt/nvidia/deepstream/deepstream/lib/libnvds_redis_proto.so"},
         "msg-broker-conn-str (this adapter connects with it)"),
        ({"msg-broker-proto-lib": "/opt/nvidia/deepstream/deepstream/lib/libnvds_amqp_proto.so"},
         "msg-broker-conn-str (this adapter connects with it or msg-broker-config)"),
        ({"msg-broker-proto-lib": "/opt/nvidia/deepstream/deepstream/lib/libnvds_amqp_proto.so",
          "msg-broker-config": "/run/secrets/cfg_amqp.txt"}, None),
        ({"msg-broker-proto-lib": "/opt/nvidia/deepstream/deepstream/lib/libnvds_azure_edge_proto.so"}, None),
        ({"msg-broker-proto-lib": "/opt/nvidia/deepstream/deepstream/lib/libnvds_kafka_proto.so",
          "msg-broker-conn-str": "127.0.0.1;9092"}, None),
    ],
)  # fmt: skip
def test_a_broker_sink_needs_a_connection_string_only_where_its_adapter_does(
    sink: dict[str, Any], needs: str | None
) -> None:
    """The Azure IoT Edge module adapter is connected by the edge runtime (NVIDIA's test5 azure_iotedge config has
    no msg-broker-conn-str); AMQP and the Azure device client may read theirs from msg-broker-config."""
    rules = _rules({"sinks": [{"type": 6, "msg-conv-config": "c.txt", **sink}]})
    if needs is None:
        assert "sink-broker-settings" not in rules
    else:
        assert rules["sink-broker-settings"] == [f"instance 'ds': sink0 (type 6) needs {needs}"]


@pytest.mark.parametrize(
    "conn",
    [
        "user:secret@10.0.0.1;9092",
        "amqp://guest:guest@127.0.0.1;5672",
        "h;1;password=x",
        "kafka://broker:9092?token=abc",
        "HostName=hub.azure-devices.net;DeviceId=cam;SharedAccessKey=c2VjcmV0",
        "broker;5672;user;pass=x",
    ],
)
@pytest.mark.parametrize("where", ["sink", "consumer"])
def test_one_bad_connection_string_is_one_finding_at_its_key(conn: str, where: str) -> None:
    """Exactly one finding per offending value, the specific broker-credentials one (camera-url-credentials, the
    generic rule over every string, leaves broker connection strings to it), at the key's place."""
    if where == "sink":
        app: dict[str, Any] = {"sinks": [{"type": 6, "msg-broker-proto-lib": "/x.so", "msg-conv-config": "c.txt",
                                          "msg-broker-conn-str": conn}]}  # fmt: skip
        path = ("spec", "app", "sinks", 0, "msg-broker-conn-str")
    else:
        app = {"message-consumers": [{"proto-lib": "/x.so", "conn-str": conn}]}
        path = ("spec", "app", "message-consumers", 0, "conn-str")
    fleet = _fleet_with(app)
    findings = [f for f in evaluate(fleet) if "credentials" in f.rule]
    assert [f.rule for f in findings] == ["broker-credentials"]
    assert findings[0].source == fleet.source("DsInstance", "ds", *path)
    assert "secretRef" in findings[0].message
    assert conn not in findings[0].message  # the value is never echoed


def test_other_strings_of_an_app_still_go_through_the_generic_rule() -> None:
    app = {"nvds-analytics": {"config-file": "rtsp://user:pw@10.0.0.1/x"}}
    rules = _rules(app)
    assert len(rules["camera-url-credentials"]) == 1 and "broker-credentials" not in rules


def test_extra_groups_are_verbatim_with_a_warning() -> None:
    rules = _rules({"extraGroups": {"ds-example": {"enable": 1, "processing-width": 640}}})
    assert rules["app-extra-groups"] == [
        "instance 'ds': [ds-example] is written verbatim (dsfleet does not check its keys)"
    ]


# ------------------------------------------------------------------------------------------- [source-list]
def _listed(
    app: dict[str, Any], cameras: tuple[str, ...] = ("cam-a", "cam-b"), url: str | None = None
) -> Any:
    inst = instance("ds", "n1", list(cameras))
    inst["spec"]["app"].update(app)
    docs = [node("n1"), PROFILE, inst]
    docs += [camera(c, str(i + 1), url if i == 0 else None) for i, c in enumerate(cameras)]
    return fleet_of(docs)


def _listed_rules(app: dict[str, Any], **kw: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in evaluate(_listed(app, **kw)):
        out.setdefault(f.rule, []).append(f.message)
    return out


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        ({"source-list": {"list": ["rtsp://10.0.0.1/a"]}}, "extra"),  # URLs only from Camera manifests
        ({"source-list": {"num-source-bins": 2}}, "extra"),
        ({"source-list": {"max-batch-size": 0}}, "between 1 and 1024"),
        ({"source-list": {"use-nvmultiurisrcbin": "yes"}}, "true"),
        ({"source-attr-all": {"select-rtp-protocol": 2}}, "must be one of"),
        ({"source-attr-all": {"cudadec-memtype": 3}}, "must be one of"),
        ({"source-attr-all": {"latency": -1}}, "at least 0"),
        ({"source-attr-all": {"type": 10}}, "must be one of"),
    ],
)
def test_source_list_values_are_checked(app: dict[str, Any], fragment: str) -> None:
    inst = instance("ds", "n1", ["cam-a"])
    inst["spec"]["app"].update(app)
    with pytest.raises(ValueError) as info:
        ANY_MANIFEST.validate_python(inst)
    assert fragment.lower() in str(info.value).lower()


def test_a_consistent_source_list_has_no_findings() -> None:
    app = {"source-list": {"use-nvmultiurisrcbin": True, "max-batch-size": 4, "http-port": "9000"},
           "source-attr-all": {"latency": 100}}  # fmt: skip
    rules = _listed_rules(app)
    assert "app-source-list" not in rules and "app-source-list-ignored" not in rules


@pytest.mark.parametrize(
    ("app", "url", "fragment"),
    [
        ({"source-list": {"use-nvmultiurisrcbin": True}, "extraGroups": {"source0": {"latency": 50}}}, None,
         "[source0] beside use-nvmultiurisrcbin"),
        ({"source-list": {}, "extraGroups": {"source2": {"latency": 50}}}, None, "index past the list"),
        ({"source-list": {}, "sources": {"latency": 100}}, None, "set these keys in source-attr-all"),
        ({"source-list": {}}, "http://10.0.0.1/a.mp4", "only rtsp:// and file://"),
        ({"source-list": {"sensor-name-list": ["one"]}}, None, "1 name for 2 cameras"),
        ({"source-list": {"use-nvmultiurisrcbin": True, "http-port": "http"}}, None, "port number"),
    ],
)  # fmt: skip
def test_conflicting_source_list_settings_are_errors(
    app: dict[str, Any], url: str | None, fragment: str
) -> None:
    rules = _listed_rules(app, url=url)
    assert len(rules.get("app-source-list", [])) == 1, rules
    assert fragment in rules["app-source-list"][0]


def test_a_per_camera_override_within_the_list_is_allowed() -> None:
    rules = _listed_rules({"source-list": {}, "extraGroups": {"source1": {"latency": 50}}})
    assert "app-source-list" not in rules


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        ({"source-attr-all": {"latency": 100}}, "without [source-list] is ignored"),
        ({"source-list": {"http-port": "9000"}}, "http-port is used only with use-nvmultiurisrcbin"),
    ],
)
def test_ignored_source_list_settings_warn(app: dict[str, Any], fragment: str) -> None:
    rules = _listed_rules(app)
    assert len(rules["app-source-list-ignored"]) == 1 and fragment in rules["app-source-list-ignored"][0]


def test_source_list_renders_cameras_with_placeholders_and_no_source_groups() -> None:
    fleet = _listed(
        {"source-list": {"sensor-name-list": ["Gate", "Dock"]}, "source-attr-all": {"latency": 9}}
    )
    rendered = _files(fleet, "ds")["deepstream_app_config.txt"]
    app = rendered.content
    assert "[source0]" not in app and "[source-list]" in app and "[source-attr-all]" in app
    assert (
        "list=rtsp://${secret:cam-a}@127.0.0.1:8554/cam-a;rtsp://${secret:cam-b}@127.0.0.1:8554/cam-b\n"
        in app
    )
    assert (
        "sensor-id-list=1;2\n" in app
        and "sensor-name-list=Gate;Dock\n" in app
        and "num-source-bins=2\n" in app
    )
    # live-source is written only when the manifest sets it (deepstream-app's default is 0)
    assert "latency=9\n" in app and "live-source" not in app
    assert rendered.secrets == ("cam-a", "cam-b")
    unnamed = _files(_listed({"source-list": {}}), "ds")["deepstream_app_config.txt"].content
    assert "sensor-name-list" not in unnamed  # not made up from the camera names


# ------------------------------------------------------------------------------------------- app-level GIE keys
@pytest.mark.parametrize(
    ("gies", "fragment"),
    [
        ({"pgie": {"bbox-border-color0": [1, 0, 0]}}, "bbox-border-color0: must have exactly 4 items"),
        ({"pgie": {"bbox-bg-color2": [1, 0, 0, 1.5]}}, "bbox-bg-color2: item 4: must be between 0 and 1"),
        ({"pgie": {"bbox-border-color<N>": [1, 0, 0, 1]}}, "with a class id"),
        ({"pgie": {"plugin-type": 2}}, "must be one of 0 (nvinfer), 1 (nvinferserver)"),
        ({"pgie": {"nvbuf-memory-type": 5}}, "must be one of"),
        ({"pgie": {"input-tensor-meta": "yes"}}, "true"),
        ({"pgie": {"batch-size": 4}}, "profile's gie properties or the instance's spec.overrides"),
        ({"pgie": {"interval": 2}}, "spec.overrides"),
        ({"pgie": {"config-file": "x.txt"}}, "config-file is the profile gie's file"),
        ({"pgie": {"bbox-colour0": [1, 0, 0, 1]}}, "extra"),
    ],
)
def test_app_level_gie_values_are_checked(gies: dict[str, Any], fragment: str) -> None:
    inst = instance("ds", "n1", ["cam-a"])
    inst["spec"]["app"]["gies"] = gies
    with pytest.raises(ValueError) as info:
        ANY_MANIFEST.validate_python(inst)
    assert fragment.lower() in str(info.value).lower()


def test_app_level_gie_keys_render_into_the_gie_groups_only() -> None:
    gies = {"pgie": {"bbox-border-color0": "1;0;0;1", "bbox-border-color2": [0, 0, 1, 1], "bbox-bg-color0":
            [0, 0, 0, 0.3], "nvbuf-memory-type": 3, "plugin-type": 0, "infer-raw-output-dir": "/workspace/out/raw"},
            "sgie": {"enable": False, "input-tensor-meta": False}}  # fmt: skip
    fleet = _fleet_with({"gies": gies})
    assert "app-gie-settings" not in _rules({"gies": gies})
    files = _files(fleet, "ds")
    app = files["deepstream_app_config.txt"].content
    primary = app.split("[primary-gie]\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert primary == [
        "enable=1", "gpu-id=0", "gie-unique-id=1", "batch-size=1", "config-file=pgie.txt",
        "nvbuf-memory-type=3", "plugin-type=0", "infer-raw-output-dir=/workspace/out/raw",
        "bbox-border-color0=1.0;0.0;0.0;1.0", "bbox-border-color2=0.0;0.0;1.0;1.0", "bbox-bg-color0=0.0;0.0;0.0;0.3",
    ]  # fmt: skip
    secondary = app.split("[secondary-gie0]\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert secondary[0] == "enable=0" and "input-tensor-meta=0" in secondary
    assert "bbox" not in files["pgie.txt"].content and "nvbuf-memory-type" not in files["pgie.txt"].content


def test_without_app_gies_the_gie_groups_are_unchanged() -> None:
    plain = _files(_fleet_with({}), "ds")["deepstream_app_config.txt"].content
    empty = _files(_fleet_with({"gies": {"pgie": {}}}), "ds")["deepstream_app_config.txt"].content
    assert plain == empty


@pytest.mark.parametrize(
    ("gies", "fragment"),
    [
        ({"pgi": {"nvbuf-memory-type": 0}}, "the profile has no GIE 'pgi'; did you mean 'pgie'?"),
        ({"pgie": {"plugin-type": 1}}, "plugin-type 1 (nvinferserver) needs an nvinferserver config"),
    ],
)
def test_app_gie_settings_name_profile_gies_the_renderer_can_serve(
    gies: dict[str, Any], fragment: str
) -> None:
    rules = _rules({"gies": gies})
    assert len(rules["app-gie-settings"]) == 1 and fragment in rules["app-gie-settings"][0]


# ------------------------------------------------------------------------------------- broker strings from a secret
BROKER_SINK = {"type": 6, "msg-broker-proto-lib": "/opt/nvidia/deepstream/deepstream/lib/libnvds_azure_proto.so",
               "msg-conv-config": "msgconv.txt", "msg-broker-conn-str": {"secretRef": "iot-hub"}}  # fmt: skip


def test_a_broker_connection_string_from_a_secret_renders_a_field_placeholder() -> None:
    app = {"sinks": [BROKER_SINK], "message-consumers": [{"proto-lib": "/x.so", "conn-str": {"secretRef": "c2d",
           "key": "password"}, "subscribe-topic-list": ["cmd"]}]}  # fmt: skip
    assert not {"broker-credentials", "sink-broker-settings", "camera-url-credentials"} & set(_rules(app))
    rendered = _files(_fleet_with(app), "ds")["deepstream_app_config.txt"]
    assert "msg-broker-conn-str=${secret:iot-hub:password}\n" in rendered.content
    assert "conn-str=${secret:c2d:password}\n" in rendered.content
    assert rendered.secrets == ("c2d", "cam-a", "iot-hub")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"secretRef": "Iot_Hub"}, "secretRef must name a secret"),
        ({"secretRef": "iot", "key": "token"}, "key must be one of username, password"),
        ({"secretRef": "iot", "value": "x"}, "takes secretRef and key"),
        ({"key": "password"}, "secretRef must name a secret"),
    ],
)
def test_a_secret_connection_value_is_checked(value: dict[str, Any], fragment: str) -> None:
    inst = instance("ds", "n1", ["cam-a"])
    inst["spec"]["app"]["sinks"] = [{**BROKER_SINK, "msg-broker-conn-str": value}]
    with pytest.raises(ValueError) as info:
        ANY_MANIFEST.validate_python(inst)
    assert fragment in str(info.value)


def test_secret_refs_are_not_accepted_where_dsfleet_cannot_fill_them() -> None:
    inst = instance("ds", "n1", ["cam-a"])
    inst["spec"]["app"]["sinks"] = [{**BROKER_SINK, "topic": {"secretRef": "iot-hub"}}]
    with pytest.raises(ValueError, match="must be a string"):
        ANY_MANIFEST.validate_python(inst)


def test_more_cameras_than_max_batch_size_is_a_stream_batch_limit_error() -> None:
    """Reported once, by the streams rule (at the camera list), not again by the source-list checks."""
    rules = _listed_rules({"source-list": {"use-nvmultiurisrcbin": True, "max-batch-size": 1}})
    assert "app-source-list" not in rules, rules
    assert len(rules.get("stream-batch-limit", [])) == 1, rules
