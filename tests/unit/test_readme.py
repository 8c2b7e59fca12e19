"""The README stands alone: the contracts a user relies on are in it, not in a design document a clone lacks."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from dsfleet.reconciler.cli.main import build_parser

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
HEADINGS = (
    "Quick start",
    "What it is",
    "Using it",
    "Manifests",
    "Architecture",
    "Operate",
    "Deploy",
    "Development",
)


def test_the_readme_keeps_its_section_headings_in_order() -> None:
    found = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert [h for h in found if h in HEADINGS] == list(HEADINGS)


def test_the_readme_refers_to_no_document_outside_the_project() -> None:
    for word in ("DESIGN", "design document", "REFERENCE", "§"):
        assert word not in README, word


def test_the_readme_documents_every_command_and_json_schema() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    offline = ("validate", "diff", "apply", "render", "history", "get", "rules", "schema", "import-legacy")
    for name in offline:
        assert name in sub.choices
        assert f"dsfleet {name}" in README, name
    for schema in ("dsfleet.validate/v1", "dsfleet.diff/v1", "dsfleet.apply/v1", "dsfleet.history/v1",
                   "dsfleet.render/v1"):  # fmt: skip
        assert schema in README, schema
    for contract in (".dsfleetignore", "--exclude", "--allow-empty", "(sensitive value)", "match", "no changes",
                     "env-secret-literal", "not-a-manifest", "sqlite:///"):  # fmt: skip
        assert contract in README, contract
