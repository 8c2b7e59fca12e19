"""Golden cases of the agent's container plan: tests/golden/agent-plan/<case>.json, one case a file, picked up
automatically (``dsfleet.agent.containers.compute_plan``: desired instances + observed containers → actions).

A case file::

    {
      "description": "what the case shows",
      "node": "gpu-01",                       # optional; the agent's node
      "selfHeal": true, "prune": true,        # optional
      "holding": ["cam"],                     # optional: instances whose retry is not due
      "desired":  [{"name": "cam", "image": "ds:7.0", "files": "v1", "env": {}, "paused": false,
                    "restartPolicy": "unless-stopped", "selfHeal": true,
                    "strategy": "CreateBeforeStop", "healthCheck": false}],   # all but name optional
      "observed": [{"id": "c1", "instance": "cam", "state": "running",
                    "from": {"image": "ds:6.4"},      # the instance it was created from: desired + these changes
                    "node": "gpu-01", "name": "dsfleet-cam", "exitCode": 137, "restartPolicy": "no",
                    "restartCount": 0, "health": "healthy", "next": true},   # next: named dsfleet-cam.next
                   {"id": "x1", "name": "dsfleet-cam", "state": "running", "labels": {"any": "label"}}],
                                              # with "labels" and no "instance": a container as it is
      "volumes":  [{"instance": "cam", "from": {"image": "ds:6.4"}, "legacy": false}],
                                              # named as the agent names it (legacy: <instance>_engine)
      "files":    {"cam": "in-sync" | "differ" | "missing" | {"writes": [], "removals": [], "existing": [],
                                                              "error": null}},   # default in-sync
      "applied":  {"cam": {"container": "c1", "from": {"files": "v1"}, "generation": 1,
                           "previousImage": "ds:6.4", "paused": false}},
      "expected": [{"kind": "restart", "instance": "cam", "container": "c1", "next": "n1",
                    "volume": "cam@ds:6.4", "reason": "files changed", "start": false,
                    "condition": "StartFailed", "heals": ["file-edited"]}],
      "drift":    [{"instance": "cam", "kind": "file-edited"}],     # optional, default none
      "findings": [{"instance": "cam", "kind": "clash"}],          # optional, default none
      "waiting":  ["cam"]                                          # optional, default none
    }

An expected action lists ``container``/``next`` when the action names them, ``volume`` (as ``<instance>@<image>``)
for a volume removal, ``start`` only when false, ``condition`` and ``heals`` only when not empty. The instance
behind every ``from`` is the desired one of that name (or a default one, for an instance no longer desired) with
the given fields changed, so hashes never appear in the files. ``UPDATE_GOLDEN=1`` rewrites ``expected``,
``drift``, ``findings`` and ``waiting`` from the plan: review the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from dsfleet.agent.containers import (
    ContainerAction,
    FileState,
    ObservedContainer,
    ObservedVolume,
    compute_plan,
    container_labels,
    container_name,
    engine_volume_name,
    next_name,
    volume_labels,
)
from dsfleet.agent.drift import Applied
from dsfleet.schemas.labels import instance_labels
from dsfleet.schemas.nodeconfigs import (
    CONFIGS_DIR,
    ContainerSpec,
    HealthCheck,
    InstanceConfig,
    MountSpec,
    RenderedFile,
    RestartPolicySpec,
    build_instance,
)

CASES_DIR = Path(__file__).resolve().parents[1] / "golden" / "agent-plan"
CASES = sorted(CASES_DIR.glob("*.json"))
APP = "app.txt"
INSTANCE_KEYS = {
    "name",
    "image",
    "files",
    "env",
    "paused",
    "restartPolicy",
    "selfHeal",
    "strategy",
    "healthCheck",
}
CASE_KEYS = {
    "description",
    "node",
    "selfHeal",
    "prune",
    "holding",
    "waiting",
    "desired",
    "observed",
    "volumes",
    "files",
    "applied",
    "expected",
    "drift",
    "findings",
}


def build(desc: Mapping[str, Any]) -> InstanceConfig:
    unknown = set(desc) - INSTANCE_KEYS
    assert not unknown, f"unknown instance fields {sorted(unknown)}"
    name = desc["name"]
    spec = ContainerSpec(
        image=desc.get("image", "ds:7.0"),
        command=("deepstream-app", "-c", f"{CONFIGS_DIR}/{APP}"),
        env=dict(desc.get("env", {})),
        mounts=(
            MountSpec(type="configs", target=CONFIGS_DIR),
            MountSpec(type="volume", source=f"{name}_engine", target="/workspace/build", readOnly=False),
        ),
        engineVolume=f"{name}_engine",
        labels=instance_labels(name),
        restartPolicy=RestartPolicySpec(name=desc.get("restartPolicy", "unless-stopped")),
        healthCheck=HealthCheck(test=("CMD", "true")) if desc.get("healthCheck") else None,
    )
    return build_instance(
        name,
        "deepstream-app",
        bool(desc.get("paused", False)),
        (),
        spec,
        (RenderedFile(path=APP, content=desc.get("files", "v1")),),
        self_heal=bool(desc.get("selfHeal", True)),
        strategy=desc.get("strategy", "CreateBeforeStop"),
    )


class Case:
    def __init__(self, data: Mapping[str, Any]) -> None:
        unknown = set(data) - CASE_KEYS
        assert not unknown, f"unknown case fields {sorted(unknown)}"
        assert data.get("description"), "a case says what it shows"
        self.data = data
        self.node: str = data.get("node", "gpu-01")
        self.descs = {d["name"]: d for d in data.get("desired", [])}
        self.desired = [build(d) for d in data.get("desired", [])]
        self.volume_names: dict[str, str] = {}
        """Volume name → ``<instance>@<image>``, as expected actions spell it."""

    def made_from(self, instance: str, changes: Mapping[str, Any] | None) -> InstanceConfig:
        """The instance a container (or a record) was made from: the desired one with ``changes``."""
        base = self.descs.get(instance, {"name": instance})
        return build({**base, **(changes or {}), "name": instance})

    def container(self, obs: Mapping[str, Any]) -> ObservedContainer:
        if "labels" in obs:
            assert "instance" not in obs and "from" not in obs, "literal labels or an instance, not both"
            labels = dict(obs["labels"])
            name = obs["name"]
            policy = obs.get("restartPolicy", "unless-stopped")
            image = ""
        else:
            inst = self.made_from(obs["instance"], obs.get("from"))
            labels = container_labels(inst, obs.get("node", self.node), obs.get("generation", 1))
            default = next_name(inst.name) if obs.get("next") else container_name(inst.name)
            name = obs.get("name", default)
            policy = obs.get("restartPolicy", inst.container.restartPolicy.name)
            image = inst.container.image
        return ObservedContainer(
            id=obs["id"],
            name=name,
            labels=labels,
            state=obs["state"],
            image=image,
            restart_count=obs.get("restartCount", 0),
            exit_code=obs.get("exitCode"),
            restart_policy=policy,
            health=obs.get("health"),
        )

    def volume(self, vol: Mapping[str, Any]) -> ObservedVolume:
        if "labels" in vol:
            return ObservedVolume(vol["name"], dict(vol["labels"]))
        inst = self.made_from(vol["instance"], vol.get("from"))
        name = inst.container.engineVolume if vol.get("legacy") else engine_volume_name(inst)
        self.volume_names[name] = f"{inst.name}@{inst.container.image}"
        return ObservedVolume(name, volume_labels(inst, self.node))

    def file_state(self, value: str | Mapping[str, Any]) -> FileState:
        if value == "in-sync":
            return FileState(existing=(APP,))
        if value == "differ":
            return FileState(writes=(APP,), existing=(APP,))
        if value == "missing":
            return FileState(writes=(APP,))
        assert isinstance(value, Mapping), f"files: {value!r}"
        return FileState(
            writes=tuple(value.get("writes", ())),
            removals=tuple(value.get("removals", ())),
            existing=tuple(value.get("existing", ())),
            error=value.get("error"),
        )

    def applied(self) -> dict[str, Applied]:
        result = {}
        for instance, record in self.data.get("applied", {}).items():
            inst = self.made_from(instance, record.get("from"))
            result[instance] = Applied(
                record["container"],
                inst.specHash,
                inst.filesHash,
                record.get("generation", 1),
                record.get("previousImage"),
                paused=record.get("paused", False),
            )
        return result


def action_row(a: ContainerAction, volume_names: Mapping[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": str(a.kind), "instance": a.instance}
    if a.container_id is not None:
        row["container"] = a.container_id
    if a.next_id is not None:
        row["next"] = a.next_id
    if a.volume is not None:
        row["volume"] = volume_names.get(a.volume, a.volume)
    row["reason"] = a.reason
    if not a.start:
        row["start"] = False
    if a.condition:
        row["condition"] = a.condition
    if a.heals:
        row["heals"] = [str(k) for k in a.heals]
    return row


def expected_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The expected action in :func:`action_row`'s shape (its keys in that order)."""
    order = ["kind", "instance", "container", "next", "volume", "reason", "start", "condition", "heals"]
    unknown = set(row) - set(order)
    assert not unknown, f"unknown action fields {sorted(unknown)}"
    return {k: row[k] for k in order if k in row}


def dump_case(data: Mapping[str, Any]) -> str:
    """A case as the files are written: one key a line, one list item or mapping entry a line."""

    def one(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False)

    entries = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            inner = ",\n".join(f"    {one(x)}" for x in value)
            entries.append(f"  {one(key)}: [\n{inner}\n  ]")
        elif isinstance(value, dict) and value:
            inner = ",\n".join(f"    {one(k)}: {one(v)}" for k, v in value.items())
            entries.append(f"  {one(key)}: {{\n{inner}\n  }}")
        else:
            entries.append(f"  {one(key)}: {one(value)}")
    return "{\n" + ",\n".join(entries) + "\n}\n"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_agent_plan_golden(path: Path) -> None:
    case = Case(json.loads(path.read_text()))
    data = case.data
    observed = [case.container(o) for o in data.get("observed", [])]
    files = {i.name: FileState(existing=(APP,)) for i in case.desired}
    files.update({name: case.file_state(v) for name, v in data.get("files", {}).items()})
    plan = compute_plan(
        case.node,
        case.desired,
        observed,
        files,
        case.applied(),
        [case.volume(v) for v in data.get("volumes", [])],
        self_heal=data.get("selfHeal", True),
        prune=data.get("prune", True),
        holding=set(data.get("holding", [])),
    )
    actions = [action_row(a, case.volume_names) for a in plan.actions]
    drift = [{"instance": d.instance, "kind": str(d.kind)} for d in plan.drift]
    findings = [{"instance": f.instance, "kind": f.kind} for f in plan.findings]
    waiting = list(plan.waiting)
    if os.environ.get("UPDATE_GOLDEN"):
        updated = {k: v for k, v in data.items() if k not in ("expected", "drift", "findings", "waiting")}
        updated["expected"] = actions
        updated.update(
            {k: v for k, v in (("drift", drift), ("findings", findings), ("waiting", waiting)) if v}
        )
        path.write_text(dump_case(updated))
    assert actions == [expected_row(r) for r in data["expected"]]
    assert drift == data.get("drift", [])
    assert findings == data.get("findings", [])
    assert waiting == data.get("waiting", [])


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 12, CASES_DIR


def test_every_intermediate_state_of_a_replacement_has_a_case() -> None:
    """An agent may die at any step of a replacement: each state it can leave has a case saying how the next
    tick finishes or rolls back."""
    switch = {p.stem for p in CASES if p.stem.startswith("switch-")}
    assert len(switch) >= 8, sorted(switch)
