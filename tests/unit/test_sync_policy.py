"""Sync settings (Policy.spec.sync, DsInstance.spec.sync): merge and conflicts, effective self-heal, hashes that
stay for fleets that never set them, and the agent's plan honouring prune and self-heal."""

from __future__ import annotations

from pathlib import Path

from dsfleet.agent.containers import ActionKind, ObservedContainer, compute_plan, container_labels
from dsfleet.agent.drift import Applied
from dsfleet.policies.syncs import FleetSync, fleet_sync, instance_self_heal
from dsfleet.reconciler.compiling.desired import desired_state
from dsfleet.schemas.nodeconfigs import build_instance

ROOT = Path(__file__).resolve().parents[2]


def _fleet(tmp_path: Path, policies: str, instance_sync: str = "") -> Path:
    import shutil

    d = tmp_path / "m"
    shutil.copytree(ROOT / "manifests", d)
    (d / "policies" / "sync.yaml").write_text(policies)
    if instance_sync:
        p = d / "instances" / "ccm.yaml"
        p.write_text(p.read_text().replace("  node: gpu-node-1\n", "  node: gpu-node-1\n" + instance_sync, 1))
    return d


def _policy(name: str, body: str) -> str:
    return f"apiVersion: dsfleet/v1\nkind: Policy\nmetadata:\n  name: {name}\nspec:\n  sync:\n{body}---\n"


def test_defaults_keep_hashes(tmp_path: Path) -> None:
    plain = desired_state([ROOT / "manifests"])
    explicit = desired_state(
        [_fleet(tmp_path, _policy("s", "    mode: auto\n    prune: true\n    selfHeal: true\n"))]
    )
    assert plain.configs is not None and explicit.configs is not None
    assert {n: c.configHash for n, c in plain.configs.items()} == {
        n: c.configHash for n, c in explicit.configs.items()
    }
    assert fleet_sync(plain.fleet) == FleetSync()


def test_fleet_settings_and_instance_override_change_the_node_config(tmp_path: Path) -> None:
    d = _fleet(
        tmp_path, _policy("s", "    prune: false\n    selfHeal: false\n"), "  sync:\n    selfHeal: true\n"
    )
    got = desired_state([d])
    assert got.configs is not None, [f.message for f in got.loaded.errors]
    assert got.configs["gpu-node-1"].prune is False
    heal = {i.name: i.selfHeal for c in got.configs.values() for i in c.instances}
    assert heal["traffic-parking"] is False
    assert list(heal.values()).count(True) == 1  # the one instance that overrides it
    plain = desired_state([ROOT / "manifests"])
    assert plain.configs is not None
    assert got.configs["gpu-node-2"].configHash != plain.configs["gpu-node-2"].configHash
    assert instance_self_heal(FleetSync(self_heal=False), next(iter(plain.fleet.instances.values()))) is False


def test_conflicting_policies_are_an_error(tmp_path: Path) -> None:
    d = _fleet(tmp_path, _policy("a", "    mode: manual\n") + _policy("b", "    mode: auto\n"))
    got = desired_state([d])
    assert got.configs is None
    assert [f.rule for f in got.loaded.errors] == ["sync-policy-conflict"]
    assert "conflicts with Policy a" in got.loaded.errors[0].message


def test_agent_plan_keeps_orphans_without_prune_and_skips_healing_per_instance() -> None:
    from tests.unit.test_agent_containers import inst

    kept = inst("gone")
    orphan = ObservedContainer("c9", "dsfleet-gone", container_labels(kept, "gpu-01", 1), "running")
    assert [a.kind for a in compute_plan("gpu-01", [], [orphan], {}, {}).actions] == [ActionKind.REMOVE]
    plan = compute_plan("gpu-01", [], [orphan], {}, {}, prune=False)
    assert plan.actions == () and [f.kind for f in plan.findings] == ["orphaned"]
    lazy = inst("cam")
    lazy = build_instance(
        lazy.name, lazy.layout, lazy.paused, lazy.cameras, lazy.container, lazy.files, self_heal=False
    )
    stopped = ObservedContainer("c1", "dsfleet-cam", container_labels(lazy, "gpu-01", 1), "exited")
    applied = {"cam": Applied("c1", lazy.specHash, lazy.filesHash, 1)}
    assert [a.kind for a in compute_plan("gpu-01", [inst("cam")], [stopped], {}, applied).actions] == [
        ActionKind.START
    ]
    healing = compute_plan("gpu-01", [lazy], [stopped], {}, applied)
    assert healing.actions == () and [d.kind.value for d in healing.drift] == ["stopped"]
