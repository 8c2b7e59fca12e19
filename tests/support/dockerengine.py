"""A Docker engine and the stand-in DeepStream image for tests and benchmarks.

- :func:`ensure_engine`: uses the engine at ``/var/run/docker.sock`` when it answers; otherwise starts
  ``dockerd --bridge=none --iptables=false --ip6tables=false`` and returns its process, to be stopped
  (by its PID) with :func:`stop_engine`. Returns a reason string when no engine can be had.
- :func:`build_stub_image`: ``scripts/stub-image.sh`` (idempotent: tagged by content hash).
- :func:`cleanup`: removes the containers and volumes carrying a run label (and containers named with a prefix);
  tests never touch anything else.
- :func:`stub_instance` / :func:`agent_config`: desired configs that run the stub image.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors

from dsfleet.schemas.labels import instance_labels
from dsfleet.schemas.nodeconfigs import (
    CONFIGS_DIR,
    ENGINE_DIR,
    ContainerSpec,
    EnvSecret,
    HealthCheck,
    InstanceConfig,
    MountSpec,
    RenderedFile,
    RestartPolicySpec,
    UpdateStrategy,
    build_instance,
    build_node,
)
from dsfleet.schemas.wire import AgentConfig, encode

ROOT = Path(__file__).resolve().parents[2]
SOCKET = "/var/run/docker.sock"
STUB_IMAGE = "dsfleet/deepstream-stub:latest"
RUN_LABEL = "dsfleet-tests.run"
RUN_ID = uuid.uuid4().hex[:6]
"""This test run's value of ``RUN_LABEL`` (one per session: the module is imported once)."""
DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip6tables=false")
T = TypeVar("T")


def engine_answers() -> bool:
    try:
        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def ensure_engine(timeout: float = 60.0) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    """(the dockerd this call started or None, a reason when no engine is available)."""
    if engine_answers():
        return None, None
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        return None, "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
    if os.geteuid() != 0:
        return None, "no Docker engine answers and starting dockerd needs root"
    log = tempfile.NamedTemporaryFile(prefix="dockerd-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [dockerd, *DOCKERD_FLAGS],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None, f"dockerd exited with {proc.returncode}: {Path(log.name).read_text()[-2000:]}"
        if engine_answers():
            return proc, None
        time.sleep(0.2)
    stop_engine(proc)
    return None, f"dockerd did not answer within {timeout:.0f} s (log: {log.name})"


def stop_engine(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def build_stub_image() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "stub-image.sh")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"stub image build failed: {out.stderr[-2000:]}")
    return out.stdout.split()[0]


def cleanup(client: docker.DockerClient, run_id: str, name_prefix: str | None = None) -> None:
    """Remove what a test run made: containers/volumes labelled ``RUN_LABEL=run_id`` (+ names with prefix)."""
    api = client.api
    ids = {c["Id"] for c in api.containers(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})}
    if name_prefix:
        for c in api.containers(all=True, filters={"name": name_prefix}):
            if any(n.lstrip("/").startswith(name_prefix) for n in c.get("Names") or ()):
                ids.add(c["Id"])
    for cid in ids:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(cid, force=True)
    for vol in (api.volumes(filters={"label": f"{RUN_LABEL}={run_id}"}) or {}).get("Volumes") or []:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            api.remove_volume(vol["Name"], force=True)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


APP_CONFIG = "deepstream_app_config.txt"


def app_files(
    sources: int = 2, version: int = 1, pgie: str | None = None, secret_ref: str | None = None
) -> tuple[RenderedFile, ...]:
    """The stub's app config and GIE file; with ``secret_ref`` source 0 is an RTSP camera whose credentials are
    that secret (a ``${secret:<ref>}`` placeholder the agent fills in)."""

    def uri(i: int) -> str:
        if i == 0 and secret_ref:
            return f"rtsp://${{secret:{secret_ref}}}@127.0.0.1:8554/cam0"
        return f"file:///media/cam{i}.mp4"

    groups = "".join(f"[source{i}]\nenable=1\ntype=3\nuri={uri(i)}\n\n" for i in range(sources))
    app = (
        f"# version {version}\n[application]\nenable-perf-measurement=1\nperf-measurement-interval-sec=1\n\n"
        f"{groups}[primary-gie]\nenable=1\nconfig-file=pgie.txt\n"
    )
    return (
        RenderedFile(path=APP_CONFIG, content=app, secrets=(secret_ref,) if secret_ref else ()),
        RenderedFile(path="pgie.txt", content=pgie or f"[property]\ngpu-id=0\nbatch-size={sources}\n"),
    )


def stub_instance(
    name: str,
    run_id: str,
    *,
    image: str = STUB_IMAGE,
    sources: int = 2,
    version: int = 1,
    env: Mapping[str, str] | None = None,
    paused: bool = False,
    restart: str = "unless-stopped",
    network: str = "none",
    working_dir: str = ENGINE_DIR,
    strategy: UpdateStrategy = "CreateBeforeStop",
    health: tuple[str, ...] | None = None,
    env_secrets: Mapping[str, str] | None = None,
    secret_ref: str | None = None,
) -> InstanceConfig:
    """An instance running the stub image. ``health``: a health check command (checked every second);
    ``env_secrets``: variable → secret ref (its password); ``secret_ref``: camera ``cam0``'s credentials."""
    container = ContainerSpec(
        image=image,
        command=("deepstream-app", "-c", f"{CONFIGS_DIR}/{APP_CONFIG}"),
        env=dict(env or {}),
        envSecrets={k: EnvSecret(secretRef=v) for k, v in (env_secrets or {}).items()},
        workingDir=working_dir,
        mounts=(
            MountSpec(type="configs", target=CONFIGS_DIR, readOnly=True),
            MountSpec(type="volume", source=f"{name}_engine", target=ENGINE_DIR, readOnly=False),
        ),
        engineVolume=f"{name}_engine",
        labels={**instance_labels(name), RUN_LABEL: run_id},
        restartPolicy=RestartPolicySpec(name=restart),  # type: ignore[arg-type]
        shmSize="64m",
        networkMode=network,
        healthCheck=(
            HealthCheck(test=health, intervalSeconds=1, timeoutSeconds=2, retries=1, startPeriodSeconds=0)
            if health
            else None
        ),
    )
    return build_instance(
        name,
        "deepstream-app",
        paused,
        ("cam0",) if secret_ref else (),
        container,
        app_files(sources, version, secret_ref=secret_ref),
        strategy=strategy,
        camera_secrets={"cam0": secret_ref} if secret_ref else None,
    )


def agent_config(node: str, generation: int, instances: list[InstanceConfig]) -> AgentConfig:
    nc = build_node(node, instances)
    return AgentConfig(
        sent_at="2026-01-01T00:00:00+00:00",
        node=node,
        generation=generation,
        configHash=nc.configHash,
        instances=nc.instances,
    )


def agent_config_bytes(node: str, generation: int, instances: list[InstanceConfig]) -> bytes:
    return encode(agent_config(node, generation, instances))
