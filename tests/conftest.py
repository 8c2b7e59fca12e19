"""Shared test helpers: where the shared DeepStream samples live, and whether missing tools may skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_dir() -> Path:
    env = os.environ.get("DSFLEET_SHARED_DIR")
    return Path(env) if env else ROOT.parent / "shared"


def require(condition: bool, reason: str) -> None:
    """Skip when a real dependency is missing — but fail in CI, where integration tests must run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


# Hypothesis: no per-example deadline (CI machines are noisy: a slow example is not a failure); in CI the
# examples are derived from the test's name, so a red run can be reproduced exactly.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("dsfleet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "dsfleet-ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    print_blob=True,
)
settings.load_profile("dsfleet-ci" if IN_CI else "dsfleet")
