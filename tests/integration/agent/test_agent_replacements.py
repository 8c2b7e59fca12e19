"""Make-before-break on the real engine with the stand-in image (the agent in-process, the in-memory bus): the
order of a replacement by strategy (read back from the engine's own events), a bad image tag, a container that
cannot be created or started, a health check deciding StartBeforeStop, an agent killed in the middle, the
per-image engine volumes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from dsfleet.agent.containerrequests import container_request
from dsfleet.agent.containers import engine_volume_name, next_name
from dsfleet.agent.runtime import DockerRuntime
from dsfleet.agent.testing import MemoryBus
from dsfleet.plumbing.settings import AdmissionSettings
from dsfleet.schemas.labels import LABEL_INSTANCE
from dsfleet.schemas.nodeconfigs import InstanceConfig
from dsfleet.schemas.wire import InstanceState, InstanceStatus
from tests.support.dockerengine import RUN_LABEL, STUB_IMAGE, agent_config_bytes, stub_instance, wait_for
from tests.support.inprocessagents import Names, RunningAgent, start_agent


def _inspect(client: docker.DockerClient, name: str) -> dict[str, Any] | None:
    try:
        return client.api.inspect_container(name)  # type: ignore[no-any-return]
    except docker.errors.NotFound:
        return None


def _events(client: docker.DockerClient, instance: str, since: float) -> list[tuple[str, str, int]]:
    """(action, container id, time in ns) of the engine's events about the instance's containers."""
    found = client.api.events(
        since=since,
        until=time.time() + 0.1,
        decode=True,
        filters={"type": "container", "label": f"{LABEL_INSTANCE}={instance}"},
    )
    return [(e["Action"], e["id"], int(e["timeNano"])) for e in found]


def _first(events: list[tuple[str, str, int]], action: str, cid: str) -> int:
    return next(t for a, c, t in events if a == action and c == cid)


def _ours(client: docker.DockerClient, instance: str) -> list[dict[str, Any]]:
    return client.api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"})  # type: ignore[no-any-return]


def _running_with_fps(agent: RunningAgent, name: str) -> InstanceStatus | None:
    s = agent.status(name)
    return s if s and s.state is InstanceState.RUNNING and s.fps else None


def _start(
    tmp_path: Path,
    names: Names,
    agents: list[RunningAgent],
    *instances: InstanceConfig,
    admission: AdmissionSettings | None = None,
) -> RunningAgent:
    bus = MemoryBus()
    bus.push_config(names.node, agent_config_bytes(names.node, 1, list(instances)))
    agent = start_agent(tmp_path, names.node, bus=bus, admission=admission)
    agents.append(agent)
    return agent


def _converged(agent: RunningAgent, inst: InstanceConfig) -> Callable[[], InstanceStatus | None]:
    def probe() -> InstanceStatus | None:
        s = _running_with_fps(agent, inst.name)
        return s if s and s.configHash == inst.configHash else None

    return probe


@pytest.mark.parametrize("strategy", ["CreateBeforeStop", "StartBeforeStop", "Recreate"])
def test_a_spec_change_replaces_the_container_in_the_order_of_its_strategy(
    tmp_path: Path,
    names: Names,
    docker_client: docker.DockerClient,
    agents: list[RunningAgent],
    strategy: str,
) -> None:
    a = names.instance("s")
    v1 = stub_instance(a, names.run_id, strategy=strategy)  # type: ignore[arg-type]
    agent = _start(tmp_path, names, agents, v1)
    wait_for("v1 running with FPS", _converged(agent, v1))
    old = _inspect(docker_client, f"dsfleet-{a}")
    assert old is not None
    t0 = time.time()
    v2 = stub_instance(a, names.run_id, strategy=strategy, env={"LEVEL": "2"})  # type: ignore[arg-type]
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 2, [v2]))
    s = wait_for("v2 running with FPS", _converged(agent, v2))
    new = _inspect(docker_client, f"dsfleet-{a}")
    assert new is not None and new["Id"] != old["Id"] and s.containerId == new["Id"]
    assert [c["Id"] for c in _ours(docker_client, a)] == [new["Id"]]  # the old one and .next are gone
    ev = _events(docker_client, a, t0)
    created, started = _first(ev, "create", new["Id"]), _first(ev, "start", new["Id"])
    died, destroyed = _first(ev, "die", old["Id"]), _first(ev, "destroy", old["Id"])
    if strategy == "CreateBeforeStop":
        assert created < died < started  # made before the old one stops; never two running
    elif strategy == "StartBeforeStop":
        assert created < started < died  # the new one runs before the old one stops
    else:
        assert died <= destroyed < created < started  # the old one gone first
    assert s.conditions == () and s.drift == ()


def test_a_bad_image_tag_keeps_the_old_container_running_and_backs_off(
    tmp_path: Path,
    names: Names,
    docker_client: docker.DockerClient,
    agents: list[RunningAgent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = names.instance("img")
    v1 = stub_instance(a, names.run_id)
    agent = _start(tmp_path, names, agents, v1)
    wait_for("v1 running", _converged(agent, v1))
    old = _inspect(docker_client, f"dsfleet-{a}")
    assert old is not None
    bad = stub_instance(a, names.run_id, image="dsfleet/deepstream-stub:no-such-tag")
    caplog.set_level("WARNING", logger="dsfleet.agent")
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 2, [bad]))

    def attempts() -> list[float]:
        return [r.created for r in caplog.records if "reason=ImageNotFound" in r.getMessage()]

    wait_for("three attempts", lambda: len(attempts()) >= 3, timeout=30)
    first, second, third = attempts()[:3]
    # backoff: 1 s then 2 s nominal, each scaled into [0.5, 1) — where a fixed 0.5 s retry logged 272 in 2 min
    assert 0.5 <= second - first < 1.5 and 1.0 <= third - second < 2.5, (first, second, third)
    s = agent.status(a)
    assert s is not None
    (cond,) = [c for c in s.conditions if c.reason == "ImageNotFound"]
    assert cond.attempts >= 3 and cond.nextRetryAt and "no-such-tag" in cond.message
    now = _inspect(docker_client, f"dsfleet-{a}")
    assert now is not None and now["Id"] == old["Id"] and now["State"]["Running"]
    assert now["State"]["StartedAt"] == old["State"]["StartedAt"]  # never stopped
    assert [c["Id"] for c in _ours(docker_client, a)] == [old["Id"]]
    assert s.state is InstanceState.RUNNING and s.fps and s.configHash == v1.configHash
    assert agent.agent.observed_generation == 1
    # a good config is applied at once, whatever the backoff
    v3 = stub_instance(a, names.run_id, env={"LEVEL": "3"})
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 3, [v3]))
    wait_for("v3 running", _converged(agent, v3))
    assert agent.status(a).conditions == ()  # type: ignore[union-attr]


def test_a_container_that_cannot_be_created_leaves_the_old_running(
    tmp_path: Path, names: Names, docker_client: docker.DockerClient, agents: list[RunningAgent]
) -> None:
    a = names.instance("cf")
    v1 = stub_instance(a, names.run_id)
    agent = _start(tmp_path, names, agents, v1)
    wait_for("v1 running", _converged(agent, v1))
    old = _inspect(docker_client, f"dsfleet-{a}")
    bad = stub_instance(a, names.run_id, working_dir="/entrypoint.sh")  # a file: the engine refuses to create
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 2, [bad]))
    s = wait_for(
        "CreateFailed reported",
        lambda: (x := agent.status(a)) and any(c.reason == "CreateFailed" for c in x.conditions) and x,
    )
    assert "not a directory" in s.conditions[0].message
    assert [c["Id"] for c in _ours(docker_client, a)] == [old["Id"]]  # type: ignore[index]
    assert _running_with_fps(agent, a)


def test_a_container_that_cannot_start_gives_the_old_one_back(
    tmp_path: Path, names: Names, docker_client: docker.DockerClient, agents: list[RunningAgent]
) -> None:
    a = names.instance("sf")
    helper = f"dsfleet-{names.prefix}-netns"  # a stopped container: joining its network fails at start
    docker_client.api.create_container(STUB_IMAGE, name=helper, labels={RUN_LABEL: names.run_id})
    v1 = stub_instance(a, names.run_id)
    joins = AdmissionSettings(network_modes=("host", "none", "container:*"))  # this host lets it join one
    agent = _start(tmp_path, names, agents, v1, admission=joins)
    wait_for("v1 running", _converged(agent, v1))
    old = _inspect(docker_client, f"dsfleet-{a}")
    assert old is not None
    t0 = time.time()
    bad = stub_instance(a, names.run_id, network=f"container:{helper}")
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 2, [bad]))
    s = wait_for(
        "StartFailed reported",
        lambda: (x := agent.status(a)) and any(c.reason == "StartFailed" for c in x.conditions) and x,
    )
    assert "cannot join network" in s.conditions[0].message
    s = wait_for("the old one running again", lambda: _running_with_fps(agent, a))
    assert s.containerId == old["Id"] and [c["Id"] for c in _ours(docker_client, a)] == [old["Id"]]
    assert s.drift == ()  # the agent stopped and started it itself
    actions = [x for x, c, _ in _events(docker_client, a, t0) if c == old["Id"]]
    assert "die" in actions and actions.index("start") > actions.index("die")  # stopped, then started again


def test_start_before_stop_waits_for_health_and_rolls_back_an_unhealthy_one(
    tmp_path: Path, names: Names, docker_client: docker.DockerClient, agents: list[RunningAgent]
) -> None:
    a = names.instance("hc")
    v1 = stub_instance(a, names.run_id, strategy="StartBeforeStop", health=("CMD", "true"))
    agent = _start(tmp_path, names, agents, v1)
    wait_for("v1 running", _converged(agent, v1))
    old = _inspect(docker_client, f"dsfleet-{a}")
    assert old is not None
    sick = stub_instance(a, names.run_id, strategy="StartBeforeStop", health=("CMD", "false"))
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 2, [sick]))
    s = wait_for(
        "Unhealthy reported",
        lambda: (x := agent.status(a)) and any(c.reason == "Unhealthy" for c in x.conditions) and x,
        timeout=60,
    )
    wait_for("the spare one removed", lambda: [c["Id"] for c in _ours(docker_client, a)] == [old["Id"]])
    assert _inspect(docker_client, f"dsfleet-{a}")["State"]["StartedAt"] == old["State"]["StartedAt"]  # type: ignore[index]
    healthy = stub_instance(
        a, names.run_id, strategy="StartBeforeStop", health=("CMD", "true"), env={"X": "1"}
    )
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 3, [healthy]))
    s = wait_for("the healthy one took over", _converged(agent, healthy), timeout=60)
    assert s.containerId != old["Id"] and _inspect(docker_client, next_name(a)) is None


@pytest.mark.parametrize("died_after", ["create", "stop", "start"])
def test_an_agent_killed_in_the_middle_of_a_replacement_finishes_it(
    tmp_path: Path,
    names: Names,
    docker_client: docker.DockerClient,
    agents: list[RunningAgent],
    died_after: str,
) -> None:
    a = names.instance("k")
    v1 = stub_instance(a, names.run_id)
    agent = _start(tmp_path, names, agents, v1)
    wait_for("v1 running", _converged(agent, v1))
    agent.halt()
    old = _inspect(docker_client, f"dsfleet-{a}")
    assert old is not None
    v2 = stub_instance(a, names.run_id, env={"LEVEL": "2"})
    # what the killed agent had done of the replacement
    rt = DockerRuntime(pull=False)
    try:
        rt.ensure_volume(engine_volume_name(v2), {RUN_LABEL: names.run_id})
        request = container_request(
            v2,
            names.node,
            2,
            str(tmp_path.resolve() / "instances" / a),
            None,
            nvidia=False,
            name=next_name(a),
            engine_volume=engine_volume_name(v2),
        )
        nid = rt.create(request)
        if died_after in ("stop", "start"):
            rt.stop(old["Id"], 2)
        if died_after == "start":
            rt.start(nid)
    finally:
        rt.close()
    bus = MemoryBus()
    bus.push_config(names.node, agent_config_bytes(names.node, 2, [v2]))
    again = start_agent(tmp_path, names.node, bus=bus)
    agents.append(again)
    s = wait_for("the replacement finished", _converged(again, v2))
    assert s.containerId == nid and [c["Id"] for c in _ours(docker_client, a)] == [nid]
    assert s.drift == ()
