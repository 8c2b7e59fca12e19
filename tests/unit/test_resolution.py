"""Resolution of an instance's cameras: label selectors through the fleet's label index."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dsfleet.resolution.instances import (
    GieMemo,
    all_profile_values,
    instance_cameras,
    resolve_instance,
    selected_cameras,
)
from tests.support.fleets import PROFILE, camera, fleet_of, instance, node

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


AUTO_SECONDARY = {
    **PROFILE,
    "metadata": {"name": "auto2"},
    "spec": {
        "gies": [
            {**PROFILE["spec"]["gies"][0], "properties": {"batch-size": "auto", "model-engine-file": "auto"}},
            {**PROFILE["spec"]["gies"][1], "properties": {"batch-size": "auto"}},
        ]
    },
}


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 3), min_size=1, max_size=6),
    profiles=st.lists(st.sampled_from(["det", "auto2"]), min_size=6, max_size=6),
    overridden=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_instances_that_share_gies_resolve_as_alone(
    counts: list[int], profiles: list[str], overridden: list[bool]
) -> None:
    """The fleet-wide GIE memo gives every instance exactly what resolving it alone gives, problems included."""
    docs: list[dict[str, Any]] = [node("n1"), PROFILE, AUTO_SECONDARY]
    used = 0
    for i, count in enumerate(counts):
        names = [f"cam-{used + k}" for k in range(count)]
        docs.extend(camera(n, str(used + k + 1)) for k, n in enumerate(names))
        used += count
        extra: dict[str, Any] = {"profile": profiles[i]}
        if overridden[i]:
            extra["overrides"] = {"pgie": {"interval": 2}}
        docs.append(instance(f"ds-{i}", "n1", names, **extra))
    fleet = fleet_of(docs)
    values = all_profile_values(fleet)
    memo: GieMemo = {}
    for name, inst in sorted(fleet.instances.items()):
        assert resolve_instance(fleet, inst, values, memo) == resolve_instance(fleet, inst), name
    assert bool(memo) == (not all(overridden[: len(counts)]))  # instances without overrides went through it
