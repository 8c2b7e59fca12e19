"""Resolution of an instance's cameras: label selectors through the fleet's label index."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.resolution import instance_cameras, selected_cameras
from tests.fleets import PROFILE, camera, fleet_of, instance, node

LABELS = st.dictionaries(st.sampled_from(["zone", "site", "group"]), st.sampled_from(["a", "b", "c"]))


def _labelled(name: str, cid: str, labels: dict[str, str]) -> dict[str, Any]:
    doc = camera(name, cid)
    doc["metadata"]["labels"] = labels
    return doc


@settings(max_examples=60, deadline=None)
@given(
    cams=st.lists(LABELS, max_size=12),
    wanted=LABELS.filter(bool),
    explicit=st.lists(st.integers(0, 11), unique=True, max_size=3),
)
def test_selector_matches_a_scan_of_every_camera(
    cams: list[dict[str, str]], wanted: dict[str, str], explicit: list[int]
) -> None:
    names = [f"cam-{i:02d}" for i in range(len(cams))]
    listed = [names[i] for i in explicit if i < len(names)]
    docs = [
        node("n1"),
        PROFILE,
        *(_labelled(n, str(i), lab) for i, (n, lab) in enumerate(zip(names, cams, strict=True))),
    ]
    docs.append(instance("ds", "n1", listed, cameraSelector={"matchLabels": wanted}))
    fleet = fleet_of(docs)
    scanned = [
        n for n in sorted(fleet.cameras)
        if all(fleet.cameras[n].metadata.labels.get(k) == v for k, v in wanted.items())
    ]  # fmt: skip
    assert selected_cameras(fleet, wanted) == scanned
    expected = tuple(listed) + tuple(n for n in scanned if n not in listed)
    assert instance_cameras(fleet, fleet.instances["ds"]) == expected


def test_label_index_is_built_once_per_fleet() -> None:
    fleet = fleet_of([node("n1"), PROFILE, _labelled("cam-a", "1", {"zone": "a"})])
    assert fleet.camera_labels is fleet.camera_labels
    assert fleet.camera_labels[("zone", "a")] == frozenset({"cam-a"})
