"""mkdocs hooks: the reference pages are generated from the code at every build, never committed.

- ``on_files`` adds the generated pages (``reference/*.md``) and the JSON Schema file of the manifests;
- ``on_page_markdown`` fills ``<!-- dsfleet:NAME -->`` markers in hand-written pages with tables taken from the
  code (packages, import contracts, store tables, topics, decision records). An unknown marker fails the build.

Sources: the argparse parsers of ``dsfleet`` and ``dsfleet-agent``, ``dsfleet.schemas.export`` (the JSON Schema
``dsfleet schema`` prints), ``dsfleet.policies.engine.all_rules`` (``dsfleet rules``), the DeepStream key tables
of ``dsfleet.schemas.deepstream``, the settings models of ``dsfleet.plumbing.settings``, the store's SQLAlchemy
metadata, the wire topics, the import-linter contracts of ``pyproject.toml`` and the modules' own docstrings.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dsfleet"
MARKER = re.compile(r"<!-- dsfleet:([a-z-]+) -->")

# --------------------------------------------------------------------------------------------------------------
# Markdown helpers


def _plain(text: str) -> str:
    text = text.replace("\\", "\\\\")
    for ch in "*_[]<>|`":
        text = text.replace(ch, "\\" + ch)
    return text


def escape(text: str) -> str:
    """Text for a Markdown paragraph or table cell: no emphasis, links, HTML or cell breaks. Paired backticks
    stay code spans (only a pipe is escaped inside them); an odd backtick is escaped like the rest."""
    parts = text.split("`")
    if len(parts) % 2 == 0:
        return " ".join(_plain(text).split())
    out = [("`" + part.replace("|", "\\|") + "`") if i % 2 else _plain(part) for i, part in enumerate(parts)]
    return " ".join("".join(out).split())


def rst_to_md(text: str) -> str:
    """A docstring's reStructuredText inline markup as Markdown (``x`` and :role:`x` become `x`)."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    return text.replace("``", "`")


def code(text: str) -> str:
    """Inline code that may itself hold a backtick or a pipe (for table cells)."""
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def first_paragraph(doc: str | None, limit: int = 240) -> str:
    if not doc:
        return ""
    para = " ".join(doc.strip().split("\n\n", 1)[0].split())
    if len(para) > limit:
        cut = para.find(". ", 0, limit)
        para = para[: cut + 1] if cut > 0 else para[:limit].rsplit(" ", 1)[0] + " …"
    return rst_to_md(para)


def generated_note(source: str) -> str:
    return (
        f'!!! note "Generated"\n    This page is generated from {source} each time the documentation is built; '
        "it cannot disagree with the code.\n\n"
    )


# --------------------------------------------------------------------------------------------------------------
# CLI reference (argparse)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_of(parser: argparse.ArgumentParser, name: str) -> str:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return choice.help or ""
    return ""


def command_names(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below ``parser``: ``("validate",)``, ``("topics", "create")``, …"""
    out: list[tuple[str, ...]] = []
    for name, sub in _subparsers(parser).items():
        out.append((*prefix, name))
        out += command_names(sub, (*prefix, name))
    return out


def _argument_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        invocation = parser._get_formatter()._format_action_invocation(action)
        names = ", ".join(code(part) for part in invocation.split(", "))
        help_text = escape(
            action.help % vars(action) if action.help and "%(" in action.help else action.help or ""
        )
        default = action.default
        shown = (
            ""
            if default in (None, False, [], "", argparse.SUPPRESS) or not action.option_strings
            else code(str(default))
        )
        if action.required and action.option_strings:
            help_text = "**required.** " + help_text
        rows.append([names, help_text, shown])
    return rows


def _describe(text: str | None) -> str:
    """A description or epilog: prose paragraphs as text, indented or aligned ones (examples) as a code block."""
    if not text:
        return ""
    out = []
    for para in re.split(r"\n\s*\n", text.strip("\n")):
        lines = para.splitlines()
        aligned = any(line[:1].isspace() for line in lines[1:]) or lines[0][:1].isspace()
        if aligned:
            out.append(f"```text\n{para}\n```\n\n")
        else:
            out.append(escape(" ".join(lines)) + "\n\n")
    return "".join(out)


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = parser.formatter_class(prog=parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip("\n")


def _command_section(parser: argparse.ArgumentParser, path: tuple[str, ...], help_line: str) -> list[str]:
    title = " ".join(path)
    out = [f"## {title} {{#{'-'.join(path)}}}\n\n"]
    if help_line:
        out.append(f"{escape(help_line[0].upper() + help_line[1:])}.\n\n")
    out.append(f"```text\n{_usage(parser)}\n```\n\n")
    out.append(_describe(parser.description))
    rows = _argument_rows(parser)
    if rows:
        out.append(table(["argument", "meaning", "default"], rows) + "\n")
    out.append(_describe(parser.epilog))
    return out


def cli_reference() -> str:
    from dsfleet.agent.cli import build_parser as agent_parser
    from dsfleet.reconciler.cli.main import build_parser as dsfleet_parser

    out = [
        "# CLI reference\n\n",
        generated_note("the argument parsers of `dsfleet` and `dsfleet-agent`"),
        "Every command also answers `--help`. Exit codes: 0 success, 1 a negative answer (invalid manifests, a "
        "rejected apply, changes found by `diff`, a timed-out `--wait`), 2 a usage error, unusable input or store, "
        "or an internal error. See [the command-line workflow](../cli/index.md) for what the commands print.\n\n",
    ]
    for parser in (dsfleet_parser(), agent_parser()):
        out += _command_section(parser, (parser.prog,), "")
        for path in command_names(parser):
            sub, owner = parser, parser
            for part in path:
                owner, sub = sub, _subparsers(sub)[part]
            out += _command_section(sub, (parser.prog, *path), _help_of(owner, path[-1]))
    return "".join(out)


# --------------------------------------------------------------------------------------------------------------
# Rules


def rules_reference() -> str:
    from dsfleet.policies.engine import all_rules

    rules = sorted(all_rules(), key=lambda r: (r.category, r.id))
    out = [
        "# Validation rules\n\n",
        generated_note("the rule registry (`dsfleet rules` prints the same list)"),
        "A Policy manifest changes a rule with `spec.rules.<rule-id>: {severity: error|warning|off, params: {...}, "
        "reason: ..., match: ...}`; relaxing a rule needs a `reason`, and rules marked *no* below protect "
        "secrets and cannot be relaxed. See [Policies and rules](../manifests/policies.md).\n\n",
    ]
    for category in sorted({r.category for r in rules}):
        title = {"deepstream": "DeepStream"}.get(category, category.capitalize())
        out.append(f"## {title} rules {{#{category}}}\n\n")
        rows = []
        for r in (r for r in rules if r.category == category):
            params = ", ".join(code(f"{k}: {json.dumps(v)}") for k, v in r.params.items())
            rows.append(
                [
                    f'<span id="{r.id}"></span>{code(r.id)}',
                    code(r.severity.value),
                    params,
                    "yes" if r.relaxable else "*no*",
                    escape(r.description),
                ]
            )
        out.append(table(["rule", "default", "params (defaults)", "relaxable", "checks"], rows) + "\n")
    return "".join(out)


# --------------------------------------------------------------------------------------------------------------
# DeepStream key tables


def _key_tables() -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """(anchor, title, what, table) for every key table, in the order of the page."""
    from dsfleet.schemas import deepstream as ds

    out: list[tuple[str, str, str, Mapping[str, Any]]] = [
        ("nvinfer-property", "nvinfer `[property]`", "a GIE's `properties` (format `nvinfer`)",
         ds.NVINFER_PROPERTY_KEYS),
        ("nvinfer-class-attrs", "nvinfer `[class-attrs-all]` / `[class-attrs-<N>]`", "a GIE's `classAttrs`",
         ds.NVINFER_CLASS_ATTRS_KEYS),
        ("nvdspreprocess-property", "nvdspreprocess `[property]`", "a GIE's `properties` (format "
         "`nvdspreprocess`)", ds.PREPROCESS_PROPERTY_KEYS),
        ("nvdspreprocess-group", "nvdspreprocess `[group-<N>]`", "a preprocess GIE's `groups`",
         ds.PREPROCESS_GROUP_KEYS),
        ("ccm-align-property", "ccm-align `[property]`", "the older app's face-align plugin (format `ccm-align`)",
         ds.CCM_ALIGN_KEYS),
    ]  # fmt: skip
    for group, keys in ds.APP_GROUP_TABLES.items():
        out.append((f"app-{group}", f"deepstream-app `[{group}]`", f"`DsInstance.spec.app` ({group})", keys))
    return out


def _key_notes(spec: Any) -> str:
    notes = []
    if spec.since:
        notes.append(f"DeepStream ≥ {spec.since}")
    if spec.choices_since:
        notes += [f"value {v} needs DeepStream ≥ {since}" for v, since in spec.choices_since.items()]
    if spec.deprecated:
        notes.append(f"deprecated: use {code(spec.deprecated)}")
    if spec.path:
        kind = f", {spec.path_kind.value}" if spec.path_kind is not None else ""
        notes.append(
            f"a path{kind}" + (", not resolved against the file's directory" if spec.cwd_relative else "")
        )
    if spec.getter is not None:
        notes.append(f"deepstream-app reads it as {spec.getter.value}")
    if spec.accepts_bool:
        notes.append("true/false = 1/0")
    if spec.secret:
        notes.append("may be `{secretRef: …}`")
    if spec.length is not None:
        notes.append(f"{spec.length} items")
    if spec.max_length is not None:
        notes.append(f"at most {spec.max_length} items")
    if spec.length_multiple is not None:
        notes.append(f"a multiple of {spec.length_multiple} items")
    return "; ".join(notes)


def deepstream_reference() -> str:
    from dsfleet.schemas import deepstream as ds

    out = [
        "# DeepStream keys\n\n",
        generated_note("the key tables of `dsfleet.schemas.deepstream`"),
        "Every key dsfleet renders is typed the way DeepStream reads it (the GLib getter), range-checked and "
        "spelled as DeepStream spells it. A list is a YAML list or a `;`-separated string. Keys dsfleet does not "
        "know are errors, except under a GIE's `extraProperties` or an instance's `app.extraGroups` (written "
        "verbatim, with a warning). dsfleet's own values: `batch-size: auto`, `auto` as the first value of "
        "`network-input-shape`, and `model-engine-file: auto` or a template with `{batch}`, `{gpu}`, `{precision}` "
        "(see [batch-size auto](../architecture/decisions/0011-batch-size-auto.md)).\n\n",
        "Mandatory nvdspreprocess keys: "
        + ", ".join(code(k) for k in ds.PREPROCESS_MANDATORY_KEYS)
        + ".\n\n",
    ]
    for anchor, title, what, keys in _key_tables():
        out.append(f"## {title} {{#{anchor}}}\n\nWritten in {what}.\n\n")
        rows = [
            [code(name), code(spec.kind.value), escape(ds.range_text(spec)), escape(_key_notes(spec)),
             escape(spec.description)]
            for name, spec in keys.items()
        ]  # fmt: skip
        out.append(table(["key", "type", "values", "notes", "meaning"], rows) + "\n")
    return "".join(out)


def key_model_anchors() -> dict[str, str]:
    """Model name (as in the JSON Schema's ``$defs``) → anchor on the DeepStream keys page."""
    from dsfleet.schemas import deepstream as ds

    fixed = {
        "NvinferProperties": "nvinfer-property",
        "ClassAttrs": "nvinfer-class-attrs",
        "PreprocessProperties": "nvdspreprocess-property",
        "PreprocessGroup": "nvdspreprocess-group",
        "CcmAlignProperties": "ccm-align-property",
    }
    out = {}
    for name, value in vars(ds).items():
        if not (isinstance(value, type) and issubclass(value, ds.DeepStreamKeys)) or name.startswith("_"):
            continue
        if name in fixed:
            out[name] = fixed[name]
            continue
        keys = ds.keys_of(value)
        best = max(ds.APP_GROUP_TABLES.items(), key=lambda item: len(keys & set(item[1])), default=None)
        if best is not None and keys & set(best[1]):
            out[name] = f"app-{best[0]}"
    return out


# --------------------------------------------------------------------------------------------------------------
# Manifest reference (JSON Schema)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type_of(schema: Mapping[str, Any], link: Callable[[str], str]) -> str:
    if "$ref" in schema:
        return link(_ref_name(schema["$ref"]))
    if "const" in schema:
        return code(json.dumps(schema["const"]))
    if "enum" in schema:
        return " \\| ".join(code(json.dumps(v) if not isinstance(v, str) else v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [_type_of(s, link) for s in schema[key] if s.get("type") != "null"]
            text = " or ".join(dict.fromkeys(parts))
            return text + (" or null" if any(s.get("type") == "null" for s in schema[key]) else "")
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type_of(schema.get('items', {}), link)}"
    if kind == "object":
        values = schema.get("additionalProperties")
        if not isinstance(values, dict):
            pattern = schema.get("patternProperties") or {}
            values = next(iter(pattern.values()), None)
        return f"map of {_type_of(values, link)}" if isinstance(values, dict) else "map"
    if isinstance(kind, list):
        return " or ".join(code(k) for k in kind)
    return code(kind) if kind else "any"


def _constraints(schema: Mapping[str, Any]) -> str:
    parts = []
    for key, word in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("minLength", "length ≥"),
                      ("maxLength", "length ≤"), ("minItems", "items ≥"), ("maxItems", "items ≤")):  # fmt: skip
        if key in schema:
            parts.append(f"{word} {schema[key]}")
    if "pattern" in schema:
        parts.append(f"pattern {code(schema['pattern'])}")
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key, []):
            inner = _constraints(sub)
            if inner:
                parts.append(inner)
    return ", ".join(dict.fromkeys(parts))


def _definition_table(definition: Mapping[str, Any], link: Callable[[str], str]) -> str:
    required = set(definition.get("required", []))
    rows = []
    for name, prop in definition.get("properties", {}).items():
        default = ""
        if "default" in prop and prop["default"] not in (None, [], {}):
            default = code(json.dumps(prop["default"]))
        desc = escape(prop.get("description", ""))
        limits = _constraints(prop)
        if limits:
            desc = f"{desc} ({limits})" if desc else limits
        rows.append([code(name), _type_of(prop, link), "yes" if name in required else "", default, desc])
    if not rows:
        return "Any keys (see the description above).\n"
    return table(["field", "type", "required", "default", "meaning"], rows)


def manifests_reference() -> str:
    from dsfleet.schemas.export import manifest_json_schema
    from dsfleet.schemas.manifests import KIND_NAMES

    whole = manifest_json_schema()
    defs: dict[str, Any] = whole["$defs"]
    anchors = key_model_anchors()

    def link(name: str) -> str:
        if name in anchors:
            return f"[{name}](deepstream-keys.md#{anchors[name]})"
        if name in defs:
            return f"[{name}](#{name.lower()})"
        return code(name)

    out = [
        "# Manifest reference\n\n",
        generated_note("the pydantic models of the manifest kinds (the JSON Schema `dsfleet schema` prints)"),
        "Every document has `apiVersion: dsfleet/v1`, `kind`, `metadata` and `spec`; unknown fields are errors. "
        "The whole JSON Schema is [dsfleet.schema.json](dsfleet.schema.json) (`dsfleet schema --out FILE` writes "
        "the same); DeepStream key groups are on [DeepStream keys](deepstream-keys.md). How the fields are used: "
        "[Writing manifests](../manifests/index.md).\n\n",
    ]
    done: set[str] = set()
    for kind in KIND_NAMES:
        out.append(f"## {kind} {{#{kind.lower()}}}\n\n")
        order = _reachable(kind, defs, anchors)
        done.add(kind)
        out.append(_definition_table(defs[kind], link) + "\n")
        for name in order:
            if name in done or name == kind:
                continue
            done.add(name)
            definition = defs[name]
            out.append(f"### {name} {{#{name.lower()}}}\n\n")
            if definition.get("description"):
                out.append(escape(definition["description"]) + "\n\n")
            if "enum" in definition:
                out.append("One of " + ", ".join(code(str(v)) for v in definition["enum"]) + ".\n\n")
            elif "oneOf" in definition or "anyOf" in definition:
                out.append(f"One of: {_type_of(definition, link)}.\n\n")
            else:
                out.append(_definition_table(definition, link) + "\n")
    return "".join(out)


def _reachable(start: str, defs: Mapping[str, Any], stop: Mapping[str, str]) -> list[str]:
    """Definitions reachable from ``start``, depth first, without descending into DeepStream key models."""
    seen: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                name = _ref_name(ref)
                if name not in seen and name not in stop:
                    seen.append(name)
                    visit(defs.get(name, {}))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(defs[start])
    return seen


def schema_file() -> str:
    from dsfleet.schemas.export import manifest_json_schema

    return json.dumps(manifest_json_schema(), indent=2) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Settings


def attribute_docs(path: Path, class_name: str) -> dict[str, str]:
    """The docstrings written under a class's attributes (``x: int = 1`` then ``\"\"\"…\"\"\"``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            out = {}
            body = node.body
            for here, after in itertools.pairwise(body):
                if (
                    isinstance(here, ast.AnnAssign)
                    and isinstance(here.target, ast.Name)
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)
                ):
                    out[here.target.id] = " ".join(after.value.value.split())
            return out
    return {}


def type_text(annotation: Any) -> str:
    """``str | None``, ``'auto' | 'manual'``, ``Path``: a settings field's type as a reader writes it."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def settings_reference() -> str:
    from dsfleet.plumbing import settings as settings_module
    from dsfleet.plumbing.settings import Settings

    source = Path(settings_module.__file__)
    out = [
        "# Settings reference\n\n",
        generated_note("the settings models of `dsfleet.plumbing.settings`"),
        "`settings.toml` in the working directory (or the file `DSFLEET_CONFIG` names) < `DSFLEET_*` environment "
        "variables < command-line flags. An unknown section or key is an error naming the file, line and the "
        "nearest valid name. See [Settings](../cli/settings.md) for examples.\n\n",
    ]
    from pydantic import BaseModel

    sections: list[tuple[str, type[BaseModel], str]] = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        sections.append((section, model, f"DSFLEET_{section.upper()}_"))
    while sections:
        section, model, env = sections.pop(0)
        docs = attribute_docs(source, model.__name__)
        level, anchor = ("###", section.replace(".", "-")) if "." in section else ("##", section)
        out.append(f"{level} [{section}] {{#{anchor}}}\n\n")
        if model.__doc__ and not model.__doc__.startswith(model.__name__ + "("):
            out.append(rst_to_md(" ".join(model.__doc__.split())) + "\n\n")
        rows = []
        nested: list[tuple[str, type[BaseModel], str]] = []
        for key, info in model.model_fields.items():
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                # a table of its own ([agent.admission]), its variables nested with "__"
                nested.append((f"{section}.{key}", info.annotation, f"{env.rstrip('_')}__{key.upper()}__"))
                continue
            default = info.get_default(call_default_factory=True)
            shown = "" if default is None else code(str(default))
            kind = type_text(info.annotation)
            rows.append(
                [code(key), code(kind), shown, code(f"{env}{key.upper()}"), escape(docs.get(key, ""))]
            )
        out.append(table(["key", "type", "default", "environment", "meaning"], rows) + "\n")
        sections[:0] = nested
    return "".join(out)


# --------------------------------------------------------------------------------------------------------------
# Snippets for hand-written pages


def _docstring(path: Path) -> str | None:
    try:
        return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except SyntaxError:
        return None


TOP_PACKAGES = ("schemas", "resolution", "policies", "plumbing", "reconciler", "agent")


def packages_snippet() -> str:
    out = []
    for top in TOP_PACKAGES:
        base = PACKAGE / top
        out.append(f"### `dsfleet.{top}`\n\n{first_paragraph(_docstring(base / '__init__.py'), 400)}\n\n")
        rows = []
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base)
            if "__pycache__" in rel.parts or "versions" in rel.parts or rel.name == "__main__.py":
                continue
            if rel.name == "__init__.py":
                if rel.parent == Path("."):
                    continue
                name = "/".join(rel.parent.parts) + "/"
            else:
                name = "/".join(rel.with_suffix("").parts)
            rows.append([code(name), escape(first_paragraph(_docstring(path)))])
        out.append(table(["module", "what it holds"], rows) + "\n")
    return "".join(out)


def import_contracts_snippet() -> str:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    rows = []
    for c in contracts:
        if c["type"] == "layers":
            what = " above ".join(code(layer) for layer in c["layers"])
        elif c["type"] == "independence":
            what = " and ".join(code(m) for m in c["modules"]) + " are independent"
        else:
            allowed = sorted({i.split(" -> ")[0].removesuffix(".**") for i in c.get("ignore_imports", [])})
            what = (
                ", ".join(code(m) for m in c["source_modules"])
                + " may not import "
                + ", ".join(code(m) for m in c["forbidden_modules"])
            )
            if allowed:
                what += "; except " + ", ".join(code(m) for m in allowed)
        rows.append([escape(c["name"]), what])
    return table(["contract", "rule"], rows)


def store_tables_snippet() -> str:
    from dsfleet.reconciler.store import schema

    source = Path(schema.__file__).read_text(encoding="utf-8")
    docs: dict[str, str] = {}
    tree = ast.parse(source)
    for here, after in itertools.pairwise(tree.body):
        call = getattr(here, "value", None)
        if (
            isinstance(call, ast.Call)
            and call.args
            and isinstance(call.args[0], ast.Constant)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[str(call.args[0].value)] = first_paragraph(after.value.value, 300)
    rows = []
    for t in schema.METADATA.sorted_tables:
        cols = ", ".join(c.name for c in t.columns)
        rows.append([code(t.name), escape(docs.get(t.name, "")), escape(cols)])
    return table(["table", "what", "columns"], rows)


def topics_snippet() -> str:
    from dsfleet.schemas import wire

    doc = wire.__doc__ or ""
    rows = []
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            rows.append([cells[0], code(cells[1]), escape(cells[2]), escape(rst_to_md(cells[3]))])
    names = {str(wire.TOPIC_NUMBERS[t]): t.value for t in wire.Topic}
    if sorted(r[0] for r in rows) != sorted(names):  # the docstring's table must name every topic
        raise ValueError("the topic table of dsfleet.schemas.wire's docstring does not list the six topics")
    return table(["#", "topic", "direction", "key"], rows)


def decisions_snippet(files: Files) -> str:
    rows = []
    for f in sorted(files, key=lambda f: f.src_uri):
        m = re.fullmatch(r"architecture/decisions/(\d{4})-[a-z0-9-]+\.md", f.src_uri)
        if not m:
            continue
        text = f.content_string
        title = re.search(r"^# (.+)$", text, flags=re.MULTILINE)
        rows.append([m.group(1), f"[{title.group(1) if title else f.src_uri}]({Path(f.src_uri).name})"])
    return table(["#", "decision"], rows)


def metrics_snippet() -> str:
    """Every metric family the ``/metrics`` collector yields, read from its source (name, type, labels, help)."""
    from dsfleet.reconciler.api import metrics

    tree = ast.parse(Path(metrics.__file__).read_text(encoding="utf-8"))
    rows = []
    for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        where = {
            "_store_metrics": "the store, at each scrape",
            "_coordinator_metrics": "the coordinator",
        }.get(func.name)
        if where is None:
            continue
        for call in (n for n in ast.walk(func) if isinstance(n, ast.Call)):
            kind = getattr(call.func, "id", "")
            if not kind.endswith("MetricFamily") or len(call.args) < 2:
                continue
            name, help_text = (a.value if isinstance(a, ast.Constant) else None for a in call.args[:2])
            labels = next((k.value for k in call.keywords if k.arg == "labels"), None)
            label_names = (
                [getattr(e, "value", "") for e in labels.elts] if isinstance(labels, ast.List) else []
            )
            family = kind.removesuffix("MetricFamily").lower()
            shown = f"{name}_total" if family == "counter" else str(name)
            if label_names:
                shown += "{" + ",".join(label_names) + "}"
            rows.append([code(shown), family, where, escape(str(help_text))])
    if not rows:
        raise ValueError("no metric families found in dsfleet.reconciler.api.metrics")
    return table(["metric", "type", "from", "meaning"], rows)


SNIPPETS: dict[str, Callable[[], str]] = {
    "metrics": metrics_snippet,
    "packages": packages_snippet,
    "import-contracts": import_contracts_snippet,
    "store-tables": store_tables_snippet,
    "topics": topics_snippet,
}


def benchmarks_page() -> str:
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    note = (
        '!!! note "From the repository"\n    This page is `BENCHMARKS.md` of the repository, included as it is at '
        "each build. `make bench` measures; see [Development](index.md#benchmarks).\n\n"
    )
    title, _, rest = text.partition("\n")
    return f"{title}\n\n{note}{rest}"


PAGES: dict[str, Callable[[], str]] = {
    "development/benchmarks.md": benchmarks_page,
    "reference/cli.md": cli_reference,
    "reference/manifests.md": manifests_reference,
    "reference/rules.md": rules_reference,
    "reference/deepstream-keys.md": deepstream_reference,
    "reference/settings.md": settings_reference,
}

# --------------------------------------------------------------------------------------------------------------
# mkdocs events


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    for uri, build in PAGES.items():
        files.append(File.generated(config, uri, content=build()))
    files.append(File.generated(config, "reference/dsfleet.schema.json", content=schema_file()))
    return files


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "decisions":
            return decisions_snippet(files)
        if name not in SNIPPETS:
            raise ValueError(f"{page.file.src_uri}: unknown marker <!-- dsfleet:{name} -->")
        return SNIPPETS[name]()

    return MARKER.sub(fill, markdown)
