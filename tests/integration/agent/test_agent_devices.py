"""A USB camera's device reaches the container: the compiled ``ContainerSpec.devices`` → the agent's request →
Docker's ``HostConfig.Devices`` (real engine; /dev/null stands in for /dev/videoN, which test hosts lack)."""

from __future__ import annotations

from pathlib import Path

import docker

from dsfleet.agent.containerrequests import container_request
from dsfleet.agent.containers import engine_volume_name
from dsfleet.agent.runtime import DockerRuntime
from dsfleet.schemas.nodeconfigs import DeviceSpec
from tests.support.dockerengine import RUN_LABEL, stub_instance
from tests.support.inprocessagents import Names


def test_a_device_of_the_spec_is_passed_into_the_container(
    tmp_path: Path, names: Names, docker_client: docker.DockerClient
) -> None:
    inst = stub_instance(names.instance("usb"), names.run_id)
    device = DeviceSpec(pathOnHost="/dev/null", pathInContainer="/dev/video7")
    inst = inst.model_copy(update={"container": inst.container.model_copy(update={"devices": (device,)})})
    request = container_request(inst, names.node, 1, str(tmp_path), None, nvidia=False,
                                engine_volume=engine_volume_name(inst))  # fmt: skip
    assert request.devices == ("/dev/null:/dev/video7:rwm",)
    rt = DockerRuntime(pull=False)
    try:
        rt.ensure_volume(engine_volume_name(inst), {RUN_LABEL: names.run_id})
        cid = rt.create(request)
    finally:
        rt.close()
    host = docker_client.api.inspect_container(cid)["HostConfig"]
    assert host["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/video7",
                                "CgroupPermissions": "rwm"}]  # fmt: skip
    plain = container_request(stub_instance(names.instance("plain"), names.run_id), names.node, 1, str(tmp_path), None,
                              nvidia=False)  # fmt: skip
    assert plain.devices == ()
