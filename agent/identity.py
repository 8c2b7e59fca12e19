"""Adapter: the agent's own key pair, made on its first start as ``<state-dir>/agent.key`` (mode 0600, never
overwritten; :mod:`dsfleet.plumbing.signing`). The agent signs its AgentInfo, AgentResponse and AgentLogs with it
and announces the public half in AgentInfo; the coordinator takes a node's reports only from the key enrolled for
that node (``dsfleet nodes approve``, or a one-time enrollment token). A host reinstalled without its state
directory makes a new key, which must be enrolled again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from dsfleet.plumbing.signing import SigningKey, load_or_create_key

__all__ = ["AGENT_KEY_FILE", "load_identity"]

AGENT_KEY_FILE: Final = "agent.key"


def load_identity(state_dir: str | os.PathLike[str]) -> tuple[SigningKey, bool]:
    """The agent's key, made now when the state directory has none; ``True`` when it was just made."""
    return load_or_create_key(Path(state_dir) / AGENT_KEY_FILE)
