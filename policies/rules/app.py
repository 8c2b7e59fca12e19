"""deepstream-app layout rules: sinks, message broker, escape-hatch groups (docs/manifests/layouts.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from dsfleet.policies.registry import INSTANCE, Context, Hit, did_you_mean, rule
from dsfleet.schemas.deepstream import GieFormat
from dsfleet.schemas.findings import plural
from dsfleet.schemas.manifests import DEVICE_CAMERAS, RuleSeverity
from dsfleet.schemas.placeholders import broker_connection_has_credentials

E, W = RuleSeverity.ERROR, RuleSeverity.WARNING


@rule("app-extra-groups", W, "deepstream-app groups dsfleet does not know are written verbatim",
      category="deepstream", scope=INSTANCE)  # fmt: skip
def app_extra_groups(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        for group in spec.app.extraGroups:
            yield Hit(
                f"instance {name!r}: [{group}] is written verbatim (dsfleet does not check its keys)",
                ctx.fleet.source("DsInstance", name, "spec", "app", "extraGroups", group),
            )


@rule("sink-needs-display", W, "EGL (2) and overlay (5) sinks need a display the container does not have",
      category="deepstream", scope=INSTANCE)  # fmt: skip
def sink_needs_display(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        for i, sink in enumerate(spec.app.sinks):
            values = ctx.keys(sink)
            if values.get("enable") and values.get("type") in (2, 5):
                yield Hit(
                    f"instance {name!r}: sink{i} type {values['type']} renders to a display; headless "
                    "containers use 1 (fake), 3 (file) or 4 (RTSP)",
                    ctx.fleet.source("DsInstance", name, "spec", "app", "sinks", i, "type"),
                )


_CONNECTION_REQUIRED = ("kafka", "redis")
"""Adapters that take their connection only from ``msg-broker-conn-str`` (their READMEs: "must be specified in
call to connect"). AMQP, MQTT and the Azure device client also read it from their config file
(``msg-broker-config``); the Azure IoT Edge module client (``libnvds_azure_edge_proto.so``) needs none: the edge
runtime connects it."""
_CONNECTION_OR_CONFIG = ("amqp", "mqtt", "azure_proto")


def _needs_connection(proto_lib: object, values: dict[str, Any]) -> bool:
    name = proto_lib.rsplit("/", 1)[-1].lower() if isinstance(proto_lib, str) else ""
    if any(f"_{adapter}_" in name for adapter in _CONNECTION_REQUIRED):
        return True
    return (
        any(f"_{adapter}" in name for adapter in _CONNECTION_OR_CONFIG) and "msg-broker-config" not in values
    )


@rule("sink-broker-settings", E, "a message-broker sink (type 6) names its adapter, its converter config and "
      "the connection the adapter needs", category="deepstream", scope=INSTANCE)  # fmt: skip
def sink_broker_settings(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        for i, sink in enumerate(spec.app.sinks):
            values = ctx.keys(sink)
            if not values.get("enable") or values.get("type") != 6:
                continue
            proto = values.get("msg-broker-proto-lib")
            missing = [] if proto else ["msg-broker-proto-lib"]
            if not values.get("disable-msgconv") and "msg-conv-config" not in values:
                missing.append("msg-conv-config")
            if "msg-broker-conn-str" not in values and _needs_connection(proto, values):
                missing.append("msg-broker-conn-str (this adapter connects with it" + (
                    "" if any(f"_{a}_" in str(proto) for a in _CONNECTION_REQUIRED) else " or msg-broker-config"
                ) + ")")  # fmt: skip
            if missing:
                yield Hit(
                    f"instance {name!r}: sink{i} (type 6) needs {', '.join(missing)}",
                    ctx.fleet.source("DsInstance", name, "spec", "app", "sinks", i),
                )


@rule("broker-credentials", E, "broker connection strings carry no credentials (take the whole string from a "
      "secret with {secretRef}, or use msg-broker-config from a secret mount)", relaxable=False,
      category="deepstream", scope=INSTANCE)  # fmt: skip
def broker_credentials(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        places: list[tuple[str, tuple[str | int, ...], object]] = []
        for i, sink in enumerate(spec.app.sinks):
            places.append(
                (
                    f"sink{i}",
                    ("sinks", i, "msg-broker-conn-str"),
                    ctx.keys(sink).get("msg-broker-conn-str"),
                )
            )
        for i, consumer in enumerate(spec.app.message_consumers):
            places.append(
                (
                    f"message-consumer{i}",
                    ("message-consumers", i, "conn-str"),
                    ctx.keys(consumer).get("conn-str"),
                )
            )
        for group, path, value in places:
            if isinstance(value, str) and broker_connection_has_credentials(value):
                yield Hit(
                    f"instance {name!r}: [{group}] connection string carries credentials (not shown); keep the "
                    f"whole string in a secret and write {path[-1]}: {{secretRef: NAME}}, or put them in the "
                    "adapter's config file (msg-broker-config / config-file) mounted from a secret",
                    ctx.fleet.source("DsInstance", name, "spec", "app", *path),
                )


_SOURCE_GROUP = re.compile(r"^source([0-9]+)$")
_LIST_SCHEMES = ("rtsp://", "file://")
"""The URI prefixes deepstream-app's ``[source-list]`` accepts (``set_source_all_configs``); USB and CSI
cameras are listed as ``usb:N`` / ``csi:N``."""


@rule("app-source-list", E, "[source-list] settings are consistent: cameras it can open, no per-camera "
      "[sourceN] beside nvmultiurisrcbin, REST settings only with nvmultiurisrcbin", category="deepstream", scope=INSTANCE)  # fmt: skip
def app_source_list(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        app = spec.app

        def at(*path: str | int, _name: str = name) -> Any:
            return ctx.fleet.source("DsInstance", _name, "spec", "app", *path)

        if app.source_list is None:
            continue
        settings = app.source_list.values_by_key()
        multi = bool(settings.get("use-nvmultiurisrcbin"))
        cameras = ctx.resolved[name].cameras if name in ctx.resolved else spec.cameras
        if app.sources.model_dump(exclude_none=True):
            yield Hit(
                f"instance {name!r}: app.sources is written to each [sourceN], which a source list replaces; set "
                "these keys in source-attr-all",
                at("sources"),
            )
        for group in app.extraGroups:
            match = _SOURCE_GROUP.match(group)
            if match is None:
                continue
            if multi:
                yield Hit(
                    f"instance {name!r}: [{group}] beside use-nvmultiurisrcbin: nvmultiurisrcbin is one element "
                    "for every camera, set from each source's settings in turn (the last source's win for all "
                    "cameras), so a per-camera group does not stay per camera; set the keys in source-attr-all",
                    at("extraGroups", group),
                )
            elif int(match.group(1)) >= len(cameras):
                yield Hit(
                    f"instance {name!r}: [{group}] overrides source {match.group(1)} of a list of "
                    f"{len(cameras)}; deepstream-app refuses an index past the list",
                    at("extraGroups", group),
                )
        for camera_name in cameras:
            camera = ctx.fleet.cameras.get(camera_name)
            if (
                camera is not None
                and camera.spec.source_type not in DEVICE_CAMERAS
                and not camera.spec.url.lower().startswith(_LIST_SCHEMES)
            ):
                yield Hit(
                    f"instance {name!r}: camera {camera_name!r}: a source list opens only rtsp:// and file:// "
                    "URLs, USB and CSI cameras (deepstream-app: 'URI not in proper format')",
                    ctx.fleet.source("Camera", camera_name, "spec", "url"),
                )
        names = settings.get("sensor-name-list")
        if names is not None and len(names) != len(cameras):
            yield Hit(
                f"instance {name!r}: source-list sensor-name-list has {plural(len(names), 'name')} for "
                f"{plural(len(cameras), 'camera')}",
                at("source-list", "sensor-name-list"),
            )
        port = settings.get("http-port")
        if isinstance(port, str) and not (port.isdigit() and 1 <= int(port) <= 65535):
            yield Hit(
                f"instance {name!r}: source-list http-port must be a port number (1-65535)",
                at("source-list", "http-port"),
            )


@rule("app-source-list-ignored", W, "[source-list]/[source-attr-all] settings deepstream-app would ignore",
      category="deepstream", scope=INSTANCE)  # fmt: skip
def app_source_list_ignored(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        app = spec.app

        def at(*path: str | int, _name: str = name) -> Any:
            return ctx.fleet.source("DsInstance", _name, "spec", "app", *path)

        if app.source_list is None:
            if app.source_attr_all is not None:
                yield Hit(
                    f"instance {name!r}: [source-attr-all] without [source-list] is ignored by deepstream-app "
                    "(set source-list, or use app.sources)",
                    at("source-attr-all"),
                )
            continue
        settings = app.source_list.values_by_key()
        multi = bool(settings.get("use-nvmultiurisrcbin"))
        for key in ("http-ip", "http-port", "max-batch-size", "low-latency-mode"):
            if key in settings and not multi:
                yield Hit(
                    f"instance {name!r}: source-list {key} is used only with use-nvmultiurisrcbin: true",
                    at("source-list", key),
                )


@rule("app-gie-settings", E, "app.gies names GIEs of the instance's profile, with keys their group reads",
      category="deepstream", scope=INSTANCE)  # fmt: skip
def app_gie_settings(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        if not spec.app.gies or name not in ctx.resolved:
            continue
        gies = {g.name: g for g in ctx.resolved[name].gies}
        for gie_name, settings in sorted(spec.app.gies.items()):
            where = ctx.fleet.source("DsInstance", name, "spec", "app", "gies", gie_name)
            gie = gies.get(gie_name)
            if gie is None:
                yield Hit(
                    f"instance {name!r}: app.gies.{gie_name}: the profile has no GIE {gie_name!r}"
                    + did_you_mean(gie_name, gies),
                    where,
                )
                continue
            values = settings.values_by_key()
            if gie.format is GieFormat.NVDSPREPROCESS:
                other = sorted(k for k in values if k != "enable")
                if other:
                    yield Hit(
                        f"instance {name!r}: app.gies.{gie_name}: [pre-process] reads only enable (not "
                        f"{', '.join(other)})",
                        where,
                    )
            elif values.get("plugin-type") == 1:
                yield Hit(
                    f"instance {name!r}: app.gies.{gie_name}: plugin-type 1 (nvinferserver) needs an "
                    f"nvinferserver config, but the profile renders {gie.file} for nvinfer",
                    ctx.fleet.source("DsInstance", name, "spec", "app", "gies", gie_name, "plugin-type"),
                )


@rule("perf-measurement", W, "deepstream-app instances print **PERF lines, which the agent reports as FPS",
      category="deepstream", scope=INSTANCE)  # fmt: skip
def perf_measurement(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        if not spec.app.application.enable_perf_measurement:
            yield Hit(
                f"instance {name!r}: enable-perf-measurement is off (deepstream-app's default), so the agent reports "
                "no FPS; set app.application.enable-perf-measurement: true to have them",
                ctx.fleet.source("DsInstance", name, "spec", "app"),
            )


@rule(
    "camera-kind-layout",
    E,
    "the ccm app opens URL cameras only (no usb or csi cameras)",
    category="deepstream",
    scope=INSTANCE,
)
def camera_kind_layout(ctx: Context) -> Iterator[Hit]:
    for name, res in ctx.resolved_instances:
        if res.layout != "ccm":
            continue
        for camera_name in res.cameras:
            camera = ctx.fleet.cameras.get(camera_name)
            if camera is not None and camera.spec.source_type in DEVICE_CAMERAS:
                yield Hit(
                    f"instance {name!r}: camera {camera_name!r} is a {camera.spec.source_type.value} camera; the ccm "
                    "app's source_list.json takes rtsp, file and http URLs (use the deepstream-app layout)",
                    ctx.fleet.source("Camera", camera_name, "spec", "type"),
                )
