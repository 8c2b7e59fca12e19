"""Small things that got in a new operator's way, through the real command lines in process: ``--log-level`` in
any case in both CLIs, singular counts, files named from the manifest root wherever the command runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dsfleet.agent.cli import build_parser as agent_parser
from dsfleet.reconciler.cli.findings import root_names
from dsfleet.reconciler.cli.main import build_parser, main
from dsfleet.reconciler.planning.plans import Plan
from dsfleet.reconciler.planning.reports import summary_line
from dsfleet.schemas.findings import plural

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
BROKEN = "apiVersion: dsfleet/v1\nkind: Camera\nmetadata: {name: x}\n"


# ---- --log-level in any case


@pytest.mark.parametrize("given", ["DEBUG", "Info", "warning", "ERROR", "Critical"])
def test_both_clis_take_a_log_level_in_any_case(given: str) -> None:
    assert build_parser().parse_args(["--log-level", given, "rules"]).log_level == given.lower()
    assert agent_parser().parse_args(["run", "--log-level", given]).log_level == given.lower()


def test_an_unknown_log_level_is_a_usage_error_naming_the_levels(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--log-level", "LOUD", "rules"])
    assert exit_.value.code == 2
    assert "invalid choice: 'loud'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        agent_parser().parse_args(["run", "--log-level", "verbose"])


def test_the_agent_takes_the_log_format_too() -> None:
    assert agent_parser().parse_args(["run", "--log-format", "json"]).log_format == "json"
    assert agent_parser().parse_args(["run"]).log_format == "text"


# ---- counts


@pytest.mark.parametrize(
    ("n", "word", "many", "text"),
    [(0, "error", None, "0 errors"), (1, "error", None, "1 error"), (2, "policy", "policies", "2 policies")],
)
def test_plural(n: int, word: str, many: str | None, text: str) -> None:
    assert plural(n, word, many) == text


def test_one_error_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = shutil.copytree(MANIFESTS, tmp_path / "fleet")
    (fleet / "cameras" / "broken.yaml").write_text(BROKEN)
    assert main(["validate", str(fleet)]) == 1
    err = capsys.readouterr().err
    assert "; 1 error, 0 warnings" in err and "1 errors" not in err
    assert summary_line(Plan()).startswith("Plan: 0 nodes to add")


# ---- files named from the manifest root


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    fleet = shutil.copytree(MANIFESTS, tmp_path / "repo" / "fleet")
    (fleet / "cameras" / "broken.yaml").write_text(BROKEN)
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    return fleet


@pytest.mark.parametrize(
    ("cwd", "arg", "name"),
    [
        ("elsewhere/deep", None, "cameras/broken.yaml"),  # not ../../repo/fleet/… nor /tmp/…/fleet/…
        ("repo/fleet/instances", None, "cameras/broken.yaml"),  # not ../cameras/…
        ("repo", "fleet", "fleet/cameras/broken.yaml"),  # from above the root: a name to open from here
        ("repo/fleet", ".", "cameras/broken.yaml"),
    ],
)
def test_validate_names_files_from_the_manifest_root(
    broken: Path,
    cwd: str,
    arg: str | None,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(broken.parents[1] / cwd)
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["validate", arg or str(broken)]) == 1
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error: spec" in line]
    assert line.startswith(f"{name}:1:1: error: spec: required field is missing")


def test_root_names_with_several_roots_lead_with_the_root(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "x").mkdir(parents=True)
    name = root_names([str(a), str(b / "x" / "f.yaml")], cwd=str(tmp_path / "elsewhere"))
    assert name(str(a / "x" / "f.yaml")) == "a/x/f.yaml"
    assert name(str(b / "x" / "f.yaml")) == "x/f.yaml"
    assert name("/somewhere/else.yaml") == "/somewhere/else.yaml"
    single = root_names([str(a)], cwd=str(tmp_path / "elsewhere"))
    assert single(str(a / "x" / "f.yaml")) == "x/f.yaml"
