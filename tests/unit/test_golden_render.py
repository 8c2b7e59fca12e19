"""Golden cases: tests/golden/render/<case>/manifests in, every file each agent writes out.

``expected/<node>/<instance>/`` holds the rendered files as the agent writes them (before it fills in
credentials) and ``container.json`` the container spec with the instance's hashes. Regenerate with
``UPDATE_GOLDEN=1 pytest tests/unit/test_golden_render.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from dsfleet.reconciler.compiling.desired import desired_state

CASES = sorted(p for p in (Path(__file__).parent.parent / "golden" / "render").iterdir() if p.is_dir())


def _rendered(case: Path) -> dict[str, str]:
    desired = desired_state([case / "manifests"])
    assert desired.configs is not None, [f.message for f in desired.loaded.errors]
    out: dict[str, str] = {}
    for node, config in desired.configs.items():
        for inst in config.instances:
            base = f"{node}/{inst.name}"
            for f in inst.files:
                out[f"{base}/{f.path}"] = f.content
            spec = {
                "container": inst.container.model_dump(mode="json", by_alias=True),
                "secrets": {f.path: list(f.secrets) for f in inst.files if f.secrets},
                "specHash": inst.specHash,
                "filesHash": inst.filesHash,
                "configHash": inst.configHash,
            }
            out[f"{base}/container.json"] = json.dumps(spec, indent=2, sort_keys=True) + "\n"
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_render_golden(case: Path) -> None:
    actual = _rendered(case)
    expected_dir = case / "expected"
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, content in actual.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_text(content)
    expected = {
        str(p.relative_to(expected_dir)): p.read_text() for p in expected_dir.rglob("*") if p.is_file()
    }
    assert sorted(actual) == sorted(expected)
    for rel in sorted(actual):
        assert actual[rel] == expected[rel], rel
