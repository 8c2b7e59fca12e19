"""The coordinator's incremental apply against a real store: the inventory written as the rows a change touched
(:class:`dsfleet.reconciler.store.InventoryDelta`) equals the inventory a fresh store holds after a full apply."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsfleet.reconciler.applying import Caches, Outcome, apply_manifests
from dsfleet.reconciler.store import NewRevision, Store
from dsfleet.reconciler.store.inventory import InventoryMixin

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests"


def _rev() -> NewRevision:
    return NewRevision(source="watch", created_at=datetime.now(UTC), manifests_hash="")


def _edit(path: Path, change: Any) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    change(docs)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def test_inventory_written_as_a_delta_equals_a_full_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deltas: list[int] = []
    original = InventoryMixin._write_inventory_delta.__func__  # type: ignore[attr-defined]

    def spy(cls: Any, conn: Any, delta: Any) -> None:
        deltas.append(len(delta.nodes) + len(delta.cameras) + len(delta.instances))
        original(cls, conn, delta)

    monkeypatch.setattr(InventoryMixin, "_write_inventory_delta", classmethod(spy))
    root = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, root)
    caches = Caches()
    steps = [
        ("cameras/gate.yaml", lambda docs: docs[0]["spec"].update(url="rtsp://127.0.0.1:8554/gate-1/other")),
        ("cameras/gate.yaml", lambda docs: docs.pop()),  # a camera removed
        ("instances/ccm.yaml", lambda docs: docs[0]["spec"].update(node="gpu-node-2")),  # moved
        ("nodes/nodes.yaml", lambda docs: docs[-1]["metadata"].setdefault("labels", {}).update(rack="r9")),
    ]
    with Store.open(f"sqlite:///{tmp_path / 'kept.db'}") as store:
        first = apply_manifests([root], store, _rev(), caches=caches)
        assert first.outcome is Outcome.APPLIED
        for step, (name, change) in enumerate(steps):
            _edit(root / name, change)
            result = apply_manifests([root], store, _rev(), caches=caches)
            assert result.outcome is Outcome.APPLIED, [f.message for f in result.desired.loaded.errors]
            with Store.open(f"sqlite:///{tmp_path / f'fresh-{step}.db'}") as fresh:
                apply_manifests([root], fresh, _rev())
                assert store.inventory() == fresh.inventory(), name
    assert len(deltas) == len(steps) and all(0 < n < 20 for n in deltas), deltas
