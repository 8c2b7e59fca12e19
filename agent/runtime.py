"""Adapter: the Docker engine through the Docker SDK — the only module of the project that imports ``docker``.

API use per status cycle (measured by ``benchmarks/agent_bench.py``): **one** ``GET /containers/json`` filtered by
the managed label; an inspect only for a container that is new, changed state, or had an engine event since the
last cycle (every container on a full resync); log reads (``since`` the newest line read) are the loop's, one
per container per heartbeat. Engine events (``/events`` filtered by the managed label and ``type=container``)
are read by one background thread that only records which containers changed and wakes the loop.

Library errors become ``TemporaryError`` (engine unreachable, 5xx, conflicts) or ``PermanentError`` (4xx: bad
request, image missing); a name already taken is :class:`dsfleet.agent.errors.NameConflictError`, an image that
is absent and cannot be pulled :class:`dsfleet.agent.errors.ImageNotFoundError`.

**Pulls** (:meth:`DockerRuntime.pull_image`, only with ``pull=True``): the registry is the reference's first
component when it names a host (has a ``.`` or ``:``, or is ``localhost``), else Docker Hub. The agent first opens a
TCP connection to it (:data:`REACH_TIMEOUT`): a registry the host cannot reach is an ``ImageNotFoundError`` at
once, not a pull that hangs; then the engine pulls (with the engine's own credentials for that registry).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, Mount
from docker.utils import parse_repository_tag

from dsfleet.agent.containerrequests import ContainerRequest
from dsfleet.agent.containers import ObservedContainer, ObservedVolume
from dsfleet.agent.errors import ImageNotFoundError, NameConflictError, PermanentError, TemporaryError
from dsfleet.agent.ports import LogChunk, RuntimeInfo

__all__ = ["DockerRuntime", "registry_of"]

log = logging.getLogger(__name__)
T = TypeVar("T")
REACH_TIMEOUT = 3.0
DOCKER_HUB = ("registry-1.docker.io", 443)


def registry_of(image: str) -> tuple[str, int]:
    """The registry host and port an image reference is pulled from."""
    first, slash, _ = image.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB
    host, colon, port = first.rpartition(":") if first.count(":") == 1 else (first, "", "")
    if colon and port.isdigit():
        return host, int(port)
    return first, 443


def _translate(exc: Exception, what: str) -> TemporaryError | PermanentError:
    if isinstance(exc, docker.errors.ImageNotFound):
        return PermanentError(f"docker: {what}: image not found")
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 0
        text = f"docker: {what}: {status} {exc.explanation or exc}"
        if status == 409 or status >= 500 or status == 0:
            return TemporaryError(text)
        return PermanentError(text)
    if isinstance(exc, docker.errors.DockerException | requests.exceptions.RequestException | OSError):
        return TemporaryError(f"docker: {what}: engine unreachable ({type(exc).__name__})")
    return TemporaryError(f"docker: {what}: {type(exc).__name__}: {exc}")


def _parse_time(text: str) -> float | None:
    """RFC 3339 with nanoseconds (``2026-12-01T09:00:00.123456789Z``) → epoch seconds."""
    try:
        base, _, frac = text.rstrip("Z").partition(".")
        seconds = datetime.fromisoformat(base + "+00:00").timestamp()
    except ValueError:
        return None
    return seconds + (float("0." + frac) if frac.isdigit() else 0.0)


def _demux(data: bytes) -> bytes:
    """The payload of Docker's multiplexed log stream (8-byte frame headers), or ``data`` for a tty container."""
    if len(data) < 8 or data[0] not in (0, 1, 2) or data[1:4] != b"\0\0\0":
        return data
    out = bytearray()
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "big")
        out += data[pos + 8 : pos + 8 + size]
        pos += 8 + size
    return bytes(out)


class DockerRuntime:
    def __init__(self, base_url: str | None = None, *, timeout: float = 30.0, pull: bool = True) -> None:
        try:
            if base_url:
                self._client = docker.DockerClient(base_url=base_url, timeout=int(timeout))
            else:
                self._client = docker.from_env(timeout=int(timeout))
        except docker.errors.DockerException as exc:
            raise _translate(exc, "connect") from exc
        self._api = self._client.api
        self._timeout = timeout
        self._pull = pull
        self._api.trust_env = False  # no proxy lookup in the environment on every request (a local socket)
        self.calls: Counter[str] = Counter()
        """API calls by kind (for benchmarks and tests)."""
        self._details: dict[str, tuple[str, ObservedContainer]] = {}
        self._dirty: set[str] = set()
        self._exit_codes: dict[str, int] = {}
        """Exit code of each container's last death (from ``die`` events): Docker resets it to 0 on a restart."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._events_stream: Any = None
        self._events_thread: threading.Thread | None = None
        self._events_label: str | None = None

    # -- helpers --------------------------------------------------------------------------------------------

    def _call(self, kind: str, fn: Callable[[], T], what: str) -> T:
        self.calls[kind] += 1
        try:
            return fn()
        except Exception as exc:
            raise _translate(exc, what) from exc

    # -- facts ----------------------------------------------------------------------------------------------

    def info(self) -> RuntimeInfo:
        version = self._call("version", self._api.version, "version")
        info = self._call("info", self._api.info, "info")
        runtimes = info.get("Runtimes") or {}
        return RuntimeInfo(version=str(version.get("Version") or "") or None, nvidia="nvidia" in runtimes)

    def list_containers(
        self, label: str, *, also_names: Sequence[str] = (), refresh: bool = False
    ) -> list[ObservedContainer]:
        self._start_events(label)
        rows = self._call(
            "list", lambda: self._api.containers(all=True, filters={"label": label}), "list containers"
        )
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        seen: set[str] = set()
        result: list[ObservedContainer] = []
        for row in rows:
            cid = str(row["Id"])
            seen.add(cid)
            state = str(row.get("State") or "")
            cached = self._details.get(cid)
            if refresh or cached is None or cached[0] != state or cid in dirty:
                observed = self._inspect(cid)
                if observed is None:
                    continue
                self._details[cid] = (state, observed)
                result.append(observed)
            else:
                result.append(cached[1])
        for stale in set(self._details) - seen:
            del self._details[stale]
        with self._lock:
            for stale in set(self._exit_codes) - seen:
                del self._exit_codes[stale]
        for name in also_names:
            extra = self._inspect(name)
            if extra is not None and extra.id not in seen:
                result.append(extra)
        return result

    def _inspect(self, ref: str) -> ObservedContainer | None:
        self.calls["inspect"] += 1
        try:
            attrs = self._api.inspect_container(ref)
        except docker.errors.NotFound:
            return None
        except Exception as exc:
            raise _translate(exc, f"inspect {ref[:12]}") from exc
        state = attrs.get("State") or {}
        config = attrs.get("Config") or {}
        host = attrs.get("HostConfig") or {}
        status = str(state.get("Status") or "")
        health = (state.get("Health") or {}).get("Status")
        exit_code = int(state["ExitCode"]) if state.get("ExitCode") is not None else None
        with self._lock:
            died = self._exit_codes.get(str(attrs["Id"]))
        if status in ("running", "restarting") and not exit_code and died is not None:
            exit_code = died  # a restarted container: report how its last run ended
        return ObservedContainer(
            id=str(attrs["Id"]),
            name=str(attrs.get("Name") or "").lstrip("/"),
            labels=dict(config.get("Labels") or {}),
            state=status,
            image=str(config.get("Image") or ""),
            restart_count=int(attrs.get("RestartCount") or 0),
            exit_code=exit_code,
            started_at=str(state.get("StartedAt")) if state.get("StartedAt") else None,
            restart_policy=str((host.get("RestartPolicy") or {}).get("Name") or ""),
            health=str(health) if health else None,
        )

    def list_volumes(self, label: str) -> list[ObservedVolume]:
        found = self._call("volumes", lambda: self._api.volumes(filters={"label": label}), "list volumes")
        return [
            ObservedVolume(name=str(v["Name"]), labels=dict(v.get("Labels") or {}))
            for v in (found or {}).get("Volumes") or []
        ]

    def logs(self, container_id: str, since: float | None, tail: int = 100) -> LogChunk:
        if since is None:
            return self._read_logs(container_id, tail, None)
        return self._read_logs(container_id, None, since)

    def read_logs(self, container_id: str, *, tail: int, since: float | None = None) -> LogChunk:
        return self._read_logs(container_id, tail, since)

    def _read_logs(self, container_id: str, tail: int | None, since: float | None) -> LogChunk:
        # The raw endpoint: docker-py's ``logs()`` inspects the container first (a tty check) on every call.
        params: dict[str, Any] = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "tail": "all" if tail is None else tail,
        }
        if since is not None:
            params["since"] = f"{since:.9f}"

        def read() -> bytes:
            url = self._api._url("/containers/{0}/logs", container_id)  # type: ignore[attr-defined]
            response = self._api.get(url, params=params, timeout=self._timeout)
            response.raise_for_status()
            return bytes(response.content)

        try:
            data = _demux(self._call("logs", read, f"logs {container_id[:12]}"))
        except PermanentError:
            return LogChunk((), since)
        lines: list[str] = []
        times: list[float] = []
        newest = since
        for raw in data.decode("utf-8", "replace").splitlines():
            stamp, _, text = raw.partition(" ")
            ts = _parse_time(stamp)
            if ts is None:
                continue
            if since is not None and ts <= since:
                continue
            lines.append(text)
            times.append(ts)
            newest = ts if newest is None else max(newest, ts)
        return LogChunk(tuple(lines), newest, tuple(times))

    # -- images ---------------------------------------------------------------------------------------------

    def has_image(self, image: str) -> bool:
        self.calls["image"] += 1
        try:
            self._api.inspect_image(image)  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.NotFound:
            return False
        except Exception as exc:
            raise _translate(exc, f"image {image}") from exc
        return True

    def pull_image(self, image: str) -> None:
        if not self._pull:
            raise ImageNotFoundError(
                image, "not present on this host (the agent does not pull: image_pull=never)"
            )
        host, port = registry_of(image)
        try:
            with socket.create_connection((host, port), timeout=REACH_TIMEOUT):
                pass
        except OSError as exc:
            raise ImageNotFoundError(
                image,
                f"not present on this host, and its registry {host}:{port} is unreachable ({exc.strerror or exc})",
            ) from None
        repository, tag = parse_repository_tag(image)
        self.calls["pull"] += 1
        log.info("pulling image=%s", image)
        try:
            self._api.pull(repository, tag=tag or "latest")
        except docker.errors.APIError as exc:
            status = exc.status_code or 0
            if status in (401, 403, 404) or "not found" in str(exc.explanation or "").lower():
                raise ImageNotFoundError(image, f"pull failed: {status} {exc.explanation or exc}") from exc
            raise _translate(exc, f"pull {image}") from exc
        except Exception as exc:
            raise _translate(exc, f"pull {image}") from exc

    # -- actions --------------------------------------------------------------------------------------------

    def create(self, request: ContainerRequest) -> str:
        mounts = [Mount(m.target, m.source, type=m.type, read_only=m.read_only) for m in request.mounts]
        device_requests = (
            [DeviceRequest(device_ids=list(request.gpu_ids), capabilities=[["gpu"]])]
            if request.gpu_ids
            else None
        )
        host_config = self._api.create_host_config(
            mounts=mounts,
            restart_policy=dict(request.restart_policy),
            network_mode=request.network_mode,
            shm_size=request.shm_size,
            ipc_mode=request.ipc_mode,
            privileged=request.privileged,
            security_opt=list(request.security_opt) or None,
            device_requests=device_requests,
            devices=list(request.devices) or None,
        )

        def create() -> Any:
            return self._api.create_container(
                request.image,
                command=list(request.command) if request.command is not None else None,
                name=request.name,
                environment=dict(request.env),
                labels=dict(request.labels),
                working_dir=request.working_dir,
                host_config=host_config,
                healthcheck=dict(request.healthcheck) if request.healthcheck else None,
                detach=True,
            )

        self.calls["create"] += 1
        try:
            created = create()
        except docker.errors.ImageNotFound as exc:
            raise ImageNotFoundError(request.image, "not present on this host") from exc
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "name" in str(exc.explanation or "").lower():
                raise NameConflictError(request.name) from exc
            raise _translate(exc, f"create {request.name}") from exc
        except Exception as exc:
            raise _translate(exc, f"create {request.name}") from exc
        return str(created["Id"])

    def rename(self, container_id: str, name: str) -> None:
        self.calls["rename"] += 1
        try:
            self._api.rename(container_id, name)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise NameConflictError(name) from exc
            raise _translate(exc, f"rename {container_id[:12]}") from exc
        except Exception as exc:
            raise _translate(exc, f"rename {container_id[:12]}") from exc

    def start(self, container_id: str) -> None:
        self._call("start", lambda: self._api.start(container_id), f"start {container_id[:12]}")

    def stop(self, container_id: str, timeout: float = 10.0) -> None:
        self._call(
            "stop", lambda: self._api.stop(container_id, timeout=int(timeout)), f"stop {container_id[:12]}"
        )

    def restart(self, container_id: str, timeout: float = 10.0) -> None:
        self._call(
            "restart",
            lambda: self._api.restart(container_id, timeout=int(timeout)),
            f"restart {container_id[:12]}",
        )

    def remove(self, container_id: str) -> None:
        self.calls["remove"] += 1
        try:
            self._api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            return
        except Exception as exc:
            raise _translate(exc, f"remove {container_id[:12]}") from exc

    def ensure_volume(self, name: str, labels: Mapping[str, str], *, recreate: bool = False) -> None:
        if recreate:
            self.remove_volume(name)
        self.calls["volume"] += 1
        try:
            self._api.inspect_volume(name)
            return
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            raise _translate(exc, f"volume {name}") from exc
        self._call(
            "volume", lambda: self._api.create_volume(name, labels=dict(labels)), f"create volume {name}"
        )

    def remove_volume(self, name: str) -> None:
        self.calls["volume"] += 1
        try:
            self._api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            return
        except Exception as exc:
            raise _translate(exc, f"remove volume {name}") from exc

    # -- events ---------------------------------------------------------------------------------------------

    def _start_events(self, label: str) -> None:
        if self._events_thread is not None or self._closed.is_set():
            return
        self._events_label = label
        self._events_thread = threading.Thread(target=self._follow_events, name="docker-events", daemon=True)
        self._events_thread.start()

    def _follow_events(self) -> None:
        delay = 0.5
        while not self._closed.is_set():
            try:
                self.calls["events"] += 1
                stream = self._api.events(
                    decode=True, filters={"type": "container", "label": self._events_label}
                )
                self._events_stream = stream
                delay = 0.5
                for event in self._iterate(stream):
                    actor = event.get("Actor") or {}
                    cid = str(event.get("id") or actor.get("ID") or "")
                    code = (actor.get("Attributes") or {}).get("exitCode")
                    with self._lock:
                        if cid:
                            self._dirty.add(cid)
                        if cid and event.get("Action") == "die" and str(code).lstrip("-").isdigit():
                            self._exit_codes[cid] = int(str(code))
                    self._wake.set()
            except Exception as exc:
                if self._closed.is_set():
                    return
                log.warning("docker events stream lost error=%s; reconnecting", type(exc).__name__)
                self._wake.set()  # something may have happened while not listening: resync
            self._closed.wait(delay)
            delay = min(delay * 2, 10.0)

    @staticmethod
    def _iterate(stream: Any) -> Iterator[dict[str, Any]]:
        yield from stream

    def wait(self, timeout: float) -> bool:
        woke = self._wake.wait(timeout)
        self._wake.clear()
        return woke

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        stream = self._events_stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        with contextlib.suppress(Exception):
            self._client.close()
