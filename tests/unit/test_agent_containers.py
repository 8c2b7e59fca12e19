"""The container plan as a table of (desired, observed) cases; applying a plan then planning again is empty."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dsfleet.agent.containerrequests import MountRequest, container_request
from dsfleet.agent.containers import (
    ActionKind,
    FileState,
    ObservedContainer,
    ObservedVolume,
    compute_plan,
    container_labels,
    engine_volume_for,
    engine_volume_name,
    next_name,
    record_applied,
    volume_labels,
)
from dsfleet.agent.drift import Applied, DriftKind
from dsfleet.schemas.labels import LABEL_GENERATION, LABEL_SPEC_HASH, instance_labels
from dsfleet.schemas.nodeconfigs import (
    CONFIGS_DIR,
    ContainerSpec,
    EnvSecret,
    InstanceConfig,
    MountSpec,
    RenderedFile,
    RestartPolicySpec,
    build_instance,
)

NODE = "gpu-01"


def inst(
    name: str = "cam",
    image: str = "ds:7.0",
    files: str = "v1",
    paused: bool = False,
    strategy: str = "CreateBeforeStop",
) -> InstanceConfig:
    spec = ContainerSpec(
        image=image,
        command=("deepstream-app", "-c", f"{CONFIGS_DIR}/app.txt"),
        env={"A": "1"},
        mounts=(
            MountSpec(type="configs", target=CONFIGS_DIR),
            MountSpec(type="volume", source=f"{name}_engine", target="/workspace/build", readOnly=False),
        ),
        engineVolume=f"{name}_engine",
        labels=instance_labels(name),
        restartPolicy=RestartPolicySpec(name="unless-stopped"),
        gpus=("1",),
    )
    return build_instance(
        name,
        "deepstream-app",
        paused,
        (),
        spec,
        (RenderedFile(path="app.txt", content=files),),
        strategy=strategy,  # type: ignore[arg-type]
    )


def running(i: InstanceConfig, cid: str = "c1", state: str = "running", **kw: object) -> ObservedContainer:
    labels = kw.pop("labels", None) or container_labels(i, NODE, 1)
    return ObservedContainer(
        id=cid,
        name=f"dsfleet-{i.name}",
        labels=labels,  # type: ignore[arg-type]
        state=state,
        restart_policy="unless-stopped",
        **kw,  # type: ignore[arg-type]
    )


def applied(i: InstanceConfig, cid: str = "c1") -> Applied:
    return Applied(cid, i.specHash, i.filesHash, 1)


SYNC = FileState(existing=("app.txt",))
CHANGED = FileState(writes=("app.txt",), existing=("app.txt",))
GONE = FileState(writes=("app.txt",))
A = inst()
A_FILES2 = inst(files="v2")
A_IMAGE2 = inst(image="ds:7.1")
A_PAUSED = inst(paused=True)

# (id, desired, observed, files, applied, self_heal, expected kinds, expected drift kinds)
CASES = [
    ("nothing", [], [], {}, {}, True, [], []),
    ("create missing", [A], [], {}, {}, True, [ActionKind.CREATE], []),
    ("adopt as it is", [A], [running(A)], {"cam": SYNC}, {}, True, [], []),
    ("in sync", [A], [running(A)], {"cam": SYNC}, {"cam": applied(A)}, True, [], []),
    (
        "spec change",
        [A_IMAGE2],
        [running(A)],
        {"cam": SYNC},
        {"cam": applied(A)},
        True,
        [ActionKind.REPLACE],
        [],
    ),
    (
        "files change",
        [A_FILES2],
        [running(A_FILES2)],
        {"cam": CHANGED},
        {"cam": applied(A)},
        True,
        [ActionKind.RESTART],
        [],
    ),
    (
        "files written, restart pending",
        [A_FILES2],
        [running(A_FILES2)],
        {"cam": SYNC},
        {"cam": applied(A)},
        True,
        [ActionKind.RESTART],
        [],
    ),
    (
        "paused: stop",
        [A_PAUSED],
        [running(A_PAUSED)],
        {"cam": SYNC},
        {"cam": applied(A_PAUSED)},
        True,
        [ActionKind.STOP],
        [],
    ),
    (
        "paused and stopped",
        [A_PAUSED],
        [running(A_PAUSED, state="exited", exit_code=143)],
        {"cam": SYNC},
        {"cam": applied(A_PAUSED)},
        True,
        [],
        [],
    ),
    (
        "paused, files change: write only",
        [inst(files="v2", paused=True)],
        [running(A_PAUSED, state="exited", exit_code=0)],
        {"cam": CHANGED},
        {"cam": applied(A_PAUSED)},
        True,
        [ActionKind.WRITE_FILES],
        [],
    ),
    (
        "created: start",
        [A],
        [running(A, state="created")],
        {"cam": SYNC},
        {"cam": applied(A)},
        True,
        [ActionKind.START],
        [],
    ),
    ("unwanted: remove", [], [running(A)], {}, {"cam": applied(A)}, True, [ActionKind.REMOVE], []),
    (
        "stopped by hand: start",
        [A],
        [running(A, state="exited", exit_code=137)],
        {"cam": SYNC},
        {"cam": applied(A)},
        True,
        [ActionKind.START],
        [DriftKind.STOPPED],
    ),
    (
        "stopped, no self-heal",
        [A],
        [running(A, state="exited", exit_code=137)],
        {"cam": SYNC},
        {"cam": applied(A)},
        False,
        [],
        [DriftKind.STOPPED],
    ),
    (
        "removed: create",
        [A],
        [],
        {"cam": SYNC},
        {"cam": applied(A)},
        True,
        [ActionKind.CREATE],
        [DriftKind.REMOVED],
    ),
    ("removed, no self-heal", [A], [], {"cam": SYNC}, {"cam": applied(A)}, False, [], [DriftKind.REMOVED]),
    (
        "relabelled: replace",
        [A],
        [running(A, cid="c9", labels={**container_labels(A, NODE, 1), LABEL_SPEC_HASH: "x"})],
        {"cam": SYNC},
        {"cam": applied(A)},
        True,
        [ActionKind.REPLACE],
        [DriftKind.RELABELLED],
    ),
    (
        "file edited: rewrite + restart",
        [A],
        [running(A)],
        {"cam": CHANGED},
        {"cam": applied(A)},
        True,
        [ActionKind.RESTART],
        [DriftKind.FILE_EDITED],
    ),
    (
        "file missing",
        [A],
        [running(A)],
        {"cam": GONE},
        {"cam": applied(A)},
        True,
        [ActionKind.RESTART],
        [DriftKind.FILE_MISSING],
    ),
    (
        "file edited, no self-heal",
        [A],
        [running(A)],
        {"cam": CHANGED},
        {"cam": applied(A)},
        False,
        [],
        [DriftKind.FILE_EDITED],
    ),
    (
        "duplicate removed",
        [A],
        [running(A), replace(running(A, cid="c2"), name="other")],
        {"cam": SYNC},
        {"cam": applied(A)},
        True,
        [ActionKind.REMOVE],
        [],
    ),
    (
        "name clash with unmanaged",
        [A],
        [ObservedContainer("u1", "dsfleet-cam", {}, "running")],
        {},
        {},
        True,
        [],
        [],
    ),
    (
        "other node's container untouched",
        [],
        [running(A, labels={**container_labels(A, "gpu-02", 1)})],
        {},
        {},
        True,
        [],
        [],
    ),
    ("secret missing: nothing", [A], [], {"cam": FileState(error="secret 'x' not found")}, {}, True, [], []),
]


@pytest.mark.parametrize(
    ("desired", "observed", "files", "applied_", "heal", "kinds", "drift"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan_table(desired, observed, files, applied_, heal, kinds, drift) -> None:  # type: ignore[no-untyped-def]
    plan = compute_plan(NODE, desired, observed, files, applied_, self_heal=heal)
    assert [a.kind for a in plan.actions] == kinds
    assert [d.kind for d in plan.drift] == drift


def test_a_clash_is_a_finding_and_never_an_action() -> None:
    plan = compute_plan(NODE, [A], [ObservedContainer("u1", "dsfleet-cam", {}, "running")], {}, {})
    assert not plan.actions
    assert [f.kind for f in plan.findings] == ["clash"]


@pytest.mark.parametrize(
    ("strategy", "paused", "kind", "start"),
    [
        ("CreateBeforeStop", False, ActionKind.REPLACE, True),
        ("StartBeforeStop", False, ActionKind.START_NEXT, True),
        ("Recreate", False, ActionKind.RECREATE, True),
        ("CreateBeforeStop", True, ActionKind.REPLACE, False),
        ("StartBeforeStop", True, ActionKind.REPLACE, False),
    ],
)
def test_a_spec_change_is_replaced_by_the_instance_strategy(
    strategy: str, paused: bool, kind: ActionKind, start: bool
) -> None:
    desired = inst(image="ds:7.1", paused=paused, strategy=strategy)
    plan = compute_plan(NODE, [desired], [running(A)], {"cam": SYNC}, {"cam": applied(A)})
    assert [(a.kind, a.container_id, a.start) for a in plan.actions] == [(kind, "c1", start)]


def test_a_held_instance_gets_no_forward_action_and_waits() -> None:
    plan = compute_plan(NODE, [A_IMAGE2], [running(A)], {"cam": SYNC}, {"cam": applied(A)}, holding={"cam"})
    assert not plan.actions and plan.waiting == ("cam",)
    # a rollback is never held: it brings the old container back
    nxt = replace(running(A_IMAGE2, cid="n1", state="exited", exit_code=1), name=next_name("cam"))
    plan = compute_plan(
        NODE, [A_IMAGE2], [running(A), nxt], {"cam": SYNC}, {"cam": applied(A)}, holding={"cam"}
    )
    assert [(a.kind, a.next_id) for a in plan.actions] == [(ActionKind.ROLLBACK, "n1")]


def test_engine_volumes_are_one_per_image_and_an_older_agents_volume_is_used() -> None:
    assert engine_volume_name(A) != engine_volume_name(A_IMAGE2)
    assert engine_volume_name(A).startswith("cam_engine-")
    assert engine_volume_for(A, [], NODE) == engine_volume_name(A)
    legacy = ObservedVolume("cam_engine", volume_labels(A, NODE))
    assert engine_volume_for(A, [legacy], NODE) == "cam_engine"  # made for this image by an older agent
    assert engine_volume_for(A_IMAGE2, [legacy], NODE) == engine_volume_name(A_IMAGE2)
    foreign = ObservedVolume(engine_volume_name(A), {})
    assert engine_volume_for(A, [foreign], NODE) == engine_volume_name(A)


def test_only_the_current_and_the_previous_images_volumes_are_kept() -> None:
    a3 = inst(image="ds:7.2")
    vols = [ObservedVolume(engine_volume_name(i), volume_labels(i, NODE)) for i in (A, A_IMAGE2, a3)]
    record = Applied("c3", a3.specHash, a3.filesHash, 3, previous_image="ds:7.1")
    plan = compute_plan(NODE, [a3], [running(a3, cid="c3")], {"cam": SYNC}, {"cam": record}, vols)
    assert [(a.kind, a.volume) for a in plan.actions] == [(ActionKind.REMOVE_VOLUME, engine_volume_name(A))]
    # nothing removed while the instance still has work to do
    plan = compute_plan(NODE, [a3], [running(A_IMAGE2, cid="c2")], {"cam": SYNC}, {"cam": record}, vols)
    assert [a.kind for a in plan.actions] == [ActionKind.REPLACE]
    # another node's or an unmanaged volume is never removed
    other = ObservedVolume("x", {**volume_labels(A, NODE), "io.dsfleet.node": "gpu-02"})
    plan = compute_plan(NODE, [a3], [running(a3, cid="c3")], {"cam": SYNC}, {"cam": record}, [other])
    assert not plan.actions


def _apply(
    desired: list[InstanceConfig], observed: list[ObservedContainer], plan_kinds: object
) -> list[ObservedContainer]:
    """What Docker would show after the plan: every desired instance runs a container of its spec."""
    return [
        running(
            i,
            cid=f"n-{i.name}",
            state="exited" if i.paused else "running",
            exit_code=143 if i.paused else None,
        )
        for i in desired
    ]


@pytest.mark.parametrize("desired", [[A], [A_FILES2], [A_IMAGE2], [A_PAUSED], [A, inst("two")]])
def test_plan_after_applying_is_empty(desired: list[InstanceConfig]) -> None:
    observed = [running(A)]
    plan = compute_plan(NODE, desired, observed, {}, {"cam": applied(A)})
    after = _apply(desired, observed, plan)
    files = {i.name: SYNC for i in desired}
    record = {i.name: Applied(f"n-{i.name}", i.specHash, i.filesHash, 1) for i in desired}
    assert not compute_plan(NODE, desired, after, files, record)


def test_record_adopts_a_running_container_of_the_desired_spec() -> None:
    rec = record_applied({}, [A], [running(A, cid="c7")], {"cam": SYNC}, NODE, 3)
    assert rec == {"cam": Applied("c7", A.specHash, A.filesHash, 3)}
    assert record_applied({}, [A], [running(A_IMAGE2)], {"cam": SYNC}, NODE, 3) == {}


def test_container_request_maps_the_spec() -> None:
    req = container_request(A, NODE, 4, "/state/instances/cam", None, nvidia=False)
    assert req.name == "dsfleet-cam"
    assert (
        req.mounts[0].type == "bind"
        and req.mounts[0].source == "/state/instances/cam"
        and req.mounts[0].read_only
    )
    assert req.mounts[1].type == "volume" and req.mounts[1].source == "cam_engine"
    assert req.restart_policy == {"Name": "unless-stopped"}
    assert req.gpu_ids == ()
    assert req.labels[LABEL_SPEC_HASH] == A.specHash and req.labels[LABEL_GENERATION] == "4"
    assert req.env == {"A": "1"} and len(req.mounts) == 2
    assert container_request(A, NODE, 4, "/x", None, nvidia=True).gpu_ids == ("1",)
    nxt = container_request(A, NODE, 4, "/x", None, nvidia=False, name=next_name("cam"), engine_volume="v-1")
    assert nxt.name == "dsfleet-cam.next" and nxt.mounts[1].source == "v-1"


def test_secret_env_variables_reach_the_container_as_files_named_by_x_file() -> None:
    spec = A.container.model_copy(
        update={
            "envSecrets": {"DB_PASSWORD": EnvSecret(secretRef="db"), "API_TOKEN": EnvSecret(secretRef="api")}
        }
    )
    secret = A.model_copy(update={"container": spec})
    req = container_request(secret, NODE, 4, "/state/instances/cam", "/state/envsecrets/cam", nvidia=False)
    assert req.env == {
        "A": "1",
        "API_TOKEN_FILE": "/run/secrets/API_TOKEN",
        "DB_PASSWORD_FILE": "/run/secrets/DB_PASSWORD",
    }
    assert req.mounts[-1] == MountRequest("bind", "/state/envsecrets/cam", "/run/secrets", True)
    with pytest.raises(ValueError, match="secret env variables"):
        container_request(secret, NODE, 4, "/state/instances/cam", None, nvidia=False)
