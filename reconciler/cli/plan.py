"""``dsfleet diff``, ``apply``, ``render``, ``get`` and ``history``: the offline GitOps workflow."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsfleet.reconciler.cli.findings import no_manifests, print_findings, report_missing, use_color
from dsfleet.reconciler.cli.options import (
    add_cache_option,
    add_db,
    add_manifest_options,
    add_output,
    created_store,
    settings_of,
    sqlite_path,
    store_problem,
)
from dsfleet.reconciler.views import apply_json, finding_json, history_json, records_json
from dsfleet.schemas.errors import DsfleetError, ExitCode
from dsfleet.schemas.findings import plural

PATHS_HELP = "manifest files or directories (*.yaml, *.yml; several are read as one set)"
RENDER_MARKER = ".dsfleet-render.json"
"""Written by ``render --out`` into its directory: which instance and files it wrote (removed by the next render)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="dry run: what apply would change, node by node and file by file",
        description="Compare the manifests with the last applied revision in the store (never the live fleet) "
        "and print what would change: nodes, instances (restart when only files change, recreate when the "
        "container spec changes) and unified diffs of rendered files. Never writes or migrates the store; "
        "without --db a store that does not exist yet counts as empty, with --db it must exist.",
        epilog="exit: 0 no changes, 1 changes, 2 invalid manifests or error",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    add_manifest_options(p)
    add_cache_option(p)
    add_db(p)
    add_output(p)
    p.add_argument("--show-unchanged", action="store_true", help="also list nodes that do not change")
    p.add_argument("--stat", action="store_true", help="list changed files without their contents or diffs")
    p.set_defaults(handler=cmd_diff)

    p = sub.add_parser(
        "apply",
        help="store a revision and queue the changed node configs",
        description="Validate the manifests, store them as a revision (source cli; git commit/author/message "
        "when PATH is in a git work tree) and queue exactly the changed nodes' configs for their agents. An "
        "invalid set is stored as a rejected revision and changes nothing else. Manifests identical to the "
        "newest revision's record nothing ('no changes'). Creates the store when it does not exist (and says so). "
        "Prints each changed instance's action and how many of its files change (--stat: which files; --diff: "
        "their diffs), then the summary.",
        epilog="exit: 0 applied (or no changes), 1 rejected or refused, 2 error (also: no manifests found, or a "
        "coordinator runs on the store: it is the fleet's one writer, or a rollback's pin holds these "
        "manifests: `dsfleet unpin` first)",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    add_manifest_options(p)
    add_db(p)
    p.add_argument(
        "--allow-prune-all",
        action="store_true",
        help="allow an apply that removes every instance of the fleet (refused by default: an empty or "
        "wrongly mounted directory looks exactly like that)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a manifest set with no manifests at all (an error by default)",
    )
    add_output(p)
    shown = p.add_mutually_exclusive_group()
    shown.add_argument(
        "--stat", action="store_true", help="list the changed files of each instance, without their contents"
    )
    shown.add_argument(
        "--diff",
        "-v",
        dest="full_diff",
        action="store_true",
        help="print the whole plan with every file's diff, as `dsfleet diff` does",
    )
    from dsfleet.reconciler.cli.waiting import add_wait_options

    add_wait_options(p)
    p.set_defaults(handler=cmd_apply)

    p = sub.add_parser(
        "render",
        help="print or write the exact files an instance's agent will write (or a node's whole config)",
        description="Render one instance's DeepStream files as the agent will write them to /workspace/configs "
        "(credentials stay ${secret:...} placeholders: the agent fills them in), from manifests or, with --db, "
        "from what the store holds (--revision N: as of revision N). --node NAME -o json prints the node "
        "config that `dsfleet-agent materialize --config FILE` reads.",
        epilog="exit: 0 rendered, 1 invalid manifests, 2 usage error (unknown instance or node, a directory "
        "that render did not write)",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help=PATHS_HELP + "; omit with --db")
    add_manifest_options(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--instance", metavar="NAME", help="the DsInstance to render")
    what.add_argument("--node", metavar="NAME", help="the Node whose whole config to render")
    p.add_argument(
        "--db", metavar="URL", help="render what the store holds instead of manifests (sqlite:///PATH, ...)"
    )
    p.add_argument(
        "--revision", type=int, metavar="N", help="with --db: as of revision N (default: the last applied)"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write the instance's files into DIR (removing those of a previous render of it) instead of "
        "printing them",
    )
    add_output(p)
    p.set_defaults(handler=cmd_render)

    p = sub.add_parser(
        "get",
        help="list what the last applied revision stored: nodes, cameras or instances",
        description="Read the store's inventory (the last applied revision), like `kubectl get`. --legacy shows "
        "the older system's records in its own terms (agents, cameras, dsInstance). Never shows a credential.",
        epilog="exit: 0 listed, 2 no store at --db or error",
    )
    p.add_argument("what", choices=("nodes", "cameras", "instances"), help="what to list")
    add_db(p)
    p.add_argument(
        "--legacy", action="store_true", help="the older system's columns (agent_name, ip_address, ...)"
    )
    add_output(p)
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser(
        "history",
        help="list stored revisions",
        description="Revisions, newest first: id, time, source (rollback: a `dsfleet rollback`), git commit "
        "(-dirty: uncommitted changes), accepted or rejected, nodes changed; then the rollback pins set and "
        'lifted. JSON: {"schema": "dsfleet.history/v1", "revisions": [...], "pins": [...]}. '
        "`history diff A B` prints what changed from revision A to revision B, as `dsfleet diff` does.",
        epilog="exit: 0 listed (diff: no change), 1 diff: changes, 2 no store at --db or error",
    )
    p.add_argument(
        "diff",
        nargs="*",
        metavar="diff A B",
        help="compare two stored revisions (their node configs, file by file)",
    )
    add_db(p)
    p.add_argument(
        "-n",
        "--limit",
        type=int,
        default=20,
        metavar="N",
        help="show the newest N revisions (0: all; default 20)",
    )
    add_output(p)
    p.set_defaults(handler=cmd_history)


def _limits(args: argparse.Namespace) -> Any:
    from dsfleet.reconciler.loading.yamlfiles import loader_limits

    return loader_limits(settings_of(args).coordinator, getattr(args, "exclude", None) or ())


def _desired(args: argparse.Namespace, command: str, paths: Sequence[str], *, cached: bool = False) -> Any:
    """The desired state of ``paths`` (``cached``: through the persisted cache unless ``--no-cache``)."""
    from dsfleet.reconciler.compiling.desired import desired_state

    if report_missing(command, paths):
        return None
    if cached:
        from dsfleet.reconciler.cli.caches import desired_for

        return desired_for(list(paths), _limits(args), no_cache=args.no_cache)
    return desired_state(list(paths), limits=_limits(args))


def _json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def cmd_diff(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.planning.plans import compute_plan
    from dsfleet.reconciler.planning.reports import plan_json, plan_text
    from dsfleet.reconciler.store import Store

    url = settings_of(args).coordinator.db
    if store_problem(args.command, url, must_exist=args.db is not None):
        return ExitCode.ERROR
    desired = _desired(args, args.command, args.paths, cached=True)
    if desired is None:
        return ExitCode.ERROR
    loaded = desired.loaded
    if desired.configs is None:
        if args.output == "json":
            _json(
                {
                    "schema": "dsfleet.diff/v1",
                    "valid": False,
                    "findings": [finding_json(f) for f in loaded.findings],
                }
            )
        print_findings(loaded.findings, roots=args.paths)
        print(
            f"dsfleet diff: {plural(len(loaded.errors), 'error')} in the manifests; nothing to compare",
            file=sys.stderr,
        )
        return ExitCode.ERROR
    no_manifests(args.command, args.paths, loaded, error=False)
    from dsfleet.reconciler.applying import stored_configs

    path = sqlite_path(url)
    if path is not None and not path.exists():
        print(f"dsfleet diff: note: no store at {path} yet: comparing with an empty fleet", file=sys.stderr)
    with Store.open(url, readonly=True) as store:
        stored = stored_configs(store, desired.configs)
    plan = compute_plan(desired.configs, stored)
    if loaded.warnings and args.output == "text":
        print_findings(loaded.warnings, roots=args.paths)
    if args.output == "json":
        out = plan_json(plan)
        out["valid"] = True
        out["findings"] = [finding_json(f) for f in loaded.findings]
        _json(out)
    else:
        sys.stdout.write(
            plan_text(
                plan, color=use_color(sys.stdout), show_unchanged=args.show_unchanged, bodies=not args.stat
            )
        )
    return ExitCode.OK if plan.empty else ExitCode.FAILED


def cmd_apply(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.applying import Caches, Outcome, apply_manifests
    from dsfleet.reconciler.cli.waiting import topic_prefix_of
    from dsfleet.reconciler.compiling.desired import desired_state
    from dsfleet.reconciler.loading.gitinfo import git_info
    from dsfleet.reconciler.store import NewRevision, Store

    if report_missing("apply", args.paths):
        return ExitCode.ERROR
    settings = settings_of(args)
    url = settings.coordinator.db
    if store_problem("apply", url, must_exist=False):
        return ExitCode.ERROR
    from dsfleet.reconciler.cli.writers import coordinator_conflict

    conflict = coordinator_conflict(url)
    if conflict is not None:
        print(f"dsfleet apply: error: {conflict}", file=sys.stderr)
        return ExitCode.ERROR
    git = git_info(args.paths[0])
    rev = NewRevision(
        source="cli",
        created_at=datetime.now(UTC),
        manifests_hash="",  # filled in once the manifests are read
        git_commit=(git.commit + ("-dirty" if git.dirty else "")) if git else None,
        git_author=git.author if git else None,
        git_message=git.message if git else None,
    )
    limits = _limits(args)
    caches = Caches()  # read and compiled once here (to refuse an empty set before the store is touched)
    first = desired_state(list(args.paths), caches.manifests, caches.compiled, limits=limits)
    empty = first.loaded.ok and no_manifests("apply", args.paths, first.loaded, error=not args.allow_empty)
    if empty and not args.allow_empty:
        return ExitCode.ERROR
    from dsfleet.reconciler.cli.keys import coordinator_keys, signer_of, signing_key_path

    try:
        key, made = coordinator_keys(settings.coordinator)
    except DsfleetError as exc:
        print(f"dsfleet apply: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    if made:
        print(
            f"dsfleet apply: made the coordinator's signing key {signing_key_path(settings.coordinator)}: "
            f"give every agent --trust-key {key.public.text()}",
            file=sys.stderr,
        )
    with created_store("apply", url), Store.open(url) as store:
        result = apply_manifests(
            list(args.paths),
            store,
            rev,
            allow_prune_all=args.allow_prune_all,
            topic_prefix=topic_prefix_of(args, settings),
            limits=limits,
            caches=caches,
            skip_unchanged=True,
            sign=signer_of(key),
        )
        newest = store.revisions(limit=1) if result.outcome is Outcome.UNCHANGED else []
    return _report_apply(args, result, newest[0] if newest else None)


def _report_apply(args: argparse.Namespace, result: Any, newest: Any) -> int:
    """Print the outcome of an apply (text or ``dsfleet.apply/v1`` JSON, also on rejection)."""
    from dsfleet.reconciler.applying import Outcome
    from dsfleet.reconciler.planning.reports import plan_text, summary, summary_line

    loaded = result.desired.loaded
    as_json = args.output == "json"
    findings = [finding_json(f) for f in loaded.findings]
    if result.outcome is Outcome.UNCHANGED:
        revision = newest.id if newest is not None else None
        accepted = newest.accepted if newest is not None else loaded.ok
        if as_json:
            _json({"schema": "dsfleet.apply/v1", "outcome": "unchanged", "revision": revision,
                   "accepted": accepted, "findings": findings})  # fmt: skip
        else:
            print_findings(loaded.findings, roots=args.paths)
            state = "" if accepted else f" (rejected: {plural(len(loaded.errors), 'error')})"
            print(f"no changes: the manifests are those of revision {revision}{state}; nothing recorded")
        return ExitCode.OK if accepted else ExitCode.FAILED
    if result.outcome is Outcome.REJECTED:
        if as_json:
            _json({"schema": "dsfleet.apply/v1", "outcome": "rejected", "revision": result.rejected_revision,
                   "accepted": False, "findings": findings})  # fmt: skip
        print_findings(loaded.findings, roots=args.paths)
        print(
            f"revision {result.rejected_revision} rejected: {plural(len(loaded.errors), 'error')}; "
            "the last good revision keeps running",
            file=sys.stderr,
        )
        return ExitCode.FAILED
    if result.outcome is Outcome.HELD_BY_PIN:
        from dsfleet.reconciler.planning.pins import unpin_condition

        if as_json:
            _json({"schema": "dsfleet.apply/v1", "outcome": "held-by-pin", "revision": None, "accepted": False,
                   "findings": findings})  # fmt: skip
        pin = result.pin
        print(
            f"dsfleet apply: error: held by the rollback pin of revision {pin.revision} (rolled back by "
            f"{pin.by}): storing these manifests would undo it; nothing stored. Lifted by {unpin_condition(pin)}"
            if pin is not None
            else "dsfleet apply: error: held by a rollback pin; nothing stored",
            file=sys.stderr,
        )
        return ExitCode.ERROR
    if loaded.warnings:
        print_findings(loaded.warnings, roots=args.paths)
    if result.outcome is Outcome.REFUSED_PRUNE_ALL:
        if as_json:
            _json({"schema": "dsfleet.apply/v1", "outcome": "refused", "revision": None, "accepted": False,
                   "findings": findings})  # fmt: skip
        print(
            "dsfleet apply: refused: this would remove every instance of the fleet (an empty or wrongly "
            "mounted manifests directory looks like this); re-run with --allow-prune-all if you mean it",
            file=sys.stderr,
        )
        return ExitCode.FAILED
    plan, applied = result.plan, result.applied
    assert plan is not None and applied is not None
    from dsfleet.policies.syncs import fleet_rollout

    if fleet_rollout(result.desired.loaded.fleet) is not None and not plan.empty:
        print(
            "dsfleet apply: note: Policy spec.rollout is run by a coordinator (it reads the gates); stored here, "
            "every change goes out at once",
            file=sys.stderr,
        )
    if as_json:
        _json(apply_json(applied, summary(plan), findings))
        return ExitCode.OK
    if not plan.empty:
        # by default each instance's action and its number of files; --stat the files, --diff their diffs
        sys.stdout.write(
            plan_text(
                plan, color=use_color(sys.stdout), bodies=args.full_diff, files=args.full_diff or args.stat
            )
        )
    gens = ", ".join(f"{n} → generation {g}" for n, g in sorted(applied.generations.items()))
    print(
        f"revision {applied.revision_id} applied: {plural(len(applied.outbox_ids), 'node config')} queued"
        + (f" ({gens})" if gens else " (no node changed)")
    )
    if plan.empty:
        print(summary_line(plan))
    if args.wait:
        from dsfleet.reconciler.cli.waiting import apply_wait

        return apply_wait(args, plan, applied.generations)
    if applied.outbox_ids:
        from dsfleet.reconciler.cli.waiting import publish_after_apply

        return publish_after_apply(args)
    return ExitCode.OK


def ensure_parent(url: str) -> None:
    """Create the directory of a SQLite store file."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        path.parent.mkdir(parents=True, exist_ok=True)


def _unknown(command: str, kind: str, name: str, known: Sequence[str]) -> int:
    from dsfleet.policies.registry import did_you_mean

    hint = did_you_mean(name, known)
    print(f"dsfleet {command}: error: no {kind} named {name!r}{hint}", file=sys.stderr)
    return ExitCode.ERROR


def _stored_configs(args: argparse.Namespace) -> dict[str, Any] | None:
    from dsfleet.reconciler.store import Store
    from dsfleet.schemas.nodeconfigs import NodeConfig

    url = settings_of(args).coordinator.db
    if store_problem(args.command, url, must_exist=True):
        return None
    with Store.open(url, readonly=True) as store:
        if args.revision is not None and store.revision(args.revision) is None:
            print(f"dsfleet render: error: no revision {args.revision} in the store", file=sys.stderr)
            return None
        rows = store.latest_node_configs(at_revision=args.revision)
    return {name: NodeConfig.model_validate(row.payload) for name, row in rows.items()}


def cmd_render(args: argparse.Namespace) -> int:
    if args.revision is not None and args.db is None:
        print("dsfleet render: error: --revision needs --db", file=sys.stderr)
        return ExitCode.ERROR
    if bool(args.paths) == (args.db is not None):
        print("dsfleet render: error: give manifest PATHs or --db URL (one of them)", file=sys.stderr)
        return ExitCode.ERROR
    if args.out and args.node:
        print(
            "dsfleet render: error: --out writes one instance's files; use it with --instance",
            file=sys.stderr,
        )
        return ExitCode.ERROR
    if args.db is not None:
        configs = _stored_configs(args)
        if configs is None:
            return ExitCode.ERROR
        instances = {i.name: i for c in configs.values() for i in c.instances}
    else:
        desired = _desired(args, args.command, args.paths)
        if desired is None:
            return ExitCode.ERROR
        loaded = desired.loaded
        fleet = desired.fleet
        if args.instance is not None and args.instance not in fleet.instances:
            return _unknown("render", "DsInstance", args.instance, list(fleet.instances))
        if args.node is not None and args.node not in fleet.nodes:
            return _unknown("render", "Node", args.node, list(fleet.nodes))
        if not loaded.ok:
            print_findings(loaded.findings, roots=args.paths)
            return ExitCode.FAILED
        configs = dict(desired.configs or {})
        instances = {i.name: i for c in configs.values() for i in c.instances}
        if args.instance is not None and args.instance not in instances:  # unplaced: in no node config
            from dsfleet.reconciler.compiling.instances import compile_instance

            instances[args.instance] = compile_instance(fleet, desired.resolved[args.instance], desired.sync)
    if args.node is not None:
        if args.node not in configs:
            return _unknown("render", "Node", args.node, list(configs))
        config = configs[args.node]
        if args.output == "json":
            _json(config.model_dump(mode="json"))
        else:
            for inst in config.instances:
                _print_files(inst.files, prefix=f"{inst.name}/")
        return ExitCode.OK
    if args.instance not in instances:
        return _unknown("render", "DsInstance", args.instance, list(instances))
    files = instances[args.instance].files
    if args.out:
        return _write_render(Path(args.out), args.instance, files)
    if args.output == "json":
        _json(
            {
                "schema": "dsfleet.render/v1",
                "instance": args.instance,
                "files": [{"path": f.path, "content": f.content} for f in files],
            }
        )
    else:
        _print_files(files)
    return ExitCode.OK


def _print_files(files: Sequence[Any], prefix: str = "") -> None:
    for f in files:
        print(f"==> {prefix}{f.path} <==")
        sys.stdout.write(f.content if f.content.endswith("\n") else f.content + "\n")


def _write_render(out: Path, instance: str, files: Sequence[Any]) -> int:
    """Write ``files`` into ``out``; remove the files a previous render of ``instance`` wrote there and no longer
    writes. A non-empty directory that ``render`` did not write (or wrote for another instance) is refused."""
    marker = out / RENDER_MARKER
    previous: list[str] = []
    if out.exists() and not out.is_dir():
        print(f"dsfleet render: error: {out}: not a directory", file=sys.stderr)
        return ExitCode.ERROR
    if out.is_dir() and any(out.iterdir()):
        try:
            record = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("instance") != instance:
            whose = f" (it holds a render of {record.get('instance')!r})" if isinstance(record, dict) else ""
            print(
                f"dsfleet render: error: {out} is not empty and was not written by a render of {instance!r}"
                f"{whose}; choose an empty or new directory",
                file=sys.stderr,
            )
            return ExitCode.ERROR
        previous = [str(p) for p in record.get("files", []) if isinstance(p, str)]
    out.mkdir(parents=True, exist_ok=True)
    names = [f.path for f in files]
    removed = 0
    for stale in sorted(set(previous) - set(names)):
        target = out / stale
        if "/" not in stale and target.is_file():
            target.unlink()
            removed += 1
    for f in files:
        (out / f.path).write_text(f.content, encoding="utf-8")
    marker.write_text(json.dumps({"instance": instance, "files": names}, indent=2) + "\n", encoding="utf-8")
    gone = f", removed {plural(removed, 'stale file')}" if removed else ""
    print(f"wrote {plural(len(files), 'file')} to {out}{gone}")
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
    from dsfleet.reconciler.store import Store

    url = settings_of(args).coordinator.db
    if store_problem(args.command, url, must_exist=True):
        return ExitCode.ERROR
    with Store.open(url, readonly=True) as store:
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
        _json(records)
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


def _commit(commit: str | None) -> str:
    """A git commit for the history table: 12 hex digits, keeping the ``-dirty`` mark."""
    if not commit:
        return "-"
    sha, dirty, _ = commit.partition("-dirty")
    return sha[:12] + ("-dirty" if dirty else "")


def cmd_history(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.store import Store

    if args.limit < 0:
        print("dsfleet history: error: -n/--limit must be 0 (all) or more", file=sys.stderr)
        return ExitCode.ERROR
    if args.diff:
        words = list(args.diff)
        if len(words) != 3 or words[0] != "diff" or not all(w.isdigit() for w in words[1:]):
            print(
                "dsfleet history: error: usage: dsfleet history diff A B (two revision ids)", file=sys.stderr
            )
            return ExitCode.ERROR
        from dsfleet.reconciler.cli.rollback import cmd_history_diff

        return cmd_history_diff(args, int(words[1]), int(words[2]))
    url = settings_of(args).coordinator.db
    if store_problem(args.command, url, must_exist=True):
        return ExitCode.ERROR
    with Store.open(url, readonly=True) as store:
        revisions = store.revisions(limit=args.limit or 2**31 - 1)  # 0: all
        pins = store.pin_events(limit=args.limit or 2**31 - 1)
        from dsfleet.reconciler.cli.rollouts import rollouts_by_revision

        rollouts = rollouts_by_revision(store)
    if args.output == "json":
        _json(
            {
                "schema": "dsfleet.history/v1",
                "revisions": history_json(revisions),
                "pins": [{"at": at.isoformat(), "kind": kind, "message": m} for at, kind, m in pins],
                "rollouts": list(rollouts.values()),
            }
        )
        return ExitCode.OK
    if not revisions:
        print("no revisions yet")
        return ExitCode.OK
    width = max(12, *(len(_commit(r.git_commit)) for r in revisions))
    print(f"{'ID':>5}  {'TIME (UTC)':<19}  {'SOURCE':<8}  {'COMMIT':<{width}}  {'STATUS':<8}  NODES CHANGED")
    for r in revisions:
        status = "accepted" if r.accepted else "rejected"
        rollout = rollouts.get(r.id)
        if rollout is not None and rollout["state"] == "aborted":
            status = "failed"  # its rollout was aborted: the fleet went back to the revision before it
        when = r.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        extra = f"  ({plural(len(r.errors), 'error')})" if not r.accepted else ""
        print(
            f"{r.id:>5}  {when:<19}  {r.source:<8}  {_commit(r.git_commit):<{width}}  {status:<8}  "
            f"{r.nodes_changed}{extra}"
            + (f"  {r.git_message}" if r.source == "rollback" and r.git_message else "")
            + (f"  rollout {rollout['state']}: {rollout['reason']}" if rollout is not None else "")
        )
    if pins:
        from dsfleet.reconciler.cli.rollback import history_pins_text

        sys.stdout.write(history_pins_text(pins))
    return ExitCode.OK
