"""One-shot commands run without the cyclic collector; long-running ones collect rarely; both restore it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dsfleet.reconciler.cli import main as cli_main


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    if enabled:
        gc.enable()


def test_a_one_shot_command_runs_without_the_collector_and_restores_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gc.enable()
    gc.set_threshold(700, 10, 10)
    seen: list[bool] = []
    monkeypatch.setattr(cli_main, "cmd_rules", lambda args: seen.append(gc.isenabled()) or 0)
    assert cli_main.main(["rules"]) == 0
    assert seen == [False]
    assert gc.isenabled() and gc.get_threshold() == (700, 10, 10)


def test_a_long_running_command_keeps_a_collector_of_rare_young_collections() -> None:
    gc.enable()
    gc.set_threshold(700, 10, 10)
    with cli_main._collector_for("coordinator"):
        assert gc.isenabled() and gc.get_threshold() == (100_000, 50, 50)
    assert gc.get_threshold() == (700, 10, 10)


def test_the_collector_is_restored_after_a_failing_command() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), cli_main._collector_for("validate"):
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_every_one_shot_command_exists() -> None:
    commands = set(cli_main.build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert commands >= cli_main.ONE_SHOT
    assert not cli_main.ONE_SHOT & {
        "coordinator",
        "serve",
        "apply",
        "status",
        "demo",
        "topics",
        "db",
        "hooks",
    }
