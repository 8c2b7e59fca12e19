"""The agent loop's settings, host facts and the state its concern mixins share between ticks.

:class:`LoopState` holds the ports and every attribute the mixins of :class:`dsfleet.agent.loop.Agent` read or keep
(:mod:`dsfleet.agent.intake`, :mod:`dsfleet.agent.acting`, :mod:`dsfleet.agent.reporting`), so each mixin
type-checks on its own. It decides nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dsfleet.agent import filestore
from dsfleet.agent.conditions import Failure
from dsfleet.agent.configfiles import FilePlan
from dsfleet.agent.containers import Finding, ObservedContainer, ObservedVolume
from dsfleet.agent.credentials import SecretStore
from dsfleet.agent.desiredconfigs import Accepted, AppliedMark, DesiredConfig, Refusal
from dsfleet.agent.drift import Applied
from dsfleet.agent.identity import load_identity
from dsfleet.agent.observations import LogDigest, RestartHistory
from dsfleet.agent.ports import AgentBus, Clock, ContainerRuntime, RuntimeInfo
from dsfleet.agent.trust import Trust
from dsfleet.plumbing.settings import AdmissionSettings
from dsfleet.plumbing.signing import SigningKey
from dsfleet.schemas.labels import LABEL_MANAGED
from dsfleet.schemas.wire import AgentResponse, ConfigRejection, Drift, Gpu, InstanceCondition, Rejection

__all__ = [
    "MANAGED_FILTER",
    "ContainerLog",
    "HostFacts",
    "ImagePull",
    "LoopSettings",
    "LoopState",
    "SystemClock",
    "first_line",
]

MANAGED_FILTER = f"{LABEL_MANAGED}=true"


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    machine_id: str | None
    addresses: tuple[str, ...] = ()
    gpus: tuple[Gpu, ...] = ()
    agent_version: str = ""


@dataclass(frozen=True)
class LoopSettings:
    state_dir: Path
    node: str | None = None
    heartbeat_seconds: float = 5.0
    resync_seconds: float = 30.0
    self_heal: bool = True
    poll_seconds: float = 0.5
    """Longest wait for the bus or an engine event in one tick."""
    stop_timeout: float = 10.0
    fleet_id: str | None = None
    """Bind the agent to this fleet (store id) up front; None: the fleet of the first config it accepts."""
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    """What this host lets a config run (``[agent.admission]``, :mod:`dsfleet.agent.admission`)."""
    trust: Trust = field(default_factory=Trust)
    """The coordinator keys whose configs and commands the agent believes (none: it refuses every config)."""
    enroll_token: str | None = field(default=None, repr=False)
    """A one-time enrollment token: its proof goes with every AgentInfo until the coordinator enrolls the key."""


@dataclass
class ContainerLog:
    """What the agent read of one container's log: the digest, and where the next read starts."""

    digest: LogDigest = field(default_factory=LogDigest)
    since: float | None = None
    seen: tuple[str, int, str] | None = None


class ImagePull:
    """One image pull running in a daemon thread (a hung registry must not keep the process alive)."""

    def __init__(self, runtime: ContainerRuntime, image: str, on_done: threading.Event) -> None:
        self.image = image
        self.error: Exception | None = None
        self.done = threading.Event()
        self._runtime = runtime
        self._on_done = on_done
        threading.Thread(target=self._run, name="pull", daemon=True).start()

    def _run(self) -> None:
        try:
            self._runtime.pull_image(self.image)
        except Exception as exc:  # reported as the instance's failure by the loop
            self.error = exc
        finally:
            self.done.set()
            self._on_done.set()


def first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


class LoopState:
    """The ports and the state kept between ticks; ``mark`` is set by :class:`dsfleet.agent.loop.Agent` once
    the desired config kept on disk is loaded."""

    mark: AppliedMark
    """The fleet, generation and config hash last accepted (``<state-dir>/binding.json``)."""

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
        self.settings = settings
        self.state_dir = settings.state_dir.resolve()
        self.identity: SigningKey = identity or load_identity(self.state_dir)[0]
        """The agent's own key (``<state-dir>/agent.key``): it signs the agent's reports."""
        self.runtime = runtime
        self.bus = bus
        self.secrets = secrets
        self.host = host
        self.clock: Clock = clock or SystemClock()
        self.started_at = self.clock.time()
        self.node: str | None = settings.node or filestore.load_node_name(self.state_dir)
        self.desired: DesiredConfig | None = None
        self.pending: Accepted | None = None
        self._pending_invalid: Rejection | Refusal | None = None
        self.caught_up = False
        self.applied: dict[str, Applied] = filestore.load_applied(self.state_dir)
        self._saved_applied = dict(self.applied)
        self.observed_generation: int | None = None
        self.rejected = 0
        """AgentConfig records of this node that were invalid or refused (logged rate-limited, never applied)."""
        self.rejections: list[ConfigRejection] = []
        self.commands_refused = 0
        """AgentCommand records for this agent that were not signed by a trusted key (or named another key)."""
        self._last_command_log = -1e9
        self._rejected_reported = 0
        self.runtime_info: RuntimeInfo | None = None
        self.responses_sent = 0
        self.logs_sent = 0
        self.last_response: AgentResponse | None = None
        self._logs: dict[str, ContainerLog] = {}
        self._restarts: dict[str, RestartHistory] = {}
        self._drift: dict[str, list[Drift]] = {}
        self._active_drift: dict[tuple[str, str], int] = {}
        self._errors: dict[str, str] = {}
        self._failures: dict[str, Failure] = {}
        self._file_conditions: dict[str, InstanceCondition] = {}
        self._pulls: dict[str, ImagePull] = {}
        self._pulling: dict[str, str] = {}
        """Instances waiting for an image pull → the image."""
        self._pull_done = threading.Event()
        self._pull_lock = threading.Lock()
        self._kept_volumes: set[str] = set()
        """Engine volumes whose removal failed (in use): tried again on the next full resync."""
        self._secret_values: tuple[str, ...] = ()
        self._clashes: set[str] = set()
        self._file_plans: dict[str, FilePlan] = {}
        """This tick's file plans by instance (placeholders filled), carried out by the actions that write files."""
        self._node_error: str | None = None
        self._dirty = True
        self._status_dirty = True
        self._next_resync = 0.0
        self._next_heartbeat = 0.0
        self._last_reject_log = -1e9
        self._observed: list[ObservedContainer] = []
        self._volumes: list[ObservedVolume] = []
        self._findings: tuple[Finding, ...] = ()

    @property
    def bound_fleet(self) -> str | None:
        return self.settings.fleet_id or self.mark.fleet

    def _generation(self) -> int | None:
        return getattr(self.desired, "generation", None)

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self.clock.time(), UTC).isoformat()
