"""Generate large, valid fleets in two shapes.

* ``explicit`` (default): N nodes, 4 instances per node, cameras listed by name, spread evenly (default 10,000 /
  1,000 / 250). Layout like a real repo: ``nodes.yaml``, ``profiles/``, ``policies/``, one ``sites/site-NNN/``
  directory per node with its cameras (one multi-document file) and its instances.
* ``selector``: many small nodes (one GPU, 10 cameras each), 3 instances per node that pick their cameras by
  label (``cameraSelector``), and one InferenceProfile per 100 cameras (10,000 cameras: 1,000 nodes, 3,000
  instances, 100 profiles): the shape a fleet written with labels has.

Usage: ``python -m benchmarks.fleetgen OUT_DIR [--shape explicit|selector] [--cameras 10000] [--nodes 250]
[--instances-per-node 4]``
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "nvcr.io/nvidia/deepstream:7.0-triton-multiarch"


def camera_doc(name: str, camera_id: int, zone: str, group: str | None = None) -> str:
    group_label = f"\n    group: {group}" if group else ""
    return f"""apiVersion: dsfleet/v1
kind: Camera
metadata:
  name: {name}
  labels:
    zone: {zone}{group_label}
spec:
  cameraId: "{camera_id}"
  url: rtsp://127.0.0.1:8554/{name}/main
  credentials:
    secretRef: {name}
  encoding: h265
  width: 1920
  height: 1080
"""


def instance_doc(name: str, node: str, gpu: int, cameras: list[str], ccm: bool) -> str:
    cams = ", ".join(cameras)
    if ccm:
        return f"""apiVersion: dsfleet/v1
kind: DsInstance
metadata:
  name: {name}
spec:
  node: {node}
  gpu: {gpu}
  layout: ccm
  cameras: [{cams}]
  profile: ccm-faceid
  restartPolicy: OnFailure
  app:
    kafkaConnectionStr: 127.0.0.1:9092
    streammux:
      width: 1920
      height: 1080
      buffer-pool-size: 40
      nvbuf-memory-type: 3
"""
    return f"""apiVersion: dsfleet/v1
kind: DsInstance
metadata:
  name: {name}
spec:
  node: {node}
  gpu: {gpu}
  layout: deepstream-app
  cameras: [{cams}]
  profile: traffic
  app:
    application:
      enable-perf-measurement: true
    streammux:
      width: 1920
      height: 1080
"""


def generate(out: Path, nodes: int = 250, cameras: int = 10_000, instances_per_node: int = 4) -> Path:
    if out.exists():
        shutil.rmtree(out)
    (out / "profiles").mkdir(parents=True)
    (out / "policies").mkdir()
    for name in ("ccm-faceid.yaml", "traffic.yaml"):
        shutil.copy(ROOT / "manifests" / "profiles" / name, out / "profiles" / name)
    (out / "policies" / "fleet.yaml").write_text(
        """apiVersion: dsfleet/v1
kind: Policy
metadata:
  name: fleet
spec:
  allowedImages: ["nvcr.io/nvidia/deepstream:7.*"]
  forbidPrivileged: true
  rules:
    streammux-batch:
      severity: off
      reason: generated fleet; profiles use fixed batches
    deprecated-key:
      severity: off
      reason: the ccm profile keeps is-classifier as the older system wrote it
    engine-name:
      severity: off
      reason: generated fleet; instance sizes differ from the profile's engine batch
"""
    )
    node_docs = []
    per_node = cameras // nodes
    per_instance = max(per_node // instances_per_node, 1)
    cam_id = 0
    for n in range(nodes):
        node = f"node-{n:04d}"
        node_docs.append(
            f"""apiVersion: dsfleet/v1
kind: Node
metadata:
  name: {node}
  labels:
    rack: r{n % 20}
spec:
  capacity: {per_node * 2}
  gpus: [0, 1, 2, 3]
  image: {IMAGE}
"""
        )
        site = out / "sites" / f"site-{n:04d}"
        site.mkdir(parents=True)
        names = []
        docs = []
        for _c in range(per_node):
            cam_id += 1
            name = f"cam-{cam_id:05d}"
            names.append(name)
            docs.append(camera_doc(name, cam_id, f"z{n % 10}"))
        (site / "cameras.yaml").write_text("---\n".join(docs))
        inst_docs = []
        for i in range(instances_per_node):
            chunk = names[i * per_instance : (i + 1) * per_instance]
            inst_docs.append(instance_doc(f"{node}-ds{i}", node, i % 4, chunk, ccm=(i % 2 == 0)))
        (site / "instances.yaml").write_text("---\n".join(inst_docs))
    (out / "nodes.yaml").write_text("---\n".join(node_docs))
    return out


SELECTOR_CAMERAS_PER_NODE = 10
SELECTOR_INSTANCES_PER_NODE = 3
SELECTOR_CAMERAS_PER_PROFILE = 100


def selector_instance_doc(name: str, node: str, group: str, profile: str) -> str:
    return f"""apiVersion: dsfleet/v1
kind: DsInstance
metadata:
  name: {name}
spec:
  node: {node}
  gpu: 0
  layout: deepstream-app
  cameraSelector:
    matchLabels:
      group: {group}
      site: {node}
  profile: {profile}
  app:
    application:
      enable-perf-measurement: true
    streammux:
      width: 1920
      height: 1080
"""


def profile_doc(name: str, threshold: float) -> str:
    """A copy of the traffic profile under another name, with its own detection threshold."""
    text = (ROOT / "manifests" / "profiles" / "traffic.yaml").read_text()
    text = text.replace("name: traffic\n", f"name: {name}\n", 1)
    return text.replace("pre-cluster-threshold: 0.2", f"pre-cluster-threshold: {threshold}", 1)


def generate_selector(out: Path, cameras: int = 10_000) -> Path:
    """The ``selector`` shape (see the module docstring); ``cameras`` rounded down to whole nodes."""
    if out.exists():
        shutil.rmtree(out)
    (out / "profiles").mkdir(parents=True)
    (out / "policies").mkdir()
    profiles = max(cameras // SELECTOR_CAMERAS_PER_PROFILE, 1)
    for p in range(profiles):
        name = f"traffic-{p:03d}"
        (out / "profiles" / f"{name}.yaml").write_text(profile_doc(name, round(0.2 + (p % 50) / 100, 2)))
    (out / "policies" / "fleet.yaml").write_text(
        """apiVersion: dsfleet/v1
kind: Policy
metadata:
  name: fleet
spec:
  allowedImages: ["nvcr.io/nvidia/deepstream:7.*"]
  forbidPrivileged: true
  rules:
    streammux-batch:
      severity: off
      reason: generated fleet; profiles use fixed batches
    engine-name:
      severity: off
      reason: generated fleet; instance sizes differ from the profile's engine batch
"""
    )
    nodes = max(cameras // SELECTOR_CAMERAS_PER_NODE, 1)
    node_docs = []
    cam_id = 0
    for n in range(nodes):
        node = f"edge-{n:05d}"
        node_docs.append(
            f"""apiVersion: dsfleet/v1
kind: Node
metadata:
  name: {node}
  labels:
    rack: r{n % 20}
spec:
  capacity: {SELECTOR_CAMERAS_PER_NODE * 2}
  gpus: [0]
  image: {IMAGE}
"""
        )
        site = out / "sites" / f"site-{n:05d}"
        site.mkdir(parents=True)
        docs = []
        for c in range(SELECTOR_CAMERAS_PER_NODE):
            cam_id += 1
            group = f"g{c % SELECTOR_INSTANCES_PER_NODE}"
            doc = camera_doc(f"cam-{cam_id:05d}", cam_id, f"z{n % 10}", group)
            docs.append(doc.replace("  labels:\n", f"  labels:\n    site: {node}\n", 1))
        (site / "cameras.yaml").write_text("---\n".join(docs))
        inst_docs = []
        for i in range(SELECTOR_INSTANCES_PER_NODE):
            profile = f"traffic-{(n * SELECTOR_INSTANCES_PER_NODE + i) % profiles:03d}"
            inst_docs.append(selector_instance_doc(f"{node}-ds{i}", node, f"g{i}", profile))
        (site / "instances.yaml").write_text("---\n".join(inst_docs))
    (out / "nodes.yaml").write_text("---\n".join(node_docs))
    return out


COPY_SUFFIX = "-c{:04d}"
"""Names in copy N of the example fleet end with this (``generate_copies``)."""
_SFX = "__copy__"
_ID = "__camera_id_{}__"


def _template_doc(doc: dict[str, Any]) -> None:
    """Turn one example-fleet document into a copy template: every name, reference and label value gets the
    suffix marker; a camera's id becomes a marker replaced by an id in the copy's own range."""
    kind = doc["kind"]
    meta = doc["metadata"]
    name = meta["name"]
    meta["name"] += _SFX
    labels = meta.get("labels") or {}
    for key in ("zone", "site"):
        if key in labels:
            labels[key] += _SFX
    spec = doc["spec"]
    if kind == "Camera":
        spec["cameraId"] = _ID.format(spec["cameraId"])
        if "credentials" in spec:
            spec["credentials"]["secretRef"] += _SFX
        spec["url"] = spec["url"].replace(f"/{name}/", f"/{name}{_SFX}/")
    elif kind == "Node":
        if "hostname" in spec:
            spec["hostname"] += _SFX
    elif kind == "DsInstance":
        spec["node"] += _SFX
        spec["profile"] += _SFX
        if "cameras" in spec:
            spec["cameras"] = [c + _SFX for c in spec["cameras"]]
        if "cameraSelector" in spec:
            match = spec["cameraSelector"]["matchLabels"]
            for key in list(match):
                match[key] += _SFX


def generate_copies(out: Path, copies: int, source: Path = ROOT / "manifests") -> Path:
    """The example fleet (``manifests/``) copied ``copies`` times: ``out/copies/cNNNN/`` per copy (every name,
    reference and label value suffixed, camera ids unique), the Policies kept once in ``out/policies/``. At
    1,000 copies: 10,000 cameras, 2,000 nodes, 3,000 instances, 2,000 profiles in 8,001 files."""
    import re

    import yaml

    if out.exists():
        shutil.rmtree(out)
    templates: list[tuple[str, str]] = []
    for path in sorted(source.rglob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        rel = path.relative_to(source).as_posix()
        if all(d["kind"] == "Policy" for d in docs):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out / rel)
            continue
        for doc in docs:
            _template_doc(doc)
        templates.append((rel, yaml.safe_dump_all(docs, sort_keys=False)))
    ids = re.compile(_ID.format(r"(\d+)"))
    for copy in range(copies):
        sfx = COPY_SUFFIX.format(copy)
        base = out / "copies" / f"c{copy:04d}"
        for rel, text in templates:
            text = ids.sub(lambda m, c=copy: f"'{c * 100 + int(m.group(1))}'", text.replace(_SFX, sfx))
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", choices=("explicit", "selector"), default="explicit")
    parser.add_argument("--nodes", type=int, default=250)
    parser.add_argument("--cameras", type=int, default=10_000)
    parser.add_argument("--instances-per-node", type=int, default=4)
    args = parser.parse_args()
    if args.shape == "selector":
        generate_selector(args.out, args.cameras)
    else:
        generate(args.out, args.nodes, args.cameras, args.instances_per_node)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
