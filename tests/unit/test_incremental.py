"""Incremental desired state == full desired state, on random edit sequences (property test).

The coordinator keeps one :class:`CompileCache` and :class:`ManifestCache` between applies: only the instances a
change can affect are resolved, checked and compiled again (:func:`fleet_changes`). After every edit of a
random sequence, the desired state computed through the kept caches must equal one computed from nothing:
findings (with their places and order), resolved instances and every node's config.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsfleet.reconciler.applying import Caches, inventory
from dsfleet.reconciler.compiling.desired import CompileCache, DesiredState, desired_state
from dsfleet.reconciler.loading.manifestsets import ManifestCache
from dsfleet.reconciler.store import Inventory

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests"

Docs = list[dict[str, Any]]
_TICKS = itertools.count(time.time_ns(), 1_000_000)


class Tree:
    """A manifests directory edited document by document (comments are not kept: the edits are structural)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.touched: set[str] = set()
        """The real paths written or removed since last taken: what a file watcher would report."""

    def take(self) -> frozenset[str]:
        touched, self.touched = frozenset(self.touched), set()
        return touched

    def files(self) -> list[Path]:
        return sorted(self.root.rglob("*.yaml"))

    def read(self, path: Path) -> Docs:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]

    def write(self, path: Path, docs: Docs) -> None:
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False) if docs else "")
        self.touched.add(str(path.resolve()))
        tick = next(_TICKS)  # a distinct mtime per write, whatever the file system's clock granularity
        os.utime(path, ns=(tick, tick))

    def documents(self, kind: str) -> list[tuple[Path, int, dict[str, Any]]]:
        return [
            (path, i, doc)
            for path in self.files()
            for i, doc in enumerate(self.read(path))
            if isinstance(doc, dict) and doc.get("kind") == kind
        ]

    def edit(self, rng: random.Random, kind: str, change: Callable[[dict[str, Any]], None]) -> bool:
        found = self.documents(kind)
        if not found:
            return False
        path, index, _doc = rng.choice(found)
        docs = self.read(path)
        change(docs[index])
        self.write(path, docs)
        return True


def _camera_url(rng: random.Random, tree: Tree) -> bool:
    return tree.edit(rng, "Camera", lambda d: d["spec"].update(url=f"rtsp://10.9.0.{rng.randint(1, 250)}/s"))


def _camera_id_clash(rng: random.Random, tree: Tree) -> bool:
    ids = [d["spec"].get("cameraId") for _p, _i, d in tree.documents("Camera")]
    return tree.edit(rng, "Camera", lambda d: d["spec"].update(cameraId=rng.choice(ids)))


def _camera_labels(rng: random.Random, tree: Tree) -> bool:
    zone = rng.choice(["parking", "gate", "lobby", "elsewhere"])
    return tree.edit(rng, "Camera", lambda d: d["metadata"].setdefault("labels", {}).update(zone=zone))


def _camera_added(rng: random.Random, tree: Tree) -> bool:
    found = tree.documents("Camera")
    path, _index, doc = rng.choice(found)
    new = yaml.safe_load(yaml.safe_dump(doc))
    n = rng.randint(100, 999)
    new["metadata"]["name"] = f"extra-{n}"
    new["spec"]["cameraId"] = 5000 + n
    tree.write(path, [*tree.read(path), new])
    return True


def _camera_removed(rng: random.Random, tree: Tree) -> bool:
    found = tree.documents("Camera")
    path, index, _doc = rng.choice(found)
    docs = tree.read(path)
    del docs[index]
    tree.write(path, docs)
    return True


def _instance_cameras(rng: random.Random, tree: Tree) -> bool:
    names = [d["metadata"]["name"] for _p, _i, d in tree.documents("Camera")] + ["no-such-camera"]

    def change(doc: dict[str, Any]) -> None:
        cams = list(doc["spec"].get("cameras") or [])
        if cams and rng.random() < 0.5:
            cams.pop(rng.randrange(len(cams)))
        else:
            cams.append(rng.choice(names))
        doc["spec"]["cameras"] = cams

    return tree.edit(rng, "DsInstance", change)


def _instance_node(rng: random.Random, tree: Tree) -> bool:
    nodes = [d["metadata"]["name"] for _p, _i, d in tree.documents("Node")] + ["gpu-node-9"]
    return tree.edit(rng, "DsInstance", lambda d: d["spec"].update(node=rng.choice(nodes)))


def _instance_flags(rng: random.Random, tree: Tree) -> bool:
    def change(doc: dict[str, Any]) -> None:
        choice = rng.randrange(4)
        if choice == 0:
            doc["spec"]["gpu"] = rng.randint(0, 3)
        elif choice == 1:
            doc["spec"]["privileged"] = not doc["spec"].get("privileged", False)
        elif choice == 2:
            doc["spec"]["networkMode"] = rng.choice(["host", "none"])
        else:
            doc["metadata"].setdefault("labels", {})["tier"] = rng.choice(["a", "b"])

    return tree.edit(rng, "DsInstance", change)


def _node_spec(rng: random.Random, tree: Tree) -> bool:
    def change(doc: dict[str, Any]) -> None:
        choice = rng.randrange(3)
        if choice == 0:
            doc["spec"]["gpus"] = sorted(rng.sample(range(4), rng.randint(1, 4)))
        elif choice == 1:
            doc["spec"]["capacity"] = rng.randint(1, 40)
        else:
            doc["spec"]["image"] = rng.choice(
                ["nvcr.io/nvidia/deepstream:7.0-triton-multiarch", "nvcr.io/nvidia/deepstream:6.4-triton"]
            )

    return tree.edit(rng, "Node", change)


def _profile_value(rng: random.Random, tree: Tree) -> bool:
    def change(doc: dict[str, Any]) -> None:
        gies = doc["spec"].get("gies") or []
        if gies:
            gie = rng.choice(gies)
            gie.setdefault("properties", {})["interval"] = rng.randint(0, 3)

    return tree.edit(rng, "InferenceProfile", change)


def _policy(rng: random.Random, tree: Tree) -> bool:
    def change(doc: dict[str, Any]) -> None:
        spec = doc["spec"]
        if rng.random() < 0.5:
            spec["maxCamerasPerInstance"] = rng.randint(1, 16)
        else:
            rules = spec.setdefault("rules", {})
            rules["instance-no-cameras"] = {
                "severity": rng.choice(["warning", "off", "error"]),
                "reason": "test",
            }

    return tree.edit(rng, "Policy", change)


def _document_moved(rng: random.Random, tree: Tree) -> bool:
    files = [p for p in tree.files() if tree.read(p)]
    source = rng.choice(files)
    docs = tree.read(source)
    doc = docs.pop(rng.randrange(len(docs)))
    target = rng.choice(tree.files())
    tree.write(source, docs)
    tree.write(target, [*tree.read(target), doc] if target != source else [*docs, doc])
    return True


def _schema_broken_or_fixed(rng: random.Random, tree: Tree) -> bool:
    broken = tree.root / "broken.yaml"
    if broken.exists():
        broken.unlink()
        tree.touched.add(str(broken.resolve()))
        return True
    found = tree.documents("Camera")
    _path, _index, doc = rng.choice(found)
    bad = yaml.safe_load(yaml.safe_dump(doc))
    bad["metadata"]["name"] = "broken-camera"
    bad["spec"]["bogusField"] = 1
    tree.write(broken, [bad])
    return True


EDITS = [  # the edits that reach across documents (a node, a camera's labels, moves) weigh more
    _camera_url,
    _camera_labels,
    _camera_labels,
    _node_spec,
    _node_spec,
    _node_spec,
    _instance_node,
    _camera_id_clash,
    _camera_labels,
    _camera_added,
    _camera_removed,
    _instance_cameras,
    _instance_node,
    _instance_flags,
    _node_spec,
    _profile_value,
    _policy,
    _document_moved,
    _schema_broken_or_fixed,
]


def _grown(root: Path) -> None:
    """The example fleet plus a larger part built from its documents: 4 more nodes (one without a default image),
    24 more cameras (four zones, and listed ones), 8 more instances (selecting a zone, or listing cameras), so that most edits
    leave most of the fleet untouched."""
    tree = Tree(root)
    node = next(d for _p, _i, d in tree.documents("Node"))
    camera = next(d for _p, _i, d in tree.documents("Camera"))
    by_layout = {d["spec"]["layout"]: d for _p, _i, d in tree.documents("DsInstance")}

    def copy(doc: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(doc))
        return out

    nodes = []
    for n in range(4):
        doc = copy(node)
        doc["metadata"]["name"] = doc["spec"]["hostname"] = f"site-node-{n}"
        doc["spec"]["gpus"] = [0, 1, 2, 3]
        doc["spec"]["capacity"] = 40
        if n == 3:
            doc["spec"].pop("image", None)
        nodes.append(doc)
    tree.write(root / "nodes" / "site.yaml", nodes)
    for part in ("a", "b"):
        cams = []
        for c in range(12):
            number = c + (12 if part == "b" else 0)
            doc = copy(camera)
            doc["metadata"]["name"] = f"site-cam-{number:02d}"
            doc["metadata"]["labels"] = {"zone": f"z{number % 4}" if number < 12 else "listed"}
            doc["spec"]["cameraId"] = str(1000 + number)
            doc["spec"]["url"] = f"rtsp://127.0.0.1:8554/site-{number}/main"
            doc["spec"]["credentials"] = {"secretRef": f"site-cam-{number:02d}"}
            cams.append(doc)
        tree.write(root / "cameras" / f"site-{part}.yaml", cams)
    instances = []
    for i in range(8):
        selecting = i % 2 == 0
        doc = copy(by_layout["deepstream-app" if selecting else "ccm"])
        doc["metadata"]["name"] = f"site-ds-{i}"
        doc["spec"]["node"] = f"site-node-{i % 4}"
        doc["spec"]["gpu"] = i // 4
        doc["spec"].pop("image", None)
        if i % 4 == 3:  # its node has no default image
            doc["spec"]["image"] = node["spec"]["image"]
        if selecting:
            doc["spec"].pop("cameras", None)
            doc["spec"]["cameraSelector"] = {"matchLabels": {"zone": f"z{i // 2}"}}
        else:
            doc["spec"].pop("cameraSelector", None)
            doc["spec"]["cameras"] = [f"site-cam-{12 + 3 * (i // 2) + k:02d}" for k in range(3)]
        instances.append(doc)
    tree.write(root / "instances" / "site.yaml", instances)


def _rows(rows: Inventory) -> list[list[Any]]:
    return [sorted(map(repr, table)) for table in (rows.nodes, rows.cameras, rows.instances)]


def _state(desired: DesiredState) -> dict[str, Any]:
    return {
        "digest": desired.loaded.digest,
        "files": desired.loaded.files,
        "texts": desired.loaded.texts,
        "findings": [f.model_dump(mode="json") for f in desired.loaded.findings],
        "resolved": sorted(desired.resolved),
        "configs": None
        if desired.configs is None
        else {name: config.model_dump(mode="json") for name, config in desired.configs.items()},
    }


def test_incremental_desired_state_equals_a_full_one_after_every_edit(tmp_path: Path) -> None:
    partial = 0
    for seed in range(8):
        root = tmp_path / f"fleet-{seed}"
        shutil.copytree(EXAMPLE, root)
        _grown(root)
        tree = Tree(root)
        rng = random.Random(seed)
        caches = Caches()
        manifests, compiled = caches.manifests, caches.compiled
        assert desired_state([root]).configs is not None, "the grown fleet is valid"
        inventory(desired_state([root], manifests, compiled), caches)
        tree.take()
        for step in range(12):
            edit = rng.choice(EDITS)
            if not edit(rng, tree):
                continue
            # half the loads as the coordinator makes them on a watcher's event: only the files it names
            hint = tree.take() if seed % 2 else None
            if seed % 4 == 2:
                compiled.dependents = None  # the index built again from the last fleet, not carried along
            kept = desired_state([root], manifests, compiled, hint=hint)
            full = desired_state([root])
            assert _state(kept) == _state(full), f"seed {seed}, step {step}: {edit.__name__}"
            if rng.random() < 0.8:  # an apply that stores nothing makes no rows: the next one catches up
                assert _rows(inventory(kept, caches)) == _rows(inventory(full)), f"seed {seed}, step {step}"
            if compiled.changed is not None and len(compiled.changed) < len(full.resolved):
                partial += 1
    assert partial >= 24, f"only {partial} of 96 edits took the incremental path"


def test_one_camera_changed_recomputes_only_its_instance(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, root)
    manifests, compiled = ManifestCache(), CompileCache()
    first = desired_state([root], manifests, compiled)
    assert compiled.changed is None  # nothing kept yet: everything computed
    gate = root / "cameras" / "gate.yaml"
    text = gate.read_text()
    gate.write_text(text.replace("rtsp://", "rtsp://x", 1))
    os.utime(gate, ns=(10**18, 10**18))
    second = desired_state([root], manifests, compiled)
    owners = {name for name, res in second.resolved.items() if "gate-1" in res.cameras}
    assert compiled.changed == frozenset(owners) and owners
    assert compiled.rule_hits.checked == len(owners)
    assert first.configs is not None and second.configs is not None
    untouched = {n for n in first.configs if all(i.name not in owners for i in first.configs[n].instances)}
    assert untouched and all(second.configs[n] is first.configs[n] for n in untouched)


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))
    os.utime(path, ns=(next(_TICKS), next(_TICKS)))


def _old(root: Path) -> None:
    """Every file and directory dated a minute back: their stats vouch for them (none is racy)."""
    past = time.time_ns() - 60 * 10**9
    for path in [root, *root.rglob("*")]:
        os.utime(path, ns=(past, past))


def _settled(tmp_path: Path) -> tuple[Path, ManifestCache, CompileCache]:
    """The example fleet, its files a minute old, computed once through fresh caches."""
    root = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, root)
    _old(root)
    manifests, compiled = ManifestCache(), CompileCache()
    desired_state([root], manifests, compiled)
    return root, manifests, compiled


def test_a_watchers_hint_reads_only_the_files_it_names(tmp_path: Path) -> None:
    root, manifests, compiled = _settled(tmp_path)
    gate, lobby = root / "cameras" / "gate.yaml", root / "cameras" / "lobby.yaml"
    _edit(gate, "rtsp://", "rtsp://gate-changed.")
    _edit(lobby, "rtsp://", "rtsp://lobby-changed.")
    hinted = desired_state([root], manifests, compiled, hint=frozenset({str(gate.resolve())}))
    urls = {c.spec.url for c in hinted.fleet.cameras.values()}
    assert any("gate-changed" in u for u in urls)
    assert not any("lobby-changed" in u for u in urls), "a file the hint does not name is taken as it was"
    full = desired_state([root], manifests, compiled)  # the periodic whole re-read heals a missed event
    assert _state(full) == _state(desired_state([root]))


def test_a_hint_naming_a_removed_or_new_file_walks_the_directory_again(tmp_path: Path) -> None:
    root, manifests, compiled = _settled(tmp_path)
    lobby = root / "cameras" / "lobby.yaml"
    moved = root / "cameras" / "lobby-moved.yaml"
    lobby.rename(moved)
    hint = frozenset({str(lobby.resolve()), str(moved.resolve())})
    after = desired_state([root], manifests, compiled, hint=hint)
    assert after.loaded.errors == [] and "cameras/lobby-moved.yaml" in {
        Path(f).relative_to(root).as_posix() for f in after.loaded.files
    }
    assert _state(after) == _state(desired_state([root]))
    moved.unlink()
    gone = desired_state([root], manifests, compiled, hint=frozenset({str(moved.resolve())}))
    assert not any("cannot read" in f.message for f in gone.loaded.findings)
    assert _state(gone) == _state(desired_state([root]))


GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "validate"


@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir() if (p / "manifests").is_dir()))
def test_rules_kept_per_instance_and_part_find_what_one_pass_over_the_fleet_finds(
    tmp_path: Path, case: str
) -> None:
    """Every golden fleet (a finding of nearly every rule): checked through the kept hits (per instance, per
    part) the findings equal one pass of every rule over the whole fleet, also after a file changed."""
    root = tmp_path / "manifests"
    shutil.copytree(GOLDEN / case / "manifests", root)
    manifests, compiled = ManifestCache(), CompileCache()
    assert _state(desired_state([root], manifests, compiled)) == _state(desired_state([root]))
    for path in sorted(root.rglob("*.yaml")):
        path.write_bytes(path.read_bytes() + b"\n# touched\n")
        os.utime(path, ns=(next(_TICKS), next(_TICKS)))
        assert _state(desired_state([root], manifests, compiled)) == _state(desired_state([root])), path.name


def test_parts_a_document_leaves_are_checked_again(tmp_path: Path) -> None:
    """A document that moves from one part to another (a cameraId, a node, a camera's users) leaves a part whose
    findings must go: each step below is checked against a full evaluation."""
    root = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, root)
    _grown(root)
    tree = Tree(root)
    caches = Caches()
    manifests, compiled = caches.manifests, caches.compiled
    inventory(desired_state([root], manifests, compiled), caches)

    def set_doc(kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        for path, index, doc in tree.documents(kind):
            if doc["metadata"]["name"] == name:
                docs = tree.read(path)
                change(docs[index])
                tree.write(path, docs)
                return
        raise AssertionError(name)

    def check(step: str) -> list[str]:
        kept = desired_state([root], manifests, compiled)
        full = desired_state([root])
        assert _state(kept) == _state(full), step
        assert _rows(inventory(kept, caches)) == _rows(inventory(full)), step
        return [f.rule for f in kept.loaded.findings]

    set_doc("Camera", "site-cam-13", lambda d: d["spec"].update(cameraId="1012"))  # site-cam-12's id
    assert "unique-camera-id" in check("id clash")
    set_doc("Camera", "site-cam-13", lambda d: d["spec"].update(cameraId="1013"))
    assert "unique-camera-id" not in check("id clash gone")
    both = ["site-cam-12", "site-cam-13"]  # site-ds-1 lists 12..14: site-ds-3 takes two of them too
    set_doc("DsInstance", "site-ds-3", lambda d: d["spec"].update(cameras=[*d["spec"]["cameras"], *both]))
    assert check("two cameras shared").count("camera-single-instance") == 2
    set_doc("DsInstance", "site-ds-3", lambda d: d["spec"].update(cameras=d["spec"]["cameras"][:3]))
    assert "camera-single-instance" not in check("shared cameras given back")
    set_doc("DsInstance", "site-ds-1", lambda d: d["spec"].update(cameras=d["spec"]["cameras"][:1]))
    check("cameras given up: their rows name no instance")
    set_doc("Node", "site-node-1", lambda d: d["spec"].update(capacity=1))
    assert "node-capacity" in check("node over capacity")
    set_doc("DsInstance", "site-ds-1", lambda d: d["spec"].update(node="site-node-2"))
    set_doc("DsInstance", "site-ds-5", lambda d: d["spec"].update(node="site-node-2"))
    assert "node-capacity" not in check("its instances moved away")


def test_the_coordinator_sees_errors_only(tmp_path: Path) -> None:
    """``warnings=False`` (the coordinator stores and logs errors only): the errors, located, and no warning (a
    warning's place would parse its file a second time)."""
    root = tmp_path / "manifests"
    shutil.copytree(GOLDEN / "deepstream-fidelity" / "manifests", root)
    full = desired_state([root]).loaded.findings
    quick = desired_state([root], warnings=False).loaded.findings
    assert any(f.is_error for f in full) and any(not f.is_error for f in full)
    assert [f.model_dump() for f in quick] == [f.model_dump() for f in full if f.is_error]
