"""Hitless camera changes on the real engine with the stand-in image: cameras of an nvmultiurisrcbin instance are
added and removed through its REST API without restarting the container, dropped streams are reported and
re-added, and a REST server that refuses makes the agent restart instead (and say so)."""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path

import docker
import pytest

from dsfleet.schemas.nodeconfigs import InstanceConfig, RenderedFile, build_instance
from dsfleet.schemas.wire import CameraState, CameraStatus
from tests.support.dockerengine import APP_CONFIG, agent_config_bytes, stub_instance, wait_for
from tests.support.inprocessagents import Names, RunningAgent, start_agent

PASSWORD = "Zq7canaryPw"
SECRET = "door-cam"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hot_instance(
    name: str, names: Names, port: int, cameras: list[str], *, env: dict[str, str] | None = None
) -> InstanceConfig:
    """An instance of the stub with ``[source-list] use-nvmultiurisrcbin=1`` on host networking; camera ``door``
    takes its credentials from the secret; a camera named ``down*`` points at the host ``down.invalid``."""

    def url(cam: str) -> str:
        if cam == "door":
            return f"rtsp://${{secret:{SECRET}}}@127.0.0.1:8554/door"
        return f"rtsp://{'down.invalid' if cam.startswith('down') else '127.0.0.1'}:8554/{cam}"

    app = (
        "[application]\nenable-perf-measurement=1\nperf-measurement-interval-sec=1\n\n"
        f"[source-list]\nnum-source-bins={len(cameras)}\nlist={';'.join(url(c) for c in cameras)}\n"
        f"sensor-id-list={';'.join(cameras)}\nuse-nvmultiurisrcbin=1\nmax-batch-size=12\nhttp-port={port}\n\n"
        "[source-attr-all]\nenable=1\n\n[primary-gie]\nenable=1\nconfig-file=pgie.txt\n"
    )
    base = stub_instance(name, names.run_id, network="host", env=env)
    files = (
        RenderedFile(path=APP_CONFIG, content=app, secrets=(SECRET,) if "door" in cameras else ()),
        RenderedFile(path="pgie.txt", content="[property]\ngpu-id=0\nbatch-size=12\n"),
    )
    secrets = {"door": SECRET} if "door" in cameras else None
    return build_instance(
        name, "deepstream-app", False, tuple(cameras), base.container, files, camera_secrets=secrets
    )


def _secret(state: Path) -> None:
    d = state / "secrets" / SECRET
    d.mkdir(parents=True, exist_ok=True)
    for key, value in (("username", "admin"), ("password", PASSWORD)):
        (d / key).write_text(value + "\n")
        os.chmod(d / key, 0o600)


def _cameras(agent: RunningAgent, name: str) -> dict[str, CameraStatus]:
    s = agent.status(name)
    return {c.name: c for c in s.cameras} if s else {}


def _frames(client: docker.DockerClient, cid: str) -> dict[str, list[int]]:
    """Every STREAM line's frame counter so far, by camera."""
    text = client.api.logs(cid, stdout=True, stderr=False).decode()
    seen: dict[str, list[int]] = {}
    for cam, n in re.findall(r"^STREAM (\S+) source=\d+ frames=(\d+)$", text, re.M):
        seen.setdefault(cam, []).append(int(n))
    return seen


def _never_reset(frames: dict[str, list[int]], cams: list[str]) -> None:
    for cam in cams:
        counts = frames[cam]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), f"{cam} restarted: {counts}"


def _inspect(client: docker.DockerClient, name: str) -> tuple[str, str]:
    c = client.api.inspect_container(f"dsfleet-{name}")
    return c["Id"], c["State"]["StartedAt"]


EIGHT = [f"cam{i}" for i in range(8)]


def test_cameras_come_and_go_without_a_restart(
    tmp_path: Path,
    names: Names,
    docker_client: docker.DockerClient,
    agents: list[RunningAgent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _secret(tmp_path)
    a, port = names.instance("hot"), free_port()
    agent = start_agent(tmp_path, names.node)
    agents.append(agent)
    agent.bus.push_config(
        names.node, agent_config_bytes(names.node, 1, [hot_instance(a, names, port, EIGHT)])
    )
    wait_for(
        "8 cameras streaming",
        lambda: (
            len(_cameras(agent, a)) == 8
            and all(c.state is CameraState.STREAMING for c in _cameras(agent, a).values())
        ),
        timeout=40,
    )
    cid, started = _inspect(docker_client, a)

    # add one (it carries credentials): streaming, same container, no other stream restarted
    agent.bus.push_config(
        names.node, agent_config_bytes(names.node, 2, [hot_instance(a, names, port, [*EIGHT, "door"])])
    )
    door = wait_for("door streaming", lambda: _cameras(agent, a).get("door"), timeout=15)
    wait_for("door streaming", lambda: _cameras(agent, a)["door"].state is CameraState.STREAMING, timeout=15)
    assert door.name == "door"
    wait_for("door counting frames", lambda: len(_frames(docker_client, cid).get("door", [])) >= 2)
    assert _inspect(docker_client, a) == (cid, started)
    _never_reset(_frames(docker_client, cid), [*EIGHT, "door"])
    assert PASSWORD in (tmp_path / "instances" / a / APP_CONFIG).read_text()  # the next start has it

    # remove one
    agent.bus.push_config(
        names.node, agent_config_bytes(names.node, 3, [hot_instance(a, names, port, [*EIGHT[1:], "door"])])
    )
    wait_for(
        "cam0 gone", lambda: "cam0" not in _cameras(agent, a) and len(_cameras(agent, a)) == 8, timeout=15
    )
    before = _frames(docker_client, cid)
    wait_for("more frames", lambda: len(_frames(docker_client, cid)["cam1"]) > len(before["cam1"]) + 1)
    frames = _frames(docker_client, cid)
    assert len(frames["cam0"]) == len(before["cam0"])  # cam0 stopped counting
    assert _inspect(docker_client, a) == (cid, started)
    _never_reset(frames, [*EIGHT[1:], "door"])

    # a camera whose host is down: dropped by DeepStream, reported failed, re-added when the host is back
    docker_client.api.exec_start(
        docker_client.api.exec_create(cid, ["sh", "-c", "echo down.invalid > /tmp/stub-down"])
    )
    agent.bus.push_config(
        names.node,
        agent_config_bytes(names.node, 4, [hot_instance(a, names, port, [*EIGHT[1:], "door", "down1"])]),
    )
    failed = wait_for(
        "down1 failed",
        lambda: (c := _cameras(agent, a).get("down1")) and c.state is CameraState.FAILED and c,
        timeout=20,
    )
    assert failed.reason and "dropped by DeepStream" in failed.reason
    docker_client.api.exec_start(docker_client.api.exec_create(cid, ["rm", "-f", "/tmp/stub-down"]))
    wait_for(
        "down1 streaming again",
        lambda: (c := _cameras(agent, a).get("down1")) and c.state is CameraState.STREAMING,
        timeout=30,
    )
    assert _inspect(docker_client, a) == (cid, started)
    _never_reset(_frames(docker_client, cid), [*EIGHT[1:], "door"])
    status = agent.status(a)
    assert status is not None and status.cameras[0].frameNumber is not None  # metrics read from DeepStream

    # the canary: never in the agent's log lines nor its reports
    assert PASSWORD not in caplog.text
    assert (
        agent.agent.last_response is not None and PASSWORD not in agent.agent.last_response.model_dump_json()
    )
    assert "hot camera change" in caplog.text and "restarting instead" not in caplog.text


def test_ds63_paths_and_a_refusing_server_falls_back_to_a_restart(
    tmp_path: Path,
    names: Names,
    docker_client: docker.DockerClient,
    agents: list[RunningAgent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    a, b = names.instance("old"), names.instance("nay")
    pa, pb = free_port(), free_port()
    old_env = {"STUB_DS_VERSION": "6.3", "DSFLEET_DS_VERSION": "6.3"}
    nay_env = {"STUB_REST_FAIL": "1"}
    agent = start_agent(tmp_path, names.node)
    agents.append(agent)

    def push(gen: int, cams: list[str]) -> None:
        agent.bus.push_config(
            names.node,
            agent_config_bytes(
                names.node,
                gen,
                [
                    hot_instance(a, names, pa, cams, env=old_env),
                    hot_instance(b, names, pb, cams, env=nay_env),
                ],
            ),
        )

    push(1, ["cam0", "cam1"])
    wait_for(
        "both listed",
        lambda: len(_cameras(agent, a)) == 2 and len(_cameras(agent, b)) == 2,
        timeout=40,
    )
    ida, ib = _inspect(docker_client, a), _inspect(docker_client, b)
    push(2, ["cam0", "cam1", "cam2"])
    # 6.3-style paths (no /api/v1): hot
    wait_for(
        "cam2 streaming on the 6.3 instance",
        lambda: (c := _cameras(agent, a).get("cam2")) and c.state is CameraState.STREAMING,
        timeout=15,
    )
    assert _inspect(docker_client, a) == ida
    # 200 with a failure body: a failure, the agent restarts the container instead and says so
    wait_for("b restarted", lambda: _inspect(docker_client, b)[1] != ib[1], timeout=20)
    assert _inspect(docker_client, b)[0] == ib[0]
    assert re.search(
        rf"hot camera change instance={b} refused \(add cam2: STUB_REST_FAIL\); restarting", caplog.text
    )
    wait_for("cam2 listed on b after the restart", lambda: "cam2" in _cameras(agent, b), timeout=20)
