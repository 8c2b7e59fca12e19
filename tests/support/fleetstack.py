"""The whole loop on one machine for tests: the example fleet renamed to a unique prefix (so its containers and
nodes never meet another run's), images pointed at the stub, canary camera passwords in each agent's secret
store, keys set up as an operator would (the coordinator's signing key made up front next to the store, each agent
trusting it, each agent's own key made in its state directory and enrolled for its node), the coordinator and one
``dsfleet-agent run`` per node as subprocesses (stopped by their PID), and checks of
the invariants every fault must keep: converged to the last accepted revision, no revision lost, unmanaged
containers untouched, no secret in any log, message or table.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from dsfleet.reconciler.store import Store
from dsfleet.schemas.labels import LABEL_NODE, LABEL_SPEC_HASH
from dsfleet.schemas.wire import AgentConfig, Topic
from tests.support.dockerengine import RUN_LABEL, STUB_IMAGE
from tests.support.kafkafleet import AgentProcess, agent_args
from tests.support.keys import coordinator_key, coordinator_key_path, enroll_agent
from tests.support.livefleet import ROOT, CoordinatorProc, TopicReader, wait_for

SECRET_REFS = [f"gate-{i}" for i in range(1, 5)] + [f"lobby-{i}" for i in range(1, 5)] + ["stub-say"]
"""Secrets planted in each agent's store: the cameras' credentials, and ``stub-say``, a secret env variable of the
gate instance (``STUB_SAY``: it reaches the container as the file ``STUB_SAY_FILE`` names, and the stub prints it
once at start, as a careless app would log a credential)."""
ENV_SECRET = "  restartPolicy: OnFailure\n  env:\n    STUB_SAY: {secretRef: stub-say}\n"
ORIGINAL_IMAGE = "nvcr.io/nvidia/deepstream:7.0-triton-multiarch"
HANDOVER_TIMEOUT = "DSFLEET_COORDINATOR__HANDOVER_TIMEOUT_SECONDS"


def fleet_names(prefix: str) -> dict[str, str]:
    """Original name → this run's name (nodes and instances)."""
    return {
        "gpu-node-1": f"{prefix}-n1",
        "gpu-node-2": f"{prefix}-n2",
        "ccm-gate": f"{prefix}-gate",
        "ccm-lobby": f"{prefix}-lobby",
        "traffic-parking": f"{prefix}-parking",
    }


def write_fleet(dest: Path, prefix: str, image: str = STUB_IMAGE) -> Path:
    """A copy of ``manifests/`` with this run's names and the stub image (allowed by the fleet policy)."""
    shutil.copytree(ROOT / "manifests", dest)
    names = fleet_names(prefix)
    for path in dest.rglob("*.yaml"):
        text = path.read_text()
        for old, new in names.items():
            text = re.sub(rf"\b{re.escape(old)}\b", new, text)
        text = text.replace(ORIGINAL_IMAGE, image)
        if path.name == "ccm.yaml":  # the gate instance (the first document) gets a secret env variable
            text = text.replace("  restartPolicy: OnFailure\n", ENV_SECRET, 1)
        text = text.replace(
            "    - nvcr.io/nvidia/deepstream:7.*", f"    - nvcr.io/nvidia/deepstream:7.*\n    - {image}"
        )
        path.write_text(text)
    return dest


def plant_secrets(state_dir: Path, canary: str) -> None:
    for ref in SECRET_REFS:
        d = state_dir / "secrets" / ref
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        for name, value in (("username", "viewer"), ("password", f"{canary}-{ref}")):
            (d / name).write_text(value)
            (d / name).chmod(0o600)


@dataclass
class Stack:
    root: Path
    bootstrap: str
    prefix: str
    client: docker.DockerClient
    image: str = STUB_IMAGE
    canary: str = field(default_factory=lambda: f"canary{uuid.uuid4().hex[:12]}")
    coordinator: CoordinatorProc | None = None
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    unmanaged: str | None = None
    accepted_edits: int = 0
    baseline: dict[str, str] = field(default_factory=dict)
    """node → config hash of the fleet as written at start (:meth:`mark_baseline`, :meth:`restore_baseline`)."""
    coordinator_env: dict[str, str] = field(default_factory=lambda: {HANDOVER_TIMEOUT: "3"})
    """Settings of every coordinator the stack starts. Both nodes share one Docker engine here, so an instance
    moved between them (and back, by :meth:`restore_baseline`) keeps its container name taken until the old node
    removes its container, while the coordinator holds that removal until the new node runs the instance's cameras
    (an ordered camera move): a short handover timeout lets it go. On two hosts the new node runs them first."""

    def __post_init__(self) -> None:
        self.names = fleet_names(self.prefix.strip(".").replace(".", "-"))
        self.manifests = write_fleet(self.root / "manifests", self.prefix.strip("."), self.image)
        self._pristine = {p: p.read_text() for p in sorted(self.manifests.rglob("*")) if p.is_file()}
        self.db = f"sqlite:///{self.root / 'state.db'}"
        self._coordinator_settings: dict[str, str] = {}
        self.nodes = [self.names["gpu-node-1"], self.names["gpu-node-2"]]
        self.key_path = coordinator_key_path(self.db)
        self.key = coordinator_key(self.db)
        """The coordinator's signing key (where ``dsfleet coordinator`` and ``dsfleet apply`` look for it)."""
        for node in self.nodes:
            plant_secrets(self.state_dir(node), self.canary)
            enroll_agent(self.db, node, self.state_dir(node))

    # -- processes ----------------------------------------------------------------------------------------------

    def state_dir(self, node: str) -> Path:
        return self.root / "agents" / node

    def start_coordinator(self, env: dict[str, str] | None = None) -> CoordinatorProc:
        self._coordinator_settings = {**self.coordinator_env, **(env or {})}
        self.coordinator = CoordinatorProc(
            self.manifests,
            self.db,
            self.bootstrap,
            self.prefix,
            self.root / "coordinator.log",
            extra=["--resync-grace", "3"],
            env={"PYTHONUNBUFFERED": "1", **self._coordinator_settings},
        ).start()
        return self.coordinator

    def start_agent(self, node: str) -> AgentProcess:
        args = agent_args(self.bootstrap, self.prefix, self.state_dir(node), node, trust=[self.key])
        agent = AgentProcess(args, self.root / f"agent-{node}.log").start()
        self.agents[node] = agent
        return agent

    def start(self) -> Stack:
        self.start_coordinator()
        for node in self.nodes:
            self.start_agent(node)
        return self

    def mark_baseline(self, timeout: float = 60.0) -> None:
        """Wait until the fleet as written at start is converged and remember its config hashes."""
        self.wait_converged(timeout)
        self.baseline = {node: str(cfg["configHash"]) for node, cfg in self.desired().items()}

    def restore_baseline(self, timeout: float = 60.0) -> None:
        """Bring the stack back to the baseline: the coordinator (without fault injection or other settings) and
        every agent running, the manifests as written at start, their configs stored and converged. Edits are counted anew
        from here (:meth:`check_invariants`)."""
        assert self.baseline, "mark_baseline() first"
        c = self.coordinator
        special = self._coordinator_settings != self.coordinator_env  # a fault injected, another setting
        if c is None or c.proc is None or c.proc.poll() is not None or special:
            if c is not None:
                c.kill()
            self.start_coordinator()
        for node in self.nodes:
            agent = self.agents.get(node)
            if agent is None or agent.proc is None or agent.proc.poll() is not None:
                self.start_agent(node)
        for path in sorted(self.manifests.rglob("*")):
            if path.is_file() and path not in self._pristine:
                path.unlink()
        for path, text in self._pristine.items():
            if not path.is_file() or path.read_text() != text:
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(text)
                tmp.replace(path)

        def stored() -> bool:
            return {n: str(cfg["configHash"]) for n, cfg in self.desired().items()} == self.baseline

        wait_for(stored, timeout, "the baseline configs stored", 0.1)
        self.wait_converged(timeout)
        self.accepted_edits = self.accepted_revisions() - 1

    def start_unmanaged(self) -> str:
        """A container this run owns but dsfleet does not manage: it must never be touched."""
        c = self.client.containers.run(
            self.image,
            ["sleep", "3600"],
            entrypoint=["/bin/sh", "-c", 'exec "$@"', "--"],
            name=f"{self.prefix.strip('.')}-unmanaged",
            labels={RUN_LABEL: self.run_id, LABEL_NODE: self.nodes[0]},
            network_mode="none",
            detach=True,
        )
        c.reload()
        self.unmanaged = c.id
        self._unmanaged_started = c.attrs["State"]["StartedAt"]
        return c.id

    @property
    def run_id(self) -> str:
        from tests.support.dockerengine import RUN_ID

        return RUN_ID

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.terminate(15)
        if self.coordinator is not None:
            with contextlib.suppress(AssertionError):
                self.coordinator.stop()

    def cleanup(self) -> None:
        """Remove the containers and volumes of this stack's nodes (by label) and the unmanaged one."""
        api = self.client.api
        for node in self.nodes:
            for c in api.containers(all=True, filters={"label": f"{LABEL_NODE}={node}"}):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_container(c["Id"], force=True)
            for vol in (api.volumes(filters={"label": f"{LABEL_NODE}={node}"}) or {}).get("Volumes") or []:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    api.remove_volume(vol["Name"], force=True)
        for inst in self.instance_names():
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                api.remove_volume(f"{inst}_engine", force=True)

    # -- manifests ----------------------------------------------------------------------------------------------

    def instance_names(self) -> list[str]:
        return [self.names[k] for k in ("ccm-gate", "ccm-lobby", "traffic-parking")]

    def edit(self, relpath: str, old: str, new: str, *, accepted: bool = True) -> None:
        path = self.manifests / relpath
        text = path.read_text()
        assert old in text, f"{old!r} not in {relpath}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text.replace(old, new, 1))
        tmp.replace(path)
        if accepted:
            self.accepted_edits += 1

    def move_camera(self, camera: str, to_zone: str) -> None:
        """Move a camera between instances: change its zone label (instances select cameras by zone)."""
        path = self.manifests / "cameras" / ("gate.yaml" if camera.startswith("gate") else "parking.yaml")
        text = path.read_text()
        block = re.search(rf"name: {camera}\n  labels:\n    zone: (\w+)", text)
        assert block, camera
        self.edit(
            path.name and f"cameras/{path.name}",
            block.group(0),
            block.group(0).replace(f"zone: {block.group(1)}", f"zone: {to_zone}"),
        )

    # -- observations -------------------------------------------------------------------------------------------

    def store(self) -> Store:
        return Store.open(self.db, readonly=True)

    def desired(self) -> dict[str, dict[str, Any]]:
        """node → its latest stored config payload."""
        with self.store() as s:
            return {n: {"generation": c.generation, **c.payload} for n, c in s.latest_node_configs().items()}

    def accepted_revisions(self) -> int:
        with self.store() as s:
            return sum(1 for r in s.revisions(limit=1000) if r.accepted)

    def converged(self) -> str | None:
        """None when every instance runs the last accepted revision (docker and the store agree), else why not."""
        desired = self.desired()
        if set(desired) != set(self.nodes):
            return f"stored configs for {sorted(desired)}"
        with self.store() as s:
            observed = {(r["node"], r["instance"]): r for r in s.observed_details()}
            statuses = {r.node: r for r in s.node_statuses()}
        for node, cfg in desired.items():
            st = statuses.get(node)
            if st is None or st.observed_generation != cfg["generation"]:
                return f"{node}: observed generation {st and st.observed_generation} != {cfg['generation']}"
            for inst in cfg["instances"]:
                row = observed.get((node, inst["name"]))
                if row is None or row["state"] != "running" or row["config_hash"] != inst["configHash"]:
                    return f"{inst['name']}: observed {row and (row['state'], row['config_hash'])}"
                try:
                    c = self.client.containers.get(f"dsfleet-{inst['name']}")
                except docker.errors.NotFound:
                    return f"{inst['name']}: no container"
                if c.status != "running" or c.labels.get(LABEL_SPEC_HASH) != inst["specHash"]:
                    return f"{inst['name']}: container {c.status} {c.labels.get(LABEL_SPEC_HASH)}"
        return None

    def wait_converged(self, timeout: float = 60.0) -> None:
        last: list[str | None] = [None]

        def check() -> bool:
            last[0] = self.converged()
            return last[0] is None

        try:
            wait_for(check, timeout, "convergence", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last[0]}\n{self.tails()}") from None

    def tails(self) -> str:
        out = []
        for path in sorted(self.root.glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-2500:]}")
        return "\n".join(out)

    def check_invariants(self, timeout: float = 60.0) -> None:
        """Converged; no accepted edit lost; the topic's last config of each node is the stored one; the unmanaged
        container untouched; no canary secret anywhere."""
        # every accepted edit stored first (an edit is not "converged" on the revision before it), then converged
        wait_for(
            lambda: self.accepted_revisions() >= self.accepted_edits + 1,
            timeout,
            f"{self.accepted_edits + 1} accepted revisions",
            0.1,
        )
        self.wait_converged(timeout)
        desired = self.desired()
        reader = TopicReader(self.bootstrap, self.prefix, Topic.AGENT_CONFIG)
        try:

            def last_ok(records: list[Any]) -> bool:
                last: dict[str, int | None] = {}
                for r in records:
                    node = (r.key or b"").decode()
                    if node in desired and r.value is not None:
                        with contextlib.suppress(ValueError):
                            last[node] = AgentConfig.model_validate_json(r.value).generation
                return all(last.get(n) == desired[n]["generation"] for n in desired)

            reader.wait(last_ok, 20, "the AgentConfig topic to hold the stored generation of every node")
        finally:
            reader.close()
        if self.unmanaged is not None:
            c = self.client.containers.get(self.unmanaged)
            assert c.status == "running"
            assert c.attrs["State"]["StartedAt"] == self._unmanaged_started
        self.assert_no_secret()
        self.assert_secret_files()

    def assert_secret_files(self) -> None:
        """Every secret of a running instance is in a file only its owner can read: rendered files that carry
        one 0600, secret env files 0400 in a 0700 directory, mounted read-only at ``/run/secrets`` and named by
        ``X_FILE`` in the container's environment."""
        for node, cfg in self.desired().items():
            state = self.state_dir(node)
            for inst in cfg["instances"]:
                name = inst["name"]
                for f in inst["files"]:
                    mode = (state / "instances" / name / f["path"]).stat().st_mode & 0o777
                    assert mode == (0o600 if f.get("secrets") else 0o644), (name, f["path"], oct(mode))
                env_secrets = sorted(inst["container"].get("envSecrets") or {})
                c = self.client.api.inspect_container(f"dsfleet-{name}")
                mounts = {m["Destination"]: m for m in c["Mounts"]}
                if not env_secrets:
                    assert "/run/secrets" not in mounts and not (state / "envsecrets" / name).exists(), name
                    continue
                directory = state / "envsecrets" / name
                assert directory.stat().st_mode & 0o777 == 0o700, name
                assert sorted(p.name for p in directory.iterdir()) == env_secrets, name
                assert all((directory / v).stat().st_mode & 0o777 == 0o400 for v in env_secrets), name
                assert mounts["/run/secrets"]["Source"] == str(directory) and not mounts["/run/secrets"]["RW"]
                env = set(c["Config"]["Env"] or ())
                assert all(f"{v}_FILE=/run/secrets/{v}" in env for v in env_secrets), name
                assert not [e for e in env if e.split("=", 1)[0] in env_secrets], name

    def assert_no_secret(self) -> None:
        needle = self.canary.encode()
        for node in self.nodes:  # what Docker shows of every managed container: environment, labels, mounts
            for c in self.client.api.containers(all=True, filters={"label": f"{LABEL_NODE}={node}"}):
                shown = json.dumps(self.client.api.inspect_container(c["Id"])).encode()
                assert needle not in shown, f"a secret in docker inspect of {c['Names']}"
        for path in self.root.glob("*.log"):
            assert needle not in path.read_bytes(), f"a secret in {path.name}"
        db_path = Path(self.db.removeprefix("sqlite:///"))
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
            for table in tables:
                for row in con.execute(f'select * from "{table}"'):
                    blob = repr(row).encode()
                    assert needle not in blob, f"a secret in table {table}"
        finally:
            con.close()
        for topic in Topic:
            reader = TopicReader(self.bootstrap, self.prefix, topic)
            try:
                for _ in range(5):
                    reader.poll(0.1)
                for r in reader.records:
                    assert needle not in (r.value or b"") and needle not in (r.key or b""), (
                        f"a secret in {topic}"
                    )
            finally:
                reader.close()


def container(client: docker.DockerClient, name: str) -> Any:
    try:
        return client.containers.get(f"dsfleet-{name}")
    except docker.errors.NotFound:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
