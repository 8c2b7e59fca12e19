"""Camera changes without a restart, on the agent's side: :class:`HotCamerasMixin` (mixed into
:class:`dsfleet.agent.loop.Agent`) applies a pending camera-only change of a running instance through DeepStream's
stream REST API instead of a restart (:meth:`HotCamerasMixin._apply_hot`), and every :data:`CAMERA_POLL_SECONDS`
reconciles each such instance's streams with its written camera list (:meth:`HotCamerasMixin._poll_cameras`); the
per-camera status goes into ``InstanceStatus.cameras``. Decisions are pure (:mod:`dsfleet.agent.hotcameras`), the
HTTP calls the adapter's (:mod:`dsfleet.agent.deepstreamrest`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dsfleet.agent import filestore
from dsfleet.agent.configfiles import FilePlan
from dsfleet.agent.containers import instance_containers
from dsfleet.agent.deepstreamrest import RestUnreachable, StreamRest
from dsfleet.agent.hotcameras import (
    ActiveStream,
    CameraTrack,
    StreamMetrics,
    backoff,
    camera_statuses,
    hot_change,
    reconcile_cameras,
    rest_prefix,
)
from dsfleet.agent.loopstate import LoopState
from dsfleet.schemas.nodeconfigs import InstanceConfig
from dsfleet.schemas.redaction import redact
from dsfleet.schemas.streamapi import stream_api
from dsfleet.schemas.wire import CameraState, CameraStatus

__all__ = ["CAMERA_POLL_SECONDS", "HotCamerasMixin", "HotInstance"]

log = logging.getLogger("dsfleet.agent")

CAMERA_POLL_SECONDS = 3.0
"""How often the streams of each REST instance are read (``get-stream-info`` + ``metrics``)."""


@dataclass
class HotInstance:
    """One running instance whose cameras go through its REST API: the client and each camera's track."""

    container_id: str
    rest: StreamRest
    tracks: dict[str, CameraTrack] = field(default_factory=dict)
    active: tuple[ActiveStream, ...] = ()
    metrics: dict[str, StreamMetrics] = field(default_factory=dict)
    error: str | None = None


class HotCamerasMixin(LoopState):
    _hot: dict[str, HotInstance]

    def _rest_for(self, inst: InstanceConfig, container_id: str, port: int) -> HotInstance:
        known = self._hot.get(inst.name)
        if known is None or known.container_id != container_id or known.rest.port != port:
            prefix = rest_prefix(inst.container.image, inst.container.env.get("DSFLEET_DS_VERSION"))
            known = HotInstance(container_id, StreamRest(port, prefix))
            self._hot[inst.name] = known
        return known

    def _apply_hot(self, inst: InstanceConfig, container_id: str, plan: FilePlan | None) -> bool:
        """Apply a pending camera-only change through the REST API (files written first, so a later restart
        starts with the right list); False when it is not such a change or the API did not take it (the caller
        restarts the container)."""
        if plan is None or plan.empty:
            return False
        try:
            old, _ = filestore.read_directory(filestore.instance_dir(self.state_dir, inst.name))
        except OSError:
            return False
        change = hot_change(old, {w.path: w.content for w in plan.writes}, plan.removals)
        if change is None:
            return False
        hot = self._rest_for(inst, container_id, change.api.port)
        try:
            hot.rest.streams()  # reachable, and the path style settled, before anything is written
        except RestUnreachable as exc:
            log.warning(
                "hot camera change instance=%s: REST API unreachable (%s); restarting instead", inst.name, exc
            )
            return False
        filestore.apply_file_plan(self.state_dir, inst.name, plan)
        wall = self.clock.time()
        refused: list[str] = []
        try:
            for source in change.removes:
                outcome = hot.rest.remove(source)
                if not outcome.ok and "no record" not in outcome.reason.lower():
                    refused.append(f"remove {source.camera_id}: {outcome.reason}")
                else:
                    hot.tracks[source.camera_id] = CameraTrack(source, CameraState.REMOVED, wall)
                log.info(
                    "camera remove instance=%s camera=%s outcome=%s",
                    inst.name,
                    source.camera_id,
                    outcome.reason,
                )
            for source in change.adds:
                outcome = hot.rest.add(source)
                reason = redact(outcome.reason, self._secret_values)
                if outcome.ok:
                    hot.tracks[source.camera_id] = CameraTrack(source, CameraState.ADDED, wall, attempts=1)
                else:
                    refused.append(f"add {source.camera_id}: {reason}")
                    hot.tracks[source.camera_id] = CameraTrack(source, CameraState.FAILED, wall, reason, 1)
                log.info("camera add instance=%s camera=%s outcome=%s", inst.name, source.camera_id, reason)
        except RestUnreachable as exc:
            log.warning(
                "hot camera change instance=%s: REST API unreachable (%s); restarting instead", inst.name, exc
            )
            return False
        if refused:
            log.warning(
                "hot camera change instance=%s refused (%s); restarting instead",
                inst.name,
                "; ".join(refused),
            )
            return False
        log.info(
            "hot camera change instance=%s added=%s removed=%s (no restart)",
            inst.name,
            ",".join(s.camera_id for s in change.adds) or "-",
            ",".join(s.camera_id for s in change.removes) or "-",
        )
        self._status_dirty = True
        return True

    def _poll_cameras(self) -> None:
        """Reconcile the cameras of every running REST instance whose files are written: read the streams,
        re-add the dropped (with backoff), remove the unexpected (self-heal), keep the per-camera status."""
        if self.node is None or self.desired is None:
            return
        now, wall = self.clock.monotonic(), self.clock.time()
        seen: set[str] = set()
        for inst in self.desired.instances:
            current, _ = instance_containers(inst, self._observed, self.node)
            path = next((f.path for f in inst.files if "use-nvmultiurisrcbin" in f.content), None)
            if current is None or current.state != "running" or path is None or inst.paused:
                continue
            try:
                text = (filestore.instance_dir(self.state_dir, inst.name) / path).read_text()
            except (OSError, UnicodeDecodeError):
                continue
            api = stream_api(text)
            if api is None:
                continue
            seen.add(inst.name)
            hot = self._rest_for(inst, current.id, api.port)
            try:
                active = hot.rest.streams()
                metrics = hot.rest.metrics()
                plan = reconcile_cameras(
                    api.sources, active, hot.tracks, now=now, wall=wall, self_heal=self.settings.self_heal
                )
                tracks = dict(plan.tracks)
                for source in plan.removes:
                    hot.rest.remove(source)
                for source in plan.adds:
                    outcome = hot.rest.add(source)
                    if not outcome.ok:
                        reason = redact(outcome.reason, self._secret_values)
                        track = tracks[source.camera_id]
                        tracks[source.camera_id] = CameraTrack(
                            source,
                            CameraState.FAILED,
                            wall,
                            reason,
                            track.attempts,
                            now + backoff(track.attempts),
                        )
                        log.warning(
                            "camera add refused instance=%s camera=%s reason=%s",
                            inst.name,
                            source.camera_id,
                            reason,
                        )
            except RestUnreachable as exc:
                if hot.error != str(exc):
                    log.warning("cameras instance=%s: REST API unreachable: %s", inst.name, exc)
                    self._status_dirty = True
                hot.error = str(exc)
                continue
            if hot.error is not None:
                log.info("cameras instance=%s: REST API answers again", inst.name)
            hot.error = None
            for event in plan.events:
                log.info("%s instance=%s", event, inst.name)
            if tracks != hot.tracks or active != hot.active or metrics != hot.metrics:
                self._status_dirty = True
            hot.tracks, hot.active, hot.metrics = tracks, active, metrics
        for name in set(self._hot) - seen:
            del self._hot[name]

    def _camera_statuses(self, name: str) -> tuple[CameraStatus, ...]:
        hot = self._hot.get(name)
        if hot is None:
            return ()
        statuses = camera_statuses(
            hot.tracks, hot.active, hot.metrics, lambda t: datetime.fromtimestamp(t, UTC).isoformat()
        )
        return tuple(s.model_copy(update={"reason": redact(s.reason, self._secret_values)}) for s in statuses)
