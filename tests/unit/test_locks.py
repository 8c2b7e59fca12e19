"""The lock files pin, with hashes, every dependency each install target declares, and nothing of the other side."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TARGETS = {"dev": ("dev",), "agent": ("agent",), "coordinator": ("coordinator", "postgres")}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


def _declared(extras: tuple[str, ...]) -> set[str]:
    names = {_name(r) for r in PROJECT["dependencies"]}
    pending = list(extras)
    while pending:
        for requirement in PROJECT["optional-dependencies"][pending.pop()]:
            if requirement.startswith("dsfleet["):
                pending.extend(requirement[len("dsfleet[") : -1].split(","))
            else:
                names.add(_name(requirement))
    return names


def _pinned(target: str) -> dict[str, str]:
    text = (ROOT / "requirements" / f"{target}.lock").read_text()
    entries = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", text, re.M
    )
    return {_name(name): version for name, version, _hashes in entries}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_declared_dependency_is_pinned_with_hashes(target: str) -> None:
    pinned = _pinned(target)
    text = (ROOT / "requirements" / f"{target}.lock").read_text()
    assert len(pinned) == len(re.findall(r"^[A-Za-z0-9_.-]+==", text, re.M)), "every pin carries hashes"
    assert _declared(TARGETS[target]) <= set(pinned)
    assert "dsfleet" not in pinned and "file://" not in text


def test_an_agent_host_installs_no_web_framework_and_no_sql() -> None:
    assert not {"fastapi", "uvicorn", "sqlalchemy", "alembic", "starlette"} & set(_pinned("agent"))


def test_the_sides_pin_the_same_versions_as_the_development_lock() -> None:
    dev = _pinned("dev")
    for side in ("agent", "coordinator"):
        assert {n: v for n, v in _pinned(side).items() if dev.get(n) != v} == {}
