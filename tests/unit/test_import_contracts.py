"""The import-linter contracts of pyproject.toml hold (run by the test suite, not only by `make lint`)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _contract_names() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["name"] for c in config["tool"]["importlinter"]["contracts"]]


def test_every_import_contract_is_kept() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in _contract_names():
        assert f"{name} KEPT" in proc.stdout


def test_the_adapter_libraries_and_the_pure_core_have_contracts() -> None:
    names = " | ".join(_contract_names())
    for lib in ("sqlalchemy", "alembic", "confluent_kafka", "docker", "watchfiles", "fastapi", "uvicorn"):
        assert lib in names
    assert "the pure core imports none of the CLI, the importers, the store" in names
