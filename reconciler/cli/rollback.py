"""``dsfleet rollback``, ``dsfleet unpin`` and ``dsfleet history diff``: a rollback that automatic sync respects.

A rollback stores a new revision (source ``rollback``) whose node configs are those of a recorded revision, under
new generations (so agents take them), signed and queued in the outbox like any other, and a **pin** in the same
transaction (:mod:`dsfleet.reconciler.planning.pins`). A coordinator running on the store is not asked over its
API: it re-reads the pin before each sync of its manifests source (every watcher wake-up and periodic re-read),
publishes the outbox rows, and lifts the pin itself once the source moves past it. The store is already the one
place both share; a rollback written there also holds a coordinator started later, and works with no API up.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from datetime import UTC, datetime
from typing import Any

from dsfleet.reconciler.cli.options import (
    add_bootstrap_servers,
    add_db,
    add_output,
    settings_of,
    store_problem,
)
from dsfleet.schemas.errors import DsfleetError, ExitCode
from dsfleet.schemas.findings import plural


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "rollback",
        help="return the fleet (or one node) to a recorded revision's configs and pin it",
        description="Store a new revision (source rollback) whose node configs are those of REVISION (default: "
        "the accepted revision before the current one), queued for the agents like any other, and pin it: "
        "automatic sync is held while the manifests source still points at what was rolled back from (the git "
        "commit of a git work tree, else the manifests hash), and resumes by itself when the source moves past "
        "it (a new commit, other content). `dsfleet unpin` resumes it by hand. A running coordinator picks the "
        "rollback and the pin up from the store; with none running and --bootstrap-servers, the configs are "
        "published here.",
        epilog="exit: 0 rolled back, 1 nothing to roll back to (or nothing differs), 2 error",
    )
    p.add_argument("revision", nargs="?", type=int, metavar="REVISION", help="the revision to return to")
    p.add_argument(
        "--node", metavar="NODE", help="roll back only this node (the pin still holds the fleet's sync)"
    )
    add_db(p)
    add_bootstrap_servers(p)
    p.add_argument("--topic-prefix", metavar="PREFIX", default=None, help="prefix of the topic names")
    add_output(p)
    p.set_defaults(handler=cmd_rollback)

    p = sub.add_parser(
        "unpin",
        help="lift a rollback's pin: automatic sync resumes",
        description="Remove the pin a rollback set. The coordinator applies what its manifests source holds at "
        "its next read of it (the revision rolled back from, if the source still points at it).",
        epilog="exit: 0 unpinned, 1 nothing was pinned, 2 error",
    )
    add_db(p)
    p.set_defaults(handler=cmd_unpin)


def operator_name() -> str:
    """``user@host`` of who runs this command (what rollbacks, pins and rollout commands record)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def cmd_rollback(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.applying import agent_config_encoder
    from dsfleet.reconciler.cli.keys import coordinator_keys, signer_of
    from dsfleet.reconciler.cli.waiting import publish_after_apply, topic_prefix_of
    from dsfleet.reconciler.planning.pins import Pin, SourceState, unpin_condition
    from dsfleet.reconciler.rollbacks import RollbackRequest, roll_back
    from dsfleet.reconciler.store import Store

    settings = settings_of(args)
    url = settings.coordinator.db
    if store_problem("rollback", url, must_exist=True):
        return ExitCode.ERROR
    now = datetime.now(UTC)
    who = operator_name()
    with Store.open(url) as store:
        current = store.last_accepted_revision()
        if current is None:
            print("dsfleet rollback: error: no accepted revision in the store", file=sys.stderr)
            return ExitCode.FAILED
        target_id = args.revision
        if target_id is None:
            older = [r for r in store.revisions(limit=2**31 - 1) if r.accepted and r.id < current.id]
            if not older:
                print(
                    f"dsfleet rollback: error: revision {current.id} is the first accepted one: nothing to roll "
                    "back to",
                    file=sys.stderr,
                )
                return ExitCode.FAILED
            target_id = older[0].id
        target = store.revision(target_id)
        if target is None or not target.accepted:
            what = "no revision" if target is None else "a rejected revision (it stored no configs):"
            print(f"dsfleet rollback: error: {what} {target_id}", file=sys.stderr)
            return ExitCode.ERROR
        if (
            args.node is not None
            and args.node not in store.latest_node_configs(at_revision=target.id)
            and args.node not in store.latest_node_configs()
        ):
            print(
                f"dsfleet rollback: error: no node {args.node!r} in revision {target.id} or now",
                file=sys.stderr,
            )
            return ExitCode.ERROR
        source_rev = next((r for r in store.revisions(limit=2**31 - 1) if r.source != "rollback"), current)
        try:
            key, _made = coordinator_keys(settings.coordinator)
        except DsfleetError as exc:
            print(f"dsfleet rollback: error: {exc}", file=sys.stderr)
            return ExitCode.ERROR
        scope = f"node {args.node}" if args.node else "the fleet"
        request = RollbackRequest(
            target=target,
            current=current.id,
            source=SourceState(source_rev.git_commit, source_rev.manifests_hash),
            by=who,
            node=args.node,
        )
        encode = agent_config_encoder(
            now,
            topic_prefix_of(args, settings),
            store.fleet_id(),
            sign=signer_of(key),
            epoch=store.writer_epoch(),
        )
        applied = roll_back(store, request, now, encode)
        if applied is None:
            print(
                f"dsfleet rollback: nothing to do: the configs{' of ' + args.node if args.node else ''} are "
                f"already those of revision {target.id}",
                file=sys.stderr,
            )
            return ExitCode.FAILED
        pin = Pin.from_json(store.sync_state("rollback_pin"))
    assert pin is not None
    if args.output == "json":
        json.dump(
            {
                "schema": "dsfleet.rollback/v1",
                "revision": applied.revision_id,
                "restores": target.id,
                "from": current.id,
                "generations": dict(sorted(applied.generations.items())),
                "pin": pin.to_json(),
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        gens = ", ".join(f"{n} → generation {g}" for n, g in sorted(applied.generations.items()))
        print(
            f"revision {applied.revision_id} stored: {scope} back to revision {target.id} "
            f"({plural(len(applied.generations), 'node config')} queued: {gens})"
        )
        print(f"PINNED: automatic sync is held; lifted by {unpin_condition(pin)}")
    return publish_after_apply(args)


def cmd_unpin(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.planning.pins import Pin
    from dsfleet.reconciler.store import Store

    url = settings_of(args).coordinator.db
    if store_problem("unpin", url, must_exist=True):
        return ExitCode.ERROR
    with Store.open(url) as store:
        pin = Pin.from_json(store.sync_state("rollback_pin"))
        done = store.clear_pin(
            datetime.now(UTC),
            f"unpinned by hand by {operator_name()}"
            + (f" (the pin of revision {pin.revision})" if pin is not None else ""),
        )
    if not done:
        print("dsfleet unpin: nothing is pinned", file=sys.stderr)
        return ExitCode.FAILED
    print("unpinned: automatic sync resumes at the coordinator's next read of its manifests source")
    return ExitCode.OK


def cmd_history_diff(args: argparse.Namespace, a: int, b: int) -> int:
    """``dsfleet history diff A B``: what changed from revision A to revision B, as ``dsfleet diff`` prints it."""
    from dsfleet.reconciler.applying import configs_at
    from dsfleet.reconciler.cli.findings import use_color
    from dsfleet.reconciler.planning.plans import compute_plan
    from dsfleet.reconciler.planning.reports import plan_json, plan_text
    from dsfleet.reconciler.store import Store

    url = settings_of(args).coordinator.db
    if store_problem("history", url, must_exist=True):
        return ExitCode.ERROR
    with Store.open(url, readonly=True) as store:
        for rid in (a, b):
            found = store.revision(rid)
            if found is None or not found.accepted:
                what = "no revision" if found is None else "a rejected revision (it stored no configs):"
                print(f"dsfleet history diff: error: {what} {rid}", file=sys.stderr)
                return ExitCode.ERROR
        plan = compute_plan(configs_at(store, b), configs_at(store, a))
    if args.output == "json":
        out = plan_json(plan)
        out["fromRevision"], out["toRevision"] = a, b
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(f"revision {a} → revision {b}\n")
        sys.stdout.write(plan_text(plan, color=use_color(sys.stdout)))
    return ExitCode.OK if plan.empty else ExitCode.FAILED


def history_pins_text(events: list[tuple[datetime, str, str]]) -> str:
    """The pin lines of ``dsfleet history``: when a rollback pinned the fleet and when it was lifted."""
    lines = ["", "PINS (newest first)"]
    for at, kind, message in events:
        lines.append(f"  {at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  {kind:<8}  {message}")
    return "\n".join(lines) + "\n"
