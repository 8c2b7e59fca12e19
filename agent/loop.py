"""The agent's loop: wires the ports (runtime, bus, clock, secret store, state dir) and holds no decisions.

Every tick re-reads desired and actual state, plans with the pure :func:`dsfleet.agent.containers.compute_plan`, applies
the plan, then reports (level-triggered; Docker events and bus records only wake it, and a full resync every
``resync_seconds`` heals a missed event).

:class:`Agent` is composed of one mixin per concern over the state they share (:class:`dsfleet.agent.loopstate.LoopState`,
which also defines :class:`LoopSettings`, :class:`HostFacts` and :class:`SystemClock`):

- :mod:`dsfleet.agent.intake`: the desired config and the commands read from the bus, the fleet and generation
  binding, refusals, the agent's name;
- :mod:`dsfleet.agent.acting`: carrying out the plan (image pulls in the background, make-before-break
  replacements), failures retried with backoff;
- :mod:`dsfleet.agent.reporting`: ``AgentInfo``, ``AgentResponse`` and the instance statuses, log digests, drift,
  replies to ``logs`` commands.
"""

from __future__ import annotations

import logging
import threading

from dsfleet.agent.acting import ActingMixin
from dsfleet.agent.containers import Plan, compute_plan, record_applied
from dsfleet.agent.credentials import SecretStore
from dsfleet.agent.intake import IntakeMixin
from dsfleet.agent.loopstate import MANAGED_FILTER, HostFacts, LoopSettings, LoopState, SystemClock
from dsfleet.agent.ports import AgentBus, Clock, ContainerRuntime
from dsfleet.agent.reporting import ReportingMixin
from dsfleet.agent.streamsync import CAMERA_POLL_SECONDS
from dsfleet.plumbing.signing import SigningKey
from dsfleet.schemas.errors import DsfleetError

__all__ = ["Agent", "HostFacts", "LoopSettings", "SystemClock"]

log = logging.getLogger("dsfleet.agent")


class Agent(IntakeMixin, ActingMixin, ReportingMixin, LoopState):
    def __init__(
        self,
        settings: LoopSettings,
        runtime: ContainerRuntime,
        bus: AgentBus | None,
        secrets: SecretStore,
        host: HostFacts,
        clock: Clock | None = None,
        identity: SigningKey | None = None,
    ) -> None:
        self._hot = {}
        self._next_camera_poll = 0.0
        super().__init__(settings, runtime, bus, secrets, host, clock, identity)
        self._load_desired()
        self.mark = self._load_mark()

    def run(self, stop: threading.Event) -> None:
        log.info("agent starting node=%s state_dir=%s fleet=%s", self.node, self.state_dir, self.bound_fleet)
        self._log_trust()
        rules = self.settings.admission
        log.info(
            "admission images=%s privileged=%s bind_sources=%s devices=%s network_modes=%s ipc_modes=%s",
            ",".join(rules.images) + (" (digests only)" if rules.require_digest else ""),
            rules.privileged,
            ",".join(rules.bind_sources) or "-",
            ",".join(rules.devices) or "-",
            ",".join(rules.network_modes),
            ",".join(rules.ipc_modes),
        )
        self._follow()
        while not stop.is_set():
            self.step()
        log.info("agent stopping (containers keep running)")

    def step(self) -> None:
        """One tick: read the bus (or wait for an engine event), reconcile when needed, report when due."""
        if self.bus is not None:
            try:
                batch = self.bus.poll(self.settings.poll_seconds)
            except DsfleetError as exc:
                log.warning("bus: %s", exc)
                batch = None
            if batch is not None:
                self._on_batch(batch)
            woke = self.runtime.wait(0)
        else:
            woke = self.runtime.wait(self.settings.poll_seconds)
        if self._pull_done.is_set():
            self._pull_done.clear()
            woke = True
        now = self.clock.monotonic()
        resync = now >= self._next_resync
        heartbeat = now >= self._next_heartbeat
        retry = any(now >= f.retry_at for name, f in self._failures.items() if name not in self._pulling)
        if self.node is not None and (woke or resync or heartbeat or retry or self._dirty):
            self._dirty = False
            self.reconcile(refresh=resync, read_all_logs=heartbeat)
            if resync:
                self._next_resync = now + self.settings.resync_seconds
        if self.node is not None and now >= self._next_camera_poll:
            self._next_camera_poll = now + CAMERA_POLL_SECONDS
            self._poll_cameras()
        if heartbeat:
            self._next_heartbeat = now + self.settings.heartbeat_seconds
            self._note_rejected_since_heartbeat()
            self._announce()
        self._report(force=heartbeat)

    def reconcile(self, *, refresh: bool = False, read_all_logs: bool = False) -> Plan | None:
        """Observe the host, plan, carry the plan out, then read the containers' logs."""
        assert self.node is not None
        try:
            if self.runtime_info is None:
                self.runtime_info = self.runtime.info()
            observed = self.runtime.list_containers(
                MANAGED_FILTER, also_names=sorted(self._clashes), refresh=refresh
            )
            volumes = self.runtime.list_volumes(MANAGED_FILTER)
        except DsfleetError as exc:
            if self._node_error != str(exc):
                log.warning("container runtime: %s", exc)
                self._status_dirty = True
            self._node_error = str(exc)
            return None
        self._node_error = None
        self._status_dirty = True
        self._observed = observed
        self._volumes = volumes
        if refresh:
            self._kept_volumes.clear()
        desired = self.desired.instances if self.desired is not None else ()
        self._file_plans = {}
        self._secret_values = self._collect_secret_values(desired)
        files = {inst.name: self._file_state(inst) for inst in desired}
        self._note_file_conditions(desired, files)
        generation = self._generation()
        self.applied = record_applied(self.applied, desired, observed, files, self.node, generation)
        plan = compute_plan(
            self.node,
            desired,
            observed,
            files,
            self.applied,
            volumes,
            self_heal=self.settings.self_heal,
            prune=getattr(self.desired, "prune", True),
            holding=self._holding(desired),
        )
        self._findings = plan.findings
        self._note_drift(plan.drift)
        by_name = {inst.name: inst for inst in desired}
        actions = self._carry_out(plan, by_name, generation)
        self._keep_applied()
        if self._settled(plan, actions, by_name):
            self.observed_generation = generation
        self._read_logs(observed, read_all_logs)
        return plan
