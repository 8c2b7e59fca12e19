"""``dsfleet apply --wait``: publish when no coordinator runs, then follow the rollout until every changed node
reports the new generation and its changed instances run, or the timeout names the laggards and why.

- Publishing: when :meth:`Store.coordinator_lock` can be taken, no coordinator holds the store: this command
  publishes the outbox itself (:class:`~dsfleet.reconciler.coordinator.publishing.OutboxPublisher` over a write-only
  :class:`~dsfleet.reconciler.bus.CoordinatorBus`) and releases the lock. Otherwise the running coordinator does.
- Observing: with a coordinator, from the store (it writes what agents report: ``node_statuses`` and
  ``observed_details``); without one, from the ``AgentResponse`` topic itself (read from the beginning, the last
  report of each node kept).
- Deciding: :func:`laggards` is pure: targets and observations in, the reasons each node or instance is not there
  yet out (offline, not reported, behind, backoff with its last log line, still pulling/creating, old config).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from dsfleet.schemas.errors import DsfleetError, ExitCode, PermanentError
from dsfleet.schemas.redaction import redact

if TYPE_CHECKING:  # the store and the planner are imported by the commands that use them (start-up time)
    from dsfleet.reconciler.planning.plans import Plan
    from dsfleet.reconciler.store import Store

__all__ = [
    "InstanceSeen",
    "Lag",
    "NodeSeen",
    "Target",
    "add_wait_options",
    "apply_wait",
    "laggards",
    "targets_of",
    "topic_prefix_of",
    "wait_for_rollout",
]

_BACKOFF = {"backoff", "restarting", "exited"}
_COMING = {"created", "missing"}


@dataclass(frozen=True)
class Target:
    node: str
    generation: int
    instances: Mapping[str, str]
    """Changed instance → the config hash it must run (removed instances are not waited for)."""


@dataclass(frozen=True)
class InstanceSeen:
    state: str
    config_hash: str | None
    generation: int | None = None
    last_log_line: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class NodeSeen:
    online: bool
    generation: int | None
    instances: Mapping[str, InstanceSeen] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Lag:
    node: str
    instance: str | None
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.instance} (node {self.node}): {self.reason}"
            if self.instance
            else f"{self.node}: {self.reason}"
        )


def targets_of(
    plan: Plan, generations: Mapping[str, int], payloads: Mapping[str, Mapping[str, Any]]
) -> list[Target]:
    """What the rollout of one applied revision must reach: each node whose config changed (not removed), at its
    new generation, with its changed instances at their new config hashes."""
    from dsfleet.reconciler.planning.plans import Action

    out = []
    for change in plan.nodes:
        if change.action is Action.DELETE or change.name not in generations:
            continue
        payload = payloads.get(change.name) or {}
        hashes = {i["name"]: i["configHash"] for i in payload.get("instances", ())}
        wanted = {
            i.name: hashes[i.name]
            for i in change.instances
            if i.action is not Action.DELETE and i.name in hashes
        }
        out.append(Target(change.name, generations[change.name], wanted))
    return sorted(out, key=lambda t: t.node)


def laggards(targets: Sequence[Target], seen: Mapping[str, NodeSeen]) -> list[Lag]:
    """Every node or instance that has not reached its target yet, with why; empty when the rollout is done."""
    out: list[Lag] = []
    for t in targets:
        node = seen.get(t.node)
        if node is None:
            out.append(Lag(t.node, None, "no report from its agent yet"))
            continue
        if not node.online:
            out.append(Lag(t.node, None, "offline"))
            continue
        if node.generation is None or node.generation < t.generation:
            detail = f": {redact(node.error)}" if node.error else ""
            out.append(Lag(t.node, None, f"at generation {node.generation or '-'} of {t.generation}{detail}"))
            continue
        for name, want in sorted(t.instances.items()):
            inst = node.instances.get(name)
            if inst is None:
                out.append(Lag(t.node, name, "not reported yet"))
            elif inst.error:
                out.append(Lag(t.node, name, f"{inst.state}: {redact(inst.error)}"))
            elif inst.state in _BACKOFF:
                last = f"; last log line: {redact(inst.last_log_line)}" if inst.last_log_line else ""
                out.append(Lag(t.node, name, f"{inst.state} (crash loop){last}"))
            elif inst.state in _COMING:
                out.append(Lag(t.node, name, f"{inst.state}: still pulling/creating"))
            elif inst.config_hash != want:
                out.append(Lag(t.node, name, f"{inst.state} with the previous config"))
            elif inst.state != "running":
                out.append(Lag(t.node, name, inst.state))
    return out


# --- observing ---------------------------------------------------------------------------------------------------


def seen_in_store(store: Store) -> dict[str, NodeSeen]:
    rows: dict[str, dict[str, InstanceSeen]] = {}
    for r in store.observed_details():
        rows.setdefault(r["node"], {})[r["instance"]] = InstanceSeen(
            state=r["state"],
            config_hash=r["config_hash"],
            generation=r["generation"],
            last_log_line=r.get("last_log_line"),
            error=r.get("last_error"),
        )
    return {
        s.node: NodeSeen(s.online, s.observed_generation, rows.get(s.node, {}), s.error)
        for s in store.node_statuses()
    }


class WireObserver:
    """The last ``AgentResponse`` of each node, read off the topic (no coordinator ingests them)."""

    def __init__(self, bootstrap_servers: str, client: Mapping[str, str], prefix: str) -> None:
        from dsfleet.plumbing.kafka import Consumer, client_config
        from dsfleet.schemas.wire import Topic, topic_name

        self._topic = topic_name(Topic.AGENT_RESPONSE, prefix)
        self._consumer = Consumer(client_config(bootstrap_servers, client), client_id="dsfleet-apply-wait")
        self._assigned = 0
        self.seen: dict[str, NodeSeen] = {}

    def poll(self) -> dict[str, NodeSeen]:
        from dsfleet.schemas.wire import AgentResponse, Decoded, Topic, decode

        count = self._consumer.partitions(self._topic, timeout=2.0) if not self._assigned else self._assigned
        if count and count != self._assigned:
            self._consumer.assign(self._topic, list(range(count)))
            self._assigned = count
        if not self._assigned:
            return self.seen
        records, _ = self._consumer.poll_batch(1000, 0.2)
        for r in records:
            got = decode(Topic.AGENT_RESPONSE, r.key, r.value)
            if not isinstance(got, Decoded) or not isinstance(got.message, AgentResponse):
                continue
            resp = got.message
            self.seen[resp.node] = NodeSeen(
                True,
                resp.observedGeneration,
                {
                    i.name: InstanceSeen(i.state.value, i.configHash, i.generation, i.lastLogLine, i.error)
                    for i in resp.instances
                },
                resp.error,
            )
        return self.seen

    def close(self) -> None:
        self._consumer.close()


# --- publishing --------------------------------------------------------------------------------------------------


def publish_unless_coordinator(
    store: Store,
    bootstrap_servers: str | None,
    client: Mapping[str, str],
    *,
    prefix: str,
    partitions: int,
    timeout: float,
    err: TextIO,
) -> bool | None:
    """True: no coordinator held the store and the outbox was published here; False: a coordinator holds it (it
    publishes); None: no coordinator and no broker to publish to (nothing can roll out)."""
    try:
        lock = store.coordinator_lock()
        lock.__enter__()
    except PermanentError:
        return False
    try:
        if not bootstrap_servers:
            print(
                "dsfleet apply: no coordinator runs on this store and no broker is configured "
                "(--bootstrap-servers): nothing is published",
                file=err,
            )
            return None
        from dsfleet.reconciler.bus import BusSettings, CoordinatorBus
        from dsfleet.reconciler.coordinator.publishing import OutboxPublisher

        bus = CoordinatorBus(
            BusSettings(
                bootstrap_servers=bootstrap_servers, client=client, topic_prefix=prefix, partitions=partitions
            ),
            read=False,
        )
        try:
            bus.ensure_topics(timeout=min(timeout, 10.0))
            publisher = OutboxPublisher(store, bus, prefix=prefix, clock=lambda: datetime.now(UTC))
            if not publisher.drain(timeout, bus.poll):
                print("dsfleet apply: the outbox could not be published within the timeout", file=err)
            print(f"published {publisher.stats.published} node config(s) (no coordinator runs)", file=err)
        finally:
            bus.close(5.0)
        return True
    finally:
        lock.__exit__(None, None, None)


# --- the wait ----------------------------------------------------------------------------------------------------


def wait_for_rollout(
    targets: Sequence[Target],
    observe: Callable[[], Mapping[str, NodeSeen]],
    *,
    timeout: float,
    out: TextIO,
    interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Print progress until :func:`laggards` is empty (exit 0), or print the laggards at the timeout (exit 1)."""
    started = clock()
    if not targets:
        print("nothing to roll out", file=out)
        return ExitCode.OK
    total = len(targets) + sum(len(t.instances) for t in targets)
    last_line = ""
    lags: list[Lag] = []
    while True:
        try:
            lags = laggards(targets, observe())
        except DsfleetError as exc:
            lags = [Lag("-", None, f"cannot read status: {exc}")]
        elapsed = clock() - started
        if not lags:
            print(f"rolled out: {len(targets)} node(s) at their new generation in {elapsed:.1f} s", file=out)
            return ExitCode.OK
        line = f"waiting: {total - min(total, len(lags))}/{total} ready; {lags[0]}"
        if line != last_line:
            print(f"[{elapsed:5.1f} s] {line}", file=out)
            last_line = line
        if elapsed >= timeout:
            break
        time.sleep(interval)
    print(f"dsfleet apply: timed out after {timeout:g} s; not rolled out:", file=sys.stderr)
    for lag in lags:
        print(f"  {lag}", file=sys.stderr)
    return ExitCode.FAILED


# --- the command -------------------------------------------------------------------------------------------------


def add_wait_options(p: Any) -> None:
    p.add_argument(
        "--wait",
        action="store_true",
        help="after storing, publish when no coordinator runs, then show the rollout until every changed node "
        "reports the new generation and its changed instances run (exit 1 at --timeout, naming the laggards)",
    )
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds --wait waits (120)")
    p.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers for --wait (default: [kafka] bootstrap_servers / DSFLEET_KAFKA_BOOTSTRAP_SERVERS)",
    )
    p.add_argument(
        "--topic-prefix",
        metavar="PREFIX",
        default=None,
        help="prefix of the six topic names ([kafka] topic_prefix)",
    )


def topic_prefix_of(args: Any, settings: Any) -> str:
    """``--topic-prefix``, else ``[kafka] topic_prefix``: the outbox rows name their topic with it."""
    given = getattr(args, "topic_prefix", None)
    return str(given if given is not None else settings.kafka.topic_prefix)


def apply_wait(args: Any, plan: Plan, generations: Mapping[str, int]) -> int:
    """``apply --wait`` after a stored revision: publish if needed, then follow the rollout."""
    from dsfleet.reconciler.cli.options import settings_of
    from dsfleet.reconciler.store import Store

    settings = settings_of(args)
    kafka = settings.kafka
    prefix = topic_prefix_of(args, settings)
    servers = kafka.bootstrap_servers or None
    try:
        client = (
            {k: v for k, v in kafka.client_config().items() if k != "bootstrap.servers"} if servers else {}
        )
    except DsfleetError as exc:
        print(f"dsfleet apply: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    with Store.open(settings.coordinator.db) as store:
        targets = targets_of(
            plan, generations, {n: c.payload for n, c in store.latest_node_configs().items()}
        )
        published = publish_unless_coordinator(
            store,
            servers,
            client,
            prefix=prefix,
            partitions=kafka.partitions,
            timeout=args.timeout,
            err=sys.stdout,
        )
    if published is None:
        return ExitCode.FAILED
    if published:
        assert servers is not None
        wire = WireObserver(servers, client, prefix)
        try:
            return wait_for_rollout(targets, wire.poll, timeout=args.timeout, out=sys.stdout)
        finally:
            wire.close()

    def from_store() -> Mapping[str, NodeSeen]:
        with Store.open(settings.coordinator.db, readonly=True) as s:
            return seen_in_store(s)

    return wait_for_rollout(targets, from_store, timeout=args.timeout, out=sys.stdout)


def publish_after_apply(args: Any) -> int:
    """``apply --bootstrap-servers`` without ``--wait``: publish the outbox here when no coordinator runs."""
    from dsfleet.reconciler.cli.options import settings_of
    from dsfleet.reconciler.store import Store

    settings = settings_of(args)
    kafka = settings.kafka
    if not kafka.bootstrap_servers:
        return ExitCode.OK
    try:
        client = {k: v for k, v in kafka.client_config().items() if k != "bootstrap.servers"}
    except DsfleetError as exc:
        print(f"dsfleet apply: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    with Store.open(settings.coordinator.db) as store:
        publish_unless_coordinator(
            store,
            kafka.bootstrap_servers,
            client,
            prefix=topic_prefix_of(args, settings),
            partitions=kafka.partitions,
            timeout=getattr(args, "timeout", None) or 30.0,
            err=sys.stdout,
        )
    return ExitCode.OK
