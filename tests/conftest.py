"""The ``integration`` marker (every test under ``tests/integration/`` and ``tests/security/``: ``-m "not integration"`` runs the
unit tests only) and the Hypothesis profile. Helpers live in ``tests.support``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.prereqs import in_ci

TESTS_DIR = Path(__file__).resolve().parent
INTEGRATION_DIRS = (TESTS_DIR / "integration", TESTS_DIR / "security")
"""Suites that talk to real things (a broker, an engine, databases): marked ``integration`` by location."""

pytest_plugins = ["tests.support.fixtures"]

# Every agent a test starts uses only images already on the host: no test may make the agent (or dockerd) reach a
# registry, which is never on loopback. The images of the tests are built locally (docker import).
os.environ.setdefault("DSFLEET_AGENT_IMAGE_PULL", "never")


@pytest.fixture(autouse=True, scope="session")
def _cli_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``dsfleet validate`` and ``diff`` keep a cache under ``$XDG_CACHE_HOME``: the suite's own, never the user's
    (every test then also checks that a cached run prints what a cold one does)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark by location, before ``-m`` selects: a test is an integration test because of where it lives."""
    for item in items:
        if any(item.path.resolve().is_relative_to(d) for d in INTEGRATION_DIRS):
            item.add_marker(pytest.mark.integration)


# Hypothesis: no per-example deadline (CI machines are noisy: a slow example is not a failure); in CI the
# examples are derived from the test's name, so a red run can be reproduced exactly.
settings.register_profile("dsfleet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "dsfleet-ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    print_blob=True,
)
settings.load_profile("dsfleet-ci" if in_ci() else "dsfleet")
