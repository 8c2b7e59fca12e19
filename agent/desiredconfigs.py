"""Pure: read a node's desired config from JSON text and check it before anything reaches the host.

The agent accepts the two shapes the coordinator produces: an ``AgentConfig`` message (topic 210: a NodeConfig
plus ``schema``, ``generation`` and ``sent_at``) and a bare ``NodeConfig`` (as ``dsfleet`` compiles it). A JSON
object with a ``schema``, ``generation`` or ``sent_at`` key is read as the message, any other object as a
NodeConfig; both are validated by the pydantic models of ``dsfleet.schemas.nodeconfigs``.

**Which record becomes desired** (:func:`judge_config`; Kubernetes' ``resourceVersion`` and Argo CD's refusal to
sync from another app's source play the same role). The agent keeps in ``<state-dir>/binding.json`` the fleet it is
bound to, the generation and config hash of the config it last accepted and the highest leadership epoch it has
accepted a record of (:class:`AppliedMark`). Reading its
AgentConfig partition from the beginning (at start, or again after a broker loss), every record before the
partition's end is *history*: only the newest good one is kept, none is refused. At the partition's end, and for
every record after it (*live*), the newest record is judged against the mark:

- of another fleet than the one the agent is bound to (``--fleet-id``/``[agent] fleet_id``, else the fleet of the
  first config it accepted) → refused, ``other-fleet`` (a record without fleet id, from an older coordinator, is
  not judged by fleet and binds nothing);
- a leadership epoch (the signed ``epoch`` header: the epoch of the coordinator that stored the record; absent: 0)
  lower than the highest the agent has accepted → refused, ``stale-epoch``: a deposed coordinator's late record
  (paused past its fencing check) is refused even when its generation would pass. The epoch is an additional check:
  a higher epoch does not excuse a stale generation or a conflicting config. The memory is the bound fleet's: an
  agent rebound to another fleet (``--fleet-id``) starts it anew at 0, as it does its generations (two stores count
  their epochs apart); an unbound agent takes the epoch of the first config it accepts;
- a generation lower than the mark → refused, ``stale-generation`` (at the partition's end this means the store
  that publishes is older than what the agent runs: restored from a backup; the refusal says so, and the
  coordinator answers with a generation above the mark) — unless its config hash is the one applied: a
  re-announce of the same config (after a broker loss) changes nothing and is no refusal;
- the same generation with another config hash → refused, ``conflicting-config`` (two writers);
- the same generation and hash → nothing to do (a higher epoch is still remembered); a higher one → accepted.

Before any of this, a record must be signed by a coordinator key the agent trusts (:mod:`dsfleet.agent.trust`:
``unsigned``, ``unknown-key``, ``bad-signature``, ``no-trusted-key``, ``other-node``): the signature is what makes
the generation mean something, since anyone who can produce to the broker can write any number.

A refused record changes nothing: the last good config keeps running. A tombstone (the node was removed) is judged
by the fleet and generation its signed headers carry (a replayed older tombstone is ``stale-generation``); once
accepted its generation stays in the mark (the store never hands out a generation twice, even to a node added
again, so a replay of a config from before the removal is refused too).

Checks beyond the models: instance names are DNS labels (each names a directory), unique; and every instance's
``specHash``/``filesHash``/``configHash`` matches its content (a hand-edited or corrupted config is refused
instead of being half applied). Errors are gcc style (``FILE:LINE:COL: error: ...`` for malformed JSON,
``FILE: error: instances.0.files: ...`` for the rest) and never quote input values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from pydantic import ValidationError

from dsfleet.agent.errors import ConfigError
from dsfleet.agent.trust import REJECT_BAD_SIGNATURE, REJECT_OTHER_NODE, Trust, fields_disagree
from dsfleet.schemas.labels import HOST_ONLY, LABEL_INSTANCE, LABEL_MANAGED
from dsfleet.schemas.nodeconfigs import (
    InstanceConfig,
    NodeConfig,
    files_hash,
    instance_hash,
    node_hash,
    spec_hash,
)
from dsfleet.schemas.signatures import signed_fields
from dsfleet.schemas.wire import (
    MAX_MESSAGE_BYTES,
    AgentConfig,
    Rejection,
    RejectReason,
    Tombstone,
    Topic,
    decode,
)

__all__ = [
    "REJECT_CONFLICT",
    "REJECT_FLEET",
    "REJECT_STALE",
    "REJECT_STALE_EPOCH",
    "Accepted",
    "AppliedMark",
    "DesiredConfig",
    "Refusal",
    "Verdict",
    "accept_record",
    "config_problems",
    "empty_config",
    "judge_config",
    "judge_tombstone",
    "mark_after",
    "parse_config",
    "select_instances",
]

DesiredConfig: TypeAlias = AgentConfig | NodeConfig

_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MESSAGE_KEYS = ("schema", "generation", "sent_at")


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_config(text: str | bytes, source: str) -> DesiredConfig:
    """Validate JSON ``text`` (read from ``source``) as an AgentConfig message or a NodeConfig."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: error: not UTF-8 (byte offset {exc.start})") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}:{exc.lineno}:{exc.colno}: error: malformed JSON: {exc.msg}") from None
    if data is None:
        raise ConfigError(f"{source}: error: null (a tombstone: the node was removed); nothing to write")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: error: expected a JSON object (an AgentConfig message or a NodeConfig), "
            f"got {type(data).__name__}"
        )
    model: type[AgentConfig] | type[NodeConfig] = (
        AgentConfig if any(k in data for k in _MESSAGE_KEYS) else NodeConfig
    )
    try:
        config: DesiredConfig = model.model_validate(data)
    except ValidationError as exc:
        kind = "AgentConfig message" if model is AgentConfig else "NodeConfig"
        lines = [f"{source}: error: {_loc(e['loc'])}: {e['msg']} (as {kind})" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    problems = config_problems(config)
    if problems:
        raise ConfigError("\n".join(f"{source}: error: {p}" for p in problems))
    return config


def _instance_problems(index: int, inst: InstanceConfig) -> list[str]:
    where = f"instances.{index} ({inst.name})" if _NAME_RE.fullmatch(inst.name) else f"instances.{index}"
    problems = []
    if not _NAME_RE.fullmatch(inst.name) or len(inst.name) > 63:
        problems.append(f"{where}.name: not a DNS label")
    s, f = spec_hash(inst.container), files_hash(inst.files)
    if inst.specHash != s:
        problems.append(f"{where}.specHash: does not match the container spec (corrupted or edited by hand)")
    if inst.filesHash != f:
        problems.append(f"{where}.filesHash: does not match the files (corrupted or edited by hand)")
    labels = inst.container.labels
    if labels.get(LABEL_MANAGED) != "true" or labels.get(LABEL_INSTANCE) != inst.name:
        problems.append(f"{where}.container.labels: must mark the container managed, as this instance's")
    if HOST_ONLY & labels.keys():
        problems.append(f"{where}.container.labels: sets labels only the agent sets")
    if inst.configHash != instance_hash(
        inst.specHash, inst.filesHash, inst.paused, inst.selfHeal, inst.strategy
    ):
        problems.append(f"{where}.configHash: does not match specHash, filesHash and its settings")
    return problems


def config_problems(config: DesiredConfig) -> list[str]:
    """What is wrong with a validated config beyond its schema (names, duplicates, hashes)."""
    problems: list[str] = []
    seen: set[str] = set()
    for index, inst in enumerate(config.instances):
        problems.extend(_instance_problems(index, inst))
        if inst.name in seen:
            problems.append(f"instances.{index}.name: instance {inst.name!r} is listed twice")
        seen.add(inst.name)
    return problems


def select_instances(config: DesiredConfig, name: str | None) -> tuple[InstanceConfig, ...]:
    """All instances, or the one named ``name`` (``LookupError`` naming the ones there are)."""
    if name is None:
        return config.instances
    for inst in config.instances:
        if inst.name == name:
            return (inst,)
    names = ", ".join(i.name for i in config.instances) or "none"
    raise LookupError(f"no instance named {name!r} in the config of node {config.node!r} (it has: {names})")


@dataclass(frozen=True)
class Accepted:
    """A good AgentConfig record of this node: its config, or None for a tombstone (no instances) with the
    generation and fleet its signed headers carry; ``epoch``: the leadership epoch its headers carry (0: none)."""

    config: AgentConfig | None
    generation: int | None = None
    fleet: str | None = None
    epoch: int = 0


def accept_record(
    node: str,
    key: bytes | None,
    value: bytes | None,
    *,
    headers: Mapping[str, str] | None = None,
    trust: Trust | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> Accepted | Rejection | Refusal | None:
    """Judge one record of the AgentConfig partition the agent reads: None when it is another node's (the
    partition is shared), ``Accepted`` for a valid config or tombstone of ``node``, a ``Refusal`` when it is not
    signed by a key of ``trust`` (:mod:`dsfleet.agent.trust`; None: signatures are not checked), a ``Rejection``
    otherwise (garbage, wrong schema, inconsistent hashes, too large)."""
    if key is None or key != node.encode("utf-8"):
        return None
    if value is not None and len(value) > max_bytes:
        return Rejection(
            Topic.AGENT_CONFIG.value, RejectReason.TOO_LARGE, f"{len(value)} bytes > limit {max_bytes}"
        )
    fields = signed_fields(headers or {})
    if trust is not None:
        fields, distrust = trust.check(node, value, headers or {})
        if distrust is not None:
            return Refusal(distrust.reason, distrust.generation, distrust.detail)
    epoch = (fields.epoch or 0) if fields is not None else 0
    decoded = decode(Topic.AGENT_CONFIG, key, value, max_bytes=max_bytes, require_key=True)
    if isinstance(decoded, Rejection):
        if decoded.reason is RejectReason.KEY_MISMATCH:
            return Refusal(
                REJECT_OTHER_NODE, None, f"a record of node {node} whose message names another node"
            )
        return decoded
    if isinstance(decoded, Tombstone):
        return Accepted(None, fields.generation if fields else None, fields.fleet if fields else None, epoch)
    message = decoded.message
    assert isinstance(message, AgentConfig)
    disagree = fields_disagree(
        fields if trust is not None else None,
        schema=message.schema_,
        fleet=message.fleet,
        generation=message.generation,
        issued=message.sent_at,
    )
    if disagree is not None:
        return Refusal(
            REJECT_BAD_SIGNATURE,
            message.generation,
            f"the signed headers and the payload disagree on the {disagree}",
        )
    problems = config_problems(message)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return Rejection(Topic.AGENT_CONFIG.value, RejectReason.INVALID, problems[0] + more)
    return Accepted(message, epoch=epoch)


def empty_config(node: str) -> NodeConfig:
    """The desired config of a node that has none (a tombstone)."""
    return NodeConfig(node=node, configHash=node_hash(()), instances=())


REJECT_STALE = "stale-generation"
REJECT_CONFLICT = "conflicting-config"
REJECT_FLEET = "other-fleet"
REJECT_STALE_EPOCH = "stale-epoch"


@dataclass(frozen=True)
class AppliedMark:
    """What the agent last accepted (kept in ``<state-dir>/binding.json``): the fleet it is bound to, the
    generation and config hash of the config it runs, and the highest leadership epoch of that fleet it accepted a
    record of (0: none)."""

    fleet: str | None = None
    generation: int | None = None
    config_hash: str | None = None
    epoch: int = 0


class Verdict(StrEnum):
    ACCEPT = "accept"
    SAME = "same"
    """The record is the config already accepted (a re-announce): nothing to do."""


@dataclass(frozen=True)
class Refusal:
    """Why a good AgentConfig record is not taken; the agent keeps running its last good config."""

    reason: str
    generation: int | None
    detail: str


def _stale_epoch(
    epoch: int, generation: int | None, mark: AppliedMark, what: str, at_catch_up: bool
) -> Refusal | None:
    """The refusal of a record of leadership ``epoch`` below the highest the agent accepted (None: not below)."""
    if epoch >= mark.epoch:
        return None
    carried = f"epoch {epoch}" if epoch else "no epoch (read as 0)"
    detail = (
        f"{what} stored by the coordinator of leadership {carried}, lower than epoch {mark.epoch} this agent "
        "accepted: a deposed coordinator's late record"
    )
    if at_catch_up:
        detail += (
            "; it is the newest record of this node on the broker, so the store that publishes has an older "
            f"leadership than this agent saw (restored from a backup?): it must be led at an epoch of {mark.epoch} "
            "or more"
        )
    return Refusal(REJECT_STALE_EPOCH, generation, detail)


def judge_config(
    config: AgentConfig,
    mark: AppliedMark,
    *,
    bound: str | None,
    at_catch_up: bool = False,
    epoch: int = 0,
) -> Verdict | Refusal:
    """Take ``config`` (a valid record of this node, newest at the partition's end or live) or refuse it; see the
    module docstring. ``bound``: the fleet the agent is bound to (settings first, else the mark's); ``epoch``: the
    leadership epoch the record's signed headers carry (0: none)."""
    if bound is not None and config.fleet is not None and config.fleet != bound:
        return Refusal(
            REJECT_FLEET,
            config.generation,
            f"written by fleet {config.fleet}; this agent is bound to fleet {bound} "
            "(another coordinator publishes to this broker; --fleet-id rebinds the agent)",
        )
    stale = _stale_epoch(epoch, config.generation, mark, f"generation {config.generation}", at_catch_up)
    if stale is not None:
        return stale
    if mark.generation is None:
        return Verdict.ACCEPT
    if config.generation < mark.generation:
        if config.configHash == mark.config_hash:
            return Verdict.SAME
        detail = f"generation {config.generation} is lower than generation {mark.generation} this agent runs"
        if at_catch_up:
            detail += (
                "; it is the newest config of this node on the broker, so the store that publishes is older than"
                " what this agent runs (restored from a backup?): the coordinator must publish a generation above "
                f"{mark.generation}"
            )
        return Refusal(REJECT_STALE, config.generation, detail)
    if config.generation == mark.generation:
        if config.configHash == mark.config_hash:
            return Verdict.SAME
        return Refusal(
            REJECT_CONFLICT,
            config.generation,
            f"generation {config.generation} with another config hash than the one this agent runs "
            "(two writers publish for this node?)",
        )
    return Verdict.ACCEPT


def judge_tombstone(
    accepted: Accepted, mark: AppliedMark, *, bound: str | None, at_catch_up: bool = False
) -> Verdict | Refusal:
    """Take a tombstone (the node was removed) or refuse it: another fleet's, one of a lower leadership epoch, or
    one older than the config the agent runs, is refused like a config would be."""
    if bound is not None and accepted.fleet is not None and accepted.fleet != bound:
        return Refusal(
            REJECT_FLEET,
            accepted.generation,
            f"a removal written by fleet {accepted.fleet}; this agent is bound to fleet {bound}",
        )
    stale = _stale_epoch(accepted.epoch, accepted.generation, mark, "a removal", at_catch_up)
    if stale is not None:
        return stale
    if accepted.generation is None or mark.generation is None:
        return Verdict.ACCEPT
    if accepted.generation < mark.generation:
        return Refusal(
            REJECT_STALE,
            accepted.generation,
            f"a removal of generation {accepted.generation}, lower than generation {mark.generation} this agent runs",
        )
    if accepted.generation == mark.generation:
        return (
            Verdict.SAME
            if mark.config_hash is None
            else Refusal(
                REJECT_CONFLICT,
                accepted.generation,
                f"a removal of generation {accepted.generation}, the generation of the config this agent runs "
                "(two writers publish for this node?)",
            )
        )
    return Verdict.ACCEPT


def mark_after(
    config: AgentConfig | None,
    mark: AppliedMark,
    bound: str | None,
    *,
    generation: int | None = None,
    epoch: int = 0,
) -> AppliedMark:
    """The mark once ``config`` of leadership ``epoch`` is accepted (None: a tombstone of ``generation``, which
    keeps the fleet and that generation, and clears the config hash). The epoch kept is the higher of the mark's and
    the record's while the fleet stays; the record's when the record binds the agent to another fleet."""
    fleet = (bound or mark.fleet) if config is None else (bound or config.fleet or mark.fleet)
    kept = max(mark.epoch, epoch) if fleet == mark.fleet else epoch
    if config is None:
        return AppliedMark(fleet=fleet, generation=generation, epoch=kept)
    return AppliedMark(fleet=fleet, generation=config.generation, config_hash=config.configHash, epoch=kept)
