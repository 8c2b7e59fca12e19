"""``/metrics``: Prometheus text, names prefixed ``dsfleet_``. Counters come from the coordinator of this process
(``Coordinator.counters``, ``OutboxPublisher.stats``); gauges — and the counters the store keeps (drift events, the
foreign configs the coordinator's heartbeat reports) — are computed from the store on every scrape (so ``dsfleet
serve`` shows them too), from the same status document ``dsfleet status`` prints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from dsfleet.reconciler.views import PUBLISHED_WINDOW, status_document
from dsfleet.schemas.wire import CameraState

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.core import Metric

    from dsfleet.reconciler.api.context import ApiContext

__all__ = ["metrics_text"]

SYNCS = ("Synced", "OutOfSync", "Progressing")
HEALTHS = ("Healthy", "Degraded", "Failed", "Unknown")
CAMERA_STATES = tuple(state.value for state in CameraState)


class _FleetCollector(Collector):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        yield from self._store_metrics()
        yield from self._coordinator_metrics()
        yield from self._http_metrics()

    def _http_metrics(self) -> Iterator[Metric]:
        """What the server of this process refused or closed (:class:`~dsfleet.reconciler.api.context.HttpStats`)."""
        http = self.ctx.http
        refused = CounterMetricFamily(
            "dsfleet_http_requests_refused",
            "Requests answered before the app saw them, by reason (host, token, too-large, body-timeout, busy, "
            "bad-length)",
            labels=["reason"],
        )
        for reason, n in sorted(dict(http.refused).items()):
            refused.add_metric([reason], n)
        yield refused
        closed = CounterMetricFamily(
            "dsfleet_http_connections_closed",
            "Connections the server closed, by reason (evicted: past the cap; full: every one busy; "
            "header-timeout: no request head in time)",
            labels=["reason"],
        )
        for reason, n in sorted(dict(http.connections).items()):
            closed.add_metric([reason], n)
        yield closed

    def _store_metrics(self) -> Iterator[Metric]:
        store = self.ctx.store()
        now = datetime.now(UTC)
        snapshot = store.status_snapshot(events=0, since=now - PUBLISHED_WINDOW)
        doc = status_document(snapshot, now)
        nodes = GaugeMetricFamily(
            "dsfleet_nodes", "Nodes by connection state (online, offline, unknown)", labels=["state"]
        )
        for state in ("online", "offline", "unknown"):
            nodes.add_metric([state], doc["summary"]["nodes"][state])
        yield nodes
        yield GaugeMetricFamily(
            "dsfleet_nodes_retiring",
            "Nodes removed from the manifests whose agents still report instances",
            value=doc["summary"]["nodes"]["retiring"],
        )
        instances = GaugeMetricFamily(
            "dsfleet_instances", "Instances by sync and health", labels=["sync", "health"]
        )
        counts: dict[tuple[str, str], int] = {(s, h): 0 for s in SYNCS for h in HEALTHS}
        for i in doc["instances"]:
            counts[(i["sync"], i["health"])] = counts.get((i["sync"], i["health"]), 0) + 1
        for (sync, health), n in sorted(counts.items()):
            instances.add_metric([sync, health], n)
        yield instances
        yield GaugeMetricFamily(
            "dsfleet_drift",
            "Drift reported by agents and not healed yet (0 once everything is healed)",
            value=doc["summary"]["instances"]["drift"],
        )
        yield CounterMetricFamily(
            "dsfleet_drift_events",
            "Drifts reported by agents in all (healed or not)",
            value=doc["summary"]["instances"]["driftEvents"],
        )
        coordinator = doc["coordinator"]
        yield GaugeMetricFamily(
            "dsfleet_coordinator_up",
            "1 while the coordinator's heartbeat in the store is fresh",
            value=1 if coordinator and coordinator["running"] else 0,
        )
        if coordinator is not None:
            yield GaugeMetricFamily(
                "dsfleet_coordinator_heartbeat_age_seconds",
                "Seconds since the coordinator last wrote its heartbeat",
                value=coordinator["seenAgeSeconds"],
            )
            if coordinator["broker"]["configured"]:
                yield GaugeMetricFamily(
                    "dsfleet_broker_reachable",
                    "1 when the coordinator last reached its broker",
                    value=1 if coordinator["broker"]["reachable"] else 0,
                )
            yield CounterMetricFamily(
                "dsfleet_foreign_configs",
                "AgentConfig records read back that this fleet's coordinator did not write",
                value=coordinator["foreignConfigs"]["count"],
            )
        age = GaugeMetricFamily(
            "dsfleet_heartbeat_age_seconds", "Seconds since each node's last heartbeat", labels=["node"]
        )
        for n in doc["nodes"]:
            if n["heartbeatAgeSeconds"] is not None:
                age.add_metric([n["name"]], n["heartbeatAgeSeconds"])
        yield age
        behind = GaugeMetricFamily(
            "dsfleet_node_generation", "Desired and observed generation per node", labels=["node", "kind"]
        )
        for n in doc["nodes"]:
            for kind in ("desired", "observed"):
                value = n[f"{kind}Generation"]
                if value is not None:
                    behind.add_metric([n["name"], kind], value)
        yield behind
        outbox = doc["outbox"]
        yield GaugeMetricFamily(
            "dsfleet_outbox_depth", "Outbox rows not yet published", value=outbox["depth"]
        )
        yield GaugeMetricFamily(
            "dsfleet_outbox_oldest_age_seconds",
            "Seconds the oldest unpublished outbox row has waited (0 when none)",
            value=outbox["oldestAgeSeconds"] or 0,
        )
        handovers = GaugeMetricFamily(
            "dsfleet_camera_handovers",
            "Cameras moving to another node whose old node's config is held until the new one runs them, by state "
            "(waiting for the target, blocked: the target cannot take it)",
            labels=["state"],
        )
        moving = {"waiting": 0, "blocked": 0}
        for h in doc["handovers"]:
            moving[h["state"]] = moving.get(h["state"], 0) + len(h["moves"])
        for state, n in sorted(moving.items()):
            handovers.add_metric([state], n)
        yield handovers
        yield from self._camera_metrics(doc["cameras"])
        pin = doc.get("pin")
        pinned = GaugeMetricFamily(
            "dsfleet_sync_pinned",
            "1 while a rollback's pin holds automatic sync (label: the revision rolled back to), else 0",
            labels=["revision"],
        )
        pinned.add_metric([str(pin["revision"]) if pin else ""], 1 if pin else 0)
        yield pinned
        rollout = doc.get("rollout")
        rolling = GaugeMetricFamily(
            "dsfleet_rollout_nodes",
            "Nodes of the newest rollout by their state in it (labels: its revision, its state)",
            labels=["revision", "rollout_state", "node_state"],
        )
        if rollout:
            by_state: dict[str, int] = {}
            for node in rollout["nodes"]:
                by_state[node["state"]] = by_state.get(node["state"], 0) + 1
            for state in ("pending", "released", "soaking", "passed", "failed", "cordoned"):
                rolling.add_metric(
                    [str(rollout["revision"]), rollout["state"], state], by_state.get(state, 0)
                )
        yield rolling
        revs = GaugeMetricFamily("dsfleet_revisions", "Revisions stored, by verdict", labels=["verdict"])
        for verdict, n in sorted(store.revision_counts().items()):
            revs.add_metric([verdict], n)
        yield revs

    def _camera_metrics(self, cameras: list[dict[str, Any]]) -> Iterator[Metric]:
        """Cameras of instances served by DeepStream's stream REST API: a count by state always; one series per
        camera (``[api] camera-metrics``, on by default) for up, fps and latency."""
        states = GaugeMetricFamily(
            "dsfleet_cameras",
            "Cameras of instances served by DeepStream's stream REST API, by state (streaming, added, failed, "
            "removed)",
            labels=["state"],
        )
        counts = dict.fromkeys(CAMERA_STATES, 0)
        for c in cameras:
            counts[c["state"]] = counts.get(c["state"], 0) + 1
        for state, n in sorted(counts.items()):
            states.add_metric([state], n)
        yield states
        if not self.ctx.camera_metrics:
            return
        labels = ["node", "instance", "camera"]
        up = GaugeMetricFamily(
            "dsfleet_camera_up",
            "1 while DeepStream streams the camera (state streaming) and its node reports, else 0",
            labels=labels,
        )
        fps = GaugeMetricFamily(
            "dsfleet_camera_fps", "Frames per second DeepStream reports for the camera", labels=labels
        )
        latency = GaugeMetricFamily(
            "dsfleet_camera_latency_ms",
            "Latency DeepStream reports for the camera, in milliseconds",
            labels=labels,
        )
        for c in cameras:
            key = [c["node"], c["instance"], c["camera"]]
            up.add_metric(key, 1 if c["state"] == "streaming" and c["nodeOnline"] else 0)
            if c["fps"] is not None:
                fps.add_metric(key, c["fps"])
            if c["latencyMs"] is not None:
                latency.add_metric(key, c["latencyMs"])
        yield up
        yield fps
        yield latency

    def _coordinator_metrics(self) -> Iterator[Metric]:
        coordinator = self.ctx.coordinator
        if coordinator is None:
            return
        c = coordinator.counters
        consumed = CounterMetricFamily(
            "dsfleet_messages_consumed", "Inbound records read, per topic", labels=["topic"]
        )
        for topic, n in sorted(c.consumed.items()):
            consumed.add_metric([topic], n)
        yield consumed
        rejected = CounterMetricFamily(
            "dsfleet_messages_rejected",
            "Inbound records dropped, per topic and reason",
            labels=["topic", "reason"],
        )
        for (topic, reason), n in sorted(c.rejected.items()):
            rejected.add_metric([topic, reason], n)
        yield rejected
        unauthenticated = CounterMetricFamily(
            "dsfleet_unauthenticated_reports",
            "Inbound reports and requests dropped for their signature (not the node's enrolled key, not an operator "
            "key), by reason",
            labels=["reason"],
        )
        for reason, n in sorted(c.unauthenticated.items()):
            unauthenticated.add_metric([reason], n)
        yield unauthenticated
        applies = CounterMetricFamily("dsfleet_applies", "Applies by outcome", labels=["outcome"])
        for outcome, n in sorted(c.applies.items()):
            applies.add_metric([outcome], n)
        yield applies
        yield SummaryMetricFamily(
            "dsfleet_apply_duration_seconds",
            "Time spent applying the manifests",
            count_value=sum(c.applies.values()),
            sum_value=c.apply_seconds,
        )
        resyncs = CounterMetricFamily("dsfleet_resyncs", "Configs re-published, by reason", labels=["reason"])
        for reason, n in sorted(c.resyncs.items()):
            resyncs.add_metric([reason], n)
        yield resyncs
        commands = CounterMetricFamily("dsfleet_commands", "AgentCommands sent, by kind", labels=["command"])
        for kind, n in sorted(c.commands.items()):
            commands.add_metric([kind], n)
        yield commands
        conv = list(c.convergence_seconds)
        yield SummaryMetricFamily(
            "dsfleet_convergence_seconds",
            "Revision stored → the node's agent reports that generation (last 1000 node convergences)",
            count_value=len(conv),
            sum_value=sum(conv),
        )
        if coordinator.publisher is not None:
            stats = coordinator.publisher.stats
            published = CounterMetricFamily(
                "dsfleet_messages_published", "Outbox records delivered, per topic", labels=["topic"]
            )
            published.add_metric(["agent-config"], stats.published)
            yield published
            yield CounterMetricFamily(
                "dsfleet_outbox_superseded",
                "Outbox rows skipped: a newer row of the node was sent",
                value=stats.superseded,
            )
            yield CounterMetricFamily(
                "dsfleet_publish_failures", "Failed delivery reports", value=stats.failed
            )


def metrics_text(ctx: ApiContext) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FleetCollector(ctx))
    return generate_latest(registry), CONTENT_TYPE_LATEST
