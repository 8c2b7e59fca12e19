"""Host-side admission on the real engine: the real agent loop (in process, real Docker runtime, a bus that signs
what the test sends with the coordinator key the agent trusts) is sent validly signed configs that ask for more
than its ``[agent.admission]`` settings allow — privileged, a bind of ``/``, the Docker socket, unconfined seccomp,
host IPC, credentials of a secret no camera of the instance names. Each is refused on the host: the instance
reports ``AdmissionDenied`` naming the rule, and the container of the last good config keeps running untouched
(same id, same start), its files unchanged. A config inside the settings (a bind of an allowed model directory)
is then applied."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from dsfleet.plumbing.settings import AdmissionSettings
from dsfleet.schemas.nodeconfigs import InstanceConfig, MountSpec, build_instance
from dsfleet.schemas.wire import InstanceState, InstanceStatus
from tests.support.dockerengine import (
    APP_CONFIG,
    RUN_ID,
    agent_config_bytes,
    cleanup,
    stub_instance,
    wait_for,
)
from tests.support.inprocessagents import Names, RunningAgent, start_agent

CANARY = "canary-Adm1ss10n-9b4e"
_counter = itertools.count(1)


@pytest.fixture
def names(docker_client: docker.DockerClient, stub_image: str) -> Iterator[Names]:
    prefix = f"s{RUN_ID}{next(_counter)}"
    yield Names(RUN_ID, prefix)
    cleanup(docker_client, RUN_ID, f"dsfleet-{prefix}")


@pytest.fixture
def agents() -> Iterator[list[RunningAgent]]:
    started: list[RunningAgent] = []
    yield started
    for a in started:
        a.halt()


def _plant(state: Path, ref: str, password: str) -> None:
    d = state / "secrets" / ref
    d.mkdir(parents=True, exist_ok=True)
    for key, value in (("username", "admin"), ("password", password)):
        (d / key).write_text(value)
        os.chmod(d / key, 0o600)


def _with(base: InstanceConfig, *, files: Any = None, **container: Any) -> InstanceConfig:
    """``base`` with its container spec (and files) changed, its hashes made anew as the coordinator makes them."""
    return build_instance(
        base.name,
        base.layout,
        base.paused,
        base.cameras,
        base.container.model_copy(update=container),
        files if files is not None else base.files,
        strategy=base.strategy,
        camera_secrets=base.cameraSecrets,
    )


def _denied(agent: RunningAgent, name: str, rule: str) -> InstanceStatus | None:
    s = agent.status(name)
    if s is None:
        return None
    hit = any(c.reason == "AdmissionDenied" and f"{rule}: " in c.message for c in s.conditions)
    return s if hit else None


def test_configs_the_host_does_not_admit_are_refused_and_the_last_good_container_runs_on(
    tmp_path: Path, names: Names, docker_client: docker.DockerClient, agents: list[RunningAgent]
) -> None:
    state = (tmp_path / "state").resolve()
    models = (tmp_path / "models").resolve()
    models.mkdir()
    (models / "model.onnx").write_text("weights")
    _plant(state, "gate", "gate-Pa55")
    _plant(state, "vault", CANARY)  # on the host, for another instance: this one must never reach it
    a = names.instance("adm")
    v1 = stub_instance(a, names.run_id, secret_ref="gate")
    agent = start_agent(state, names.node, admission=AdmissionSettings(bind_sources=(str(models),)))
    agents.append(agent)
    agent.bus.push_config(names.node, agent_config_bytes(names.node, 1, [v1]))
    wait_for(
        "v1 running",
        lambda: (s := agent.status(a)) and s.state is InstanceState.RUNNING and s.configHash == v1.configHash,
    )
    before = docker_client.api.inspect_container(f"dsfleet-{a}")
    good_file = (state / "instances" / a / APP_CONFIG).read_text()

    (app, *rest) = v1.files
    vault_app = app.model_copy(
        update={
            "content": app.content
            + "\n[source9]\nenable=1\ntype=4\nuri=rtsp://${secret:vault}@127.0.0.1/x\n",
            "secrets": ("gate", "vault"),
        }
    )

    def bind(source: str, target: str) -> tuple[MountSpec, ...]:
        return (*v1.container.mounts, MountSpec(type="bind", source=source, target=target, readOnly=False))

    refused = [
        ("privileged", _with(v1, privileged=True)),
        ("host-root", _with(v1, mounts=bind("/", "/host"))),
        ("engine-socket", _with(v1, mounts=bind("/var/run/docker.sock", "/var/run/docker.sock"))),
        ("security-opt", _with(v1, securityOpt=("seccomp=unconfined",))),
        ("ipc-mode", _with(v1, ipc="host")),
        ("state-dir", _with(v1, mounts=bind(str(tmp_path), "/data"))),  # above the state dir: its secrets
        ("bind-source", _with(v1, mounts=bind("/srv/media", "/media"))),  # not under bind_sources
        ("secret-scope", _with(v1, files=(vault_app, *rest))),
    ]
    for generation, (rule, config) in enumerate(refused, start=2):
        agent.bus.push_config(names.node, agent_config_bytes(names.node, generation, [config]))
        s = wait_for(f"{rule} refused", lambda rule=rule: _denied(agent, a, rule))
        (cond,) = s.conditions
        assert (
            cond.message.startswith("refused by this host's admission: ")
            and "last good config" in cond.message
        )
        assert s.state is InstanceState.RUNNING and s.configHash == v1.configHash, rule
        now = docker_client.api.inspect_container(f"dsfleet-{a}")
        assert now["Id"] == before["Id"] and now["State"]["StartedAt"] == before["State"]["StartedAt"], rule
        assert now["State"]["Running"] and now["RestartCount"] == before["RestartCount"], rule
        assert not now["HostConfig"]["Privileged"] and not now["HostConfig"].get("SecurityOpt"), rule
        assert now["HostConfig"]["IpcMode"] != "host", rule
        assert {m["Destination"] for m in now["Mounts"]} == {m["Destination"] for m in before["Mounts"]}, rule
        assert (state / "instances" / a / APP_CONFIG).read_text() == good_file, rule
        assert agent.agent.observed_generation == 1, rule

    # the other instance's secret reached no file, no container and no report
    written = b"".join(p.read_bytes() for p in (state / "instances").rglob("*") if p.is_file())
    assert CANARY.encode() not in written
    assert CANARY not in json.dumps(docker_client.api.inspect_container(f"dsfleet-{a}"))
    assert agent.agent.last_response is not None and CANARY not in agent.agent.last_response.model_dump_json()

    # inside the settings: a bind of the allowed model directory, read-only, is applied
    v2 = _with(
        stub_instance(a, names.run_id, secret_ref="gate", version=2),
        mounts=(*v1.container.mounts, MountSpec(type="bind", source=str(models), target="/models")),
    )
    agent.bus.push_config(names.node, agent_config_bytes(names.node, len(refused) + 2, [v2]))
    s = wait_for(
        "v2 applied",
        lambda: (
            (x := agent.status(a))
            and x.state is InstanceState.RUNNING
            and x.configHash == v2.configHash
            and x
        ),
    )
    assert s.conditions == ()
    after = docker_client.api.inspect_container(f"dsfleet-{a}")
    (mount,) = [m for m in after["Mounts"] if m["Destination"] == "/models"]
    assert mount["Source"] == str(models) and mount["RW"] is False
    assert "# version 2" in (state / "instances" / a / APP_CONFIG).read_text()
