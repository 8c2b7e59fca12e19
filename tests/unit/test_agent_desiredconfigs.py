"""Parsing and checking the desired config the agent receives (an AgentConfig message or a NodeConfig)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dsfleet.agent.desiredconfigs import (
    REJECT_CONFLICT,
    REJECT_FLEET,
    REJECT_STALE,
    REJECT_STALE_EPOCH,
    Accepted,
    AppliedMark,
    Refusal,
    Verdict,
    judge_config,
    judge_tombstone,
    mark_after,
    parse_config,
    select_instances,
)
from dsfleet.agent.errors import ConfigError
from dsfleet.schemas.labels import LABEL_NODE, LABEL_SPEC_HASH, instance_labels
from dsfleet.schemas.nodeconfigs import (
    ContainerSpec,
    NodeConfig,
    RenderedFile,
    RestartPolicySpec,
    build_instance,
    build_node,
)
from dsfleet.schemas.wire import AgentConfig

CANARY = "canary-NotInAnyMessage"


def _container(name: str) -> ContainerSpec:
    return ContainerSpec(
        image="nvcr.io/nvidia/deepstream:7.0-triton-multiarch",
        engineVolume=f"{name}_engine",
        labels=instance_labels(name),
        restartPolicy=RestartPolicySpec(name="unless-stopped"),
    )


def _node() -> NodeConfig:
    files = (
        RenderedFile(
            path="source_list.json", content='{"a": "rtsp://${secret:gate-1}@h"}', secrets=("gate-1",)
        ),
    )
    return build_node(
        "gpu-node-1",
        [
            build_instance("cam-a", "ccm", False, (), _container("cam-a"), files),
            build_instance("cam-b", "ccm", False, (), _container("cam-b"), ()),
        ],
    )


def _message() -> AgentConfig:
    node = _node()
    return AgentConfig(
        sent_at="2024-11-24T21:00:00Z",
        node=node.node,
        generation=7,
        configHash=node.configHash,
        instances=node.instances,
    )


def test_a_node_config_is_accepted() -> None:
    config = parse_config(_node().model_dump_json(), "node.json")
    assert isinstance(config, NodeConfig)
    assert config == _node()


def test_an_agent_config_message_is_accepted() -> None:
    config = parse_config(_message().model_dump_json(by_alias=True).encode(), "msg.json")
    assert isinstance(config, AgentConfig)
    assert config.generation == 7
    assert [i.name for i in config.instances] == ["cam-a", "cam-b"]


def test_malformed_json_names_file_line_and_column() -> None:
    text = '{\n  "node": "gpu-node-1",\n  "configHash": x\n}'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "node.json")
    assert str(info.value) == "node.json:3:17: error: malformed JSON: Expecting value"


def test_schema_errors_name_the_field_and_never_echo_input_values() -> None:
    data: dict[str, Any] = json.loads(_node().model_dump_json())
    data["instances"][0]["files"][0]["mode"] = CANARY
    del data["instances"][1]["container"]["image"]
    with pytest.raises(ConfigError) as info:
        parse_config(json.dumps(data), "node.json")
    message = str(info.value)
    assert "node.json: error: instances.0.files.0.mode: Extra inputs are not permitted" in message
    assert "node.json: error: instances.1.container.image: Field required" in message
    assert CANARY not in message


def test_a_tampered_file_is_refused_by_its_hash() -> None:
    data: dict[str, Any] = json.loads(_node().model_dump_json())
    data["instances"][0]["files"][0]["content"] = '{"a": "rtsp://evil@h"}'
    with pytest.raises(ConfigError, match=r"instances\.0 \(cam-a\)\.filesHash: does not match the files"):
        parse_config(json.dumps(data), "node.json")


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({}, "must mark the container managed"),
        (instance_labels("cam-b"), "must mark the container managed"),
        ({**instance_labels("cam-a"), LABEL_NODE: "other-node"}, "sets labels only the agent sets"),
        ({**instance_labels("cam-a"), LABEL_SPEC_HASH: "0" * 64}, "sets labels only the agent sets"),
    ],
)
def test_the_spec_labels_are_the_compilers_and_nothing_the_host_sets(
    labels: dict[str, str], problem: str
) -> None:
    container = _container("cam-a").model_copy(update={"labels": labels})
    config = build_node("gpu-node-1", [build_instance("cam-a", "ccm", False, (), container, ())])
    with pytest.raises(ConfigError, match=rf"instances\.0 \(cam-a\)\.container\.labels: {problem}"):
        parse_config(config.model_dump_json(), "node.json")


@pytest.mark.parametrize("name", ["../etc", "Cam", "a/b"])
def test_an_instance_name_that_is_not_a_dns_label_is_refused(name: str) -> None:
    data: dict[str, Any] = json.loads(_node().model_dump_json())
    data["instances"][0]["name"] = name
    with pytest.raises(ConfigError, match=r"instances\.0\.name: not a DNS label"):
        parse_config(json.dumps(data), "node.json")


def test_duplicate_instances_are_refused() -> None:
    data: dict[str, Any] = json.loads(_node().model_dump_json())
    data["instances"][1] = data["instances"][0]
    with pytest.raises(ConfigError, match="'cam-a' is listed twice"):
        parse_config(json.dumps(data), "node.json")


@pytest.mark.parametrize(("text", "match"), [("null", "tombstone"), ("[1]", "expected a JSON object")])
def test_non_objects_are_refused(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(text, "node.json")


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"node\.json: error: not UTF-8"):
        parse_config(b'{"node": "\xff"}', "node.json")


def test_select_one_instance_or_say_which_exist() -> None:
    node = _node()
    assert [i.name for i in select_instances(node, None)] == ["cam-a", "cam-b"]
    assert [i.name for i in select_instances(node, "cam-b")] == ["cam-b"]
    with pytest.raises(LookupError, match=r"no instance named 'nope'.*it has: cam-a, cam-b"):
        select_instances(node, "nope")


# -- which record becomes desired: fleet, generation, config hash against the mark ----------------------------


def _config(generation: int, fleet: str | None = "fleet-a", files: str = "v1") -> AgentConfig:
    inst = build_instance(
        "cam-a", "ccm", False, (), _container("cam-a"), (RenderedFile(path="a.txt", content=files),)
    )
    node = build_node("gpu-node-1", [inst])
    return AgentConfig(
        sent_at="2026-01-01T00:00:00Z",
        node=node.node,
        generation=generation,
        configHash=node.configHash,
        instances=node.instances,
        fleet=fleet,
    )


MARK = AppliedMark("fleet-a", 5, _config(5).configHash)


@pytest.mark.parametrize(
    ("config", "mark", "bound", "expected"),
    [
        (_config(1), AppliedMark(), None, Verdict.ACCEPT),
        (_config(6, files="v2"), MARK, "fleet-a", Verdict.ACCEPT),
        (_config(5), MARK, "fleet-a", Verdict.SAME),
        (_config(3), MARK, "fleet-a", Verdict.SAME),  # a re-announce of the same config
        (_config(4, files="v0"), MARK, "fleet-a", REJECT_STALE),
        (_config(5, files="v9"), MARK, "fleet-a", REJECT_CONFLICT),
        (_config(9, fleet="fleet-b"), MARK, "fleet-a", REJECT_FLEET),
        (
            _config(9, fleet=None, files="v3"),
            MARK,
            "fleet-a",
            Verdict.ACCEPT,
        ),  # an older coordinator: no fleet
        (_config(1, fleet="fleet-b"), AppliedMark(), None, Verdict.ACCEPT),  # unbound: the first config binds
        (_config(1, fleet="fleet-b"), AppliedMark(), "fleet-a", REJECT_FLEET),  # bound by the settings
    ],
)
def test_judge_config(config: AgentConfig, mark: AppliedMark, bound: str | None, expected: object) -> None:
    verdict = judge_config(config, mark, bound=bound)
    assert (verdict.reason if isinstance(verdict, Refusal) else verdict) == expected


def test_a_stale_newest_record_at_catch_up_says_the_store_is_older() -> None:
    verdict = judge_config(_config(4, files="v0"), MARK, bound="fleet-a", at_catch_up=True)
    assert isinstance(verdict, Refusal) and verdict.generation == 4
    assert "restored from a backup" in verdict.detail and "above 5" in verdict.detail
    live = judge_config(_config(4, files="v0"), MARK, bound="fleet-a")
    assert isinstance(live, Refusal) and "backup" not in live.detail


def test_the_mark_after_accepting_binds_the_fleet_and_a_tombstone_clears_the_generation() -> None:
    mark = mark_after(_config(7, fleet="fleet-b"), AppliedMark(), None)
    assert mark == AppliedMark("fleet-b", 7, _config(7, fleet="fleet-b").configHash)
    assert mark_after(_config(8, fleet=None), mark, "fleet-b").fleet == "fleet-b"
    assert mark_after(None, mark, "fleet-b") == AppliedMark("fleet-b")


# -- the leadership epoch: a record of a lower epoch than the highest accepted is a deposed coordinator's ---------

LED = AppliedMark("fleet-a", 5, _config(5).configHash, epoch=3)


@pytest.mark.parametrize(
    ("config", "epoch", "mark", "expected"),
    [
        (_config(6, files="v2"), 3, LED, Verdict.ACCEPT),  # the same leader
        (_config(6, files="v2"), 4, LED, Verdict.ACCEPT),  # a newer leader
        (_config(6, files="v2"), 2, LED, REJECT_STALE_EPOCH),  # the deposed one, its generation would pass
        (_config(6, files="v2"), 0, LED, REJECT_STALE_EPOCH),  # no epoch header after one was seen
        (_config(5), 2, LED, REJECT_STALE_EPOCH),  # even the config it runs, from a deposed leader
        (_config(5), 4, LED, Verdict.SAME),
        (_config(4, files="v0"), 4, LED, REJECT_STALE),  # a newer epoch does not excuse an older generation
        (_config(5, files="v9"), 4, LED, REJECT_CONFLICT),
        (_config(9, fleet="fleet-b"), 1, LED, REJECT_FLEET),  # another fleet's epochs are not compared
        (_config(1), 0, AppliedMark(), Verdict.ACCEPT),  # no epoch seen yet: none needed
        (_config(6, files="v2"), 0, AppliedMark("fleet-a", 5, _config(5).configHash), Verdict.ACCEPT),
    ],
)
def test_judge_config_by_epoch(config: AgentConfig, epoch: int, mark: AppliedMark, expected: object) -> None:
    verdict = judge_config(config, mark, bound="fleet-a", epoch=epoch)
    assert (verdict.reason if isinstance(verdict, Refusal) else verdict) == expected


def test_a_stale_epoch_names_both_epochs_and_at_catch_up_the_store() -> None:
    live = judge_config(_config(6, files="v2"), LED, bound="fleet-a", epoch=2)
    assert isinstance(live, Refusal) and live.generation == 6
    assert "epoch 2" in live.detail and "epoch 3" in live.detail and "backup" not in live.detail
    missing = judge_config(_config(6, files="v2"), LED, bound="fleet-a", epoch=0)
    assert isinstance(missing, Refusal) and "no epoch" in missing.detail
    newest = judge_config(_config(6, files="v2"), LED, bound="fleet-a", epoch=2, at_catch_up=True)
    assert isinstance(newest, Refusal) and "restored from a backup" in newest.detail


@pytest.mark.parametrize(
    ("epoch", "expected"), [(2, REJECT_STALE_EPOCH), (3, Verdict.ACCEPT), (0, REJECT_STALE_EPOCH)]
)
def test_a_removal_is_judged_by_epoch_too(epoch: int, expected: object) -> None:
    verdict = judge_tombstone(Accepted(None, 6, "fleet-a", epoch), LED, bound="fleet-a")
    assert (verdict.reason if isinstance(verdict, Refusal) else verdict) == expected


def test_the_mark_keeps_the_highest_epoch_of_its_fleet_and_starts_anew_with_another() -> None:
    raised = mark_after(_config(6, files="v2"), LED, "fleet-a", epoch=4)
    assert (raised.generation, raised.epoch) == (6, 4)
    assert mark_after(_config(7, files="v3"), raised, "fleet-a", epoch=0).epoch == 4  # never lowered
    assert mark_after(None, raised, "fleet-a", generation=8, epoch=4) == AppliedMark("fleet-a", 8, None, 4)
    # an unbound agent takes the epoch of the config that binds it, whatever it held before
    bound = mark_after(_config(1, fleet="fleet-b"), AppliedMark(epoch=9), None, epoch=2)
    assert (bound.fleet, bound.epoch) == ("fleet-b", 2)
