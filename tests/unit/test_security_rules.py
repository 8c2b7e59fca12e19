"""The repository's security rules (:mod:`dsfleet.policies.rules.security`): each as a table of one instance's
spec → the rules it breaks at their default severity; then the parameters, the shortcuts and relaxing them. The
golden cases ``tests/golden/validate/security-*`` show the messages and places."""

from __future__ import annotations

from typing import Any

import pytest

from dsfleet.policies.engine import evaluate
from tests.support.fleets import PROFILE, camera, fleet_of, instance, node

SECURITY_RULES = {
    "forbid-privileged",
    "host-mount-forbidden",
    "host-mount-sensitive",
    "security-opt-unconfined",
    "host-ipc",
    "host-network",
    "host-devices",
    "secret-scope",
    "env-secret-file",
}


def _found(
    spec: dict[str, Any], *extra: dict[str, Any], cameras: list[dict[str, Any]] | None = None
) -> list[str]:
    """The security findings of one instance ``a`` (no network unless ``spec`` says) as ``severity:rule``."""
    cams = cameras if cameras is not None else [camera("c1", "1")]
    a = instance("a", "n1", [c["metadata"]["name"] for c in cams], **{"networkMode": "none", **spec})
    findings = evaluate(fleet_of([node("n1"), *cams, PROFILE, a, *extra]))
    return sorted(f"{f.severity.value}:{f.rule}" for f in findings if f.rule in SECURITY_RULES)


def _bind(source: str, target: str = "/data", read_only: bool = True) -> dict[str, Any]:
    return {"mounts": [{"source": source, "target": target, "readOnly": read_only}]}


def _policy(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "dsfleet/v1", "kind": "Policy", "metadata": {"name": "p"}, "spec": spec}


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("a plain instance", {}, []),
    ("privileged", {"privileged": True}, ["error:forbid-privileged"]),
    # host paths
    ("a model directory", _bind("/data/models"), []),
    ("the host's root", _bind("/"), ["error:host-mount-forbidden"]),
    ("the root spelled //", _bind("//"), ["error:host-mount-forbidden"]),
    ("docker.sock", _bind("/var/run/docker.sock"), ["error:host-mount-forbidden"]),
    ("docker.sock through ..", _bind("/srv/../var/run/docker.sock"), ["error:host-mount-forbidden"]),
    ("a docker.sock moved elsewhere", _bind("/opt/engine/docker.sock"), ["error:host-mount-forbidden"]),
    ("a directory holding the socket", _bind("/var/run"), ["error:host-mount-forbidden"]),
    ("containerd's socket directory", _bind("/run/containerd"), ["error:host-mount-forbidden"]),
    ("Docker's state", _bind("/var/lib/docker/volumes"), ["error:host-mount-forbidden"]),
    ("a named volume is no host path", {"mounts": [{"type": "volume", "source": "run", "target": "/r"}]}, []),
    ("/etc read-only", _bind("/etc/ssl/certs"), ["warning:host-mount-sensitive"]),
    ("/proc", _bind("/proc"), ["warning:host-mount-sensitive"]),
    ("/sys", _bind("/sys/class"), ["warning:host-mount-sensitive"]),
    ("/var holds the engine's socket", _bind("/var"), ["error:host-mount-forbidden"]),
    ("another socket", _bind("/srv/app/ctl.sock"), ["warning:host-mount-sensitive"]),
    ("a sibling of /etc", _bind("/etcetera"), []),
    # security options, namespaces
    ("no-new-privileges", {"securityOpt": ["no-new-privileges:true"]}, []),
    ("seccomp unconfined", {"securityOpt": ["seccomp=unconfined"]}, ["error:security-opt-unconfined"]),
    ("apparmor unconfined", {"securityOpt": ["apparmor:unconfined"]}, ["error:security-opt-unconfined"]),
    ("labels off", {"securityOpt": ["label=disable"]}, ["error:security-opt-unconfined"]),
    (
        "no-new-privileges off",
        {"securityOpt": ["no-new-privileges=false"]},
        ["error:security-opt-unconfined"],
    ),
    ("host IPC", {"ipc": "host"}, ["warning:host-ipc"]),
    ("private IPC", {"ipc": "private"}, []),
    ("host network, said", {"networkMode": "host"}, ["warning:host-network"]),
    ("bridge network", {"networkMode": "bridge"}, []),
    # secrets
    ("a secret env variable", {"env": {"DB_PASSWORD": {"secretRef": "db"}}}, []),
    (
        "X and X_FILE",
        {"env": {"DB_PASSWORD": {"secretRef": "db"}, "DB_PASSWORD_FILE": "/etc/pw"}},
        ["error:env-secret-file"],
    ),
    (
        "a mount over the secret files",
        {"env": {"DB_PASSWORD": {"secretRef": "db"}}, **_bind("/data/s", "/run/secrets")},
        ["error:env-secret-file"],
    ),
    ("/run/secrets without secret env", _bind("/data/s", "/run/secrets"), []),
    ("a placeholder in env", {"env": {"URL": "rtsp://${secret:c1}@h/x"}}, ["error:secret-scope"]),
    (
        "a placeholder in an extra group",
        {
            "app": {
                "streammux": {"width": 1, "height": 1},
                "extraGroups": {"x": {"k": "${secret:db:password}"}},
            }
        },
        ["error:secret-scope"],
    ),
]


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_security_rules(spec: dict[str, Any], expected: list[str]) -> None:
    assert _found(spec) == expected


def test_networking_by_default_is_host_and_said_so() -> None:
    a = instance("a", "n1", ["c1"])
    (hit,) = [
        f for f in evaluate(fleet_of([node("n1"), camera("c1", "1"), PROFILE, a])) if f.rule == "host-network"
    ]
    assert "host (the default)" in hit.message and hit.severity.value == "warning"


def test_cameras_that_bring_a_host_device_are_named() -> None:
    usb = {"apiVersion": "dsfleet/v1", "kind": "Camera", "metadata": {"name": "desk"},
           "spec": {"cameraId": "1", "type": "usb", "device": "/dev/video0"}}  # fmt: skip
    assert _found({}, cameras=[usb]) == ["warning:host-devices"]


def test_a_profile_carries_no_placeholder() -> None:
    profile = {**PROFILE, "spec": {**PROFILE["spec"], "files": {"labels.txt": "car\n${secret:vault}\n"}}}
    a = instance("a", "n1", ["c1"], networkMode="none")
    found = [
        f for f in evaluate(fleet_of([node("n1"), camera("c1", "1"), profile, a])) if f.rule == "secret-scope"
    ]
    assert len(found) == 1 and "a profile names no secret" in found[0].message


def test_the_sensitive_paths_are_a_parameter() -> None:
    policy = _policy(rules={"host-mount-sensitive": {"params": {"paths": ["/data"]}}})
    assert _found(_bind("/data/models"), policy) == ["warning:host-mount-sensitive"]
    assert _found(_bind("/etc"), policy) == []
    above = _policy(rules={"host-mount-sensitive": {"params": {"paths": ["/srv/keys"]}}})
    assert _found(_bind("/srv"), above) == ["warning:host-mount-sensitive"]  # a directory above one


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (_policy(forbidPrivileged=True), ["error:forbid-privileged"]),
        (
            _policy(rules={"forbid-privileged": {"severity": "warning", "reason": "a lab"}}),
            ["warning:forbid-privileged"],
        ),
        (_policy(rules={"forbid-privileged": {"severity": "off", "reason": "a lab"}}), []),
    ],
)
def test_privileged_is_refused_unless_relaxed_with_a_reason(
    policy: dict[str, Any], expected: list[str]
) -> None:
    assert _found({"privileged": True}, policy) == expected


def test_relaxing_needs_a_reason_and_the_secret_rule_cannot_be_relaxed() -> None:
    a = instance("a", "n1", ["c1"], networkMode="none", privileged=True, env={"U": "${secret:c1}"})
    docs = [node("n1"), camera("c1", "1"), PROFILE, a]
    for policy, rule in (
        (_policy(forbidPrivileged=False), "policy-reason-required"),
        (_policy(rules={"forbid-privileged": {"severity": "off"}}), "policy-reason-required"),
        (_policy(rules={"secret-scope": {"severity": "off", "reason": "r"}}), "policy-not-relaxable"),
    ):
        assert rule in {f.rule for f in evaluate(fleet_of([*docs, policy]))}, policy


def test_the_example_fleet_states_its_host_access() -> None:
    """The example fleet validates clean: the traffic instance needs no network; the ccm instances keep the
    host's (their broker is on its loopback), relaxed by its Policy with that reason."""
    from pathlib import Path

    from dsfleet.reconciler.compiling.desired import desired_state

    got = desired_state([Path(__file__).resolve().parents[2] / "manifests"])
    assert got.configs is not None
    specs = {i.name: i.container for c in got.configs.values() for i in c.instances}
    assert specs["traffic-parking"].networkMode == "none"
    assert {specs[n].networkMode for n in ("ccm-gate", "ccm-lobby")} == {"host"}
    assert not any(s.privileged or s.ipc == "host" or s.securityOpt for s in specs.values())
    assert not [f for f in got.loaded.findings if f.rule in SECURITY_RULES]
