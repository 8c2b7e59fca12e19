"""The docs site says what the code does: the contracts a user relies on are in its pages, its reference pages are
generated from the code and cover all of it, its decision records keep their shape, and the code cites the project's
own docs, never a document outside the repository."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from dsfleet.agent.cli import build_parser as agent_parser
from dsfleet.reconciler.cli.main import build_parser as dsfleet_parser
from dsfleet.schemas.labels import LABEL_SPEC_HASH

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dsfleet_docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = _hooks()


def page(path: str) -> str:
    return (DOCS / path).read_text(encoding="utf-8")


def all_pages() -> dict[str, str]:
    return {p.relative_to(DOCS).as_posix(): p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md"))}


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    return []


# --- the contracts moved from the README -----------------------------------------------------------------------


def test_the_workflow_page_documents_every_offline_command_and_its_json_schema() -> None:
    text = page("cli/index.md")
    sub = next(a for a in dsfleet_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("validate", "diff", "apply", "render", "history", "get", "rules", "schema", "import-legacy",
                 "broker"):  # fmt: skip
        assert name in sub.choices
        assert f"dsfleet {name}" in text, name
    for schema in ("dsfleet.validate/v1", "dsfleet.diff/v1", "dsfleet.apply/v1", "dsfleet.history/v1",
                   "dsfleet.render/v1"):  # fmt: skip
        assert schema in text, schema
    assert "dsfleet.status/v1" in page("operating/status.md")


@pytest.mark.parametrize(
    ("contract", "where"),
    [
        (".dsfleetignore", "manifests/index.md"),
        ("--exclude", "manifests/index.md"),
        ("not-a-manifest", "manifests/index.md"),
        ("--allow-empty", "cli/index.md"),
        ("(sensitive value)", "cli/index.md"),
        ("no changes", "cli/index.md"),
        ("sqlite:///", "cli/index.md"),
        ("match", "manifests/policies.md"),
        ("env-secret-literal", "manifests/secrets.md"),
        ("--allow-prune-all", "architecture/decisions/0014-prune-safety.md"),
        (LABEL_SPEC_HASH, "operating/agent.md"),
        ("DSFLEET_SECRET_", "manifests/secrets.md"),
        ("/api/v1/webhooks/git", "operating/git.md"),
        ("read_requires_token", "operating/api.md"),
    ],
)
def test_each_contract_is_on_its_page(contract: str, where: str) -> None:
    assert contract in page(where)


def test_the_status_page_names_every_word_the_status_can_show() -> None:
    from dsfleet.reconciler.planning.conditions import Health, Sync
    from dsfleet.schemas.wire import InstanceState

    text = page("operating/status.md")
    for word in [*Sync, *Health, *InstanceState]:
        assert f"`{word.value}`" in text, word


def test_the_label_holds_the_spec_hash_and_the_docs_say_so() -> None:
    """The label's name is spelled in dsfleet.schemas.labels only; the docs must name that very label."""
    for where in ("operating/agent.md", "architecture/decisions/0003-hashes.md", "architecture/index.md"):
        text = " ".join(page(where).split())
        assert re.search(f"`{re.escape(LABEL_SPEC_HASH)}`" + r"[^.]*\*\*spec hash\*\*", text), where


# --- generated reference pages ----------------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((*prefix, name))
                out += _commands(sub, (*prefix, name))
    return out


def _parser_of(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for part in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[part]
    return parser


def test_the_cli_reference_has_every_command_and_every_option_of_both_parsers() -> None:
    text = HOOKS.cli_reference()
    for parser in (dsfleet_parser(), agent_parser()):
        commands = _commands(parser)
        assert len(commands) >= 2
        assert HOOKS.command_names(parser) == commands
        for path in commands:
            full = (parser.prog, *path)
            heading = f"## {' '.join(full)} {{#{'-'.join(full)}}}"
            assert heading in text, heading
            section = text.split(heading, 1)[1].split("\n## ", 1)[0]
            for action in _parser_of(parser, path)._actions:
                for option in action.option_strings:
                    if option not in ("-h", "--help"):
                        assert option in section, (full, option)


def test_the_rules_page_lists_every_rule_with_its_default() -> None:
    from dsfleet.policies.engine import all_rules

    text = HOOKS.rules_reference()
    for rule in all_rules():
        assert f'<span id="{rule.id}"></span>`{rule.id}` | `{rule.severity.value}`' in text, rule.id


def test_the_deepstream_keys_page_lists_every_key_of_every_table() -> None:
    from dsfleet.schemas import deepstream as ds

    text = HOOKS.deepstream_reference()
    tables = [ds.NVINFER_PROPERTY_KEYS, ds.NVINFER_CLASS_ATTRS_KEYS, ds.PREPROCESS_PROPERTY_KEYS,
              ds.PREPROCESS_GROUP_KEYS, ds.CCM_ALIGN_KEYS, *ds.APP_GROUP_TABLES.values()]  # fmt: skip
    for keys in tables:
        for name in keys:
            assert f"| `{name}` |" in text, name


def test_the_manifest_reference_has_every_kind_and_every_spec_field() -> None:
    from dsfleet.schemas.export import manifest_json_schema
    from dsfleet.schemas.manifests import KIND_NAMES

    text = HOOKS.manifests_reference()
    defs = manifest_json_schema()["$defs"]
    for kind in KIND_NAMES:
        assert f"## {kind} {{#{kind.lower()}}}" in text
        spec = defs[kind]["properties"]["spec"]
        refs = [s["$ref"] for s in spec.get("oneOf", [spec]) if "$ref" in s]
        for ref in refs:
            for field in defs[ref.rsplit("/", 1)[-1]]["properties"]:
                assert f"| `{field}` |" in text, (kind, field)


def test_the_settings_reference_has_every_key_of_every_section() -> None:
    from pydantic import BaseModel

    from dsfleet.plumbing.settings import Settings

    text = HOOKS.settings_reference()
    for section, field in Settings.model_fields.items():
        assert f"## [{section}]" in text
        model = field.annotation
        assert isinstance(model, type)
        for key, info in model.model_fields.items():  # type: ignore[attr-defined]
            nested = info.annotation
            if isinstance(nested, type) and issubclass(nested, BaseModel):  # a table of its own
                assert f"### [{section}.{key}]" in text, (section, key)
                prefix = f"DSFLEET_{section.upper()}__{key.upper()}__"
                for sub in nested.model_fields:
                    assert f"`{prefix}{sub.upper()}`" in text, (section, key, sub)
                assert f"`DSFLEET_{section.upper()}_{key.upper()}`" not in text, (section, key)
                continue
            assert f"`DSFLEET_{section.upper()}_{key.upper()}`" in text, (section, key)


def test_every_marker_in_the_pages_is_one_the_hooks_fill() -> None:
    known = {*HOOKS.SNIPPETS, "decisions"}
    for name, text in all_pages().items():
        for marker in re.findall(r"<!-- dsfleet:([a-z-]+) -->", text):
            assert marker in known, (name, marker)
    for name in HOOKS.SNIPPETS:
        assert HOOKS.SNIPPETS[name]().startswith("|") or name == "packages", name


# --- the site's shape -------------------------------------------------------------------------------------------


def test_every_page_is_in_the_navigation_and_every_entry_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = set(_nav_pages(config["nav"]))
    written = set(all_pages())
    generated = {uri for uri in HOOKS.PAGES if uri.endswith(".md")}
    assert written | generated == nav
    assert not written & generated, "a generated page must not also be written by hand"
    assert config["theme"]["font"] is False
    assert [p if isinstance(p, str) else next(iter(p)) for p in config["plugins"]] == ["search"]


def test_decision_records_are_numbered_and_keep_their_shape() -> None:
    records = sorted((DOCS / "architecture" / "decisions").glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert len(records) >= 19
    for i, path in enumerate(records, start=1):
        number = f"{i:04d}"
        assert path.name.startswith(number + "-"), path.name
        text = path.read_text(encoding="utf-8")
        assert text.startswith(f"# {number}. "), path.name
        assert re.search(r"^Status: ", text, flags=re.MULTILINE), path.name
        headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
        assert headings == ["Context", "Decision", "Consequences"], path.name


def test_the_docs_cite_no_document_outside_the_project() -> None:
    for name, text in all_pages().items():
        for word in ("DESIGN", "REFERENCE.md", "§"):
            assert word not in text, (name, word)


# --- the code cites the project's own docs ----------------------------------------------------------------------

CITATION = re.compile("(?:" + "DESI" + "GN|REFER" + "ENCE)(?:\\.md)? *§")
SOURCE_DIRS = ("dsfleet", "benchmarks", "tests", "scripts", "deploy")


SUFFIXES = (".py", ".sh", ".toml", ".yaml", ".yml", ".service", ".env", ".md", ".txt", "")


def _sources() -> list[Path]:
    files: list[Path] = []
    for top in SOURCE_DIRS:
        # followlinks: dsfleet/ holds links to the source folders
        for folder, dirs, names in os.walk(ROOT / top, followlinks=True):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            files += [Path(folder) / n for n in names if Path(n).suffix in SUFFIXES]
    assert any(f.name == "nodeconfigs.py" for f in files), "the source folders are searched through dsfleet/"
    return files


def test_the_code_cites_no_document_outside_the_project() -> None:
    found = []
    for path in _sources():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), start=1):
            if CITATION.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "cite docs/… instead:\n" + "\n".join(found)


def test_every_docs_page_the_code_cites_exists() -> None:
    cited = set()
    for path in _sources():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        cited |= set(re.findall(r"\bdocs/[a-z0-9/_-]+\.md", text))
    assert cited, "the code cites the docs (decision records)"
    for target in sorted(cited):
        assert (ROOT / target).is_file(), target
