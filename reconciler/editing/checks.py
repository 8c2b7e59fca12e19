"""The manifest set with an edit applied, judged in memory as ``dsfleet validate`` judges the directory (pure):
the same parse, schemas, duplicate check, rules and finding locations (:func:`dsfleet.reconciler.loading.
manifestsets.load_manifests`), over file texts named by their paths in the manifests directory."""

from __future__ import annotations

from collections.abc import Mapping

from dsfleet.reconciler.loading.manifestsets import (
    LoadedManifests,
    build_fleet,
    locate_findings,
    parse_file,
)
from dsfleet.reconciler.loading.yamlfiles import DEFAULT_LIMITS, Limits
from dsfleet.schemas.findings import Finding
from dsfleet.schemas.hashing import sha256_hex

__all__ = ["check_files", "new_errors"]


def check_files(files: Mapping[str, bytes], limits: Limits = DEFAULT_LIMITS) -> LoadedManifests:
    """Every file (relative path → bytes) parsed, validated and checked by the fleet rules."""
    from dsfleet.policies.engine import evaluate

    parsed = [(name, parse_file(name, files[name], limits)) for name in sorted(files)]
    findings: list[Finding] = [f for _name, pf in parsed for f in pf.findings]
    fleet, duplicates = build_fleet(parsed)
    findings.extend(duplicates)
    findings.extend(evaluate(fleet))
    texts = {name: pf.text for name, pf in parsed}
    memo = {name: pf.locations for name, pf in parsed}
    digest = sha256_hex("\n".join(f"{name}\0{pf.digest}" for name, pf in parsed))
    return LoadedManifests(
        fleet=fleet,
        findings=locate_findings(findings, texts, memo),
        files=[name for name, _ in parsed],
        digest=digest,
        texts=texts,
        locations=memo,
    )


def new_errors(before: LoadedManifests, after: LoadedManifests) -> list[Finding]:
    """The errors of ``after`` (the set with the edit) that ``before`` did not have, by rule and message: an
    edit is refused for what it breaks, not for what was broken already. Every error when ``before`` had none."""
    known = {(f.rule, f.message) for f in before.errors}
    return [f for f in after.errors if (f.rule, f.message) not in known]
