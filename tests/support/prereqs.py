"""Test prerequisites and where the shared inputs live. A missing prerequisite is skipped locally and a failure
under CI=true (integration tests never silently skip)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: integration prerequisites must be present)")
    pytest.skip(reason)


def require(condition: bool, reason: str) -> None:
    """:func:`skip_or_fail` unless ``condition``."""
    if not condition:
        skip_or_fail(reason)


def shared_dir() -> Path:
    """The shared inputs beside the repository (``../shared``), or ``$DSFLEET_SHARED_DIR``."""
    env = os.environ.get("DSFLEET_SHARED_DIR")
    return Path(env) if env else ROOT.parent / "shared"


def shared_samples_dir() -> Path:
    """The shared DeepStream sample configs (``<shared>/deepstream/samples``)."""
    return shared_dir() / "deepstream" / "samples"
