"""Rules for instances served by DeepStream's stream REST API (``[source-list] use-nvmultiurisrcbin`` with an
``http-port``), whose cameras are added and removed in the running pipeline (docs/manifests/layouts.md,
"Hitless camera changes").

- ``stream-batch-limit``: nvmultiurisrcbin refuses a stream past ``max-batch-size`` (``STREAM_ADD_FAIL``), so more
  cameras than that is an error at validate time, never a runtime failure on a host.
- ``stream-batch-headroom``: room for the cameras the Policy asks to add without a restart (rule param ``cameras``,
  default 1).
- ``stream-api-port``: two host-network instances of one node cannot both listen on one REST port.
- ``stream-api-exposed``: the REST server has no authentication and listens on every interface whatever ``http-ip``
  says; with host networking that is every interface of the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dsfleet.policies.registry import INSTANCE, PARTITIONED, Context, Hit, by_node, rule
from dsfleet.schemas.findings import SourceRef, plural
from dsfleet.schemas.manifests import DeepstreamAppInstanceSpec, RuleSeverity
from dsfleet.schemas.streamapi import max_batch_size, rest_port

E, W = RuleSeverity.ERROR, RuleSeverity.WARNING


def _settings(spec: DeepstreamAppInstanceSpec) -> dict[str, Any] | None:
    source_list = spec.app.source_list
    return source_list.values_by_key() if source_list is not None else None


def _cameras_at(ctx: Context, name: str, spec: DeepstreamAppInstanceSpec) -> SourceRef | None:
    """Where the instance's cameras are chosen: its ``cameras`` list, else its ``cameraSelector``."""
    key = "cameras" if spec.cameras or spec.cameraSelector is None else "cameraSelector"
    return ctx.fleet.source("DsInstance", name, "spec", key) or ctx.fleet.source("DsInstance", name, "spec")


def _limit_at(ctx: Context, name: str, settings: dict[str, Any]) -> SourceRef | None:
    path: tuple[str, ...] = ("max-batch-size",) if "max-batch-size" in settings else ()
    return ctx.fleet.source("DsInstance", name, "spec", "app", "source-list", *path)


@rule("stream-batch-limit", E, "an nvmultiurisrcbin instance has at most max-batch-size cameras (DeepStream "
      "refuses a stream past it)", relaxable=False, category="deepstream", scope=INSTANCE)  # fmt: skip
def stream_batch_limit(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        settings = _settings(spec)
        limit = max_batch_size(settings) if settings is not None else None
        if limit is None:
            continue
        count = len(ctx.resolved[name].cameras) if name in ctx.resolved else len(spec.cameras)
        if count > limit:
            unset = "" if "max-batch-size" in (settings or {}) else " (nvmultiurisrcbin's default)"
            yield Hit(
                f"instance {name!r} has {plural(count, 'camera')}, more than its source-list max-batch-size "
                f"{limit}{unset}: nvmultiurisrcbin refuses the streams past it (STREAM_ADD_FAIL); raise "
                "max-batch-size (the engine is built for it) or move cameras to another instance",
                _cameras_at(ctx, name, spec),
            )


@rule("stream-batch-headroom", W, "an instance served by the stream REST API leaves room in max-batch-size for "
      "the cameras the Policy wants to add without a restart", params={"cameras": 1},
      category="deepstream", scope=INSTANCE)  # fmt: skip
def stream_batch_headroom(ctx: Context) -> Iterator[Hit]:
    wanted = ctx.param("stream-batch-headroom", "cameras", 1)
    if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted <= 0:
        return
    for name, spec in ctx.apps:
        settings = _settings(spec)
        if settings is None or rest_port(settings) is None:
            continue
        limit = max_batch_size(settings)
        count = len(ctx.resolved[name].cameras) if name in ctx.resolved else len(spec.cameras)
        if limit is None or count > limit:  # stream-batch-limit says so
            continue
        if limit - count < wanted:
            yield Hit(
                f"instance {name!r}: source-list max-batch-size {limit} leaves room for {limit - count} more of "
                f"its {plural(count, 'camera')}, less than the {plural(wanted, 'camera')} of headroom asked for "
                "(rules.stream-batch-headroom.params.cameras); raising max-batch-size later rebuilds the engine",
                _limit_at(ctx, name, settings),
            )


def _host_network(spec: DeepstreamAppInstanceSpec) -> bool:
    return spec.networkMode == "host"


@rule("stream-api-port", E, "instances of one node with host networking use different source-list http-ports",
      category="deepstream", scope=PARTITIONED,
      partitions=by_node(("DsInstance",)))  # fmt: skip
def stream_api_port(ctx: Context) -> Iterator[Hit]:
    first: dict[tuple[str, int], str] = {}
    for name, spec in ctx.apps:
        settings = _settings(spec)
        port = rest_port(settings) if settings is not None else None
        if port is None or spec.node is None or not _host_network(spec):
            continue
        other = first.setdefault((spec.node, port), name)
        if other != name:
            yield Hit(
                f"instance {name!r}: source-list http-port {port} is also the REST port of instance {other!r} on "
                f"node {spec.node!r}; with host networking both listen on the host, so the second cannot start "
                "its REST server",
                ctx.fleet.source("DsInstance", name, "spec", "app", "source-list", "http-port"),
            )


@rule("stream-api-exposed", W, "the stream REST API (no authentication) is not reachable beyond the host",
      category="security", scope=INSTANCE)  # fmt: skip
def stream_api_exposed(ctx: Context) -> Iterator[Hit]:
    for name, spec in ctx.apps:
        settings = _settings(spec)
        port = rest_port(settings) if settings is not None else None
        if port is None or not _host_network(spec):
            continue
        yield Hit(
            f"instance {name!r}: DeepStream's stream REST server (port {port}) has no authentication and listens "
            "on every interface whatever http-ip says; with host networking anyone who reaches the host can add "
            f"and remove its streams: drop port {port} from outside at the host firewall (the agent calls it on "
            "127.0.0.1). With networkMode none or bridge nothing is exposed, but the agent cannot reach it either: "
            "camera changes then restart the instance",
            ctx.fleet.source("DsInstance", name, "spec", "app", "source-list", "http-port"),
        )
