"""Rollback pins: when a pin holds automatic sync, when the source has moved past it, and what status says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dsfleet.reconciler.planning.pins import (
    Pin,
    SourceState,
    apply_held,
    changed_configs,
    pin_holds,
    unpin_condition,
)
from dsfleet.reconciler.views import pin_view

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)


def _pin(commit: str | None, digest: str = "a" * 64, node: str | None = None) -> Pin:
    return Pin(
        revision=3,
        rollback_revision=5,
        from_revision=4,
        source=SourceState(commit, digest),
        since=NOW,
        by="ops@host",
        node=node,
    )


@pytest.mark.parametrize(
    ("pinned", "now", "held"),
    [
        # a git work tree: the commit decides
        (("c1", "a"), ("c1", "a"), True),
        (("c1", "a"), ("c1", "b"), True),  # same commit, content read differently (excludes, a file event)
        (("c1", "a"), ("c2", "a"), False),  # a new commit (even one that changes no manifest)
        (("c1", "a"), ("c1-dirty", "b"), False),  # uncommitted changes appeared
        (("c1-dirty", "a"), ("c1-dirty", "a"), True),
        (("c1-dirty", "a"), ("c1-dirty", "b"), False),  # the uncommitted content changed
        (("c1-dirty", "a"), ("c1", "a"), False),  # committed
        (("c1", "a"), (None, "a"), False),  # no longer a git work tree
        # a plain directory: the manifests hash decides
        ((None, "a"), (None, "a"), True),
        ((None, "a"), (None, "b"), False),
        ((None, "a"), ("c1", "a"), False),
    ],
)
def test_pin_holds_while_the_source_points_at_what_was_rolled_back_from(
    pinned: tuple[str | None, str], now: tuple[str | None, str], held: bool
) -> None:
    pin = _pin(pinned[0], pinned[1])
    assert pin_holds(pin, SourceState(*now)) is held


@pytest.mark.parametrize(
    ("pinned", "seen", "source", "held"),
    [
        (False, None, "c1", False),  # no pin inside the transaction
        (False, 5, "c1", False),  # the pin the caller read was lifted meanwhile
        (True, None, "c1", True),  # a rollback stored after the caller planned, of the state being stored
        (True, None, "c2", True),  # ... and of another one: the plan was made against replaced configs
        (True, 4, "c2", True),  # a newer rollback than the one the caller read
        (True, 5, "c1", True),  # the pin the caller read holds the state being stored
        (True, 5, "c2", False),  # the pin the caller read, the source moved past it
    ],
)
def test_apply_held_inside_the_transaction_by_the_pin_it_reads(
    pinned: bool, seen: int | None, source: str, held: bool
) -> None:
    pin = _pin("c1") if pinned else None
    assert apply_held(pin, SourceState(source, "a" * 64), seen) is held


def test_pin_round_trips_through_json_and_malformed_values_read_as_no_pin() -> None:
    pin = _pin("c1", node="edge-1")
    assert Pin.from_json(pin.to_json()) == pin
    assert Pin.from_json(None) is None
    assert Pin.from_json({"revision": "x"}) is None
    assert Pin.from_json({"rollbackRevision": 1, "since": NOW.isoformat()}) is None


def test_unpin_condition_names_the_commit_or_the_hash() -> None:
    assert "a new commit" in unpin_condition(_pin("0123456789abcdef"))
    assert "0123456789ab" in unpin_condition(_pin("0123456789abcdef"))
    plain = unpin_condition(_pin(None, "f" * 64))
    assert "change of the manifests" in plain and "ffffffffffff" in plain
    assert "dsfleet unpin" in plain


def test_changed_configs_restores_differing_nodes_and_removes_those_the_target_lacks() -> None:
    target = {"a": "h1", "b": "h2"}
    current = {"a": "h1", "b": "h3", "c": "h4"}
    assert changed_configs(target, current) == (frozenset({"b"}), frozenset({"c"}))
    assert changed_configs(target, current, node="c") == (frozenset(), frozenset({"c"}))
    assert changed_configs(target, current, node="a") == (frozenset(), frozenset())
    assert changed_configs({"a": "h1"}, {}) == (frozenset({"a"}), frozenset())
    assert changed_configs(current, current) == (frozenset(), frozenset())


def test_status_pin_view_says_to_what_since_when_by_whom_and_what_unpins() -> None:
    assert pin_view(None) is None
    view = pin_view(_pin("c1", node="edge-1").to_json())
    assert view is not None
    assert view["revision"] == 3 and view["fromRevision"] == 4 and view["node"] == "edge-1"
    assert view["summary"].startswith(
        "PINNED: node edge-1 rolled back to revision 3 (from revision 4) by ops@host"
    )
    assert NOW.isoformat() in view["summary"] and "a new commit" in view["summary"]


def test_a_pinned_status_document_is_its_model() -> None:
    import dataclasses
    import json

    from pydantic import TypeAdapter

    from dsfleet.reconciler.api.models import StatusDocument
    from dsfleet.reconciler.views import status_document
    from tests.support.statussnapshots import NOW as SNAPSHOT_NOW
    from tests.support.statussnapshots import example_snapshot

    snapshot = dataclasses.replace(example_snapshot(), pin=_pin("c1").to_json())
    document = status_document(snapshot, SNAPSHOT_NOW)
    adapter = TypeAdapter(StatusDocument)
    dumped = adapter.dump_json(adapter.validate_python(document), by_alias=True)
    assert json.loads(dumped) == document
    assert document["pin"]["rollbackRevision"] == 5
    assert status_document(example_snapshot(), SNAPSHOT_NOW)["pin"] is None
