"""Generate a large, valid fleet: N nodes, 4 instances per node, cameras spread evenly (default 10,000 / 1,000 / 250).

Layout like a real repo: ``nodes.yaml``, ``profiles/``, ``policies/``, one ``sites/site-NNN/`` directory per node
with its cameras (one multi-document file) and its instances. Usage:
``python -m benchmarks.fleetgen OUT_DIR [--nodes 250] [--cameras 10000] [--instances-per-node 4]``
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "nvcr.io/nvidia/deepstream:7.0-triton-multiarch"


def camera_doc(name: str, camera_id: int, zone: str) -> str:
    return f"""apiVersion: dsfleet/v1
kind: Camera
metadata:
  name: {name}
  labels:
    zone: {zone}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--nodes", type=int, default=250)
    parser.add_argument("--cameras", type=int, default=10_000)
    parser.add_argument("--instances-per-node", type=int, default=4)
    args = parser.parse_args()
    generate(args.out, args.nodes, args.cameras, args.instances_per_node)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
