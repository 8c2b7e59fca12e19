"""The fleet's sync settings (pure): ``Policy.spec.sync`` merged over every Policy document, and each
instance's effective self-heal. A setting given twice with different values is a conflict (reported by the
``sync-policy-conflict`` rule); unset settings take the defaults (auto, prune, self-heal)."""

from __future__ import annotations

from dataclasses import dataclass

from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.manifests import DsInstance
from dsfleet.schemas.rollouts import RolloutStrategy


@dataclass(frozen=True)
class FleetSync:
    mode: str = "auto"
    prune: bool = True
    self_heal: bool = True


_FIELDS = (("mode", "mode"), ("prune", "prune"), ("selfHeal", "self_heal"))


def sync_settings(fleet: Fleet) -> tuple[dict[str, tuple[object, str]], list[tuple[str, str, str]]]:
    """Field → (value, policy name), and the conflicts (field, first policy, second policy)."""
    seen: dict[str, tuple[object, str]] = {}
    conflicts: list[tuple[str, str, str]] = []
    for name in sorted(fleet.policies):
        sync = fleet.policies[name].spec.sync
        if sync is None:
            continue
        for field, _ in _FIELDS:
            value = getattr(sync, field)
            if value is None:
                continue
            if field in seen and seen[field][0] != value:
                conflicts.append((field, seen[field][1], name))
            else:
                seen.setdefault(field, (value, name))
    return seen, conflicts


def fleet_sync(fleet: Fleet) -> FleetSync:
    seen, _ = sync_settings(fleet)
    values = {attr: seen[field][0] for field, attr in _FIELDS if field in seen}
    return FleetSync(**values)  # type: ignore[arg-type]


def instance_self_heal(sync: FleetSync, instance: DsInstance) -> bool:
    override = instance.spec.sync.selfHeal if instance.spec.sync is not None else None
    return sync.self_heal if override is None else override


def rollout_policies(fleet: Fleet) -> list[str]:
    """The Policy documents that set ``spec.rollout``, by name (more than one is an error: ``rollout-policy-conflict``)."""
    return [name for name in sorted(fleet.policies) if fleet.policies[name].spec.rollout is not None]


def fleet_rollout(fleet: Fleet) -> RolloutStrategy | None:
    """The fleet's rollout strategy (the first Policy by name that sets one; None: every change goes out at once)."""
    names = rollout_policies(fleet)
    return fleet.policies[names[0]].spec.rollout if names else None
