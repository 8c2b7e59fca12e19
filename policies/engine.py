"""Evaluating every registered rule (:mod:`dsfleet.policies.registry`) over a fleet, honouring the Policy manifests.

A Policy sets ``spec.rules.<rule-id>: {severity: error|warning|off, params: {...}, reason: ...}`` plus shortcuts
(``allowedImages``, ``maxCamerasPerInstance``, ``requireCredentialsBySecretRef``, ``forbidPrivileged``). Several
Policy documents merge; two that set the same thing differently are an error. Relaxing a rule (lowering its
severity) needs a ``reason``; some rules (secrets) cannot be relaxed at all. A setting with ``match`` (instance
``labels``, ``layout``, ``instances``) applies its severity only to the findings about matching instances.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

from dsfleet.policies.registry import (
    FLEET,
    INSTANCE,
    PARTITIONED,
    REGISTRY,
    Context,
    Hit,
    Part,
    Rule,
    load_rules,
)
from dsfleet.resolution.instances import GieMemo, ResolvedInstance, all_profile_values, resolve_instance
from dsfleet.schemas.findings import Finding, Note, Severity, SourceRef
from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.manifests import DsInstance, RuleMatch, RuleSeverity

load_rules()

_RANK = {RuleSeverity.OFF: 0, RuleSeverity.WARNING: 1, RuleSeverity.ERROR: 2}


@dataclass(frozen=True)
class ScopedSetting:
    """A severity that applies only to the findings of instances its ``match`` selects."""

    match: RuleMatch
    severity: RuleSeverity
    policy: str


@dataclass(frozen=True)
class EffectiveSetting:
    severity: RuleSeverity
    params: dict[str, Any]
    scoped: tuple[ScopedSetting, ...] = ()

    def severity_for(self, instance: DsInstance | None) -> RuleSeverity:
        if instance is not None:
            for scoped in self.scoped:
                if scoped.match.matches(instance):
                    return scoped.severity
        return self.severity

    @property
    def can_fail(self) -> bool:
        """Whether any finding of the rule can be an error."""
        return self.severity is RuleSeverity.ERROR or any(
            s.severity is RuleSeverity.ERROR for s in self.scoped
        )

    @property
    def enabled(self) -> bool:
        return self.severity is not RuleSeverity.OFF or any(
            s.severity is not RuleSeverity.OFF for s in self.scoped
        )


SHORTCUTS: dict[str, tuple[str, str | None]] = {
    "allowedImages": ("allowed-images", "patterns"),
    "maxCamerasPerInstance": ("max-cameras-per-instance", "max"),
    "requireCredentialsBySecretRef": ("camera-credentials-required", None),
    "forbidPrivileged": ("forbid-privileged", None),
}


def effective_settings(fleet: Fleet) -> tuple[dict[str, EffectiveSetting], list[Finding]]:
    """Merge every Policy document into one severity + params per rule; conflicts and bad settings are errors."""
    findings: list[Finding] = []
    severity: dict[str, tuple[Any, SourceRef | None]] = {}
    params: dict[tuple[str, str], tuple[Any, SourceRef | None]] = {}
    scoped: dict[str, list[ScopedSetting]] = {}

    def error(rule_id: str, message: str, src: SourceRef | None, notes: tuple[Note, ...] = ()) -> None:
        findings.append(
            Finding(severity=Severity.ERROR, rule=rule_id, message=message, source=src, notes=notes)
        )

    def remember(table: dict[Any, tuple[Any, SourceRef | None]], key: Any, value: Any, src: SourceRef | None,
                 what: str) -> None:  # fmt: skip
        """Keep a setting; the same setting with another value in another Policy document is a conflict."""
        old = table.get(key)
        if old is not None and old[0] != value:
            also = (Note(message="also set here", source=old[1]),) if old[1] else ()
            error("policy-conflict", f"{what} is set differently by two Policy documents", src, also)
        else:
            table[key] = (value, src)

    for pname in sorted(fleet.policies):
        spec = fleet.policies[pname].spec
        for rule_id, setting in spec.rules.items():
            src = fleet.source("Policy", pname, "spec", "rules", rule_id)
            known = REGISTRY.get(rule_id)
            if known is None:
                hint = get_close_matches(rule_id, list(REGISTRY), n=1)
                did_you_mean = f"; did you mean {hint[0]}?" if hint else ""
                error("policy-unknown-rule", f"spec.rules: unknown rule {rule_id!r}{did_you_mean}", src)
                continue
            if setting.severity is not None:
                lowered = _RANK[setting.severity] < _RANK[known.severity]
                if lowered and not known.relaxable:
                    error(
                        "policy-not-relaxable", f"rule {rule_id} protects secrets and cannot be relaxed", src
                    )
                elif lowered and not (setting.reason or "").strip():
                    message = f"relaxing rule {rule_id} needs a reason (spec.rules.{rule_id}.reason)"
                    error("policy-reason-required", message, src)
                elif setting.match is not None:
                    scoped.setdefault(rule_id, []).append(
                        ScopedSetting(setting.match, setting.severity, pname)
                    )
                else:
                    remember(severity, rule_id, setting.severity, src, f"rule {rule_id} severity")
            elif setting.match is not None:
                error("policy-scope", f"spec.rules.{rule_id}.match scopes a severity: set one", src)
            if setting.match is not None and setting.params:
                message = f"spec.rules.{rule_id}: params apply fleet-wide; set them without match"
                error("policy-scope", message, src)
                continue
            for param, pvalue in setting.params.items():
                if param not in known.params:
                    listed = f" (parameters: {', '.join(sorted(known.params))})" if known.params else ""
                    error("policy-unknown-param", f"rule {rule_id} has no parameter {param!r}{listed}", src)
                else:
                    remember(params, (rule_id, param), pvalue, src, f"rule {rule_id} parameter {param}")
        for shortcut, (shortcut_rule, pkey) in SHORTCUTS.items():
            value = getattr(spec, shortcut)
            if value is None:
                continue
            src = fleet.source("Policy", pname, "spec", shortcut)
            if pkey is None:
                level = RuleSeverity.ERROR if value else RuleSeverity.OFF
                if _RANK[level] < _RANK[REGISTRY[shortcut_rule].severity]:  # a secure default switched off
                    message = (f"{shortcut}: false relaxes rule {shortcut_rule}, which needs a reason: write "
                               f"spec.rules.{shortcut_rule}: {{severity: off, reason: ...}}")  # fmt: skip
                    error("policy-reason-required", message, src)
                    continue
                remember(severity, shortcut_rule, level, src, f"rule {shortcut_rule} severity")
            else:
                remember(params, (shortcut_rule, pkey), value, src, f"rule {shortcut_rule} parameter {pkey}")
                remember(severity, shortcut_rule, RuleSeverity.ERROR, src, f"rule {shortcut_rule} severity")

    out: dict[str, EffectiveSetting] = {}
    for rule_id, known in REGISTRY.items():
        sev = severity.get(rule_id, (known.severity, None))[0]
        merged = dict(known.params)
        merged.update({name: v for (rid, name), (v, _src) in params.items() if rid == rule_id})
        out[rule_id] = EffectiveSetting(sev, merged, tuple(scoped.get(rule_id, ())))
    return out, findings


def _subject(fleet: Fleet, documents: dict[tuple[str, int], tuple[str, str]], hit: Hit) -> DsInstance | None:
    """The instance a finding is about: the hit's own ``instance``, else the document its source points into."""
    if hit.instance is not None:
        return fleet.instances.get(hit.instance)
    if hit.source is None:
        return None
    kind, name = documents.get((hit.source.file, hit.source.document), ("", ""))
    return fleet.instances.get(name) if kind == "DsInstance" else None


_CATEGORY_ORDER = ("fleet", "security", "deepstream")


def all_rules() -> list[Rule]:
    """Every registered rule by category (fleet, security, DeepStream), then by id."""
    order = {c: i for i, c in enumerate(_CATEGORY_ORDER)}
    return sorted(REGISTRY.values(), key=lambda r: (order.get(r.category, len(order)), r.category, r.id))


def resolve_all(fleet: Fleet) -> dict[str, ResolvedInstance]:
    values = all_profile_values(fleet)
    memo: GieMemo = {}
    return {
        name: resolve_instance(fleet, inst, values, memo) for name, inst in sorted(fleet.instances.items())
    }


@dataclass(frozen=True)
class Changes:
    """What changed since the last evaluation through a :class:`HitMemo`: the instances whose resolution or
    instance-scoped inputs may differ, and per kind the names of the documents that are not the very objects of
    the last fleet (added, changed or removed)."""

    instances: frozenset[str]
    documents: Mapping[str, frozenset[str]]


@dataclass
class PartMemo:
    """One :data:`dsfleet.policies.registry.PARTITIONED` rule's parts: which documents are in which part, and each
    part's hits (parts without hits left out)."""

    of: dict[tuple[str, str], tuple[Part, ...]] = field(default_factory=dict)
    """(kind, name) → the parts the document is in."""
    members: dict[Part, set[tuple[str, str]]] = field(default_factory=dict)
    hits: dict[Part, tuple[Hit, ...]] = field(default_factory=dict)


Kept = tuple[tuple[Hit, str | None], ...]
"""An instance's hits of one rule, each with the name of the instance it is about for rule scoping (``match``):
the instance itself when the hit points into its document or names it, else none (a hit in its profile)."""


@dataclass
class HitMemo:
    """The hits of the instance-scoped rules (:data:`dsfleet.policies.registry.INSTANCE`), per instance, kept
    between evaluations by a long-running caller (the coordinator): an evaluation told which instances may have
    changed checks only those (see :func:`evaluate`)."""

    hits: dict[str, dict[str, Kept]] = field(default_factory=dict)
    """Instance → rule → its hits (rules without hits left out)."""
    by_rule: dict[str, set[str]] = field(default_factory=dict)
    """Rule → the instances with hits of it."""
    findings: dict[int, tuple[Hit, Severity, Finding]] = field(default_factory=dict)
    """The finding each kept hit gave last time, by the hit's id (the hit is kept with it, so the id is not reused
    meanwhile), with its severity: the same hit at the same severity is the same finding."""
    digest: str = ""
    """What every kept hit also depends on: the enabled instance-scoped and partitioned rules and every rule's
    parameters."""
    checked: int = 0
    """Instances checked by the last evaluation (the rest were kept)."""
    refer_by_name: set[str] = field(default_factory=set)
    """Instances with a reference to a document that is not there: their hits name the nearest names of the whole
    fleet, so they are checked again every time."""
    parts: dict[str, PartMemo] = field(default_factory=dict)
    """Per :data:`dsfleet.policies.registry.PARTITIONED` rule, its parts and their hits."""

    def clear(self) -> None:
        self.hits.clear()
        self.by_rule.clear()
        self.findings.clear()
        self.refer_by_name.clear()
        self.parts.clear()

    def put(self, name: str, found: dict[str, Kept]) -> None:
        old = self.hits.pop(name, None)
        if old is not None:
            for rule_id, pairs in old.items():
                self.by_rule[rule_id].discard(name)
                for hit, _subject in pairs:
                    self.findings.pop(id(hit), None)
        if found:
            self.hits[name] = found
            for rule_id in found:
                self.by_rule.setdefault(rule_id, set()).add(name)
        if BY_NAME.intersection(found):
            self.refer_by_name.add(name)
        else:
            self.refer_by_name.discard(name)


BY_NAME = frozenset({"instance-camera-exists", "instance-node-exists", "instance-profile-exists"})
"""Instance-scoped rules whose hits (a missing reference, with the nearest names) read every document's name."""


def _memo_digest(settings: dict[str, EffectiveSetting]) -> str:
    enabled = [rid for rid, known in REGISTRY.items() if known.scope != FLEET and settings[rid].enabled]
    params = {rid: s.params for rid, s in sorted(settings.items())}
    return json.dumps([enabled, params], sort_keys=True, default=repr)


def _instance_hits(ctx: Context, names: Iterable[str], rules: list[Rule], memo: HitMemo) -> None:
    """Check the instance-scoped ``rules`` on each of ``names`` alone; keep their hits in ``memo``."""
    for name in names:
        one = Context(ctx.fleet, {name: ctx.resolved[name]}, ctx.params)
        one._dumped = ctx._dumped  # profiles' dumped settings are shared by the instances that use them
        own = ctx.fleet.sources.get(("DsInstance", name))
        found: dict[str, Kept] = {}
        for known in rules:
            pairs = tuple((hit, _subject_of(hit, name, own)) for hit in known.check(one))
            if pairs:
                found[known.id] = pairs
        memo.put(name, found)


def _subject_of(hit: Hit, name: str, own: SourceRef | None) -> str | None:
    """What :func:`_subject` finds for a hit of instance ``name`` (whose document is at ``own``)."""
    if hit.instance is not None:
        return hit.instance
    if hit.source is None or own is None:
        return None
    return name if (hit.source.file, hit.source.document) == (own.file, own.document) else None


def _finding(rule_id: str, hit: Hit, level: RuleSeverity) -> Finding | None:
    if level is RuleSeverity.OFF:
        return None
    sev = Severity.ERROR if level is RuleSeverity.ERROR else Severity.WARNING
    return Finding(severity=sev, rule=rule_id, message=hit.message, source=hit.source, notes=hit.notes)


def evaluate(
    fleet: Fleet,
    resolved: dict[str, ResolvedInstance] | None = None,
    memo: HitMemo | None = None,
    changes: Changes | None = None,
    *,
    warnings: bool = True,
) -> list[Finding]:
    """Every enabled rule over the fleet → findings (unsorted; the loader adds locations and sorts).

    With ``memo``, the instance-scoped rules are checked one instance at a time, the partitioned rules one part
    at a time, and their hits kept there; when ``changes`` is given as well (and the rules' settings are those of
    the memo), only the instances it names and the parts its documents were or are in are checked again: the
    caller vouches that nothing else changed (:data:`dsfleet.policies.registry.INSTANCE`,
    :data:`dsfleet.policies.registry.PARTITIONED`). Either way the findings are those of checking every rule over
    the whole fleet (a partitioned rule's findings in the order of its parts; the loader sorts them all).
    ``warnings=False``: a rule that can only warn is not looked at (its kept hits stay kept)."""
    changed = changes.instances if changes is not None else None
    settings, findings = effective_settings(fleet)
    ctx = Context(
        fleet=fleet,
        resolved=resolved if resolved is not None else resolve_all(fleet),
        params={rid: s.params for rid, s in settings.items()},
    )
    if memo is not None:
        scoped = [r for r in REGISTRY.values() if r.scope == INSTANCE and settings[r.id].enabled]
        digest = _memo_digest(settings)
        if digest != memo.digest or changed is None:
            memo.clear()
            memo.digest = digest
            todo: Collection[str] = ctx.resolved
        else:
            assert changes is not None
            for gone in [n for n in changes.documents.get("DsInstance", ()) if n not in ctx.resolved]:
                memo.put(gone, {})
            todo = {n for n in changed if n in ctx.resolved}
        _instance_hits(ctx, sorted(todo), scoped, memo)
        memo.checked = len(todo)
        for known in REGISTRY.values():
            if known.scope == PARTITIONED and settings[known.id].enabled:
                _part_hits(ctx, known, memo.parts.setdefault(known.id, PartMemo()), changes)
    documents: dict[tuple[str, int], tuple[str, str]] | None = None
    for rule_id, known in REGISTRY.items():
        setting = settings[rule_id]
        if not setting.enabled:
            continue
        if not warnings and not setting.can_fail:
            continue
        if memo is not None and known.scope == INSTANCE:
            findings.extend(_kept_findings(memo, fleet, rule_id, setting, known.once))
            continue
        if memo is not None and known.scope == PARTITIONED:
            part_memo = memo.parts[rule_id]
            hits: Iterable[Hit] = [
                hit for part in sorted(part_memo.hits, key=repr) for hit in part_memo.hits[part]
            ]
        else:
            hits = known.check(ctx)
        for hit in hits:
            level = setting.severity
            if setting.scoped:
                if documents is None:
                    documents = {(ref.file, ref.document): key for key, ref in fleet.sources.items()}
                level = setting.severity_for(_subject(fleet, documents, hit))
            finding = _finding(rule_id, hit, level)
            if finding is not None:
                findings.append(finding)
    return findings


def _part_hits(ctx: Context, known: Rule, memo: PartMemo, changes: Changes | None) -> None:
    """Bring ``memo`` up to date: the parts the changed documents were or are in, checked again (all of them
    when ``changes`` is None or the memo is new)."""
    assert known.partitions is not None
    partitions = known.partitions
    fleet = ctx.fleet
    tables: dict[str, Mapping[str, Any]] = {
        "Camera": fleet.cameras,
        "Node": fleet.nodes,
        "InferenceProfile": fleet.profiles,
        "DsInstance": ctx.resolved,
    }
    if changes is None or (not memo.of and not memo.members):
        memo.of.clear()
        memo.members.clear()
        memo.hits.clear()
        todo: dict[str, Collection[str]] = {kind: tables[kind].keys() for kind in partitions.kinds}
    else:
        todo = {kind: changes.documents.get(kind, frozenset()) for kind in partitions.kinds}
        if "DsInstance" in todo:
            todo["DsInstance"] = {*todo["DsInstance"], *changes.instances}
    touched: set[Part] = set()
    for kind, names in todo.items():
        table = tables[kind]
        for name in names:
            key = (kind, name)
            for part in memo.of.pop(key, ()):
                touched.add(part)
                members = memo.members.get(part)
                if members is not None:
                    members.discard(key)
            doc = table.get(name)
            if doc is None:
                continue
            parts = tuple(partitions.of(kind, name, doc))
            memo.of[key] = parts
            for part in parts:
                touched.add(part)
                memo.members.setdefault(part, set()).add(key)
    for part in touched:
        members = memo.members.get(part)
        if not members:
            memo.members.pop(part, None)
            memo.hits.pop(part, None)
            continue
        view: dict[str, set[str]] = {}
        for kind, name in members:
            view.setdefault(kind, set()).add(name)
        instances = view.pop("DsInstance", set())
        one = Context(
            fleet,
            {name: ctx.resolved[name] for name in instances},
            ctx.params,
            view={kind: frozenset(names) for kind, names in view.items()},
            part=part,
        )
        one._dumped = ctx._dumped
        hits = tuple(known.check(one))
        if hits:
            memo.hits[part] = hits
        else:
            memo.hits.pop(part, None)


def _kept_findings(
    memo: HitMemo,
    fleet: Fleet,
    rule_id: str,
    setting: EffectiveSetting,
    once: Callable[[Hit], Hashable] | None,
) -> Iterator[Finding]:
    """An instance-scoped rule's findings from its kept hits, as one check over the fleet yields them: each
    instance's, by instance name (a ``once`` rule's repeats left out)."""
    seen: set[Hashable] = set()
    cache = memo.findings
    for name in sorted(memo.by_rule.get(rule_id, ())):
        for hit, subject in memo.hits[name][rule_id]:
            if once is not None:
                same = once(hit)
                if same in seen:
                    continue
                seen.add(same)
            level = setting.severity
            if setting.scoped:
                level = setting.severity_for(fleet.instances.get(subject) if subject is not None else None)
            sev = Severity.ERROR if level is RuleSeverity.ERROR else Severity.WARNING
            known = cache.get(id(hit))
            if known is not None and known[0] is hit and known[1] is sev and level is not RuleSeverity.OFF:
                yield known[2]
                continue
            finding = _finding(rule_id, hit, level)
            if finding is not None:
                cache[id(hit)] = (hit, sev, finding)
                yield finding
