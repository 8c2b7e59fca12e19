"""Integration fixtures.

``glib`` (session): a ``glibcheck.GlibChecker`` that reads key files with the real GLib. API::

    results = glib.read([(text, {group: {key: getter}}), ...])   # ONE subprocess for the whole batch
    glib.read_one(text, {group: {key: getter}})
    result.load_error / result.value(group, key) / result.keys[group] / result.groups

Getters: integer, double, boolean, string, integer_list, double_list, string_list (``glibcheck.getter_for``
maps a ``schemas.deepstream.ValueKind``). A failing getter gives ``glibcheck.GetterError``. Skips when
``/usr/bin/python3`` (or ``$DSFLEET_GLIB_PYTHON``) cannot import GLib through ``gi``; fails instead when CI=true.

``samples_dir`` (session): the shared DeepStream sample configs (``../shared/deepstream/samples`` next to the
repository, or ``$DSFLEET_SHARED_DIR/deepstream/samples``); same skip/fail rule.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS_DIR = Path(__file__).resolve().parents[1]
if str(_TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(_TESTS_DIR))

from glibcheck import GlibChecker, glib_available, glib_python  # noqa: E402
from pg import pg_server, pg_url  # noqa: E402, F401  (fixtures for every integration test)

REPO_ROOT = _TESTS_DIR.parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip locally; in CI a missing dependency is a failure, never a silent skip."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: integration prerequisites must be present)")
    pytest.skip(reason)


def shared_samples_dir() -> Path:
    shared = os.environ.get("DSFLEET_SHARED_DIR")
    base = Path(shared) if shared else REPO_ROOT.parent / "shared"
    return base / "deepstream" / "samples"


@pytest.fixture(scope="session")
def glib() -> GlibChecker:
    python = glib_python()
    problem = glib_available(python)
    if problem is not None:
        skip_or_fail(f"real GLib not available: {problem}")
    return GlibChecker(python)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    path = shared_samples_dir()
    if not (path / "SOURCES.tsv").is_file():
        skip_or_fail(f"DeepStream samples not found at {path}")
    return path
