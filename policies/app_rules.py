"""deepstream-app layout rules: sinks, message broker, escape-hatch groups (REFERENCE §3, §8.28)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from policies.registry import Context, Hit, rule
from schemas.manifests import DeepstreamAppInstanceSpec, RuleSeverity

E, W = RuleSeverity.ERROR, RuleSeverity.WARNING
_USERINFO = re.compile(r"^[^;/@]*://[^/@]*:[^/@]*@|^[^;/]*:[^;/]*@")
"""``scheme://user:password@host`` or ``user:password@host`` at the start of a connection string."""


def _apps(ctx: Context) -> Iterator[tuple[str, DeepstreamAppInstanceSpec]]:
    for name, inst in sorted(ctx.fleet.instances.items()):
        if isinstance(inst.spec, DeepstreamAppInstanceSpec):
            yield name, inst.spec


@rule("app-extra-groups", W, "deepstream-app groups dsfleet does not know are written verbatim",
      category="deepstream")  # fmt: skip
def app_extra_groups(ctx: Context) -> Iterator[Hit]:
    for name, spec in _apps(ctx):
        for group in spec.app.extraGroups:
            yield Hit(
                f"instance {name!r}: [{group}] is written verbatim (dsfleet does not check its keys)",
                ctx.fleet.source("DsInstance", name, "spec", "app", "extraGroups", group),
            )


@rule("sink-needs-display", W, "EGL (2) and overlay (5) sinks need a display the container does not have",
      category="deepstream")  # fmt: skip
def sink_needs_display(ctx: Context) -> Iterator[Hit]:
    for name, spec in _apps(ctx):
        for i, sink in enumerate(spec.app.sinks):
            values = sink.values_by_key()
            if values.get("enable") and values.get("type") in (2, 5):
                yield Hit(
                    f"instance {name!r}: sink{i} type {values['type']} renders to a display; headless "
                    "containers use 1 (fake), 3 (file) or 4 (RTSP)",
                    ctx.fleet.source("DsInstance", name, "spec", "app", "sinks", i, "type"),
                )


@rule("sink-broker-settings", E, "a message-broker sink (type 6) names its adapter, connection and converter",
      category="deepstream")  # fmt: skip
def sink_broker_settings(ctx: Context) -> Iterator[Hit]:
    for name, spec in _apps(ctx):
        for i, sink in enumerate(spec.app.sinks):
            values = sink.values_by_key()
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


@rule("broker-credentials", E, "broker connection strings carry no credentials (use msg-broker-config from a "
      "secret mount)", relaxable=False, category="deepstream")  # fmt: skip
def broker_credentials(ctx: Context) -> Iterator[Hit]:
    for name, spec in _apps(ctx):
        places: list[tuple[str, tuple[str | int, ...], object]] = []
        for i, sink in enumerate(spec.app.sinks):
            places.append(
                (
                    f"sink{i}",
                    ("sinks", i, "msg-broker-conn-str"),
                    sink.values_by_key().get("msg-broker-conn-str"),
                )
            )
        for i, consumer in enumerate(spec.app.message_consumers):
            places.append(
                (
                    f"message-consumer{i}",
                    ("message-consumers", i, "conn-str"),
                    consumer.values_by_key().get("conn-str"),
                )
            )
        for group, path, value in places:
            if isinstance(value, str) and (_USERINFO.search(value) or "password" in value.lower()):
                yield Hit(
                    f"instance {name!r}: [{group}] connection string carries credentials; put them in the "
                    "adapter's config file (msg-broker-config / config-file) mounted from a secret",
                    ctx.fleet.source("DsInstance", name, "spec", "app", *path),
                )
