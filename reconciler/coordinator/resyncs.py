"""Anti-entropy (pure): which nodes get their current config published again, and why.

Three gaps are closed, all level-triggered (re-derived every tick from what the store, the agents and the topic
say, never from "the event that just happened"):

- **topic lost**: the ``AgentConfig`` topic (read back by the coordinator to its end) does not hold a node's
  current generation — the broker lost its data (Tansu keeps nothing across a restart), the topic was deleted and
  recreated, or a record was never written. The node's config is re-published whether or not its agent is online,
  so an agent that starts later still finds it.
- **agent behind**: an *online* node reports another node config hash than its desired one (or none) for longer
  than the grace period (docs/architecture/decisions/0007-anti-entropy.md). Hashes, not generations: a node that
  runs the desired config is in sync whatever generation it reports. Nodes that never announced get nothing beyond
  what the topic holds.
- **generation ahead**: a node reports a generation above the one stored for it — the store was restored from a
  backup, or the report is forged. The node's current config is stored again under a generation above the reported
  one and published (the agent refuses a generation lower than one it applied, so re-publishing the stored one
  would never land), and the store's counter goes on from there.

Re-publishing is rate-limited per node (``min_interval``, doubled after each try up to ``max_interval``) and
jittered per node (a fleet that re-announces at once after a broker loss is spread out, not a storm), and a tick
publishes at most ``budget`` of them (the loop refills the budget over time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from dsfleet.schemas.hashing import sha256_hex


class Reason(StrEnum):
    TOPIC_LOST = "topic-lost"
    AGENT_BEHIND = "agent-behind"
    GENERATION_AHEAD = "generation-ahead"


@dataclass(frozen=True)
class NodeSync:
    node: str
    desired_generation: int | None
    """The node's current generation; None when the node has no config (removed)."""
    online: bool = False
    observed_generation: int | None = None
    behind_since: datetime | None = None
    """Since when the online agent has reported another config hash than the desired one (kept by the loop)."""
    desired_hash: str | None = None
    observed_hash: str | None = None
    reported_ahead: int | None = None
    """The highest generation the node reported lately, when above the desired one."""
    topic_generation: int | None = None
    """The generation the AgentConfig topic holds for the node (None: nothing, or a tombstone)."""
    topic_caught_up: bool = False
    """The coordinator has read the node's partition to its end, so ``topic_generation`` can be trusted."""
    outbox_pending: bool = False
    last_published: datetime | None = None
    attempts: int = 0
    """Re-publications since the node was last in sync (for the backoff)."""


@dataclass(frozen=True)
class Resync:
    node: str
    reason: Reason


@dataclass(frozen=True)
class Timing:
    grace: timedelta = timedelta(seconds=15)
    settle: timedelta = timedelta(seconds=2)
    """After a publish, how long the topic view may lag behind before a missing record counts as lost."""
    min_interval: timedelta = timedelta(seconds=10)
    max_interval: timedelta = timedelta(minutes=5)
    jitter: timedelta = timedelta(seconds=3)


def jitter_of(node: str, spread: timedelta) -> timedelta:
    """A stable per-node fraction of ``spread`` (same node, same delay: deterministic, no randomness)."""
    fraction = int(sha256_hex(node)[:8], 16) / 0xFFFFFFFF
    return timedelta(seconds=spread.total_seconds() * fraction)


def backoff(attempts: int, timing: Timing) -> timedelta:
    interval = timedelta(seconds=timing.min_interval.total_seconds() * 2 ** min(max(attempts - 1, 0), 16))
    return min(interval, timing.max_interval)


def _due(node: NodeSync, now: datetime, timing: Timing) -> bool:
    """A node published a moment ago is left alone: for ``settle`` after a first publish (the topic view may lag
    behind), then for the backoff of its attempts."""
    if node.last_published is None:
        return True
    wait = backoff(node.attempts, timing) if node.attempts else timing.settle
    return now - node.last_published >= wait


def resync_decisions(
    nodes: Iterable[NodeSync], now: datetime, *, timing: Timing = Timing(), budget: int = 50
) -> list[Resync]:
    """The nodes to re-publish now — generations ahead first (a new generation each), then topic repairs, then
    agents behind — at most ``budget``, sorted by node within a reason."""
    ahead: list[Resync] = []
    lost: list[Resync] = []
    behind: list[Resync] = []
    for node in sorted(nodes, key=lambda n: n.node):
        if node.desired_generation is None or node.outbox_pending or not _due(node, now, timing):
            continue
        if node.reported_ahead is not None and node.reported_ahead > node.desired_generation:
            ahead.append(Resync(node.node, Reason.GENERATION_AHEAD))
            continue
        if node.topic_caught_up and (node.topic_generation or 0) < node.desired_generation:
            lost.append(Resync(node.node, Reason.TOPIC_LOST))
            continue
        if (
            node.online
            and node.observed_hash != node.desired_hash
            and node.behind_since is not None
            and now - node.behind_since >= timing.grace + jitter_of(node.node, timing.jitter)
        ):
            behind.append(Resync(node.node, Reason.AGENT_BEHIND))
    return (ahead + lost + behind)[: max(budget, 0)]


def track_behind(
    previous: Mapping[str, datetime],
    observed: Mapping[str, str | None],
    desired: Mapping[str, str],
    online: Mapping[str, bool],
    now: datetime,
) -> dict[str, datetime]:
    """Since when each online node has reported another config hash than its desired one: kept from ``previous``
    while it still does, ``now`` when it just started to, dropped once it reports the desired hash or went
    offline."""
    out: dict[str, datetime] = {}
    for node, want in desired.items():
        if not online.get(node, False):
            continue
        if observed.get(node) != want:
            out[node] = previous.get(node, now)
    return out


@dataclass
class TopicView:
    """What the AgentConfig topic holds per node, as the coordinator reads it back (from the beginning).

    A partition whose end offset goes *backwards* was truncated (a broker that lost its data, a deleted topic):
    what was known of it is forgotten, so the next decisions re-publish what is missing.
    """

    generations: dict[str, int | None]
    partition_of: dict[str, int]
    next_offset: dict[int, int]
    caught_up: set[int]

    @classmethod
    def empty(cls) -> TopicView:
        return cls({}, {}, {}, set())

    def reset(self) -> None:
        self.generations.clear()
        self.partition_of.clear()
        self.next_offset.clear()
        self.caught_up.clear()

    def _forget_partition(self, partition: int) -> None:
        for node in [n for n, p in self.partition_of.items() if p == partition]:
            self.generations.pop(node, None)
            self.partition_of.pop(node, None)
        self.caught_up.discard(partition)

    def record(self, partition: int, offset: int, node: str, generation: int | None) -> bool:
        """One record read back; returns True when it revealed a truncated partition."""
        truncated = offset < self.next_offset.get(partition, 0)
        if truncated:
            self._forget_partition(partition)
        self.next_offset[partition] = offset + 1
        self.generations[node] = generation
        self.partition_of[node] = partition
        return truncated

    def end_of_partition(self, partition: int, end_offset: int) -> bool:
        """The reader reached ``end_offset`` of ``partition``; returns True when the partition was truncated."""
        truncated = end_offset < self.next_offset.get(partition, 0)
        if truncated:
            self._forget_partition(partition)
        self.next_offset[partition] = end_offset
        self.caught_up.add(partition)
        return truncated

    def holds(self, node: str, partition: int) -> tuple[bool, int | None]:
        """(caught up, generation on the topic) of ``node`` whose records go to ``partition``."""
        return partition in self.caught_up, self.generations.get(node)
