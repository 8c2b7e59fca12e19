"""``dsfleet diff``, ``apply``, ``render`` and ``history``: the offline GitOps workflow."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.cli.options import add_db, add_output, settings_of
from reconciler.cli.reports import plural, print_findings, report_missing, use_color
from reconciler.views import apply_json, finding_json, history_json, records_json
from schemas.errors import ExitCode


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="dry run: what apply would change, node by node and file by file",
        description="Compare the manifests with the last applied revision in the store (never the live fleet) "
        "and print what would change: nodes, instances (restart when only files change, recreate when the "
        "container spec changes) and unified diffs of rendered files. Never writes or migrates the store; a "
        "missing store counts as empty.",
        epilog="exit: 0 no changes, 1 changes, 2 invalid manifests or error",
    )
    p.add_argument("path", metavar="PATH", help="manifests directory or file")
    add_db(p)
    add_output(p)
    p.add_argument("--show-unchanged", action="store_true", help="also list nodes that do not change")
    p.add_argument("--stat", action="store_true", help="list changed files without their unified diffs")
    p.set_defaults(handler=cmd_diff)

    p = sub.add_parser(
        "apply",
        help="store a revision and queue the changed node configs",
        description="Validate the manifests, store them as a revision (source cli; git commit/author/message "
        "when PATH is in a git work tree) and queue exactly the changed nodes' configs for their agents. An "
        "invalid set is stored as a rejected revision and changes nothing else.",
        epilog="exit: 0 applied (or nothing to do), 1 rejected, 2 error",
    )
    p.add_argument("path", metavar="PATH")
    add_db(p)
    p.add_argument(
        "--allow-prune-all",
        action="store_true",
        help="allow an apply that removes every instance of the fleet (refused by default: an empty or "
        "wrongly mounted directory looks exactly like that)",
    )
    add_output(p)
    from reconciler.cli.waiting import add_wait_options

    add_wait_options(p)
    p.set_defaults(handler=cmd_apply)

    p = sub.add_parser(
        "render",
        help="print or write the exact files an instance's agent will write",
        description="Render one instance's DeepStream files as the agent will write them to /workspace/configs "
        "(credentials stay ${secret:...} placeholders: the agent fills them in).",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--instance", required=True, metavar="NAME")
    p.add_argument("--out", metavar="DIR", help="write the files into DIR instead of printing them")
    p.set_defaults(handler=cmd_render)

    p = sub.add_parser(
        "get",
        help="list what the last applied revision stored: nodes, cameras or instances",
        description="Read the store's inventory (the last applied revision), like `kubectl get`. --legacy shows "
        "the older system's records in its own terms (agents, cameras, dsInstance). Never shows a credential.",
    )
    p.add_argument("what", choices=("nodes", "cameras", "instances"))
    add_db(p)
    p.add_argument(
        "--legacy", action="store_true", help="the older system's columns (agent_name, ip_address, ...)"
    )
    add_output(p)
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser("history", help="list stored revisions", description="Revisions, newest first.")
    add_db(p)
    p.add_argument("-n", "--limit", type=int, default=20)
    add_output(p)
    p.set_defaults(handler=cmd_history)


def _desired(args: argparse.Namespace, command: str, path: str) -> Any:
    from reconciler.applying import loader_limits
    from reconciler.compiling.desired import desired_state

    if report_missing(command, [path]):
        return None
    return desired_state([path], limits=loader_limits(settings_of(args).coordinator))


def cmd_diff(args: argparse.Namespace) -> int:
    from reconciler.planning.plans import compute_plan
    from reconciler.planning.reports import plan_json, plan_text
    from reconciler.store import Store

    desired = _desired(args, args.command, args.path)
    if desired is None:
        return ExitCode.ERROR
    loaded = desired.loaded
    if desired.configs is None:
        if args.output == "json":
            json.dump(
                {
                    "schema": "dsfleet.diff/v1",
                    "valid": False,
                    "findings": [finding_json(f) for f in loaded.findings],
                },
                sys.stdout,
                indent=2,
            )
            sys.stdout.write("\n")
        print_findings(loaded.findings)
        print(
            f"dsfleet diff: {len(loaded.errors)} errors in the manifests; nothing to compare", file=sys.stderr
        )
        return ExitCode.ERROR
    from reconciler.applying import stored_configs

    with Store.open(settings_of(args).coordinator.db, readonly=True) as store:
        stored = stored_configs(store, desired.configs)
    plan = compute_plan(desired.configs, stored)
    if loaded.warnings and args.output == "text":
        print_findings(loaded.warnings)
    if args.output == "json":
        out = plan_json(plan)
        out["valid"] = True
        out["findings"] = [finding_json(f) for f in loaded.findings]
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(
            plan_text(
                plan, color=use_color(sys.stdout), show_unchanged=args.show_unchanged, bodies=not args.stat
            )
        )
    return ExitCode.OK if plan.empty else ExitCode.FAILED


def cmd_apply(args: argparse.Namespace) -> int:
    from reconciler.applying import Outcome, apply_manifests, loader_limits, revision_from_git
    from reconciler.cli.waiting import topic_prefix_of
    from reconciler.planning.reports import plan_text, summary, summary_line
    from reconciler.store import Store

    if report_missing("apply", [args.path]):
        return ExitCode.ERROR
    settings = settings_of(args)
    rev = revision_from_git(args.path, source="cli", now=datetime.now(UTC))
    ensure_parent(settings.coordinator.db)
    with Store.open(settings.coordinator.db) as store:
        result = apply_manifests(
            [args.path],
            store,
            rev,
            allow_prune_all=args.allow_prune_all,
            topic_prefix=topic_prefix_of(args, settings),
            limits=loader_limits(settings.coordinator),
        )
    loaded = result.desired.loaded
    if result.outcome is Outcome.REJECTED:
        print_findings(loaded.findings)
        print(
            f"revision {result.rejected_revision} rejected: {plural(len(loaded.errors), 'error')}; "
            "the last good revision keeps running",
            file=sys.stderr,
        )
        return ExitCode.FAILED
    if loaded.warnings:
        print_findings(loaded.warnings)
    if result.outcome is Outcome.REFUSED_PRUNE_ALL:
        print(
            "dsfleet apply: refused: this would remove every instance of the fleet (an empty or wrongly "
            "mounted manifests directory looks like this); re-run with --allow-prune-all if you mean it",
            file=sys.stderr,
        )
        return ExitCode.FAILED
    plan, applied = result.plan, result.applied
    assert plan is not None and applied is not None
    if args.output == "json":
        json.dump(apply_json(applied, summary(plan)), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return ExitCode.OK
    if not plan.empty:
        sys.stdout.write(plan_text(plan, color=use_color(sys.stdout)))
    gens = ", ".join(f"{n} → generation {g}" for n, g in sorted(applied.generations.items()))
    print(
        f"revision {applied.revision_id} applied: {plural(len(applied.outbox_ids), 'node config')} queued"
        + (f" ({gens})" if gens else " (nothing changed)")
    )
    if plan.empty:
        print(summary_line(plan))
    if args.wait:
        from reconciler.cli.waiting import apply_wait

        return apply_wait(args, plan, applied.generations)
    if applied.outbox_ids:
        from reconciler.cli.waiting import publish_after_apply

        return publish_after_apply(args)
    return ExitCode.OK


def ensure_parent(url: str) -> None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        path.parent.mkdir(parents=True, exist_ok=True)


def cmd_render(args: argparse.Namespace) -> int:
    desired = _desired(args, args.command, args.path)
    if desired is None:
        return ExitCode.ERROR
    loaded = desired.loaded
    if args.instance not in desired.fleet.instances:
        print(f"dsfleet render: error: no DsInstance named {args.instance!r}", file=sys.stderr)
        return ExitCode.ERROR
    if not loaded.ok:
        print_findings(loaded.findings)
        return ExitCode.FAILED
    from reconciler.compiling.instances import compile_instance

    config = compile_instance(desired.fleet, desired.resolved[args.instance])
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for f in config.files:
            (out / f.path).write_text(f.content, encoding="utf-8")
        print(f"wrote {len(config.files)} files to {out}")
    else:
        for f in config.files:
            print(f"==> {f.path} <==")
            sys.stdout.write(f.content if f.content.endswith("\n") else f.content + "\n")
    return ExitCode.OK


_GET_COLUMNS = {
    ("nodes", False): ("name", "hostname", "capacity", "gpus", "labels"),
    ("cameras", False): ("name", "camera_id", "url", "secret_ref", "encoding", "instance"),
    ("instances", False): ("name", "node", "gpu", "layout", "profile", "camera_count", "paused", "image"),
    ("nodes", True): ("agent_name", "hostname", "ip_address", "node_id", "connected"),
    ("cameras", True): (
        "camera_id",
        "name",
        "ip_address",
        "encode_type",
        "type",
        "instance_name",
        "agent_name",
    ),
    ("instances", True): ("instance_name", "agent_name", "app_type", "cameras"),
}


def cmd_get(args: argparse.Namespace) -> int:
    from reconciler.store import Store

    with Store.open(settings_of(args).coordinator.db, readonly=True) as store:
        rows: list[Any]
        if args.legacy:
            legacy: dict[str, Callable[[], Sequence[Any]]] = {
                "nodes": store.legacy_agents,
                "cameras": store.legacy_cameras,
                "instances": store.legacy_ds_instances,
            }
            rows = list(legacy[args.what]())
        else:
            rows = list(getattr(store.inventory(), args.what))
    records = records_json(rows)
    if args.output == "json":
        json.dump(records, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return ExitCode.OK
    columns = _GET_COLUMNS[(args.what, args.legacy)]
    table = [[_cell(rec.get(c)) for c in columns] for rec in records]
    widths = [max([len(c), *(len(row[i]) for row in table)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not table:
        print(f"(no {args.what} stored; run `dsfleet apply` first)", file=sys.stderr)
    return ExitCode.OK


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def cmd_history(args: argparse.Namespace) -> int:
    from reconciler.store import Store

    with Store.open(settings_of(args).coordinator.db, readonly=True) as store:
        revisions = store.revisions(limit=args.limit)
    if args.output == "json":
        json.dump(history_json(revisions), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return ExitCode.OK
    if not revisions:
        print("no revisions yet")
        return ExitCode.OK
    print(f"{'ID':>5}  {'TIME (UTC)':<19}  {'SOURCE':<7}  {'COMMIT':<12}  {'STATUS':<8}  NODES CHANGED")
    for r in revisions:
        status = "accepted" if r.accepted else "rejected"
        commit = (r.git_commit or "-")[:12]
        when = r.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        extra = f"  ({len(r.errors)} errors)" if not r.accepted else ""
        print(f"{r.id:>5}  {when:<19}  {r.source:<7}  {commit:<12}  {status:<8}  {r.nodes_changed}{extra}")
    return ExitCode.OK
