"""Canonical JSON and sha256 hashes shared by the coordinator and the agent.

Canonical form: JSON with sorted keys, no whitespace, UTF-8, floats as Python's shortest repr, tuples as lists.
Equal values give equal hashes whatever the key order or the order files were read in.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""What ``json.dumps`` with these options builds on every call (an encoder is immutable once made)."""


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def sha256_hex(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def canonical_hash(value: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value))
