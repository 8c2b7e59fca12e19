"""Fixtures of the agent's integration tests: per-test names (containers cleaned up by the run label and name
prefix) and the in-process agents a test started (halted at its end). The Docker engine and the stub image are
``tests/integration/conftest.py``'s; the helpers are ``tests.support.inprocessagents``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import docker
import pytest

from tests.support.dockerengine import RUN_ID, cleanup
from tests.support.inprocessagents import Names, RunningAgent

_counter = itertools.count(1)


@pytest.fixture
def names(docker_client: docker.DockerClient, stub_image: str) -> Iterator[Names]:
    prefix = f"t{RUN_ID}{next(_counter)}"
    yield Names(RUN_ID, prefix)
    cleanup(docker_client, RUN_ID, f"dsfleet-{prefix}")


@pytest.fixture
def agents() -> Iterator[list[RunningAgent]]:
    started: list[RunningAgent] = []
    yield started
    for a in started:
        a.halt()
