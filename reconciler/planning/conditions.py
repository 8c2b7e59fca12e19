"""Pure: the sync and health of every instance and node, from what the store holds (Argo CD's words).

**Sync** compares desired with observed:

- ``Synced``: the agent reports the instance with the desired config hash at the desired generation (or later);
  an instance that is no longer desired and no longer reported is simply gone.
- ``Progressing``: not there yet, but the node is online and the desired generation was published less than
  ``progress_deadline`` ago — the agent is expected to catch up by itself.
- ``OutOfSync``: anything else (node offline, or behind for longer than the deadline, or an instance still
  reported that the desired state no longer has).

**Health** reads the observed container:

- ``Unknown``: the node is offline, or it never reported this instance;
- ``Failed``: ``backoff`` (crash loop), ``exited``, ``missing``, or ``stopped`` when it should run;
- ``Degraded``: ``restarting``, ``created`` (not started yet), a source at 0 FPS, or an agent error marked
  ``degraded:``;
- ``Healthy``: running (or stopped because the instance is paused).

Each instance also gets a ``reason`` sentence for people. No clock: ``now`` is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

__all__ = [
    "DEFAULT_PROGRESS_DEADLINE",
    "Health",
    "InstanceDesired",
    "InstanceObserved",
    "InstanceView",
    "NodeDesired",
    "NodeFacts",
    "NodeView",
    "Sync",
    "derive_instances",
    "derive_nodes",
    "health_of",
    "redact",
    "sync_of",
]

DEFAULT_PROGRESS_DEADLINE = timedelta(seconds=60)
DEGRADED_PREFIX = "degraded: "
"""The agent marks a degraded instance's ``error`` with this prefix (``dsfleet.agent.observations.DEGRADED_PREFIX``)."""


class Sync(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    PROGRESSING = "Progressing"


class Health(StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class NodeFacts:
    """What the store knows of a node's agent (``node_status``); ``known=False``: no agent ever announced it."""

    name: str
    online: bool = False
    last_seen: datetime | None = None
    heartbeat_seconds: float = 5.0
    observed_generation: int | None = None
    observed_config_hash: str | None = None
    reported_at: datetime | None = None
    known: bool = True


@dataclass(frozen=True)
class NodeDesired:
    """The node's latest stored config: its generation, hash, when its revision was stored."""

    name: str
    generation: int
    config_hash: str
    published_at: datetime | None = None


@dataclass(frozen=True)
class InstanceDesired:
    name: str
    node: str
    config_hash: str
    paused: bool = False


@dataclass(frozen=True)
class InstanceObserved:
    name: str
    node: str
    state: str
    generation: int | None = None
    config_hash: str | None = None
    restarts: int = 0
    exit_code: int | None = None
    error: str | None = None
    fps: Mapping[str, float] = field(default_factory=dict)
    drift: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class InstanceView:
    name: str
    node: str
    sync: Sync
    health: Health
    reason: str
    desired: InstanceDesired | None
    observed: InstanceObserved | None


@dataclass(frozen=True)
class NodeView:
    name: str
    online: bool
    desired_generation: int | None
    observed_generation: int | None
    sync: Sync


_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")


def redact(text: str | None) -> str | None:
    """Drop the user-info of every URL in ``text`` (``rtsp://user:pw@host`` → ``rtsp://***@host``)."""
    if text is None:
        return None
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def _recent(node: NodeDesired | None, now: datetime, deadline: timedelta) -> bool:
    return node is not None and node.published_at is not None and now - node.published_at <= deadline


def sync_of(
    desired: InstanceDesired | None,
    observed: InstanceObserved | None,
    node: NodeFacts | None,
    node_desired: NodeDesired | None,
    now: datetime,
    deadline: timedelta = DEFAULT_PROGRESS_DEADLINE,
) -> tuple[Sync, str]:
    """The instance's sync and why."""
    online = node is not None and node.online
    if desired is None:
        if observed is None:
            return Sync.SYNCED, "removed"
        why = "no longer desired; still reported by its node"
    elif observed is None:
        why = "desired; not reported by its node yet"
    elif observed.config_hash != desired.config_hash:
        why = "observed config hash differs from the desired one"
    elif (
        node_desired is not None
        and observed.generation is not None
        and observed.generation < node_desired.generation
    ):
        why = f"observed generation {observed.generation} < desired {node_desired.generation}"
    else:
        return Sync.SYNCED, "observed config hash is the desired one"
    if not online:
        return Sync.OUT_OF_SYNC, f"{why}; {'node offline' if node is not None else 'node never reported'}"
    if _recent(node_desired, now, deadline):
        return Sync.PROGRESSING, f"{why}; node online, generation published recently"
    return Sync.OUT_OF_SYNC, why


def health_of(
    desired: InstanceDesired | None, observed: InstanceObserved | None, node: NodeFacts | None
) -> tuple[Health, str]:
    """The instance's health and why."""
    if node is None or not node.online:
        return Health.UNKNOWN, "node offline" if node is not None and node.known else "node never reported"
    if observed is None:
        return Health.UNKNOWN, "no report for this instance"
    state = observed.state
    if state == "backoff":
        return Health.FAILED, f"crash loop ({observed.restarts} restarts)"
    if state == "exited":
        code = f" with code {observed.exit_code}" if observed.exit_code is not None else ""
        return Health.FAILED, f"exited{code}"
    if state == "missing":
        return Health.FAILED, "container missing"
    if state == "stopped":
        if desired is not None and desired.paused:
            return Health.HEALTHY, "paused"
        return Health.FAILED, "stopped"
    if state == "restarting":
        return Health.DEGRADED, "restarting"
    if state == "created":
        return Health.DEGRADED, "created, not started"
    if state != "running":
        return Health.UNKNOWN, f"state {state}"
    stalled = sorted(source for source, fps in observed.fps.items() if fps <= 0)
    if stalled:
        return Health.DEGRADED, f"0 FPS on source {', '.join(stalled)}"
    if observed.error and observed.error.startswith(DEGRADED_PREFIX):
        return Health.DEGRADED, observed.error.removeprefix(DEGRADED_PREFIX)
    return Health.HEALTHY, "running"


def derive_instances(
    desired: Sequence[InstanceDesired],
    observed: Sequence[InstanceObserved],
    nodes: Mapping[str, NodeFacts],
    node_desired: Mapping[str, NodeDesired],
    now: datetime,
    deadline: timedelta = DEFAULT_PROGRESS_DEADLINE,
) -> list[InstanceView]:
    """One view per desired or observed instance, sorted by node then name."""
    want = {(d.node, d.name): d for d in desired}
    have = {(o.node, o.name): o for o in observed}
    out = []
    for key in sorted(set(want) | set(have)):
        d, o = want.get(key), have.get(key)
        node = nodes.get(key[0])
        sync, sync_reason = sync_of(d, o, node, node_desired.get(key[0]), now, deadline)
        health, health_reason = health_of(d, o, node)
        if sync is Sync.SYNCED:
            reason = health_reason
        elif health_reason in sync_reason:
            reason = sync_reason
        else:
            reason = f"{sync_reason}; {health_reason}"
        out.append(InstanceView(key[1], key[0], sync, health, reason, d, o))
    return out


def derive_nodes(
    names: Sequence[str],
    nodes: Mapping[str, NodeFacts],
    node_desired: Mapping[str, NodeDesired],
    now: datetime,
    deadline: timedelta = DEFAULT_PROGRESS_DEADLINE,
) -> list[NodeView]:
    """One view per node name: its sync compares the desired generation with the generation its agent reports."""
    out = []
    for name in sorted(set(names)):
        facts = nodes.get(name)
        want = node_desired.get(name)
        online = facts is not None and facts.online
        observed = facts.observed_generation if facts else None
        if want is None or (
            observed is not None
            and observed >= want.generation
            and (facts is None or facts.observed_config_hash in (None, want.config_hash))
        ):
            sync = Sync.SYNCED
        elif online and _recent(want, now, deadline):
            sync = Sync.PROGRESSING
        else:
            sync = Sync.OUT_OF_SYNC
        out.append(NodeView(name, online, want.generation if want else None, observed, sync))
    return out
