"""The ports: the apply path runs on a small in-memory store (no SQLAlchemy), and the system clock is sane."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsfleet.reconciler.applying import Outcome, apply_manifests
from dsfleet.reconciler.ports import SystemClock
from dsfleet.reconciler.store import (
    AppliedRevision,
    Encoder,
    Inventory,
    NewRevision,
    NodeChange,
    StoredNodeConfig,
)
from dsfleet.schemas.hashing import canonical_json
from dsfleet.schemas.wire import AgentConfig

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class MemoryStore:
    """Just what ``apply_manifests`` calls, kept in dicts."""

    deposed = None

    def __init__(self) -> None:
        self.revisions: list[tuple[NewRevision, bool]] = []
        self.configs: dict[str, StoredNodeConfig] = {}
        self.generations: dict[str, int] = {}
        self.outbox: list[tuple[str, str, bytes | str | None]] = []
        self.headers: list[Mapping[str, str]] = []

    def fleet_id(self) -> str | None:
        return "fleet-1"

    def writer_epoch(self) -> int:
        return 3

    def sync_state(self, key: str) -> Any:
        return None

    def latest_node_configs(self, at_revision: int | None = None) -> dict[str, StoredNodeConfig]:
        return dict(self.configs)

    def latest_node_changes(
        self, known: Mapping[str, str]
    ) -> tuple[frozenset[str], dict[str, StoredNodeConfig]]:
        same = frozenset(n for n, c in self.configs.items() if known.get(n) == c.config_hash)
        return same, {n: c for n, c in self.configs.items() if n not in same}

    def record_rejected(self, rev: NewRevision, errors: Sequence[Mapping[str, Any]]) -> int:
        self.revisions.append((rev, False))
        return len(self.revisions)

    def apply_revision(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        inventory: Inventory | None,
        encode: Encoder,
        *,
        inventory_base: tuple[int, Inventory] | None = None,
        holds: Mapping[str, Mapping[str, Any]] | None = None,
        unless_pinned: Any = None,
        states: Mapping[str, Any] | None = None,
    ) -> AppliedRevision:
        assert not states, "no rollout without a strategy"
        self.revisions.append((rev, True))
        rid = len(self.revisions)
        generations = {}
        for change in changes:
            generation = self.generations.get(change.node, 0) + 1
            self.generations[change.node] = generations[change.node] = generation
            if change.payload is None:
                self.configs.pop(change.node, None)
            else:
                payload = dict(change.payload)
                assert change.config_hash is not None
                self.configs[change.node] = StoredNodeConfig(
                    change.node, generation, change.config_hash, payload, rid
                )
            topic, key, value, headers = encode(change.node, generation, dict(change.payload or {}) or None)
            self.outbox.append((topic, key, value))
            self.headers.append(headers)
        return AppliedRevision(
            rid, generations, tuple(range(len(self.outbox) - len(changes), len(self.outbox)))
        )


def test_the_apply_path_runs_on_an_in_memory_store() -> None:
    store = MemoryStore()
    revision = NewRevision(source="cli", created_at=T0, manifests_hash="")
    first = apply_manifests([MANIFESTS], store, revision)
    assert first.outcome is Outcome.APPLIED
    assert first.applied is not None
    assert first.applied.generations == {"gpu-node-1": 1, "gpu-node-2": 1}
    assert sorted(key for _topic, key, _value in store.outbox) == ["gpu-node-1", "gpu-node-2"]
    # every AgentConfig carries the id of the fleet (store) that wrote it
    assert all(AgentConfig.model_validate_json(value).fleet == "fleet-1" for _t, _k, value in store.outbox)
    # and the leadership epoch of its writer
    assert [h.get("epoch") for h in store.headers] == ["3", "3"]
    again = apply_manifests([MANIFESTS], store, revision)
    assert again.plan is not None and not again.plan.changed  # planning against what was stored: no change
    assert again.applied is not None and again.applied.generations == {}
    assert canonical_json(store.configs["gpu-node-1"].payload)


def test_the_system_clock_is_utc_and_monotonic() -> None:
    clock = SystemClock()
    now = clock.now()
    assert now.tzinfo is UTC
    a = clock.monotonic()
    assert clock.monotonic() >= a
