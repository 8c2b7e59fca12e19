"""Build fleets in tests: from manifest dicts (like YAML documents) or generated with hypothesis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hypothesis import strategies as st

from dsfleet.reconciler.loading.manifestsets import build_fleet, validate_document
from dsfleet.schemas.findings import SourceRef
from dsfleet.schemas.fleet import Fleet

IMAGE = "nvcr.io/nvidia/deepstream:7.0-triton-multiarch"

PROFILE = {
    "apiVersion": "dsfleet/v1",
    "kind": "InferenceProfile",
    "metadata": {"name": "det"},
    "spec": {
        "gies": [
            {
                "name": "pgie",
                "role": "primary",
                "file": "pgie.txt",
                "properties": {
                    "batch-size": "auto",
                    "num-detected-classes": 4,
                    "cluster-mode": 2,
                    "gie-unique-id": 1,
                },
                "classAttrs": {"all": {"pre-cluster-threshold": 0.2}},
            },
            {
                "name": "sgie",
                "role": "secondary",
                "file": "sgie.txt",
                "properties": {"batch-size": 16, "network-type": 1, "operate-on-gie-id": 1},
            },
        ]
    },
}


def node(name: str, gpus: int = 2, capacity: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"gpus": list(range(gpus)), "image": IMAGE}
    if capacity is not None:
        spec["capacity"] = capacity
    return {"apiVersion": "dsfleet/v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}


def camera(name: str, camera_id: str, url: str | None = None, secret: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"cameraId": camera_id, "url": url or f"rtsp://127.0.0.1:8554/{name}"}
    if secret:
        spec["credentials"] = {"secretRef": name}
    return {"apiVersion": "dsfleet/v1", "kind": "Camera", "metadata": {"name": name}, "spec": spec}


def instance(
    name: str, node_name: str | None, cameras: list[str], layout: str = "deepstream-app", **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"layout": layout, "cameras": cameras, "profile": "det"}
    if node_name is not None:
        body["node"] = node_name
    if layout == "ccm":
        body["app"] = {"kafkaConnectionStr": "127.0.0.1:9092", "streammux": {"width": 1920, "height": 1080}}
    else:
        body["app"] = {"streammux": {"width": 1920, "height": 1080}}
    body.update(spec)
    return {"apiVersion": "dsfleet/v1", "kind": "DsInstance", "metadata": {"name": name}, "spec": body}


def fleet_of(docs: Iterable[Mapping[str, Any]], file: str = "fleet.yaml") -> Fleet:
    """Validate documents like the loader does; any schema error fails loudly."""
    from dsfleet.reconciler.loading.manifestsets import ParsedFile

    manifests = []
    for i, doc in enumerate(docs):
        manifest, findings = validate_document(dict(doc), SourceRef(file=file, document=i))
        assert manifest is not None, [f.message for f in findings]
        manifests.append((i, manifest))
    fleet, findings = build_fleet([(file, ParsedFile("", "", tuple(manifests), ()))])
    assert not findings, [f.message for f in findings]
    return fleet


@st.composite
def fleets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A valid fleet as manifest documents: 1-3 nodes, 0-8 cameras, 0-4 instances, some unplaced/paused."""
    n_nodes = draw(st.integers(1, 3))
    docs: list[dict[str, Any]] = [node(f"node-{i}") for i in range(n_nodes)]
    n_cams = draw(st.integers(0, 8))
    cams = [f"cam-{i}" for i in range(n_cams)]
    for i, name in enumerate(cams):
        docs.append(camera(name, str(i + 1), secret=draw(st.booleans())))
    docs.append(PROFILE)
    free = list(cams)
    for i in range(draw(st.integers(0, 4))):
        take = draw(st.integers(0, len(free)))
        mine, free = free[:take], free[take:]
        placed = draw(st.one_of(st.none(), st.integers(0, n_nodes - 1)))
        docs.append(
            instance(
                f"ds-{i}",
                None if placed is None else f"node-{placed}",
                mine,
                layout="deepstream-app",
                gpu=draw(st.integers(0, 1)),
                image=IMAGE
                if placed is None
                else draw(st.sampled_from([IMAGE, IMAGE.replace("7.0", "7.1")])),
                paused=draw(st.booleans()),
                env={"LOG_LEVEL": draw(st.sampled_from(["info", "debug"]))},
            )
        )
    return docs
