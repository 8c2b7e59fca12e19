"""dsfleet.reconciler.views: the JSON documents the CLI prints (validate, apply, history, get) and the API serves."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from dsfleet.reconciler.applying import revision_from_git
from dsfleet.reconciler.loading.manifestsets import load_manifests
from dsfleet.reconciler.store import AppliedRevision, CameraRow, LegacyDsInstance, RevisionRecord
from dsfleet.reconciler.views import apply_json, history_json, record_json, validate_json

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_validate_json_of_the_example_fleet() -> None:
    loaded = load_manifests([MANIFESTS])
    document = validate_json(loaded, 0, len(loaded.findings))
    assert document["schema"] == "dsfleet.validate/v1" and document["valid"] is True
    assert validate_json(loaded, 0, 1, strict=True)["valid"] is False  # --strict: a warning fails
    assert document["counts"] == {
        "files": 9,
        "nodes": 2,
        "cameras": 10,
        "instances": 3,
        "profiles": 2,
        "policies": 1,
    }
    json.dumps(document)


def test_apply_and_history_json() -> None:
    applied = AppliedRevision(revision_id=4, generations={"n1": 2}, outbox_ids=(7,))
    assert apply_json(applied, {"nodes": 1}, [{"rule": "w"}]) == {
        "schema": "dsfleet.apply/v1",
        "outcome": "applied",
        "revision": 4,
        "accepted": True,
        "generations": {"n1": 2},
        "outbox": [7],
        "summary": {"nodes": 1},
        "findings": [{"rule": "w"}],
    }
    record = RevisionRecord(4, T0, "cli", "abc", "A <a@b>", "msg", "h", False, ({"rule": "x"},), 0)
    assert history_json([record]) == [
        {
            "id": 4,
            "created_at": "2026-01-01T00:00:00+00:00",
            "source": "cli",
            "git_commit": "abc",
            "git_author": "A <a@b>",
            "git_message": "msg",
            "manifests_hash": "h",
            "accepted": False,
            "nodes_changed": 0,
            "errors": [{"rule": "x"}],
        }
    ]


def test_record_json_is_plain_json() -> None:
    camera = record_json(
        CameraRow(name="gate-1", camera_id="3", url="rtsp://127.0.0.1/x", labels={"zone": "a"})
    )
    assert camera["labels"] == {"zone": "a"} and camera["instance"] is None
    legacy = record_json(LegacyDsInstance("ccm-gate", "gpu-node-1", ("gate-1", "gate-2"), "NORMAL"))
    assert legacy["cameras"] == ["gate-1", "gate-2"]
    json.dumps([camera, legacy])


def test_revision_from_git_outside_a_work_tree(tmp_path: Path) -> None:
    rev = revision_from_git(tmp_path, source="watch", now=T0)
    assert (rev.source, rev.created_at, rev.git_commit, rev.manifests_hash) == ("watch", T0, None, "")
