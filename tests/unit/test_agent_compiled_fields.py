"""The compiler's side of what the agent needs: ``DsInstance.spec.updateStrategy`` → ``InstanceConfig.strategy``,
camera → secret ref in ``InstanceConfig.cameraSecrets``; a fleet that sets neither keeps every hash it had."""

from __future__ import annotations

import shutil
from pathlib import Path

from dsfleet.reconciler.compiling.desired import desired_state
from dsfleet.schemas.export import manifest_json_schema
from dsfleet.schemas.nodeconfigs import InstanceConfig, NodeConfig

ROOT = Path(__file__).resolve().parents[2]

# The example fleet's hashes as compiled before strategies and camera secrets existed.
NODE_HASHES = {
    "gpu-node-1": "0831bb683013444a1a1290f3dcd7cf23572ba0d8cbe6d397177b9692c17768a9",
    "gpu-node-2": "24adc4bcab2264874072b4066f570d384c15bed9a1228a437f764a0633a4ef7e",
}
SPEC_HASHES = {
    "ccm-gate": "e113bd5ddabb0bf038fb141336dde6b7efa0be4b66d3a55a490c0226d1bb6f42",
    "ccm-lobby": "515656cfbaa948de4a278a743f488c565d8c7c4645632c3573c6a81a0b960eff",
    "traffic-parking": "67ee589eae7d57145c73b99a5b322992ab17995fd24417e1f292695e96d9af55",
}


def _compiled(path: Path) -> tuple[dict[str, NodeConfig], dict[str, InstanceConfig]]:
    got = desired_state([path])
    assert got.configs is not None, [f.message for f in got.loaded.errors]
    return dict(got.configs), {i.name: i for c in got.configs.values() for i in c.instances}


def _without_later_settings(tmp_path: Path) -> Path:
    """The example fleet without the settings it gained after these hashes were taken (the traffic instance's
    ``networkMode: none``, a change of its container on purpose)."""
    d = tmp_path / "m"
    shutil.copytree(ROOT / "manifests", d)
    p = d / "instances" / "traffic.yaml"
    p.write_text("".join(line for line in p.read_text().splitlines(True) if "networkMode:" not in line))
    return d


def test_the_example_fleet_keeps_its_hashes_and_gets_its_camera_secrets(tmp_path: Path) -> None:
    nodes, compiled = _compiled(_without_later_settings(tmp_path))
    assert {n: c.configHash for n, c in nodes.items()} == NODE_HASHES
    assert {name: i.specHash for name, i in compiled.items()} == SPEC_HASHES
    gate = compiled["ccm-gate"]
    assert gate.strategy == "CreateBeforeStop"
    assert gate.cameraSecrets == {f"gate-{i}": f"gate-{i}" for i in range(1, 5)}
    assert compiled["traffic-parking"].cameraSecrets == {}  # its cameras have no credentials


def test_update_strategy_is_compiled_and_changes_only_its_instance(tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(ROOT / "manifests", d)
    p = d / "instances" / "ccm.yaml"
    p.write_text(
        p.read_text().replace("  node: gpu-node-1\n", "  node: gpu-node-1\n  updateStrategy: Recreate\n", 1)
    )
    _, compiled = _compiled(d)
    _, plain = _compiled(ROOT / "manifests")
    assert {n for n in SPEC_HASHES if compiled[n].configHash != plain[n].configHash} == {"ccm-gate"}
    assert compiled["ccm-gate"].strategy == "Recreate"
    assert compiled["ccm-gate"].specHash == SPEC_HASHES["ccm-gate"]  # a setting, not a container change


def test_the_json_schema_knows_the_strategies() -> None:
    text = str(manifest_json_schema("DsInstance"))
    assert "updateStrategy" in text and "StartBeforeStop" in text
