"""The agent against real dockerd and the stub image (in-process loop, in-memory bus): create, restart on a
files change, recreate on an image change, remove; paused; FPS and degraded sources."""

from __future__ import annotations

from pathlib import Path

import docker

from dsfleet.agent.containers import engine_volume_name
from dsfleet.agent.testing import MemoryBus
from dsfleet.schemas.labels import (
    LABEL_GENERATION,
    LABEL_IMAGE,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_SPEC_HASH,
)
from dsfleet.schemas.wire import InstanceState
from tests.support.dockerengine import APP_CONFIG, STUB_IMAGE, agent_config_bytes, stub_instance, wait_for
from tests.support.inprocessagents import Names, RunningAgent, start_agent


def _container(client: docker.DockerClient, name: str) -> dict | None:  # type: ignore[type-arg]
    try:
        return client.api.inspect_container(f"dsfleet-{name}")  # type: ignore[no-any-return]
    except docker.errors.NotFound:
        return None


def _running_with_fps(agent: RunningAgent, name: str, sources: int) -> bool:
    s = agent.status(name)
    return bool(s and s.state is InstanceState.RUNNING and len(s.fps) == sources)


def test_create_restart_recreate_remove(
    tmp_path: Path,
    names: Names,
    docker_client: docker.DockerClient,
    agents: list[RunningAgent],
    stub_image: str,
) -> None:
    a, b = names.instance("a"), names.instance("b")
    bus = MemoryBus()
    bus.push_config(
        names.node,
        agent_config_bytes(
            names.node, 1, [stub_instance(a, names.run_id), stub_instance(b, names.run_id, sources=3)]
        ),
    )
    agent = start_agent(tmp_path, names.node, bus=bus)
    agents.append(agent)

    # create
    wait_for(
        "both running with FPS", lambda: _running_with_fps(agent, a, 2) and _running_with_fps(agent, b, 3)
    )
    ca = _container(docker_client, a)
    assert ca is not None
    labels = ca["Config"]["Labels"]
    inst_a = stub_instance(a, names.run_id)
    assert labels[LABEL_MANAGED] == "true"
    assert labels[LABEL_INSTANCE] == a
    assert labels[LABEL_SPEC_HASH] == inst_a.specHash
    assert labels[LABEL_GENERATION] == "1"
    mounts = {m["Destination"]: m for m in ca["Mounts"]}
    assert mounts["/workspace/configs"]["RW"] is False
    assert mounts["/workspace/configs"]["Source"] == str(tmp_path.resolve() / "instances" / a)
    assert mounts["/workspace/build"]["Name"] == engine_volume_name(inst_a)
    assert ca["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert not ca["HostConfig"].get("DeviceRequests")
    s = agent.status(a)
    assert s is not None and s.fps == {"0": 30.0, "1": 30.0}
    assert s.specHash == inst_a.specHash and s.filesHash == inst_a.filesHash
    assert agent.agent.last_response is not None and agent.agent.last_response.observedGeneration == 1
    id_a, id_b = ca["Id"], _container(docker_client, b)["Id"]  # type: ignore[index]
    started_a = ca["State"]["StartedAt"]

    # files-only change of a: same container, restarted, new files on disk; b untouched
    a2 = stub_instance(a, names.run_id, version=2)
    assert a2.specHash == inst_a.specHash and a2.filesHash != inst_a.filesHash
    bus.push_config(
        names.node, agent_config_bytes(names.node, 2, [a2, stub_instance(b, names.run_id, sources=3)])
    )
    wait_for(
        "a restarted",
        lambda: (
            (c := _container(docker_client, a))
            and c["State"]["StartedAt"] != started_a
            and c["State"]["Running"]
        ),
    )
    assert _container(docker_client, a)["Id"] == id_a  # type: ignore[index]
    assert "# version 2" in (tmp_path / "instances" / a / APP_CONFIG).read_text()
    wait_for("files hash reported", lambda: (s := agent.status(a)) and s.filesHash == a2.filesHash)

    # image change of b: a new container beside the old one's volume (one engine volume per image)
    b1 = stub_instance(b, names.run_id, sources=3)
    vol_before = docker_client.api.inspect_volume(engine_volume_name(b1))
    assert vol_before["Labels"][LABEL_IMAGE] == STUB_IMAGE
    b2 = stub_instance(b, names.run_id, sources=3, image=stub_image)
    bus.push_config(names.node, agent_config_bytes(names.node, 3, [a2, b2]))
    wait_for(
        "b replaced",
        lambda: (c := _container(docker_client, b)) and c["Id"] != id_b and c["State"]["Running"],
    )
    mounts = {m["Destination"]: m for m in _container(docker_client, b)["Mounts"]}  # type: ignore[index]
    assert mounts["/workspace/build"]["Name"] == engine_volume_name(b2)
    assert docker_client.api.inspect_volume(engine_volume_name(b2))["Labels"][LABEL_IMAGE] == stub_image
    assert (
        docker_client.api.inspect_volume(engine_volume_name(b1))["Labels"][LABEL_IMAGE] == STUB_IMAGE
    )  # kept
    assert _container(docker_client, a)["Id"] == id_a  # type: ignore[index]

    # b removed from the desired config: container, volume and files gone
    bus.push_config(names.node, agent_config_bytes(names.node, 4, [a2]))
    wait_for("b removed", lambda: _container(docker_client, b) is None)
    wait_for(
        "b's volumes removed",
        lambda: not (docker_client.api.volumes(filters={"name": f"{b}_engine"}) or {}).get("Volumes"),
    )
    wait_for("b's files removed", lambda: not (tmp_path / "instances" / b).exists())
    wait_for(
        "generation 4 observed",
        lambda: agent.agent.last_response and agent.agent.last_response.observedGeneration == 4,
    )


def test_paused_degraded_and_tombstone(
    tmp_path: Path, names: Names, docker_client: docker.DockerClient, agents: list[RunningAgent]
) -> None:
    a = names.instance("p")
    bus = MemoryBus()
    bus.push_config(
        names.node,
        agent_config_bytes(names.node, 1, [stub_instance(a, names.run_id, env={"STUB_FPS": "25.00 0.00"})]),
    )
    agent = start_agent(tmp_path, names.node, bus=bus)
    agents.append(agent)
    s = wait_for("running, degraded", lambda: (s := agent.status(a)) and s.fps.get("1") == 0.0 and s)
    assert s.error is not None and s.error.startswith("degraded: ") and "1" in s.error
    assert s.fps["0"] == 25.0

    paused = stub_instance(a, names.run_id, env={"STUB_FPS": "25.00 0.00"}, paused=True)
    bus.push_config(names.node, agent_config_bytes(names.node, 2, [paused]))
    wait_for("stopped for paused", lambda: (s := agent.status(a)) and s.state is InstanceState.STOPPED)
    c = _container(docker_client, a)
    assert c is not None and not c["State"]["Running"]

    bus.push_config(names.node, None)  # tombstone: no instances
    wait_for("removed after tombstone", lambda: _container(docker_client, a) is None)
