"""What status says of a camera handover: the source node's config held back in the outbox keeps its changed
instances Progressing while the handover waits and OutOfSync (with the reason) when it is blocked or nobody can
release it; the document carries a ``handovers`` list and the outbox counts held configs apart — the same in
``-o json``, the API's model and the text."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter

from dsfleet.reconciler.api.models import StatusDocument
from dsfleet.reconciler.cli.status import status_text
from dsfleet.reconciler.planning.handovers import HandoverState, Hold, Move
from dsfleet.reconciler.store import HeldConfig, StatusSnapshot
from dsfleet.reconciler.views import status_document
from tests.support.statussnapshots import BEAT, NOW, example_snapshot

MOVE = Move("lobby-2", "gpu-1", "gate", "gpu-2", "yard", "h3", "lobby-2")
SINCE = NOW - timedelta(seconds=40)


def snapshot(
    state: HandoverState = HandoverState.WAITING, reason: str = "", **changes: Any
) -> StatusSnapshot:
    """The example fleet with instance gate (gpu-1) giving camera lobby-2 to yard (gpu-2): gpu-1's newest config is
    held, so its agent still reports gate's previous config hash."""
    base = example_snapshot()
    observed = tuple(
        dataclasses.replace(o, config_hash="h1-before") if o.instance == "gate" else o for o in base.observed
    )
    hold = Hold((MOVE,), SINCE, SINCE + timedelta(minutes=5), state, reason)
    held = (HeldConfig(12, "gpu-1", SINCE, hold.to_json()),)
    return dataclasses.replace(base, **{"observed": observed, "held": held, **changes})


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in items}


def test_a_waiting_handover_keeps_the_source_progressing() -> None:
    doc = status_document(snapshot(reason="waiting for gpu-2 (offline) to run it"), NOW)
    gate = _by_name(doc["instances"])["gate"]
    assert gate["sync"] == "Progressing"
    assert gate["reason"] == (
        "observed config hash differs from the desired one; camera lobby-2 moving to gpu-2/yard: waiting for "
        "gpu-2 (offline) to run it, since 2026-03-01 11:59:20 UTC, released at 2026-03-01 12:04:20 UTC at the "
        "latest; running"
    )
    node = _by_name(doc["nodes"])["gpu-1"]
    assert node["sync"] == "Progressing" and "camera lobby-2 moving to gpu-2/yard" in node["reason"]
    assert doc["handovers"] == [
        {
            "node": "gpu-1",
            "state": "waiting",
            "reason": "waiting for gpu-2 (offline) to run it",
            "since": SINCE.isoformat(),
            "deadline": (SINCE + timedelta(minutes=5)).isoformat(),
            "summary": gate["reason"].split("; ", 1)[1].removesuffix("; running"),
            "moves": [{"camera": "lobby-2", "fromInstance": "gate", "toNode": "gpu-2", "toInstance": "yard"}],
        }
    ]
    assert doc["outbox"]["held"] == 1 and doc["outbox"]["depth"] == 1  # gpu-2's config, not the held one
    assert doc["outbox"]["summary"].endswith("; 1 config held back by a camera handover")
    TypeAdapter(StatusDocument).validate_python(doc)
    text = status_text(doc)
    assert (
        "handover waiting on gpu-1: camera lobby-2 moving to gpu-2/yard: waiting for gpu-2 (offline)" in text
    )


def test_without_the_hold_the_same_instance_is_out_of_sync() -> None:
    """The claim's other side: the same reports without a hold are a config published long ago, not applied."""
    doc = status_document(snapshot(held=()), NOW)
    gate = _by_name(doc["instances"])["gate"]
    assert gate["sync"] == "OutOfSync" and "not applied" in gate["reason"]
    assert doc["handovers"] == [] and doc["outbox"]["held"] == 0


def test_a_blocked_handover_is_out_of_sync_with_the_reason() -> None:
    doc = status_document(snapshot(HandoverState.BLOCKED, "secret lobby-2 missing on gpu-2"), NOW)
    gate = _by_name(doc["instances"])["gate"]
    assert gate["sync"] == "OutOfSync"
    assert "camera lobby-2 moving to gpu-2/yard: blocked: secret lobby-2 missing on gpu-2" in gate["reason"]
    assert "the source keeps it until the manifests change" in gate["reason"]
    assert doc["handovers"][0]["state"] == "blocked"
    TypeAdapter(StatusDocument).validate_python(doc)


def test_a_hold_nobody_can_release_is_out_of_sync() -> None:
    stale = dataclasses.replace(BEAT, seen_at=NOW - timedelta(minutes=3))
    doc = status_document(snapshot(coordinator=stale), NOW)
    gate = _by_name(doc["instances"])["gate"]
    assert gate["sync"] == "OutOfSync"
    assert "no coordinator runs to release it" in gate["reason"]


def test_instances_the_held_config_does_not_change_stay_synced() -> None:
    doc = status_document(snapshot(), NOW)
    dock = _by_name(doc["instances"])["dock"]
    assert dock["sync"] == "Synced"  # it reports its desired hash: the hold says nothing of it
