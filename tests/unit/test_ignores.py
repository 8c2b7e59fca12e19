"""``.dsfleetignore`` patterns (gitignore syntax)."""

from __future__ import annotations

import pytest

from dsfleet.reconciler.loading.ignores import compile_patterns, ignored


@pytest.mark.parametrize(
    ("lines", "path", "is_dir", "out"),
    [
        (["docker-compose*.yml"], "docker-compose.yml", False, True),
        (["docker-compose*.yml"], "sub/docker-compose.ci.yml", False, True),
        (["/ci/*.yaml"], "ci/a.yaml", False, True),
        (["/ci/*.yaml"], "x/ci/a.yaml", False, False),
        (["ci/*.yaml"], "ci/deep/a.yaml", False, False),  # * does not cross /
        (["ci/**/*.yaml"], "ci/deep/a.yaml", False, True),
        (["build/"], "build", True, True),
        (["build/"], "build", False, False),  # directories only
        (["*.yaml", "!keep.yaml"], "keep.yaml", False, False),
        (["# a comment", "", "a.yaml"], "a.yaml", False, True),
        (["a?.yaml"], "ab.yaml", False, True),
        (["[ab].yaml"], "c.yaml", False, False),
    ],
)
def test_gitignore_syntax(lines: list[str], path: str, is_dir: bool, out: bool) -> None:
    assert ignored([("", compile_patterns(lines))], path, is_dir) is out


def test_a_nested_ignore_file_is_relative_to_its_directory() -> None:
    rules = [("", compile_patterns(["*.tmp.yaml"])), ("sub/", compile_patterns(["/local.yaml"]))]
    assert ignored(rules, "sub/local.yaml", False)
    assert not ignored(rules, "local.yaml", False)
    assert ignored(rules, "sub/x.tmp.yaml", False)
