"""What a module pulls in when imported: the apply path and the agent do not load libraries they do not use."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(module: str) -> set[str]:
    probe = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return {name.split(".")[0] for name in out.stdout.split()}


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("dsfleet.reconciler.applying", {"sqlalchemy", "alembic", "fastapi", "confluent_kafka"}),
        ("dsfleet.reconciler.ports", {"sqlalchemy", "confluent_kafka", "fastapi"}),
        ("dsfleet.agent.loop", {"sqlalchemy", "fastapi", "ruamel", "yaml"}),
    ],
)
def test_importing_does_not_load(module: str, absent: set[str]) -> None:
    assert not (_loaded_after(module) & absent)


def test_the_store_still_hands_out_its_class_and_values() -> None:
    from dsfleet.reconciler import store

    assert store.Store.__name__ == "Store"
    assert store.NewRevision.__module__ == "dsfleet.reconciler.store.values"
    with pytest.raises(AttributeError):
        _ = store.NoSuchThing  # type: ignore[attr-defined]
