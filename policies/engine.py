"""Evaluating every registered rule (:mod:`dsfleet.policies.registry`) over a fleet, honouring the Policy manifests.

A Policy sets ``spec.rules.<rule-id>: {severity: error|warning|off, params: {...}, reason: ...}`` plus shortcuts
(``allowedImages``, ``maxCamerasPerInstance``, ``requireCredentialsBySecretRef``, ``forbidPrivileged``). Several
Policy documents merge; two that set the same thing differently are an error. Relaxing a rule (lowering its
severity) needs a ``reason``; some rules (secrets) cannot be relaxed at all. A setting with ``match`` (instance
``labels``, ``layout``, ``instances``) applies its severity only to the findings about matching instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

from dsfleet.policies.registry import REGISTRY, Context, Hit, Rule, load_rules
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


def evaluate(fleet: Fleet, resolved: dict[str, ResolvedInstance] | None = None) -> list[Finding]:
    """Every enabled rule over the fleet → findings (unsorted; the loader adds locations and sorts)."""
    settings, findings = effective_settings(fleet)
    ctx = Context(
        fleet=fleet,
        resolved=resolved if resolved is not None else resolve_all(fleet),
        params={rid: s.params for rid, s in settings.items()},
    )
    documents = {(ref.file, ref.document): key for key, ref in fleet.sources.items()}
    for rule_id, known in REGISTRY.items():
        setting = settings[rule_id]
        if not setting.enabled:
            continue
        for hit in known.check(ctx):
            level = setting.severity
            if setting.scoped:
                level = setting.severity_for(_subject(fleet, documents, hit))
            if level is RuleSeverity.OFF:
                continue
            sev = Severity.ERROR if level is RuleSeverity.ERROR else Severity.WARNING
            findings.append(
                Finding(severity=sev, rule=rule_id, message=hit.message, source=hit.source, notes=hit.notes)
            )
    return findings
