"""The wire: the six Kafka topics, one message model per topic, the partition function and safe decoding.

Both sides import this module and nothing else of each other (docs/operating/coordinator.md):

| # | topic           | direction               | key                         |
|---|-----------------|-------------------------|-----------------------------|
| 200 | AgentInfo     | agent → coordinator     | node name, else machine id  |
| 201 | AgentCommand  | coordinator → agents    | node name, machine id or ``*`` |
| 210 | AgentConfig   | coordinator → one agent | node name (compacted; tombstone = node removed) |
| 220 | AgentResponse | agent → coordinator     | node name                   |
| 300 | UpdateConfig  | API/CLI → coordinator   | none                        |
| 301 | Refresh       | API/CLI → coordinator   | none                        |

Every message is JSON with a ``schema`` (``dsfleet.<kind>/v1``) and ``sent_at`` (ISO 8601, UTC). Decoding never
raises: a value that is too large, not JSON, too deeply nested, of another schema or of the wrong shape comes back as
a :class:`Rejection` naming the topic and why, so a consumer loop logs, counts and drops it.

**Partition function** (:func:`partition_for`): Apache Kafka's Java default partitioner — murmur2 of the UTF-8 key,
made positive with ``& 0x7fffffff``, modulo the partition count. librdkafka's default (consistent_random/crc32)
differs, so the coordinator always names the partition explicitly and the agent computes the same number; Java
tools and Kafka Streams agree with both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dsfleet.schemas.nodeconfigs import InstanceConfig, NodeConfig
from dsfleet.schemas.signatures import SignedFields

MAX_MESSAGE_BYTES = 1_000_000
"""Apache Kafka's default ``max.message.bytes``; ``[kafka] max_message_bytes`` may change it
(docs/architecture/decisions/0017-message-size-limits.md)."""
BROADCAST_KEY = "*"


class Topic(StrEnum):
    """The six topics by their older names (a deployment may prefix them, see :func:`topic_name`)."""

    AGENT_INFO = "AgentInfo"
    AGENT_COMMAND = "AgentCommand"
    AGENT_CONFIG = "AgentConfig"
    AGENT_RESPONSE = "AgentResponse"
    UPDATE_CONFIG = "UpdateConfig"
    REFRESH = "Refresh"


TOPIC_NUMBERS: dict[Topic, int] = {
    Topic.AGENT_INFO: 200,
    Topic.AGENT_COMMAND: 201,
    Topic.AGENT_CONFIG: 210,
    Topic.AGENT_RESPONSE: 220,
    Topic.UPDATE_CONFIG: 300,
    Topic.REFRESH: 301,
}


def topic_name(topic: Topic, prefix: str = "") -> str:
    return prefix + topic.value


def topic_of(name: str, prefix: str = "") -> Topic | None:
    """The topic a (prefixed) name stands for, or None."""
    if not name.startswith(prefix):
        return None
    try:
        return Topic(name[len(prefix) :])
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# partition function


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length4 * 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key`` in a topic of ``partitions`` partitions (Java's default partitioner)."""
    if partitions < 1:
        raise ValueError("a topic has at least one partition")
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


# ---------------------------------------------------------------------------------------------------------------
# messages


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    sent_at: str
    """ISO 8601 time of sending, UTC."""


class Gpu(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    uuid: str = ""
    name: str = ""
    memoryMiB: int | None = None


class AgentInfo(_Message):
    """Topic 200, key = node name (or machine id while unnamed): registration and heartbeat, every few seconds."""

    schema_: Literal["dsfleet.agent-info/v1"] = Field("dsfleet.agent-info/v1", alias="schema")
    node: str | None = Field(None, max_length=63)
    """The agent's node name; None while the coordinator has not named it."""
    hostname: str = Field(max_length=255)
    machineId: str | None = Field(None, max_length=64)
    addresses: tuple[str, ...] = Field((), max_length=64)
    gpus: tuple[Gpu, ...] = Field((), max_length=64)
    capacity: int | None = Field(None, ge=0)
    agentVersion: str = Field("", max_length=64)
    dockerVersion: str | None = Field(None, max_length=64)
    nvidiaRuntime: bool = False
    startedAt: str | None = None
    heartbeatSeconds: float = Field(5.0, gt=0, le=3600)
    observedGeneration: int | None = None
    """Generation of the config the agent last applied (None: it holds none)."""
    configHash: str | None = Field(None, max_length=64)
    fleet: str | None = Field(None, max_length=64)
    """The fleet (store) id the agent is bound to (None: it has accepted no config yet)."""
    publicKey: str | None = Field(None, max_length=64)
    """The agent's own public key (``ed25519:<base64>``); the record is signed by it. The coordinator takes reports
    of a node only from the key enrolled for it."""
    enrollProof: str | None = Field(None, max_length=256)
    """Proof that the agent holds a one-time enrollment token, bound to ``publicKey``
    (:func:`dsfleet.plumbing.signing.enrollment_proof`)."""


class CommandKind(StrEnum):
    ASSIGN_NAME = "assign-name"
    """``node`` is the name the agent with ``machineId``/``hostname`` must use."""
    REJECT = "reject"
    """The agent could not be named; ``reason`` says why (unknown, ambiguous)."""
    REFRESH = "refresh"
    """Re-announce now (AgentInfo and AgentResponse)."""
    LOGS = "logs"
    """Send the recent log of ``instance``'s container (``tail`` lines, ``since``) as an :class:`AgentLogs`."""


class AgentCommand(_Message):
    """Topic 201, key = node name, machine id or ``*`` (every agent)."""

    schema_: Literal["dsfleet.agent-command/v1"] = Field("dsfleet.agent-command/v1", alias="schema")
    command: CommandKind
    target: str = Field(max_length=255)
    """Node name, machine id or hostname the command is for, or ``*``."""
    node: str | None = Field(None, max_length=63)
    machineId: str | None = Field(None, max_length=64)
    hostname: str | None = Field(None, max_length=255)
    reason: str = Field("", max_length=1000)
    requestId: str | None = Field(None, max_length=64)
    instance: str | None = Field(None, max_length=63)
    tail: int | None = Field(None, ge=1, le=10_000)
    since: str | None = Field(None, max_length=64)
    keyId: str | None = Field(None, max_length=16)
    """``assign-name``: the id of the key of the agent that asked to be named; any other agent ignores it."""
    fleet: str | None = Field(None, max_length=64)


class AgentConfig(_Message):
    """Topic 210, key = node name: the whole desired config of one node. A tombstone (null value) removes it."""

    schema_: Literal["dsfleet.agent-config/v1"] = Field("dsfleet.agent-config/v1", alias="schema")
    node: str
    generation: int = Field(ge=1)
    configHash: str
    instances: tuple[InstanceConfig, ...] = ()
    prune: bool = True
    """Remove managed containers of instances no longer listed (``Policy.spec.sync.prune``)."""
    fleet: str | None = Field(None, max_length=64)
    """The id of the fleet (store) that wrote it: an agent bound to another fleet ignores it."""


class InstanceState(StrEnum):
    """Container states as an operator reads them (docs/operating/status.md)."""

    RUNNING = "running"
    CREATED = "created"
    RESTARTING = "restarting"
    BACKOFF = "backoff"
    EXITED = "exited"
    STOPPED = "stopped"
    MISSING = "missing"


class Drift(BaseModel):
    """One difference between what the agent applied and what it found."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(max_length=64)
    """``stopped``, ``removed``, ``relabelled``, ``file-edited``, ``file-missing``, ``recreated-outside``, …"""
    detail: str = Field("", max_length=1000)
    at: str
    healed: bool = False


class InstanceCondition(BaseModel):
    """A problem the agent has with an instance, kept until it is solved (Kubernetes' container ``waiting``
    reasons): the instance keeps running what it ran before."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str = Field(max_length=64)
    """``ImageNotFound``, ``CreateFailed``, ``StartFailed``, ``SecretMissing``, ``FilesUnwritable``, …"""
    message: str = Field("", max_length=2000)
    cameras: tuple[str, ...] = Field((), max_length=1024)
    """The cameras it leaves out (a missing secret)."""
    since: str | None = None
    attempts: int = Field(0, ge=0)
    nextRetryAt: str | None = None
    """When the agent tries again (exponential backoff with jitter); None: on the next change."""


class CameraState(StrEnum):
    """A camera's state in an instance that adds and removes streams through DeepStream's REST API."""

    STREAMING = "streaming"
    """DeepStream lists it among its streams (and, where it reports them, its frames advance)."""
    ADDED = "added"
    """Asked for (``stream/add`` answered success) and not listed by DeepStream yet."""
    FAILED = "failed"
    """DeepStream refused it or dropped it by itself (``reason`` says why); re-added with backoff."""
    REMOVED = "removed"
    """Taken out on purpose (no longer desired); reported once, then gone."""


class CameraStatus(BaseModel):
    """One camera of an instance as DeepStream itself reports it (its REST API)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(max_length=63)
    """The Camera's name (``camera_name`` / ``camera_id`` in DeepStream's stream list)."""
    state: CameraState
    reason: str | None = Field(None, max_length=500)
    """Why ``failed`` (DeepStream's own words, redacted), or what the agent is doing about it."""
    sourceId: int | None = None
    """DeepStream's source id of the stream."""
    fps: float | None = None
    frameNumber: int | None = None
    latencyMs: float | None = None
    since: str | None = None
    """When the camera entered this state."""


class InstanceStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(max_length=63)
    state: InstanceState
    containerId: str | None = Field(None, max_length=128)
    generation: int | None = None
    specHash: str | None = Field(None, max_length=64)
    filesHash: str | None = Field(None, max_length=64)
    configHash: str | None = Field(None, max_length=64)
    restarts: int = Field(0, ge=0)
    exitCode: int | None = None
    lastLogLine: str | None = Field(None, max_length=2000)
    error: str | None = Field(None, max_length=2000)
    drift: tuple[Drift, ...] = Field((), max_length=100)
    fps: dict[str, float] = Field(default_factory=dict, max_length=1024)
    """Frames per second of each source from the newest ``**PERF:`` line (source index → fps); empty when that
    line is stale or older than the container's current run."""
    fpsAt: str | None = None
    """When the FPS values were printed."""
    startedAt: str | None = None
    conditions: tuple[InstanceCondition, ...] = Field((), max_length=20)
    cameras: tuple[CameraStatus, ...] = Field((), max_length=1024)
    """Per camera, from DeepStream's REST API (instances with ``[source-list] use-nvmultiurisrcbin=1`` and an
    ``http-port``); empty for the others."""


class ConfigRejection(BaseModel):
    """An AgentConfig record the agent refused (it keeps running its last good config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str = Field(max_length=64)
    """``stale-generation``, ``stale-epoch``, ``other-fleet``, ``invalid``, ``conflicting-config``, …"""
    generation: int | None = None
    detail: str = Field("", max_length=1000)
    at: str


class AgentResponse(_Message):
    """Topic 220, key = node name: every few seconds and on every change."""

    schema_: Literal["dsfleet.agent-response/v1"] = Field("dsfleet.agent-response/v1", alias="schema")
    node: str = Field(max_length=63)
    observedGeneration: int | None = None
    configHash: str | None = Field(None, max_length=64)
    instances: tuple[InstanceStatus, ...] = Field((), max_length=10_000)
    error: str | None = Field(None, max_length=2000)
    """A node-level problem (secrets missing, Docker unreachable); per-instance ones go in the instance."""
    fleet: str | None = Field(None, max_length=64)
    rejections: tuple[ConfigRejection, ...] = Field((), max_length=20)
    """The newest AgentConfig records the agent refused (bounded)."""


LOG_REPLY_BYTES = 64 * 1024
"""The most log text one :class:`AgentLogs` carries."""


class AgentLogs(_Message):
    """Topic 220 (beside AgentResponse), key = node name: the reply to an :class:`AgentCommand` ``logs``."""

    schema_: Literal["dsfleet.agent-logs/v1"] = Field("dsfleet.agent-logs/v1", alias="schema")
    node: str = Field(max_length=63)
    requestId: str = Field(max_length=64)
    instance: str = Field(max_length=63)
    text: str = Field("", max_length=LOG_REPLY_BYTES)
    """The log lines, oldest first, redacted on the host."""
    truncated: bool = False
    error: str | None = Field(None, max_length=2000)


class UpdateConfig(_Message):
    """Topic 300: apply the pending plan now (manual sync) or re-apply the watched directory."""

    schema_: Literal["dsfleet.update-config/v1"] = Field("dsfleet.update-config/v1", alias="schema")
    requestId: str = Field(max_length=64)
    requestedBy: str = Field("", max_length=255)
    revision: int | None = None
    """Apply this stored revision's plan; None: the pending one (or re-read the directory)."""
    fleet: str | None = Field(None, max_length=64)
    """The fleet the request is for; a coordinator of another fleet ignores it."""


class Refresh(_Message):
    """Topic 301: ask agents (one node, or all) to re-announce."""

    schema_: Literal["dsfleet.refresh/v1"] = Field("dsfleet.refresh/v1", alias="schema")
    requestId: str = Field(max_length=64)
    requestedBy: str = Field("", max_length=255)
    node: str | None = Field(None, max_length=63)
    fleet: str | None = Field(None, max_length=64)
    """The fleet the request is for; a coordinator of another fleet ignores it."""


MESSAGE_TYPES: dict[Topic, type[_Message]] = {
    Topic.AGENT_INFO: AgentInfo,
    Topic.AGENT_COMMAND: AgentCommand,
    Topic.AGENT_CONFIG: AgentConfig,
    Topic.AGENT_RESPONSE: AgentResponse,
    Topic.UPDATE_CONFIG: UpdateConfig,
    Topic.REFRESH: Refresh,
}
"""The main message of each topic (its ``schema`` is the record's ``schema`` header)."""

OTHER_MESSAGES: dict[Topic, dict[str, type[_Message]]] = {
    Topic.AGENT_RESPONSE: {"dsfleet.agent-logs/v1": AgentLogs},
}
"""Further messages a topic carries, by their ``schema`` field."""


def schema_of(topic: Topic) -> str:
    default = MESSAGE_TYPES[topic].model_fields["schema_"].default
    assert isinstance(default, str)
    return default


def encode(message: _Message) -> bytes:
    return message.model_dump_json(by_alias=True).encode("utf-8")


Signer = Callable[[SignedFields, str | None, bytes | None], dict[str, str]]
"""``sign(fields, record key, payload)`` → the headers of the signed record
(:func:`dsfleet.plumbing.signing.sign_record` with a key)."""


def signed_fields_of(message: _Message) -> SignedFields:
    """The fields of a message that its record's signature covers besides the key and the payload."""
    schema = getattr(message, "schema_", "")
    generation = getattr(message, "generation", None)
    return SignedFields(
        schema=schema,
        issued=message.sent_at,
        fleet=getattr(message, "fleet", None),
        generation=generation if isinstance(generation, int) else None,
    )


def agent_config_record(
    node: str,
    generation: int,
    payload: dict[str, Any] | None,
    sent_at: str,
    prefix: str = "",
    *,
    fleet: str | None = None,
    sign: Signer | None = None,
    epoch: int = 0,
) -> tuple[str, str, bytes | None, dict[str, str]]:
    """The ``AgentConfig`` record (topic, key, value, headers) of one node's stored config; None → tombstone.
    ``fleet``: the id of the fleet (store) that writes it; ``epoch``: the leadership epoch of the coordinator that
    stores it (a signed header, not in the payload; 0: none, the header is left out); ``sign``: signs the record
    (its headers then carry the signature: docs/security/wire.md)."""
    topic = topic_name(Topic.AGENT_CONFIG, prefix)
    fields = SignedFields(schema_of(Topic.AGENT_CONFIG), sent_at, fleet, generation, epoch or None)
    headers = fields.headers()
    if payload is None:
        return topic, node, None, sign(fields, node, None) if sign is not None else headers
    config = NodeConfig.model_validate(payload)
    message = AgentConfig(
        sent_at=sent_at,
        node=node,
        generation=generation,
        configHash=config.configHash,
        instances=config.instances,
        prune=config.prune,
        fleet=fleet,
    )
    value = encode(message)
    return topic, node, value, sign(fields, node, value) if sign is not None else headers


# ---------------------------------------------------------------------------------------------------------------
# decoding


class RejectReason(StrEnum):
    TOO_LARGE = "too-large"
    NOT_JSON = "not-json"
    WRONG_SCHEMA = "wrong-schema"
    INVALID = "invalid"
    KEY_MISMATCH = "key-mismatch"
    NULL_KEY = "null-key"
    NULL_VALUE = "null-value"
    UNKNOWN_TOPIC = "unknown-topic"


@dataclass(frozen=True)
class Rejection:
    """A message that was not accepted; ``detail`` never carries the message's content."""

    topic: str
    reason: RejectReason
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.topic}: rejected ({self.reason}){': ' + self.detail if self.detail else ''}"


M = TypeVar("M", bound=_Message)


@dataclass(frozen=True)
class Tombstone:
    """A null value on a keyed topic (AgentConfig: the node has no config any more)."""

    topic: str
    key: str


@dataclass(frozen=True)
class Decoded(Generic[M]):
    topic: str
    key: str | None
    message: M


def _first_error(err: ValidationError) -> str:
    errors = err.errors(include_url=False, include_input=False, include_context=False)
    if not errors:
        return "invalid"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "message"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def _schema_field(value: bytes) -> str | None:
    """The ``schema`` of a JSON object, read without building the whole message (None when absent)."""
    import json  # stdlib; only for the fallback path

    try:
        obj: Any = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if isinstance(obj, dict):
        s = obj.get("schema")
        return s if isinstance(s, str) else None
    return None


def decode(
    topic: Topic,
    key: bytes | str | None,
    value: bytes | None,
    *,
    topic_label: str | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
    require_key: bool = False,
) -> Decoded[Any] | Tombstone | Rejection:
    """Decode one record of ``topic``; never raises. ``topic_label`` (the prefixed name) is used in rejections.

    Keyed topics whose message names a node (AgentConfig, AgentResponse, and AgentInfo once named) must carry that
    node as key: a record whose key and content disagree is forged or misrouted, and is rejected.
    """
    label = topic_label or topic.value
    if isinstance(key, bytes):
        try:
            key_text: str | None = key.decode("utf-8")
        except UnicodeDecodeError:
            return Rejection(label, RejectReason.INVALID, "key is not UTF-8")
    else:
        key_text = key
    if require_key and not key_text:
        return Rejection(label, RejectReason.NULL_KEY, "a keyed topic got a record without key")
    if value is None:
        if topic is Topic.AGENT_CONFIG and key_text:
            return Tombstone(label, key_text)
        return Rejection(label, RejectReason.NULL_VALUE, "no value")
    if len(value) > max_bytes:
        return Rejection(label, RejectReason.TOO_LARGE, f"{len(value)} bytes > limit {max_bytes}")
    model = MESSAGE_TYPES[topic]
    for schema, other in OTHER_MESSAGES.get(topic, {}).items():
        # our encoder writes ``schema`` right after ``sent_at``: a look at the head, not a second parse of
        # every AgentResponse (a producer that orders keys otherwise gets a wrong-schema rejection)
        if f'"schema":"{schema}"'.encode() in value[:256]:
            model = other
    try:
        message = model.model_validate_json(value)
    except ValidationError as err:
        kinds = {e.get("type") for e in err.errors(include_url=False, include_input=False)}
        if kinds & {"json_invalid", "json_type", "recursion_loop"}:
            return Rejection(label, RejectReason.NOT_JSON, _first_error(err))
        found = _schema_field(value)
        expected = schema_of(topic)
        if found is not None and found != expected:
            return Rejection(
                label, RejectReason.WRONG_SCHEMA, f"schema {found[:80]!r}, expected {expected!r}"
            )
        return Rejection(label, RejectReason.INVALID, _first_error(err))
    except (ValueError, RecursionError) as err:  # pragma: no cover - pydantic wraps these as ValidationError
        return Rejection(label, RejectReason.NOT_JSON, type(err).__name__)
    named = getattr(message, "node", None)
    keyed = topic in (Topic.AGENT_CONFIG, Topic.AGENT_RESPONSE) or (topic is Topic.AGENT_INFO and named)
    if keyed and key_text is not None and named is not None and key_text != named:
        return Rejection(label, RejectReason.KEY_MISMATCH, "the key and the message name different nodes")
    return Decoded(label, key_text, message)
