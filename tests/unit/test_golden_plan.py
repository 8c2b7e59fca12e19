"""Golden cases: tests/golden/plan/<case>/{before,after} manifests in, the exact plan out.

``expected.txt`` is ``dsfleet diff`` text (no colours) for applying ``after`` over a store that holds ``before``;
``expected.json`` the ``dsfleet.diff/v1`` JSON. Regenerate with ``UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dsfleet.reconciler.compiling.desired import desired_state
from dsfleet.reconciler.planning.plans import compute_plan
from dsfleet.reconciler.planning.reports import plan_json, plan_text

CASES = sorted(p for p in (Path(__file__).parent.parent / "golden" / "plan").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan_golden(case: Path) -> None:
    before = desired_state([case / "before"]).configs
    after = desired_state([case / "after"]).configs
    assert before is not None and after is not None
    plan = compute_plan(after, before)
    text = plan_text(plan, color=False)
    data = json.dumps(plan_json(plan), indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        (case / "expected.txt").write_text(text)
        (case / "expected.json").write_text(data)
    assert text == (case / "expected.txt").read_text()
    assert data == (case / "expected.json").read_text()
    assert compute_plan(after, after).empty
