"""What the coordinator reads from the bus, each tick: a batch of inbound records through the gate of agents'
keys (:mod:`dsfleet.reconciler.coordinator.authentication`), ingested in one transaction per kind; names for
unnamed agents, refresh and apply requests obeyed once; and the AgentConfig topic read back (records this
coordinator did not write are counted and named)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from dsfleet.plumbing.signing import PublicKey
from dsfleet.reconciler.coordinator import identities, liveness
from dsfleet.reconciler.coordinator.ingest import Batch, Inbound, read_batch, sent_at
from dsfleet.reconciler.coordinator.loopstate import (
    LoopState,
)
from dsfleet.schemas.errors import DsfleetError, TemporaryError
from dsfleet.schemas.wire import (
    BROADCAST_KEY,
    AgentCommand,
    AgentConfig,
    CommandKind,
    Decoded,
    Refresh,
    Topic,
    UpdateConfig,
    decode,
    encode,
    signed_fields_of,
)

log = logging.getLogger("dsfleet.coordinator")


class InboundMixin(LoopState):
    def _ingest(self, records: Sequence[Inbound]) -> None:
        now = self.clock.now()
        known = self._known_names()
        batch = read_batch(
            records,
            prefix=self.options.topic_prefix,
            known_nodes=known,
            max_bytes=self.options.max_message_bytes,
            gate=self.enrollments.gate(now, known),
        )
        self.counters.consumed.update(batch.consumed)
        mono = self.clock.monotonic()
        if batch.unauthenticated or batch.sightings or batch.redemptions:
            self.counters.unauthenticated.update(batch.unauthenticated)
            self.enrollments.settle(batch.unauthenticated, batch.sightings, batch.redemptions, now, mono)
        for rej in batch.rejected:
            self.counters.rejected[(rej.topic, rej.reason.value)] += 1
            self._drops.rejected(rej, mono)
        if batch.infos:
            fresh = {
                n: liveness.is_fresh(
                    sent_at(i) or now, now, i.heartbeatSeconds, self.options.heartbeat_misses
                )
                for n, i in batch.infos.items()
            }
            transitions = self.store.record_agent_infos(batch.infos, fresh, now)
            for t in transitions:
                log.info("node %s node=%s reason=%s", "online" if t.online else "offline", t.node, t.reason)
            for name, info in batch.infos.items():
                if fresh[name]:
                    self._online[name] = True
                    self._last_seen[name] = now
                    self._heartbeat[name] = info.heartbeatSeconds
                if info.observedGeneration is not None or fresh[name]:
                    self._observed[name] = info.observedGeneration
                    self._observed_hash[name] = info.configHash
                    self._note_generation(name, info.observedGeneration)
        if batch.responses:
            self.store.record_agent_responses(batch.responses, now)
            for name, resp in batch.responses.items():
                self._observed[name] = resp.observedGeneration
                self._observed_hash[name] = resp.configHash
                self._note_generation(name, resp.observedGeneration)
                applied_at = self._applied_at.get(name)
                if applied_at and (resp.observedGeneration or 0) >= applied_at[0]:
                    del self._applied_at[name]
                    self.counters.convergence_seconds.append(self.clock.monotonic() - applied_at[1])
                    del self.counters.convergence_seconds[:-1000]
            if self.handovers.held and not self.handovers.targets.isdisjoint(batch.responses):
                self._decide_handovers(now)  # a target reported: its handover may be done now
        for reply in batch.logs:
            self.log_replies.deliver(reply)
        if batch.unnamed:
            self._name_agents(batch, now)
        for request in batch.refreshes:
            if self._fresh_request(request, now):
                self._send_command(
                    CommandKind.REFRESH, request.node or BROADCAST_KEY, request_id=request.requestId
                )
        if [u for u in batch.updates if self._fresh_request(u, now)]:
            log.info("UpdateConfig received: applying the manifests now")
            try:
                self.sync_directory(force_apply=True, source="api")
            except DsfleetError as exc:
                log.error("apply failed error=%s", exc)

    def _fresh_request(self, request: UpdateConfig | Refresh, now: datetime) -> bool:
        """A signed request is obeyed once: recent, for this fleet (or none named), and its id not seen before (a
        replayed record is ignored)."""
        if not self._recent(sent_at(request), now):
            return False
        if request.fleet is not None and request.fleet != self.fleet:
            log.warning("request ignored requestId=%s: for fleet %s", request.requestId, request.fleet)
            return False
        if request.requestId in self._requests_seen:
            log.warning("request ignored requestId=%s: seen already (a replay)", request.requestId)
            return False
        horizon = now - 2 * self.options.request_max_age
        self._requests_seen = {r: t for r, t in self._requests_seen.items() if t >= horizon}
        self._requests_seen[request.requestId] = now
        return True

    def _note_generation(self, node: str, generation: int | None) -> None:
        """Remember a generation reported above the stored one (checked against the store's counter before
        anything is done: the configs read here may lag behind an apply of this very tick)."""
        stored = self._configs.get(node)
        if generation is not None and stored is not None and generation > stored.generation:
            self._ahead[node] = max(generation, self._ahead.get(node, 0))

    def _recent(self, when: datetime | None, now: datetime) -> bool:
        return (
            when is not None
            and now - when <= self.options.request_max_age
            and when >= self._started_at - self.options.request_max_age
        )

    def _known_names(self) -> dict[str, object]:
        """The nodes whose agents are listened to: those the manifests declare, and those being retired (their
        agents report their instances gone). The inventory is read again only when another revision was accepted
        (only revisions write it; reading 10,000 rows for every batch was a large part of the ingest)."""
        revision = self.store.last_accepted_revision_id()
        if revision != self._known[0]:
            self._known = (revision, {n.name: n for n in self.store.known_nodes()})
        known = dict(self._known[1])
        for name in self._retiring:
            known.setdefault(name, name)
        return known

    def _name_agents(self, batch: Batch, now: datetime) -> None:
        known = [identities.KnownNode(n.name, n.hostname, n.node_id) for n in self.store.known_nodes()]
        for ident, info in batch.unnamed.items():
            if not self._recent(sent_at(info), now):
                continue
            naming = identities.name_agent(info.machineId, info.hostname, known)
            kind = CommandKind.ASSIGN_NAME if naming.node else CommandKind.REJECT
            log.info(
                "agent naming hostname=%s node=%s reason=%s", info.hostname, naming.node or "-", naming.reason
            )
            self._send_command(
                kind,
                ident,
                node=naming.node,
                machine_id=info.machineId,
                hostname=info.hostname,
                reason=naming.reason,
                key_id=_key_id(info.publicKey),
            )

    def _send_command(
        self,
        kind: CommandKind,
        target: str,
        *,
        node: str | None = None,
        machine_id: str | None = None,
        hostname: str | None = None,
        reason: str = "",
        request_id: str | None = None,
        key_id: str | None = None,
    ) -> None:
        assert self.bus is not None
        command = AgentCommand(
            sent_at=self.clock.now().isoformat(),
            command=kind,
            target=target,
            node=node,
            machineId=machine_id,
            hostname=hostname,
            reason=reason,
            requestId=request_id or uuid.uuid4().hex,
            keyId=key_id,
            fleet=self.fleet,
        )
        value = encode(command)
        headers = self._sign(signed_fields_of(command), target, value) if self.signing_key else None
        try:
            self.bus.send(Topic.AGENT_COMMAND, target, value, headers=headers)
            self.counters.commands[kind.value] += 1
        except TemporaryError as exc:
            log.warning("command not sent command=%s target=%s error=%s", kind, target, exc)

    def _read_back(self) -> None:
        assert self.bus is not None
        records, ends = self.bus.poll_observer()
        configs: list[AgentConfig] = []
        for r in records:
            key = r.key.decode("utf-8", "replace") if r.key else None
            if key is None:
                continue
            got = decode(Topic.AGENT_CONFIG, key, r.value, max_bytes=self.options.max_message_bytes * 4)
            generation = getattr(getattr(got, "message", None), "generation", None)
            if self.view.record(r.partition, r.offset, key, generation):
                log.warning(
                    "AgentConfig partition=%d was truncated (broker data lost); repairing", r.partition
                )
            if isinstance(got, Decoded) and isinstance(got.message, AgentConfig):
                configs.append(got.message)
        if configs:
            self._check_writers(configs)
        mono = self.clock.monotonic()
        for partition, end in ends.items():
            self._end_seen[partition] = mono
            if self.view.end_of_partition(partition, end):
                log.warning("AgentConfig partition=%d was truncated (broker data lost); repairing", partition)

    def _check_writers(self, configs: Sequence[AgentConfig]) -> None:
        """Note AgentConfig records this coordinator did not write: another fleet's id, or (without an id) a
        generation and hash its store never handed out. Each is counted once; an error is logged once per writer."""
        unknown = [c for c in configs if c.fleet is None or c.fleet == self.fleet]
        held = self.store.config_hashes([(c.node, c.generation) for c in unknown]) if unknown else {}
        for c in configs:
            if c.fleet is not None and c.fleet != self.fleet:
                what = f"AgentConfig of node {c.node} generation {c.generation} written by another fleet ({c.fleet})"
            elif held.get((c.node, c.generation), "") != c.configHash:
                what = (
                    f"AgentConfig of node {c.node} generation {c.generation} that this store never wrote "
                    f"(config hash {c.configHash[:12]})"
                )
            else:
                continue
            key = (c.node, c.generation, c.fleet)
            if key in self._foreign_seen:
                continue
            self._foreign_seen.add(key)
            self.counters.foreign_configs += 1
            self.last_foreign = what
            self._next_beat = 0.0
            if c.fleet not in self._foreign_logged:
                self._foreign_logged.add(c.fleet)
                log.error(
                    "another writer on this broker: %s; another coordinator (another store) publishes to these "
                    "topics: stop it, or give it another --topic-prefix",
                    what,
                )
            if len(self._foreign_seen) > 100_000:
                self._foreign_seen.clear()


def _key_id(public_key: str | None) -> str | None:
    """The id of a public key announced as text (None: none, or not a key)."""
    if not public_key:
        return None
    try:
        return PublicKey.from_text(public_key).id
    except DsfleetError:
        return None
