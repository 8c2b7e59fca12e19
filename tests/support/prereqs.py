"""Missing test prerequisites: skipped locally, a failure under CI=true (integration tests never silently skip)."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: integration prerequisites must be present)")
    pytest.skip(reason)
