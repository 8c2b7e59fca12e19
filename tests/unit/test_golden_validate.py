"""Golden cases: tests/golden/validate/<case>/manifests in, the exact `dsfleet validate` output out.

Each case has ``expected.txt`` (stderr, then a ``--- stdout`` line and stdout) and ``expected_exit``; an optional
``args`` file adds flags. Regenerate with ``UPDATE_GOLDEN=1 pytest tests/unit/test_golden_validate.py`` and review.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsfleet.reconciler.cli.main import main

CASES = sorted(p for p in (Path(__file__).parent.parent / "golden" / "validate").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_golden(
    case: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(case)
    monkeypatch.setenv("NO_COLOR", "1")
    extra = (case / "args").read_text().split() if (case / "args").exists() else []
    code = main(["validate", "manifests", *extra])
    out, err = capsys.readouterr()
    actual = err + "--- stdout\n" + out
    expected_file = case / "expected.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(actual)
        (case / "expected_exit").write_text(f"{code}\n")
    assert actual == expected_file.read_text()
    assert code == int((case / "expected_exit").read_text())
