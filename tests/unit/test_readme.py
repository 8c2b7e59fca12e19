"""The README is the door: what dsfleet is, the two-command quick start, a short tour and links into the docs site.
The contracts it used to carry live in the docs pages now (tests/unit/test_docs.py checks them there)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
HEADINGS = ("Quick start", "What it is", "A five-minute tour", "Documentation", "Development")


def test_the_readme_opens_with_the_two_command_quick_start() -> None:
    sections = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert sections[0] == "Quick start"
    quick = README.split("## Quick start", 1)[1]
    first_block = re.search(r"```[a-z]*\n(.*?)```", quick, flags=re.DOTALL)
    assert first_block is not None
    assert first_block.group(1).split("\n")[:-1] == ["make demo", "make test"]
    before = README.split("## Quick start", 1)[0]
    assert before.strip() == "# dsfleet", "nothing but the title comes before the quick start"


def test_the_readme_keeps_its_section_headings_in_order() -> None:
    found = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert [h for h in found if h in HEADINGS] == list(HEADINGS)


def test_the_readme_stays_short() -> None:
    assert len(README.splitlines()) <= 150


def test_the_readme_refers_to_no_document_outside_the_project() -> None:
    for word in ("DESIGN", "design document", "REFERENCE", "§"):
        assert word not in README, word


def test_every_relative_link_of_the_readme_names_a_file_of_the_repository() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    relative = [link for link in links if "://" not in link]
    assert relative, "the README links into the docs"
    for link in relative:
        assert (ROOT / link).exists(), link


def test_the_readme_links_every_hand_written_section_of_the_docs() -> None:
    for page in ("docs/getting-started/first-fleet.md", "docs/manifests/index.md", "docs/cli/index.md",
                 "docs/operating/status.md", "docs/deploying/index.md", "docs/architecture/index.md",
                 "docs/architecture/decisions/index.md", "docs/development/index.md"):  # fmt: skip
        assert f"({page})" in README, page


def test_the_tour_is_validate_diff_apply_status_on_the_example_fleet() -> None:
    tour = README.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", tour, flags=re.DOTALL)
    assert block is not None
    commands = [line.split("#", 1)[0].split() for line in block.group(1).splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [
        ["dsfleet", "validate"],
        ["dsfleet", "diff"],
        ["dsfleet", "apply"],
        ["dsfleet", "status"],
    ]
    assert all("manifests/" in c for c in commands[:3])
    assert "first-fleet.md" in tour and "dsfleet broker" in tour
