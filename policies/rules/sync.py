"""Sync settings rules: Policy documents that set ``spec.sync`` fields to different values."""

from __future__ import annotations

from collections.abc import Iterator

from dsfleet.policies.registry import Context, Hit, rule
from dsfleet.policies.syncs import rollout_policies, sync_settings
from dsfleet.schemas.findings import Note
from dsfleet.schemas.manifests import RuleSeverity


@rule(
    "sync-policy-conflict",
    RuleSeverity.ERROR,
    "Policy documents set spec.sync fields to different values",
    relaxable=False,
)
def sync_policy_conflict(ctx: Context) -> Iterator[Hit]:
    _, conflicts = sync_settings(ctx.fleet)
    for field, first, second in conflicts:
        yield Hit(
            f"spec.sync.{field}: conflicts with Policy {first}",
            ctx.fleet.source("Policy", second, "spec", "sync", field),
            (
                Note(
                    message=f"Policy {first} sets spec.sync.{field} here",
                    source=ctx.fleet.source("Policy", first, "spec", "sync", field),
                ),
            ),
        )


@rule(
    "rollout-policy-conflict",
    RuleSeverity.ERROR,
    "more than one Policy document sets spec.rollout",
    relaxable=False,
)
def rollout_policy_conflict(ctx: Context) -> Iterator[Hit]:
    names = rollout_policies(ctx.fleet)
    for name in names[1:]:
        yield Hit(
            f"spec.rollout: Policy {names[0]} sets the fleet's rollout already (one Policy sets it)",
            ctx.fleet.source("Policy", name, "spec", "rollout"),
            (
                Note(
                    message=f"Policy {names[0]} sets it here",
                    source=ctx.fleet.source("Policy", names[0], "spec", "rollout"),
                ),
            ),
        )
