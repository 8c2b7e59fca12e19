"""Host-side admission (:mod:`dsfleet.agent.admission`): each rule as a table of configs and settings → the rules
broken; then on the fakes, a refused instance keeps its last good container and reports ``AdmissionDenied``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from dsfleet.agent.admission import Denial, admit, denial_message, full_image_name
from dsfleet.plumbing.settings import AdmissionSettings, SettingsError, load_settings
from dsfleet.schemas.nodeconfigs import (
    DeviceSpec,
    EnvSecret,
    InstanceConfig,
    MountSpec,
    RenderedFile,
)
from tests.support.inprocessagents import FAKE_NODE as NODE
from tests.support.inprocessagents import config_record as config
from tests.support.inprocessagents import fake_agent
from tests.support.inprocessagents import fake_instance as inst

STATE = "/srv/dsfleet/agent"
BASE = inst()


def spec(**update: Any) -> InstanceConfig:
    """The base instance with its container spec changed."""
    return BASE.model_copy(update={"container": BASE.container.model_copy(update=update)})


def bind(source: str, target: str = "/data", read_only: bool = True) -> tuple[MountSpec, ...]:
    return (*BASE.container.mounts, MountSpec(type="bind", source=source, target=target, readOnly=read_only))


def rules(instance: InstanceConfig, links: dict[str, str] | None = None, **settings: Any) -> list[str]:
    found = admit(
        instance,
        AdmissionSettings(**settings),
        state_dir=STATE,
        realpath=lambda p: (links or {}).get(p, p),
    )
    return [d.rule for d in found]


CASES: list[tuple[str, InstanceConfig, dict[str, Any], list[str]]] = [
    ("the defaults admit a plain instance", BASE, {}, []),
    ("privileged: refused by default", spec(privileged=True), {}, ["privileged"]),
    ("privileged: allowed when the host says so", spec(privileged=True), {"privileged": True}, []),
    # images
    ("any image by default", spec(image="evil.example/x:1"), {}, []),
    (
        "an image outside the list",
        spec(image="evil.example/x:1"),
        {"images": ["nvcr.io/nvidia/*"]},
        ["image"],
    ),
    (
        "an image inside the list",
        spec(image="nvcr.io/nvidia/deepstream:7.0"),
        {"images": ["nvcr.io/nvidia/*"]},
        [],
    ),
    (
        "Docker Hub short names match their full form",
        spec(image="busybox"),
        {"images": ["docker.io/library/busybox:*"]},
        [],
    ),
    (
        "a digest allow-list",
        spec(image="r.local/ds@sha256:" + "a" * 64),
        {"images": ["*@sha256:" + "a" * 64]},
        [],
    ),
    (
        "another digest",
        spec(image="r.local/ds@sha256:" + "b" * 64),
        {"images": ["*@sha256:" + "a" * 64]},
        ["image"],
    ),
    (
        "require_digest: a tag is refused",
        spec(image="r.local/ds:1"),
        {"require_digest": True},
        ["image-digest"],
    ),
    (
        "require_digest: a digest passes",
        spec(image="r.local/ds@sha256:" + "c" * 64),
        {"require_digest": True},
        [],
    ),
    # binds
    ("a bind when nothing is allowed", spec(mounts=bind("/data/models")), {}, ["bind-source"]),
    (
        "a bind under an allowed path",
        spec(mounts=bind("/data/models/yolo")),
        {"bind_sources": ["/data/models"]},
        [],
    ),
    ("the allowed path itself", spec(mounts=bind("/data/models")), {"bind_sources": ["/data/models/"]}, []),
    (
        "a sibling with the same prefix",
        spec(mounts=bind("/data/models-x")),
        {"bind_sources": ["/data/models"]},
        ["bind-source"],
    ),
    (
        "dot-dot out of an allowed path",
        spec(mounts=bind("/data/models/../../etc")),
        {"bind_sources": ["/data/models"]},
        ["bind-source"],
    ),
    ("a relative source", spec(mounts=bind("data/models")), {"bind_sources": ["/"]}, ["bind-source"]),
    ("/ is never mounted, even when allowed", spec(mounts=bind("/")), {"bind_sources": ["/"]}, ["host-root"]),
    ("//// is /", spec(mounts=bind("////")), {"bind_sources": ["/"]}, ["host-root"]),
    (
        "docker.sock never",
        spec(mounts=bind("/var/run/docker.sock")),
        {"bind_sources": ["/"]},
        ["engine-socket"],
    ),
    (
        "a docker.sock anywhere",
        spec(mounts=bind("/srv/x/docker.sock")),
        {"bind_sources": ["/srv"]},
        ["engine-socket"],
    ),
    ("a directory holding the socket", spec(mounts=bind("/run")), {"bind_sources": ["/"]}, ["engine-socket"]),
    (
        "containerd's state",
        spec(mounts=bind("/var/lib/containerd/io")),
        {"bind_sources": ["/var"]},
        ["engine-socket"],
    ),
    (
        "the agent's state dir",
        spec(mounts=bind(STATE + "/secrets")),
        {"bind_sources": ["/srv"]},
        ["state-dir"],
    ),
    (
        "a directory above the state dir",
        spec(mounts=bind("/srv/dsfleet")),
        {"bind_sources": ["/srv"]},
        ["state-dir"],
    ),
    (
        "named volumes are the host's own",
        spec(mounts=(*BASE.container.mounts, MountSpec(type="volume", source="models", target="/m"))),
        {},
        [],
    ),
    (
        "a volume whose source is a path",
        spec(mounts=(*BASE.container.mounts, MountSpec(type="volume", source="/etc", target="/m"))),
        {},
        ["volume-source"],
    ),
    # devices
    (
        "a device by default",
        spec(devices=(DeviceSpec(pathOnHost="/dev/video0", pathInContainer="/dev/video0"),)),
        {},
        ["device"],
    ),
    (
        "a listed device",
        spec(devices=(DeviceSpec(pathOnHost="/dev/video0", pathInContainer="/dev/video0"),)),
        {"devices": ["/dev/video*"]},
        [],
    ),
    (
        "a device out of the glob",
        spec(devices=(DeviceSpec(pathOnHost="/dev/video0/../sda", pathInContainer="/x"),)),
        {"devices": ["/dev/video*"]},
        ["device"],
    ),
    (
        "a device with a colon",
        spec(devices=(DeviceSpec(pathOnHost="/dev/video0:/dev/sda", pathInContainer="/x"),)),
        {"devices": ["/dev/video*"]},
        ["device"],
    ),
    # security options
    ("no-new-privileges", spec(securityOpt=("no-new-privileges:true",)), {}, []),
    ("an AppArmor profile", spec(securityOpt=("apparmor=ds-profile",)), {}, []),
    ("seccomp unconfined", spec(securityOpt=("seccomp=unconfined",)), {}, ["security-opt"]),
    (
        "apparmor unconfined (the glob does not admit it)",
        spec(securityOpt=("apparmor=unconfined",)),
        {},
        ["security-opt"],
    ),
    ("label disable", spec(securityOpt=("label:disable",)), {}, ["security-opt"]),
    (
        "unconfined, listed word for word",
        spec(securityOpt=("seccomp=unconfined",)),
        {"security_opt": ["seccomp=unconfined"]},
        [],
    ),
    (
        "a custom seccomp profile",
        spec(securityOpt=('seccomp={"defaultAction":"SCMP_ACT_ALLOW"}',)),
        {},
        ["security-opt"],
    ),
    (
        "a glob never admits seccomp",
        spec(securityOpt=("seccomp=unconfined",)),
        {"security_opt": ["*"]},
        ["security-opt"],
    ),
    # network and IPC
    ("host network by default", spec(networkMode="host"), {}, []),
    (
        "host network when the host forbids it",
        spec(networkMode="host"),
        {"network_modes": ["bridge", "none"]},
        ["network-mode"],
    ),
    ("another container's network", spec(networkMode="container:abc"), {}, ["network-mode"]),
    ("host IPC", spec(ipc="host"), {}, ["ipc-mode"]),
    ("host IPC when allowed", spec(ipc="host"), {"ipc_modes": ["host"]}, []),
    ("private IPC", spec(ipc="private"), {}, []),
    # secrets
    ("a secret env variable", spec(envSecrets={"DB_PASSWORD": EnvSecret(secretRef="db")}), {}, []),
    (
        "a secret env variable that is a path",
        spec(envSecrets={"../x": EnvSecret(secretRef="db")}),
        {},
        ["secret-env"],
    ),
    (
        "X and X_FILE",
        spec(env={"DB_PASSWORD_FILE": "/x"}, envSecrets={"DB_PASSWORD": EnvSecret(secretRef="db")}),
        {},
        ["secret-env"],
    ),
    (
        "a placeholder in a plain env value",
        spec(env={"URL": "rtsp://${secret:gate}@h/x"}),
        {},
        ["secret-scope"],
    ),
    (
        "a mount over the secret env files",
        spec(
            envSecrets={"DB_PASSWORD": EnvSecret(secretRef="db")},
            mounts=(*BASE.container.mounts, MountSpec(type="volume", source="s", target="/run/secrets/")),
        ),
        {},
        ["secret-env"],
    ),
    (
        "/run/secrets is free without secret env",
        spec(mounts=(*BASE.container.mounts, MountSpec(type="volume", source="s", target="/run/secrets"))),
        {},
        [],
    ),
    (
        "several rules at once",
        spec(privileged=True, ipc="host", mounts=bind("/")),
        {},
        ["privileged", "host-root", "ipc-mode"],
    ),
]


@pytest.mark.parametrize(
    ("instance", "settings", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_admission_rules(instance: InstanceConfig, settings: dict[str, Any], expected: list[str]) -> None:
    assert rules(instance, **settings) == expected


def test_symlinks_are_followed_as_the_host_resolves_them() -> None:
    allowed = {"bind_sources": ["/data/models"]}
    assert rules(spec(mounts=bind("/data/models/link")), {"/data/models/link": "/"}, **allowed) == [
        "host-root"
    ]
    escaped = rules(spec(mounts=bind("/data/models/x")), {"/data/models/x": "/etc"}, **allowed)
    assert escaped == ["bind-source"]
    into_state = rules(spec(mounts=bind("/data/models/s")), {"/data/models/s": STATE}, **allowed)
    assert into_state == ["state-dir"]
    # an allowed path that is itself a link: its target is allowed as well
    moved = {"/data/models": "/mnt/models", "/data/models/yolo": "/mnt/models/yolo"}
    assert rules(spec(mounts=bind("/data/models/yolo")), moved, **allowed) == []


def test_files_may_carry_placeholders_of_the_secrets_they_declare_only() -> None:
    with_camera = BASE.model_copy(update={"cameras": ("gate-1",), "cameraSecrets": {"gate-1": "gate"}})
    declared = RenderedFile(path="app.txt", content="uri=rtsp://${secret:gate}@h/x", secrets=("gate",))
    assert rules(with_camera.model_copy(update={"files": (declared,)})) == []
    other = RenderedFile(
        path="x.txt", content="a=${secret:gate}\nb=${secret:vault:password}", secrets=("gate",)
    )
    denied = admit(with_camera.model_copy(update={"files": (other,)}), AdmissionSettings(), state_dir=STATE)
    assert denied == (
        Denial("secret-scope", "file x.txt: a placeholder of secret 'vault' it does not declare"),
    )


def test_camera_credentials_are_those_of_the_instances_own_cameras() -> None:
    own = inst(camera_secrets={"gate-1": "gate"})
    assert rules(own) == []
    # a URL's user-info placeholder whose ref no camera of the instance names, though the file declares it
    (file,) = own.files
    vault = file.model_copy(
        update={"content": file.content + "\nuri=rtsp://${secret:vault}@h/x", "secrets": ("gate", "vault")}
    )
    found = admit(own.model_copy(update={"files": (vault,)}), AdmissionSettings(), state_dir=STATE)
    assert [(d.rule, "'vault'" in d.message) for d in found] == [("secret-scope", True)]
    # a connection string's field placeholder is the file's own declaration
    hub = file.model_copy(
        update={"content": file.content + "\nconn=${secret:hub:password}", "secrets": ("gate", "hub")}
    )
    assert rules(own.model_copy(update={"files": (hub,)})) == []
    # credentials said to be of a camera the instance does not have
    stranger = own.model_copy(update={"cameraSecrets": {"gate-1": "gate", "lobby-1": "lobby"}})
    found = admit(stranger, AdmissionSettings(), state_dir=STATE)
    assert [d.rule for d in found] == ["secret-scope"] and "lobby-1" in found[0].message
    no_cameras = own.model_copy(update={"cameras": ()})
    assert rules(no_cameras) == ["secret-scope", "secret-scope"]


@pytest.mark.parametrize(
    ("image", "full"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("team/app:1", "docker.io/team/app:1"),
        ("nvcr.io/nvidia/deepstream:7.0", "nvcr.io/nvidia/deepstream:7.0"),
        ("localhost/app", "localhost/app:latest"),
        ("registry:5000/app", "registry:5000/app:latest"),
        ("app@sha256:" + "a" * 64, "docker.io/library/app@sha256:" + "a" * 64),
    ],
)
def test_full_image_name(image: str, full: str) -> None:
    assert full_image_name(image) == full


def test_the_message_names_every_rule_broken() -> None:
    found = admit(spec(privileged=True, ipc="host"), AdmissionSettings(), state_dir=STATE)
    assert denial_message(found) == (
        "refused by this host's admission: privileged: a privileged container ([agent.admission] privileged); "
        "ipc-mode: IPC mode host ([agent.admission] ipc_modes)"
    )


def test_admission_settings_from_the_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        "[agent]\nnode_name = 'n1'\n\n[agent.admission]\nimages = ['nvcr.io/nvidia/deepstream:*']\n"
        "bind_sources = ['/data/models']\ndevices = ['/dev/video*']\nnetwork_modes = ['bridge']\n"
    )
    admission = load_settings(path, environ={}).agent.admission
    assert admission.images == ("nvcr.io/nvidia/deepstream:*",) and admission.bind_sources == (
        "/data/models",
    )
    assert admission.devices == ("/dev/video*",) and admission.network_modes == ("bridge",)
    assert not admission.privileged and admission.ipc_modes == ("private", "shareable", "none")
    env = {"DSFLEET_AGENT__ADMISSION__PRIVILEGED": "true"}
    assert load_settings(path, environ=env).agent.admission.privileged
    path.write_text("[agent.admission]\nimages = ['*']\nbind_source = ['/data']\n")
    with pytest.raises(
        SettingsError, match=r"settings.toml:3:1: error: \[agent\] admission.bind_source: unknown key"
    ):
        load_settings(path, environ={})
    path.write_text("[agent.admission]\nbind_sources = ['data']\n")
    with pytest.raises(SettingsError, match="'data' is not an absolute path"):
        load_settings(path, environ={})


def test_a_refused_config_keeps_the_last_good_container_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = fake_agent(tmp_path)
    r.bus.push_config(NODE, config(1, inst()))
    r.settle()
    cid = r.running_one()
    good = (tmp_path / "instances" / "a" / "a.txt").read_text()
    caplog.set_level(logging.INFO, logger="dsfleet.agent")
    bad = inst(files="v2", privileged=True)
    r.bus.push_config(NODE, config(2, bad))
    mark = len(r.runtime.calls)
    for _ in range(5):
        r.agent._next_heartbeat = 0.0
        r.agent.step()
    s = r.status()
    (cond,) = s.conditions
    assert cond.reason == "AdmissionDenied" and "privileged" in cond.message
    assert cond.message.endswith("the instance keeps running its last good config")
    assert s.state.value == "running" and s.configHash == inst().configHash
    assert r.running_one() == cid and (tmp_path / "instances" / "a" / "a.txt").read_text() == good
    assert not [c for c in r.calls_since(mark) if not c.startswith(("list", "logs", "info", "wait"))]
    warnings = [m for m in caplog.messages if "condition=AdmissionDenied" in m]
    assert len(warnings) == 1  # once per change, not per tick
    assert r.agent.observed_generation == 1
    r.bus.push_config(NODE, config(3, inst(files="v3")))
    r.settle()
    assert r.status().conditions == () and r.agent.observed_generation == 3
    assert "v3" in (tmp_path / "instances" / "a" / "a.txt").read_text()
    assert any("condition=AdmissionDenied cleared" in m for m in caplog.messages)


def test_a_host_that_allows_more_admits_the_same_config(tmp_path: Path) -> None:
    bad = inst(privileged=True)
    r = fake_agent(tmp_path, admission=AdmissionSettings(privileged=True))
    r.bus.push_config(NODE, config(1, bad))
    r.settle()
    cid = r.running_one()
    assert r.status().conditions == () and r.agent.observed_generation == 1
    assert r.runtime.requests[cid].privileged
