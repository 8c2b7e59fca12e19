"""Hot camera changes: the plan's ``hot`` kind (cameras of an instance served by DeepStream's stream REST API), the
batch that follows ``max-batch-size``, the stream rules, and the shared helpers of :mod:`dsfleet.schemas.streamapi`."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsfleet.policies.engine import evaluate
from dsfleet.reconciler.compiling.desired import desired_state
from dsfleet.reconciler.planning.plans import ChangeKind, compute_plan
from dsfleet.reconciler.planning.reports import plan_json
from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.nodeconfigs import NodeConfig
from dsfleet.schemas.streamapi import max_batch_size, rest_port
from tests.support.fleets import PROFILE, camera, fleet_of, instance, node

REST = {"use-nvmultiurisrcbin": True, "max-batch-size": 4, "http-port": "9010"}


def _instance(cams: list[str], source_list: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    app = {
        "streammux": {"width": 1280, "height": 720, "batch-size": "auto"},
        "source-list": REST if source_list is None else source_list,
        "source-attr-all": {"latency": 100},
    }
    return instance("a", "n1", cams, **{"networkMode": "none", "app": app, **spec})


_DIRS = itertools.count()
_ROOT = Path()


@pytest.fixture(autouse=True)
def _manifests_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_ROOT", tmp_path)


def _docs(cams: list[str], source_list: dict[str, Any] | None = None, **spec: Any) -> list[dict[str, Any]]:
    cameras = [camera(f"c{i}", f"cam-{i}", f"rtsp://10.0.0.{i}:554/main", secret=i == 1) for i in range(1, 7)]
    return [node("n1"), *cameras, PROFILE, _instance(cams, source_list, **spec)]


def _fleet(cams: list[str], source_list: dict[str, Any] | None = None, **spec: Any) -> Fleet:
    return fleet_of(_docs(cams, source_list, **spec))


def _configs(
    cams: list[str], source_list: dict[str, Any] | None = None, **spec: Any
) -> dict[str, NodeConfig] | None:
    """The node configs ``dsfleet apply`` would store for these manifests (None: they do not validate)."""
    folder = _ROOT / str(next(_DIRS))
    folder.mkdir()
    (folder / "fleet.yaml").write_text(yaml.safe_dump_all(_docs(cams, source_list, **spec)))
    return desired_state([folder]).configs


def _kind(before: dict[str, NodeConfig] | None, after: dict[str, NodeConfig] | None) -> ChangeKind | None:
    old, new = before, after
    assert old is not None and new is not None
    (node_change,) = compute_plan(new, old).changed
    (change,) = node_change.instances
    return change.kind


def test_adding_and_removing_cameras_within_max_batch_size_is_hot() -> None:
    assert _kind(_configs(["c1", "c2"]), _configs(["c1", "c2", "c3"])) is ChangeKind.HOT
    assert _kind(_configs(["c1", "c2", "c3"]), _configs(["c1", "c3"])) is ChangeKind.HOT
    assert _kind(_configs(["c1", "c2"]), _configs(["c2", "c4"])) is ChangeKind.HOT


def test_hot_is_counted_and_shown() -> None:
    old, new = _configs(["c1"]), _configs(["c1", "c2"])
    assert old is not None and new is not None
    doc = plan_json(compute_plan(new, old))
    assert doc["summary"]["instances_hot"] == 1 and doc["summary"]["instances_to_restart"] == 0
    assert doc["nodes"][0]["instances"][0]["kind"] == "hot"
    assert doc["engineRebuilds"] == []  # the engine is built for max-batch-size, not the camera count


@pytest.mark.parametrize(
    ("after_list", "after_spec", "why"),
    [
        ({**REST, "max-batch-size": 8}, {}, "max-batch-size changed"),
        ({**REST, "http-port": "9011"}, {}, "REST port changed"),
        ({k: v for k, v in REST.items() if k != "http-port"}, {}, "no REST port"),
        ({**REST, "stream-name-display": True}, {}, "another key changed"),
    ],
)
def test_anything_else_restarts(after_list: dict[str, Any], after_spec: dict[str, Any], why: str) -> None:
    kind = _kind(_configs(["c1"]), _configs(["c1", "c2"], after_list, **after_spec))
    assert kind is ChangeKind.RESTART, why


def test_without_a_rest_port_camera_changes_restart() -> None:
    plain = {"use-nvmultiurisrcbin": True, "max-batch-size": 4}
    assert _kind(_configs(["c1"], plain), _configs(["c1", "c2"], plain)) is ChangeKind.RESTART


def test_a_paused_instance_is_not_hot() -> None:
    assert _kind(_configs(["c1"], paused=True), _configs(["c1", "c2"], paused=True)) is ChangeKind.RESTART


def test_cameras_beyond_max_batch_size_are_an_error_and_never_hot() -> None:
    small = {**REST, "max-batch-size": 2}
    findings = [f for f in evaluate(_fleet(["c1", "c2", "c3"], small)) if f.rule == "stream-batch-limit"]
    assert [f.severity.value for f in findings] == ["error"]
    assert findings[0].source is not None and findings[0].source.path == (
        "spec",
        "cameras",
    )  # file:line:col: the golden
    assert not [f for f in evaluate(_fleet(["c1", "c2"], small)) if f.rule == "stream-batch-limit"]
    assert _configs(["c1", "c2", "c3"], small) is None


def test_the_engine_follows_max_batch_size() -> None:
    def engine(cams: list[str]) -> str:
        configs = _configs(cams)
        assert configs is not None
        (inst,) = configs["n1"].instances
        gie = next(f for f in inst.files if f.path == "pgie.txt")
        return next(line for line in gie.content.splitlines() if line.startswith("batch-size="))

    assert engine(["c1"]) == engine(["c1", "c2", "c3"]) == "batch-size=4"


def _rules(fleet: Fleet, *ids: str) -> list[str]:
    return sorted(f"{f.severity.value}:{f.rule}" for f in evaluate(fleet) if f.rule in ids)


def test_headroom_asked_for_by_the_policy() -> None:
    ids = ("stream-batch-headroom",)
    assert _rules(_fleet(["c1", "c2", "c3"]), *ids) == []  # 4 - 3 leaves the default 1
    assert _rules(_fleet(["c1", "c2", "c3", "c4"]), *ids) == ["warning:stream-batch-headroom"]
    policy = {
        "apiVersion": "dsfleet/v1",
        "kind": "Policy",
        "metadata": {"name": "p"},
        "spec": {"rules": {"stream-batch-headroom": {"params": {"cameras": 2}}}},
    }
    cameras = [camera(f"c{i}", f"cam-{i}", f"rtsp://10.0.0.{i}:554/main") for i in range(1, 4)]
    fleet = fleet_of([node("n1"), *cameras, PROFILE, _instance(["c1", "c2", "c3"]), policy])
    assert _rules(fleet, *ids) == ["warning:stream-batch-headroom"]


def test_rest_port_clash_and_exposure_on_the_host_network() -> None:
    cameras = [camera(f"c{i}", f"cam-{i}", f"rtsp://10.0.0.{i}:554/main") for i in range(1, 3)]
    app = {
        "streammux": {"width": 1280, "height": 720},
        "source-list": REST,
        "source-attr-all": {"latency": 100},
    }

    def fleet(mode: str) -> Fleet:
        a = instance("a", "n1", ["c1"], networkMode=mode, app=app)
        b = instance("b", "n1", ["c2"], networkMode=mode, app=app)
        return fleet_of([node("n1"), *cameras, PROFILE, a, b])

    ids = ("stream-api-port", "stream-api-exposed")
    assert _rules(fleet("host"), *ids) == [
        "error:stream-api-port",
        "warning:stream-api-exposed",
        "warning:stream-api-exposed",
    ]
    assert _rules(fleet("none"), *ids) == []  # each container has its own ports, none reachable from outside


@pytest.mark.parametrize(
    ("settings", "port", "limit"),
    [
        ({"use-nvmultiurisrcbin": True, "http-port": "9000", "max-batch-size": 8}, 9000, 8),
        ({"use-nvmultiurisrcbin": True, "http-port": "0"}, None, 30),
        ({"use-nvmultiurisrcbin": True}, None, 30),
        ({"http-port": "9000", "max-batch-size": 8}, None, None),
        ({"use-nvmultiurisrcbin": True, "http-port": "70000"}, None, 30),
    ],
)
def test_manifest_settings(settings: dict[str, Any], port: int | None, limit: int | None) -> None:
    assert rest_port(settings) == port
    assert max_batch_size(settings) == limit
