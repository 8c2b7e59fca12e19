"""Compile, hashes and plans: properties over generated fleets, and the kinds of change."""

from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dsfleet.reconciler.compiling.instances import compile_fleet
from dsfleet.reconciler.planning.plans import Action, ChangeKind, compute_plan, removes_every_instance
from tests.support.fleets import PROFILE, camera, fleet_of, fleets, instance, node


def _configs(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return compile_fleet(fleet_of(docs))


@settings(max_examples=60, deadline=None)
@given(fleets())
def test_plan_of_a_fleet_against_itself_is_empty(docs: list[dict[str, Any]]) -> None:
    configs = _configs(docs)
    plan = compute_plan(configs, configs)
    assert plan.empty
    assert all(n.action is Action.UNCHANGED for n in plan.nodes)


@settings(max_examples=60, deadline=None)
@given(fleets(), fleets())
def test_applying_a_plan_then_planning_again_is_empty(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> None:
    stored = _configs(before)
    desired = _configs(after)
    plan = compute_plan(desired, stored)
    # apply: exactly what the plan lists changes; every unchanged node keeps its stored config
    applied = dict(stored)
    for change in plan.changed:
        if change.action is Action.DELETE:
            del applied[change.name]
        else:
            applied[change.name] = desired[change.name]
    assert compute_plan(desired, applied).empty
    assert {n.name for n in plan.changed} == {
        name
        for name in set(stored) | set(desired)
        if (stored.get(name) is None) != (desired.get(name) is None)
        or (stored.get(name) and desired.get(name) and stored[name].configHash != desired[name].configHash)
    }


@settings(max_examples=40, deadline=None)
@given(fleets(), st.randoms(use_true_random=False))
def test_hash_ignores_document_and_key_order(docs: list[dict[str, Any]], rnd: random.Random) -> None:
    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    other = [shuffled(copy.deepcopy(d)) for d in docs]
    rnd.shuffle(other)
    a, b = _configs(docs), _configs(other)
    assert {k: v.configHash for k, v in a.items()} == {k: v.configHash for k, v in b.items()}


def _base() -> list[dict[str, Any]]:
    return [
        node("n1"),
        node("n2"),
        camera("c1", "1"),
        camera("c2", "2"),
        camera("c3", "3"),
        PROFILE,
        instance("a", "n1", ["c1", "c2"]),
        instance("b", "n2", ["c3"]),
    ]


def _plan(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> Any:
    return compute_plan(_configs(after), _configs(before))


def test_camera_url_change_restarts_one_instance_on_one_node() -> None:
    after = _base()
    after[2] = camera("c1", "1", url="rtsp://127.0.0.1:8554/other")
    plan = _plan(_base(), after)
    assert [n.name for n in plan.changed] == ["n1"]
    (inst,) = plan.changed[0].instances
    assert (inst.name, inst.action, inst.kind) == ("a", Action.UPDATE, ChangeKind.RESTART)
    assert [f.path for f in inst.files] == ["deepstream_app_config.txt"]
    assert "-uri=rtsp://${secret:c1}@127.0.0.1:8554/c1" in inst.files[0].diff
    assert "+uri=rtsp://${secret:c1}@127.0.0.1:8554/other" in inst.files[0].diff


def test_image_or_gpu_change_recreates() -> None:
    after = _base()
    after[6] = instance(
        "a", "n1", ["c1", "c2"], gpu=1, image="nvcr.io/nvidia/deepstream:7.1-triton-multiarch"
    )
    plan = _plan(_base(), after)
    (inst,) = plan.changed[0].instances
    assert inst.kind is ChangeKind.RECREATE
    assert {f.path for f in inst.fields} == {"gpu", "image"}  # manifest terms, not gpus[0]
    assert not inst.files


def test_pause_stops_and_unpause_starts() -> None:
    after = _base()
    after[6] = instance("a", "n1", ["c1", "c2"], paused=True)
    plan = _plan(_base(), after)
    assert plan.changed[0].instances[0].kind is ChangeKind.STOP
    assert _plan(after, _base()).changed[0].instances[0].kind is ChangeKind.START


def test_moving_an_instance_changes_both_nodes() -> None:
    after = _base()
    after[6] = instance("a", "n2", ["c1", "c2"])
    plan = _plan(_base(), after)
    assert {(n.name, i.name, i.action) for n in plan.changed for i in n.instances} == {
        ("n1", "a", Action.DELETE),
        ("n2", "a", Action.CREATE),
    }


def test_empty_nodes_get_configs_and_removed_nodes_tombstones() -> None:
    configs = _configs([node("idle"), PROFILE])
    assert configs["idle"].instances == ()
    before = _base()
    after = [d for d in _base() if d["metadata"]["name"] != "n2" and d["metadata"]["name"] != "b"]
    plan = _plan(before, after)
    assert [(n.name, n.action) for n in plan.changed] == [("n2", Action.DELETE)]


def test_removing_every_instance_is_flagged() -> None:
    stored, desired = _configs(_base()), _configs([node("n1"), node("n2"), PROFILE])
    plan = compute_plan(desired, stored)
    assert removes_every_instance(plan, desired, stored)
    assert not removes_every_instance(compute_plan(stored, stored), stored, stored)


def test_unplaced_instances_compile_to_nothing() -> None:
    configs = _configs([*_base(), instance("spare", None, [])])
    assert all(i.name != "spare" for c in configs.values() for i in c.instances)
