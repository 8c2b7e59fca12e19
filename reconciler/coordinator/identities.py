"""Naming agents (pure): an agent that announces without a node name is matched by its machine id
(``Node.spec.nodeId``, 32 hex or a UUID, compared normalized), then by its hostname; an ambiguous match is an
error and so is no match. The answer goes back on ``AgentCommand``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_HEX = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class KnownNode:
    name: str
    hostname: str | None
    node_id: str | None


@dataclass(frozen=True)
class Naming:
    node: str | None
    """The name the agent must use; None when it could not be named (``reason`` says why)."""
    reason: str
    matched_by: str | None = None


def normalize_machine_id(value: str | None) -> str | None:
    """``/etc/machine-id`` (32 hex) and UUID spellings of one id compare equal; anything else is None."""
    if not value:
        return None
    text = value.strip().lower().replace("-", "")
    return text if _HEX.match(text) else None


def name_agent(machine_id: str | None, hostname: str | None, nodes: Iterable[KnownNode]) -> Naming:
    known = list(nodes)
    wanted = normalize_machine_id(machine_id)
    if wanted is not None:
        by_id = [n for n in known if normalize_machine_id(n.node_id) == wanted]
        if len(by_id) == 1:
            return Naming(by_id[0].name, f"machine id matches Node {by_id[0].name}", "machineId")
        if len(by_id) > 1:
            names = ", ".join(sorted(n.name for n in by_id))
            return Naming(None, f"ambiguous: machine id matches several Nodes ({names})")
    host = (hostname or "").strip().lower()
    if host:
        by_host = [n for n in known if (n.hostname or n.name).lower() == host]
        if len(by_host) == 1:
            return Naming(by_host[0].name, f"hostname matches Node {by_host[0].name}", "hostname")
        if len(by_host) > 1:
            names = ", ".join(sorted(n.name for n in by_host))
            return Naming(None, f"ambiguous: hostname {host} matches several Nodes ({names})")
    what = f"machine id {wanted}" if wanted else "no machine id"
    return Naming(
        None, f"unknown agent: {what} and hostname {host or '(none)'} match no Node of the manifests"
    )
