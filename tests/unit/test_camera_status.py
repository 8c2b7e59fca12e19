"""Per-camera status: the status document's ``cameras``, ``dsfleet.cameras/v1``, ``status --cameras`` text and the
per-camera metrics, from a snapshot whose agent reported cameras."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from dsfleet.reconciler.api.models import CamerasDocument, StatusDocument
from dsfleet.reconciler.cli.status import cameras_text
from dsfleet.reconciler.views import cameras_document, status_document
from tests.support.statussnapshots import NOW, SECRET, example_snapshot


def _doc() -> dict[str, Any]:
    return status_document(example_snapshot(), NOW)


def test_cameras_come_sorted_by_name_with_what_deepstream_reported() -> None:
    cameras = _doc()["cameras"]
    assert [(c["instance"], c["camera"], c["state"]) for c in cameras] == [
        ("gate", "gate-a", "streaming"),
        ("gate", "gate-b", "failed"),
    ]
    a = cameras[0]
    assert (a["sourceId"], a["fps"], a["frameNumber"], a["latencyMs"]) == (0, 25.0, 1200, 41.5)
    assert cameras[1]["fps"] is None and cameras[1]["frameNumber"] is None


def test_a_failure_reason_never_carries_the_cameras_password() -> None:
    text = json.dumps(_doc()["cameras"])
    assert SECRET not in text
    assert "Could not open rtsp://" in text


def test_the_documents_are_their_models() -> None:
    doc = _doc()
    StatusDocument.model_validate(doc)
    cams = cameras_document(doc)
    assert cams["states"] == {"failed": 1, "streaming": 1}
    adapter = TypeAdapter(CamerasDocument)
    assert json.loads(adapter.dump_json(adapter.validate_python(cams), by_alias=True)) == cams


def test_a_state_outside_the_wire_enum_is_refused_by_the_model() -> None:
    cams = cameras_document(_doc())
    cams["cameras"][0]["state"] = "dancing"
    try:
        CamerasDocument.model_validate(cams)
    except ValueError:
        return
    raise AssertionError("an unknown camera state validated")


def test_status_cameras_text_is_one_row_per_camera() -> None:
    text = cameras_text(cameras_document(_doc()))
    lines = text.splitlines()
    assert lines[0].split() == ["NODE", "INSTANCE", "CAMERA", "STATE", "REASON", "FPS", "FRAME", "LATENCY"]
    assert lines[1].split()[:8] == ["gpu-1", "gate", "gate-a", "streaming", "-", "25", "1200", "41.5"]
    assert lines[2].split()[:4] == ["gpu-1", "gate", "gate-b", "failed"]
    assert lines[-1] == "2 cameras: 1 failed, 1 streaming"


def test_no_camera_says_why() -> None:
    doc = {"schema": "dsfleet.cameras/v1", "generatedAt": NOW.isoformat(), "states": {}, "cameras": []}
    assert cameras_text(doc).startswith("No camera reported")
