"""Installing dsfleet as a user does: one ``dsfleet`` namespace in site-packages, and an agent host's extra that
brings neither the web framework nor SQL.

A real ``pip install`` of this source tree into a fresh virtualenv (the build backend and the agent's
dependencies come from the package index or pip's cache, as for ``make``'s own install)."""

from __future__ import annotations

import shutil
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ("schemas", "resolution", "policies", "reconciler", "agent", "plumbing")


def _run(*cmd: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def agent_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A virtualenv with ``pip install '.[agent]'`` of this tree, and the wheel pip built for it."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"  # a copy: building writes build/ and *.egg-info/ beside the sources
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("dsfleet", *SOURCE_FOLDERS):
        shutil.copytree(ROOT / folder, source / folder, symlinks=True, ignore=skip)
    env = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    wheels = base / "wheels"
    built = _run(env / "bin" / "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, source, cwd=base)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("dsfleet-*.whl")
    installed = _run(env / "bin" / "pip", "install", "--quiet", f"{wheel}[agent]", cwd=base)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return env, wheel


def test_the_wheel_holds_one_namespace_and_nothing_at_the_top(agent_env: tuple[Path, Path]) -> None:
    _, wheel = agent_env
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"dsfleet"}
    for folder in SOURCE_FOLDERS:
        assert f"dsfleet/{folder}/__init__.py" in names
    assert "dsfleet/py.typed" in names
    assert "dsfleet/reconciler/store/migrations/script.py.mako" in names


def test_import_dsfleet_works_and_no_generic_package_lands_in_site_packages(
    agent_env: tuple[Path, Path], tmp_path: Path
) -> None:
    env, _ = agent_env
    probe = (
        "import importlib.util, dsfleet, dsfleet.agent.loop, dsfleet.schemas.wire\n"
        f"print(sorted(n for n in {SOURCE_FOLDERS!r} if importlib.util.find_spec(n)))\n"
        "print(sorted(n for n in ('fastapi', 'sqlalchemy', 'alembic', 'uvicorn') if importlib.util.find_spec(n)))\n"
        "print(dsfleet.__file__)\n"
    )
    out = _run(env / "bin" / "python", "-c", probe, cwd=tmp_path)  # a cwd outside the source tree
    assert out.returncode == 0, out.stderr[-3000:]
    generic, web_and_sql, where = out.stdout.splitlines()
    assert generic == "[]"
    assert web_and_sql == "[]"
    assert str(env) in where


def test_the_agent_cli_runs_and_the_coordinator_cli_names_the_missing_extra(
    agent_env: tuple[Path, Path], tmp_path: Path
) -> None:
    env, _ = agent_env
    agent_help = _run(env / "bin" / "dsfleet-agent", "--help", cwd=tmp_path, timeout=60)
    assert agent_help.returncode == 0, agent_help.stderr
    assert "run" in agent_help.stdout
    (tmp_path / "m").mkdir()
    validate = _run(env / "bin" / "dsfleet", "validate", tmp_path / "m", cwd=tmp_path, timeout=60)
    assert validate.returncode == 2, (validate.stdout, validate.stderr)
    assert "pip install 'dsfleet[coordinator]'" in validate.stderr
    assert "Traceback" not in validate.stderr
