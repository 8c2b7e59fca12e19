"""Adapter: facts about the host for ``AgentInfo`` — hostname, machine id, addresses, GPUs (``nvidia-smi``)."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
from pathlib import Path

from dsfleet.agent.loopstate import HostFacts
from dsfleet.schemas.wire import Gpu

__all__ = ["host_facts", "machine_id"]

_HEX32 = re.compile(r"[0-9a-f]{32}")


def machine_id(paths: tuple[str, ...] = ("/etc/machine-id", "/var/lib/dbus/machine-id")) -> str | None:
    """The normalized machine id (32 lowercase hex digits), or None."""
    for path in paths:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = Path(path).read_text("ascii").strip().lower().replace("-", "")
            if _HEX32.fullmatch(text):
                return text
    return None


def _addresses(hostname: str) -> tuple[str, ...]:
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(hostname, None):
            found.add(str(info[4][0]))
    return tuple(sorted(found))[:64]


def _gpus() -> tuple[Gpu, ...]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4 and parts[0].isdigit():
            memory = int(parts[3]) if parts[3].isdigit() else None
            gpus.append(Gpu(index=int(parts[0]), uuid=parts[1], name=parts[2], memoryMiB=memory))
    return tuple(gpus)


def host_facts(agent_version: str) -> HostFacts:
    hostname = socket.gethostname()
    return HostFacts(
        hostname=hostname,
        machine_id=machine_id(),
        addresses=_addresses(hostname),
        gpus=_gpus(),
        agent_version=agent_version,
    )
