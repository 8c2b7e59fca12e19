"""The GitOps promise through the real apply path and a real database (SQLite and PostgreSQL): after applying
any fleet, planning the same manifests again is empty; after applying fleet A then fleet B, the store holds
exactly B's configs and every changed node advanced its generation by one."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from dsfleet.reconciler.applying import Caches, apply_manifests, stored_configs
from dsfleet.reconciler.compiling.desired import desired_state
from dsfleet.reconciler.planning.plans import compute_plan
from dsfleet.reconciler.store import NewRevision, Store
from tests.support.fleets import fleets

REV = NewRevision(source="cli", created_at=datetime(2026, 11, 24, tzinfo=UTC), manifests_hash="")


def write_fleet(directory: Path, docs: list[dict[str, Any]]) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / "fleet.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


@pytest.fixture
def url(store_url: str) -> str:
    return store_url


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=fleets(), after=fleets())
def test_apply_then_plan_is_empty_and_generations_advance(
    url: str, tmp_path: Path, before: Any, after: Any
) -> None:
    with Store.open(url) as store:
        store_dir = tmp_path / "m"
        # the store may hold earlier examples' revisions: the properties hold whatever it held
        caches = Caches()  # the coordinator's warm path: inventory written as a delta from the first apply
        first = apply_manifests(
            [write_fleet(store_dir, before)], store, REV, allow_prune_all=True, caches=caches
        )
        assert first.applied is not None, [f.message for f in first.desired.loaded.errors]
        generations = {n: store.node_generation(n) for n in ("node-0", "node-1", "node-2")}
        second = apply_manifests(
            [write_fleet(store_dir, after)], store, REV, allow_prune_all=True, caches=caches
        )
        assert second.applied is not None and second.plan is not None
        desired = desired_state([store_dir]).configs
        assert desired is not None
        stored = stored_configs(store)
        assert compute_plan(desired, stored).empty
        assert {n: c.configHash for n, c in stored.items()} == {n: c.configHash for n, c in desired.items()}
        with Store.open(f"sqlite:///{tmp_path}/fresh-{id(after)}.db") as fresh:
            apply_manifests([store_dir], fresh, REV, allow_prune_all=True)
            assert store.inventory() == fresh.inventory()
        for name, before_gen in generations.items():
            changed = name in {c.name for c in second.plan.changed}
            assert store.node_generation(name) == before_gen + (1 if changed else 0), name
