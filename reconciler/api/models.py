"""The bodies the HTTP API answers with, as pydantic models: what ``/openapi.json`` documents and what every
response is checked against before it is sent (a body that does not match is a 500, never a silent change of
shape). The documents themselves are built by :mod:`dsfleet.reconciler.views` (shared with the CLI's ``-o json``);
these models only describe them, field for field, in the same order.

To extend a document, add the key in ``views`` and the field here (a test compares the two on a whole status
document). A field that a document may omit has a default and its route answers with ``exclude_unset``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dsfleet.reconciler.planning.conditions import Connection, Health, Sync
from dsfleet.reconciler.planning.plans import Action, ChangeKind
from dsfleet.schemas.wire import CameraState

__all__ = [
    "Accepted",
    "ApplyRequest",
    "CameraStatusView",
    "CameraView",
    "CamerasDocument",
    "DiffDocument",
    "ErrorResponse",
    "EventView",
    "FindingView",
    "Healthz",
    "InstanceLogs",
    "InstanceStatus",
    "InstanceView",
    "InvalidDiffDocument",
    "LegacyAgentView",
    "LegacyCameraView",
    "LegacyDsInstanceView",
    "NodeDetail",
    "NodeListItem",
    "NodeStatus",
    "RefreshRequest",
    "RevisionView",
    "StatusDocument",
    "ValidationErrorResponse",
]

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""An ISO 8601 time with its UTC offset, as Python writes it (``2026-01-01T12:00:00.123456+00:00``)."""


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ----------------------------------------------------------------------------------------------------- errors


class ErrorDetail(_Body):
    status: int = Field(description="the HTTP status code, again")
    message: str = Field(description="what went wrong, for people; never a secret or a traceback")


class ErrorResponse(_Body):
    """Every error: ``{"error": {"status": N, "message": "..."}}``."""

    error: ErrorDetail


class FieldError(_Body):
    loc: list[str] = Field(description="where: ``body``/``query``/``path`` then the field's path")
    message: str = Field(description="what is wrong with it (never the value sent)")


class ValidationErrorDetail(ErrorDetail):
    fields: list[FieldError]


class ValidationErrorResponse(_Body):
    """A malformed request (422): the error names every offending field, never its value."""

    error: ValidationErrorDetail


# --------------------------------------------------------------------------------------------------- requests


class ApplyRequest(_Body):
    requestedBy: str = Field("", max_length=255, description="who asks (shown in the coordinator's log)")


class RefreshRequest(_Body):
    node: str | None = Field(None, max_length=63, description="one node, or every node when absent")
    requestedBy: str = Field("", max_length=255)


class Accepted(_Body):
    """A write was taken (202): the id of the request and, when known at once, the revision it applied."""

    accepted: bool = True
    requestId: str
    revision: int | None = None
    detail: str = ""


class Healthz(_Body):
    status: Literal["ok"]


# --------------------------------------------------------------------------------------- revisions and events


class NoteView(_Body):
    message: str
    file: str | None
    line: int | None
    column: int | None


class FindingView(_Body):
    """A finding of validation (an error of a rejected revision, or a warning), gcc-style location."""

    severity: str
    rule: str
    message: str
    file: str | None
    line: int | None
    column: int | None
    notes: list[NoteView]


class RevisionView(_Body):
    id: int
    createdAt: Timestamp
    source: str = Field(description="watch, cli, api, webhook or rollback")
    commit: str | None
    author: str | None
    subject: str | None = Field(description="the first line of the commit message")
    accepted: bool
    nodesChanged: int
    errors: list[FindingView] = Field(description="why the revision was rejected (empty when accepted)")


class EventView(_Body):
    id: int
    at: Timestamp
    kind: str = Field(description="online, offline, state, drift, …")
    node: str | None
    instance: str | None
    message: str | None


# ----------------------------------------------------------------------------------------------------- status


class GpuView(_Body):
    index: int
    uuid: str
    name: str
    memoryMiB: int | None


class RejectionView(_Body):
    """An AgentConfig record the node's agent refused (it keeps running its last good config)."""

    reason: str = Field(description="stale-generation, other-fleet, invalid, …")
    generation: int | None
    detail: str
    at: str


class NodeStatus(_Body):
    """A node (desired, or announced by an agent) in the status document."""

    name: str
    online: bool
    state: Connection = Field(
        description="online; offline (no heartbeat for a few intervals); unknown (the coordinator is not running "
        "or cannot reach its broker, or started moments ago): computed when read"
    )
    stateReason: str
    retiring: bool = Field(
        description="the manifests no longer declare the node: shown until its agent removed what it ran"
    )
    lastSeen: Timestamp | None
    heartbeatAgeSeconds: float | None
    heartbeatSeconds: float | None
    hostname: str | None
    agentVersion: str | None
    dockerVersion: str | None
    nvidiaRuntime: bool
    gpus: list[GpuView]
    capacity: int | None
    instances: int = Field(description="how many desired instances the node runs")
    desiredGeneration: int | None
    observedGeneration: int | None
    sync: Sync = Field(description="the worst of its instances' and of its own config hash's")
    reason: str
    managed: bool = Field(description="the manifests declare this node")
    error: str | None
    fleet: str | None = Field(description="the fleet its agent says it is bound to")
    fleetConflict: str | None = Field(description="set when its agent is bound to another fleet")
    rejections: list[RejectionView] = Field(description="AgentConfig records its agent refused lately")


class DriftView(_Body):
    kind: str
    detail: str | None
    at: str
    healed: bool


class ConditionView(_Body):
    """A problem the agent has with the instance; it keeps running what it ran before."""

    reason: str = Field(
        description="ImageNotFound, CreateFailed, StartFailed, SecretMissing, FilesUnwritable, …"
    )
    message: str
    cameras: list[str] = Field(description="the cameras it leaves out")
    since: str | None
    attempts: int
    nextRetryAt: str | None


class InstanceStatus(_Body):
    """An instance (desired, or still reported by its node) in the status document."""

    name: str
    node: str
    sync: Sync
    health: Health
    state: str | None = Field(description="the container's state as the agent last reported it")
    reason: str
    desiredGeneration: int | None
    observedGeneration: int | None
    desiredConfigHash: str | None
    observedConfigHash: str | None
    paused: bool
    gpu: int | None
    profile: str | None
    cameras: int | None
    restarts: int
    exitCode: int | None
    lastLogLine: str | None
    error: str | None
    fps: dict[str, float] = Field(
        description="frames per second of each source (source index → fps); only when fresh and running"
    )
    fpsAt: Timestamp | None
    conditions: list[ConditionView]
    drift: list[DriftView]
    movingFrom: list[str] = Field(description="other nodes that still report it (it moved from there)")
    containerId: str | None
    updatedAt: Timestamp | None


class NodeCounts(_Body):
    total: int
    online: int
    offline: int
    unknown: int
    retiring: int


class InstanceCounts(_Body):
    total: int
    sync: dict[str, int]
    health: dict[str, int]
    drift: int = Field(description="drift reported and not healed yet")
    driftEvents: int = Field(description="drifts reported in all")


class StatusSummary(_Body):
    nodes: NodeCounts
    instances: InstanceCounts


class PendingPlan(_Body):
    """What applying would change, stored by a coordinator in manual sync."""

    valid: bool
    summary: dict[str, int]
    text: str


class PinView(_Body):
    """A rollback's pin: automatic sync is held while the manifests source points at what was rolled back from."""

    revision: int = Field(description="the revision whose configs were restored")
    rollbackRevision: int = Field(description="the revision the rollback stored (source rollback)")
    fromRevision: int | None = Field(description="the revision rolled back from")
    node: str | None = Field(description="the one node rolled back (None: the fleet)")
    commit: str | None = Field(description="the pinned git commit of the manifests source (None: not git)")
    manifestsHash: str = Field(description="the pinned manifests hash (what keeps a plain directory pinned)")
    since: Timestamp
    by: str = Field(description="who rolled back (user@host)")
    unpinWhen: str = Field(description="what lifts the pin")
    summary: str


class RolloutNodeView(_Body):
    node: str
    wave: int = Field(description="index into waves")
    instances: list[str] = Field(description="its instances the rollout governs")
    state: Literal["pending", "released", "soaking", "passed", "failed", "cordoned"]
    reason: str = Field(description="why it is in that state (what its gate reads)")
    releasedAt: Timestamp | None
    healthySince: Timestamp | None


class RolloutView(_Body):
    """The newest rollout (``Policy.spec.rollout``): its waves, each node's progress and why it waits."""

    revision: int = Field(description="the revision rolled out")
    fromRevision: int | None = Field(description="the last good revision (where an abort returns)")
    waves: list[str]
    nodes: list[RolloutNodeView]
    since: Timestamp
    wave: int = Field(description="the current wave (index into waves; len(waves) once every wave is done)")
    state: Literal[
        "progressing", "paused", "waiting-promote", "succeeded", "aborting", "aborted", "superseded"
    ]
    reason: str
    commit: str | None = Field(description="the git commit of the revision (what an abort's pin holds)")
    manifestsHash: str
    updated: Timestamp | None
    finished: Timestamp | None
    by: str = Field(description="who promoted, paused, resumed or aborted it last")
    governs: list[str] = Field(description="the kinds of instance change it governs")
    gate: dict[str, Any] = Field(description="the health gate: soakSeconds, deadlineSeconds, …")
    summary: str


class RolloutDocument(RolloutView):
    """``GET /api/v1/rollout``."""

    schema_: Literal["dsfleet.rollout/v1"] = Field(alias="schema")


class RolloutRequested(_Body):
    """``POST /api/v1/rollout/{action}``: the request the coordinator takes within a second."""

    revision: int = Field(description="the revision whose rollout it is for")
    action: Literal["promote", "pause", "resume", "abort"]
    by: str
    state: Literal["requested"]


class BrokerView(_Body):
    configured: bool
    reachable: bool | None
    since: Timestamp | None = Field(description="since when it has been reachable (or not)")
    error: str | None
    summary: str


class ForeignConfigs(_Body):
    count: int = Field(description="AgentConfig records read back that this coordinator did not write")
    last: str | None


class CoordinatorView(_Body):
    """The coordinator's heartbeat, as of the document."""

    running: bool
    summary: str = Field(description='e.g. "coordinator not running, last seen 2 min ago"')
    host: str
    pid: int
    version: str
    manifests: str
    sync: str | None
    startedAt: Timestamp
    seenAt: Timestamp
    seenAgeSeconds: float
    stoppedAt: Timestamp | None
    broker: BrokerView
    foreignConfigs: ForeignConfigs


class OutboxView(_Body):
    depth: int = Field(description="outbox rows waiting to be published (not those a camera handover holds)")
    held: int = Field(description="node configs a camera handover holds back (see ``handovers``)")
    nodes: list[str] = Field(description="the nodes whose configs wait")
    oldestAt: Timestamp | None
    oldestAgeSeconds: float | None
    summary: str = Field(description='e.g. "2 configs waiting to be published: broker unreachable since …"')


class HandoverMoveView(_Body):
    camera: str
    fromInstance: str = Field(description="the source node's instance that ran it")
    toNode: str
    toInstance: str


class HandoverView(_Body):
    """A source node's config held back in the outbox until the cameras it gives away run on their new nodes."""

    node: str = Field(description="the source node (it keeps running the cameras meanwhile)")
    state: Literal["waiting", "blocked", "done", "timed-out"] = Field(
        description="waiting for the targets (released at the deadline at the latest); blocked: a target cannot "
        "take a camera (kept until the manifests change or the target can); done, timed-out: decided, about to "
        "be released"
    )
    reason: str
    since: Timestamp
    deadline: Timestamp = Field(description="when it is released if no target said anything")
    summary: str = Field(
        description='e.g. "camera lobby-2 moving to gpu-node-2/traffic-parking: waiting for gpu-node-2 to run it, '
        'since …, released at … at the latest"'
    )
    moves: list[HandoverMoveView]


class PendingKeyView(_Body):
    """An agent's key that announced itself for a node without being enrolled for it."""

    node: str
    keyId: str = Field(description="the key's id (``dsfleet-agent key`` prints it on the host)")
    hostname: str | None = Field(description="the hostname the agent gave (unverified)")
    machineId: str | None = Field(description="the machine id the agent gave (unverified)")
    firstSeen: Timestamp
    lastSeen: Timestamp | None
    approve: str = Field(
        description='the command that enrolls it, e.g. "dsfleet nodes approve gpu-node-1 --key …"'
    )


class DroppedReportsView(_Body):
    since: Timestamp | None = Field(description="when the coordinator that counted them started")
    total: int
    byReason: dict[str, int] = Field(
        description="unsigned, unknown-key, bad-signature, pending-enrollment, revoked: how many of each"
    )


class EnrollmentView(_Body):
    """Who may speak for the nodes: keys waiting for approval and reports dropped for their signature."""

    pendingKeys: list[PendingKeyView]
    droppedReports: DroppedReportsView = Field(
        description="reports and bus requests the coordinator dropped since it started: not signed by the node's "
        "enrolled key (or by an operator key)"
    )
    summary: str


class CameraStatusView(_Body):
    """A camera of an instance served by DeepStream's stream REST API, as its agent last reported it."""

    node: str
    instance: str
    camera: str = Field(description="the Camera's name")
    state: CameraState = Field(
        description="streaming (DeepStream lists it), added (asked for, not listed yet), failed (refused or "
        "dropped by DeepStream; re-added with backoff), removed (taken out on purpose)"
    )
    reason: str | None = Field(description="why failed, in DeepStream's words (credentials removed)")
    sourceId: int | None = Field(description="DeepStream's source id of the stream")
    fps: float | None
    frameNumber: int | None
    latencyMs: float | None
    since: str | None = Field(description="when the camera entered this state")
    nodeOnline: bool = Field(description="false: the last values its node sent before it went silent")
    updatedAt: Timestamp | None = Field(description="when the node reported them")


class CamerasDocument(_Body):
    """``dsfleet.cameras/v1`` (``GET /api/v1/status/cameras``; also in ``dsfleet status -o json`` as ``cameras``)."""

    schema_: Literal["dsfleet.cameras/v1"] = Field(alias="schema")
    generatedAt: Timestamp
    states: dict[str, int] = Field(description="how many cameras are in each state")
    cameras: list[CameraStatusView]


class StatusDocument(_Body):
    """``dsfleet.status/v1``: the fleet at a glance (also ``dsfleet status -o json``)."""

    schema_: Literal["dsfleet.status/v1"] = Field(alias="schema")
    generatedAt: Timestamp
    fleet: str | None = Field(description="the fleet (store) id every AgentConfig carries")
    coordinator: CoordinatorView | None = Field(description="None: no coordinator ever ran on this store")
    outbox: OutboxView
    handovers: list[HandoverView] = Field(
        description="camera moves waiting for their targets, by source node"
    )
    summary: StatusSummary
    nodes: list[NodeStatus]
    instances: list[InstanceStatus]
    revision: RevisionView | None = Field(description="the newest revision, accepted or rejected")
    pendingPlan: PendingPlan | None
    pin: PinView | None = Field(
        description="None: not pinned; else automatic sync is held (dsfleet rollback)"
    )
    rollout: RolloutView | None = Field(description="the newest rollout (None: none yet)")
    events: list[EventView] = Field(description="the newest events, newest first")
    enrollment: EnrollmentView
    cameras: list[CameraStatusView] = Field(
        description="per camera of the instances served by DeepStream's stream REST API (GET /cameras)"
    )


# -------------------------------------------------------------------------------------------------- inventory


class NodeListItem(NodeStatus):
    labels: dict[str, str]


class NodeDetail(NodeListItem):
    nodeId: str | None
    instanceList: list[InstanceStatus]


class InstanceView(InstanceStatus):
    """An instance with what the inventory holds of it; the four inventory fields are absent for an instance
    that is no longer desired but still reported by its node."""

    image: str | None = None
    layout: str | None = None
    appType: str | None = None
    specHash: str | None = None
    sources: list[str] = Field(
        default_factory=list,
        description="the instance's cameras in source order (``fps`` key N is ``sources[N]``)",
    )


class CameraView(_Body):
    """A camera: a credentials-free URL and the name of the secret that holds its credentials."""

    name: str
    camera_id: str
    url: str
    secret_ref: str | None
    encoding: str | None
    type: str | None
    width: int | None
    height: int | None
    labels: dict[str, str]
    instance: str | None


class LegacyCameraView(_Body):
    """A camera as the older system showed it (``legacy=true``)."""

    name: str
    camera_id: str
    ip_address: str | None
    encode_type: str | None
    type: str | None
    width: int | None
    height: int | None
    instance_name: str | None
    agent_name: str | None


class LegacyDsInstanceView(_Body):
    """The older system's DsInstance record (``legacy=true``)."""

    instance_name: str
    agent_name: str
    cameras: list[str]
    app_type: str


class LegacyAgentView(_Body):
    """The older system's Agent record."""

    agent_name: str
    ip_address: str | None
    hostname: str | None
    node_id: str | None
    connected: bool


# ------------------------------------------------------------------------------------------------------- diff


class FieldChangeView(_Body):
    path: str
    action: Literal["changed", "added", "removed"]
    old: Any
    new: Any


class FileChangeView(_Body):
    path: str
    action: Action
    diff: str = Field(description="the file's unified diff")


class EngineRebuildView(_Body):
    gie: str = Field(description="the GIE's rendered file")
    reasons: list[str]
    downtime: str


class InstanceChangeView(_Body):
    name: str
    action: Action
    kind: ChangeKind | None
    old_hash: str | None
    new_hash: str | None
    fields: list[FieldChangeView]
    files: list[FileChangeView]
    engineRebuilds: list[EngineRebuildView]


class NodeChangeView(_Body):
    name: str
    action: Action
    old_hash: str | None
    new_hash: str | None
    instances: list[InstanceChangeView]


class PlacedEngineRebuild(_Body):
    node: str
    instance: str
    gie: str
    reasons: list[str]
    downtime: str


class DiffDocument(_Body):
    """``dsfleet.diff/v1`` of valid manifests: what applying the manifests directory now would change (also
    ``dsfleet diff -o json``)."""

    schema_: Literal["dsfleet.diff/v1"] = Field(alias="schema")
    changed: bool
    summary: dict[str, int]
    nodes: list[NodeChangeView]
    engineRebuilds: list[PlacedEngineRebuild]
    valid: Literal[True]
    findings: list[FindingView] = Field(description="warnings")


class RevisionDiffDocument(_Body):
    """What changed from one stored revision to another (``dsfleet history diff A B -o json``), as ``diff``
    shows a plan."""

    schema_: Literal["dsfleet.diff/v1"] = Field(alias="schema")
    changed: bool
    summary: dict[str, int]
    nodes: list[NodeChangeView]
    engineRebuilds: list[PlacedEngineRebuild]
    fromRevision: int
    toRevision: int


class InvalidDiffDocument(_Body):
    """``dsfleet.diff/v1`` of manifests that do not validate: nothing to compare, the findings say why."""

    schema_: Literal["dsfleet.diff/v1"] = Field(alias="schema")
    valid: Literal[False]
    findings: list[FindingView]


# ------------------------------------------------------------------------------------------------------- logs


class InstanceLogs(_Body):
    """``GET /instances/{name}/logs``: the newest lines of the instance's container, read on its node at the time
    of the request (credentials masked on the host and again by the API)."""

    instance: str
    node: str = Field(description="the node that answered")
    text: str = Field(description="the log lines, oldest first (at most 64 KB)")
    truncated: bool = Field(description="older lines were left out to stay within 64 KB")
    error: str | None = Field(
        description="why the node could not read the log (no container, …); text is empty"
    )
    requestId: str
    fetchedAt: Timestamp
