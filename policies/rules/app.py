"""deepstream-app layout rules: sinks, message broker, escape-hatch groups (docs/manifests/layouts.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from dsfleet.policies.registry import Context, Hit, did_you_mean, rule
from dsfleet.schemas.deepstream import GieFormat
from dsfleet.schemas.manifests import RuleSeverity
from dsfleet.schemas.placeholders import broker_connection_has_credentials

E, W = RuleSeverity.ERROR, RuleSeverity.WARNING


@rule("app-extra-groups", W, "deepstream-app groups dsfleet does not know are written verbatim",
      category="deepstream")  # fmt: skip
def app_extra_groups(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        for group in spec.app.extraGroups:
            yield Hit(
                f"instance {name!r}: [{group}] is written verbatim (dsfleet does not check its keys)",
                ctx.fleet.source("DsInstance", name, "spec", "app", "extraGroups", group),
            )


@rule("sink-needs-display", W, "EGL (2) and overlay (5) sinks need a display the container does not have",
      category="deepstream")  # fmt: skip
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


@rule("sink-broker-settings", E, "a message-broker sink (type 6) names its adapter, connection and converter",
      category="deepstream")  # fmt: skip
def sink_broker_settings(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        for i, sink in enumerate(spec.app.sinks):
            values = ctx.keys(sink)
            if not values.get("enable") or values.get("type") != 6:
                continue
            needed = ["msg-broker-proto-lib", "msg-broker-conn-str"]
            if not values.get("disable-msgconv"):
                needed.append("msg-conv-config")
            missing = [k for k in needed if k not in values]
            if missing:
                yield Hit(
                    f"instance {name!r}: sink{i} (type 6) needs {', '.join(missing)}",
                    ctx.fleet.source("DsInstance", name, "spec", "app", "sinks", i),
                )


@rule("broker-credentials", E, "broker connection strings carry no credentials (take the whole string from a "
      "secret with {secretRef}, or use msg-broker-config from a secret mount)", relaxable=False,
      category="deepstream")  # fmt: skip
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
"""The URI prefixes deepstream-app's ``[source-list]`` accepts (``set_source_all_configs``; ``usb:``/``csi:``
are not cameras dsfleet models)."""


@rule("app-source-list", E, "[source-list] settings are consistent: cameras it can open, no per-camera "
      "[sourceN] beside nvmultiurisrcbin, REST settings only with nvmultiurisrcbin", category="deepstream")  # fmt: skip
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
            if camera is not None and not camera.spec.url.lower().startswith(_LIST_SCHEMES):
                yield Hit(
                    f"instance {name!r}: camera {camera_name!r}: a source list opens only rtsp:// and file:// "
                    "URLs (deepstream-app: 'Incorrect URI for camera source')",
                    ctx.fleet.source("Camera", camera_name, "spec", "url"),
                )
        names = settings.get("sensor-name-list")
        if names is not None and len(names) != len(cameras):
            yield Hit(
                f"instance {name!r}: source-list sensor-name-list has {len(names)} names for "
                f"{len(cameras)} cameras",
                at("source-list", "sensor-name-list"),
            )
        limit = settings.get("max-batch-size")
        if multi and isinstance(limit, int) and limit < len(cameras):
            yield Hit(
                f"instance {name!r}: source-list max-batch-size {limit} is less than its {len(cameras)} cameras",
                at("source-list", "max-batch-size"),
            )
        port = settings.get("http-port")
        if isinstance(port, str) and not (port.isdigit() and 1 <= int(port) <= 65535):
            yield Hit(
                f"instance {name!r}: source-list http-port must be a port number (1-65535)",
                at("source-list", "http-port"),
            )


@rule("app-source-list-ignored", W, "[source-list]/[source-attr-all] settings deepstream-app would ignore",
      category="deepstream")  # fmt: skip
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
      category="deepstream")  # fmt: skip
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
