"""``dsfleet rollout status|promote|pause|resume|abort`` and ``dsfleet nodes cordon|uncordon``.

The rollout lives in the store (its state, written by the coordinator that runs it); a command is a request the
coordinator picks up within a second (the store's ``rollout_request``), so it works from any host that reaches
the store, with or without the HTTP API, like ``dsfleet rollback``. Cordoned nodes are a store value too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from dsfleet.reconciler.cli.options import add_db, add_output, settings_of, store_problem
from dsfleet.reconciler.cli.rollback import operator_name
from dsfleet.schemas.errors import ExitCode

ACTIONS = {
    "promote": "start the next wave of a rollout waiting at a pause (or resume a paused one)",
    "pause": "release no more nodes (gates are still read; an abort rule still fires)",
    "resume": "release nodes again after a pause",
    "abort": "stop the rollout: every changed node returns to the last good revision, and auto sync is pinned",
}


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "rollout",
        help="the running rollout: status, promote, pause, resume, abort",
        description="A revision whose changes Policy.spec.rollout governs reaches the nodes wave by wave, each "
        "wave gated on the health of the instances it changed (docs: operating/rollouts).",
    )
    rsub = r.add_subparsers(dest="rollout_command", metavar="ACTION")
    rsub.required = True
    p = rsub.add_parser(
        "status",
        help="the newest rollout: waves, per-node progress, why it waits",
        epilog="exit: 0 shown (or succeeded with --watch), 1 no rollout (or it ended aborted with --watch), 2 error",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="print again on every change until the rollout ends (waits for one when there is none yet)",
    )
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="--watch: stop after S seconds")
    add_db(p)
    add_output(p)
    p.set_defaults(handler=cmd_rollout_status)
    for action, words in ACTIONS.items():
        p = rsub.add_parser(
            action, help=words, description=words + ". Picked up by the coordinator within a second."
        )
        add_db(p)
        p.set_defaults(handler=cmd_rollout_action, action=action)


def add_node_parsers(nsub: Any) -> None:
    p = nsub.add_parser(
        "cordon",
        help="keep a node out of rollouts (its instances keep running)",
        description="A cordoned node keeps running what it runs; a rollout leaves it out (its config stays held) "
        "and releases it once it is uncordoned. Changes no rollout governs still reach it.",
    )
    p.add_argument("name", metavar="NAME", help="the node's name")
    p.add_argument("--reason", default="", help="shown in status")
    add_db(p)
    p.set_defaults(handler=cmd_cordon, cordon=True)
    p = nsub.add_parser("uncordon", help="let rollouts reach a node again")
    p.add_argument("name", metavar="NAME", help="the node's name")
    add_db(p)
    p.set_defaults(handler=cmd_cordon, cordon=False, reason="")


def cmd_rollout_action(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.planning.rollouts import FINISHED, Rollout
    from dsfleet.reconciler.store import Store
    from dsfleet.reconciler.store.values import ROLLOUT, ROLLOUT_REQUEST

    url = settings_of(args).coordinator.db
    if store_problem("rollout", url, must_exist=True):
        return ExitCode.ERROR
    with Store.open(url) as store:
        rollout = Rollout.from_json(store.sync_state(ROLLOUT))
        if rollout is None or rollout.state in FINISHED:
            state = (
                f" (the last one, of revision {rollout.revision}, {rollout.state.value})" if rollout else ""
            )
            print(f"dsfleet rollout {args.action}: error: no rollout is running{state}", file=sys.stderr)
            return ExitCode.FAILED
        who = operator_name()
        request = {
            "action": args.action,
            "by": who,
            "revision": rollout.revision,
            "at": datetime.now(UTC).isoformat(),
        }
        store.set_sync_state(ROLLOUT_REQUEST, request, datetime.now(UTC))
    print(
        f"rollout of revision {rollout.revision}: {args.action} requested by {who} (the coordinator acts within a second)"
    )
    return ExitCode.OK


def rollout_text(rollout: Any) -> str:
    """The rollout as ``rollout status`` prints it."""
    lines = [
        f"rollout of revision {rollout.revision} (from revision {rollout.from_revision}): {rollout.state.value.upper()}"
        + (f" — {rollout.reason}" if rollout.reason else ""),
        f"started {rollout.since:%Y-%m-%d %H:%M:%S} UTC"
        + (f", finished {rollout.finished:%H:%M:%S} UTC" if rollout.finished else ""),
    ]
    for index, name in enumerate(rollout.waves):
        members = [p for p in rollout.nodes if p.wave == index]
        marker = "▶" if index == rollout.wave and rollout.state.value in ("progressing", "paused") else " "
        lines.append(f"{marker} wave {name}: {len(members)} node{'s' if len(members) != 1 else ''}")
        for p in members:
            at = f" released {p.released_at:%H:%M:%S}" if p.released_at else ""
            lines.append(f"    {p.node:<24} {p.state.value:<9}{at}  {p.reason}")
    return "\n".join(lines) + "\n"


def rollouts_by_revision(store: Any) -> dict[int, dict[str, Any]]:
    """Revision → what ``history`` shows of its rollout (the finished ones, then the newest)."""
    from dsfleet.reconciler.planning.rollouts import Rollout
    from dsfleet.reconciler.staging import finished_summary
    from dsfleet.reconciler.store.values import ROLLOUT, ROLLOUT_HISTORY

    out = {
        int(h["revision"]): dict(h)
        for h in reversed(store.sync_state(ROLLOUT_HISTORY) or [])
        if "revision" in h
    }
    newest = Rollout.from_json(store.sync_state(ROLLOUT))
    if newest is not None:
        out[newest.revision] = finished_summary(newest)
    return out


def cmd_rollout_status(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.planning.rollouts import FINISHED, Rollout, RolloutState
    from dsfleet.reconciler.store import Store
    from dsfleet.reconciler.store.values import ROLLOUT

    url = settings_of(args).coordinator.db
    if store_problem("rollout", url, must_exist=True):
        return ExitCode.ERROR
    deadline = time.monotonic() + args.timeout if args.timeout else None
    last: Any = None
    with Store.open(url, readonly=True) as store:
        while True:
            value = store.sync_state(ROLLOUT)
            rollout = Rollout.from_json(value)
            if rollout is None and args.watch:
                pass  # --watch waits for the first rollout
            elif value != last:
                last = value
                if rollout is None:
                    print("no rollout: every revision so far went out at once", file=sys.stderr)
                    return ExitCode.FAILED
                if args.output == "json":
                    json.dump({"schema": "dsfleet.rollout/v1", **rollout.to_json()}, sys.stdout, indent=2)
                    sys.stdout.write("\n")
                else:
                    sys.stdout.write(rollout_text(rollout))
                sys.stdout.flush()
            if not args.watch or (rollout is not None and rollout.state in FINISHED):
                if args.watch and rollout is not None and rollout.state is not RolloutState.SUCCEEDED:
                    return ExitCode.FAILED
                return ExitCode.OK
            if deadline is not None and time.monotonic() > deadline:
                return ExitCode.FAILED
            time.sleep(0.5)


def cmd_cordon(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.store import Store
    from dsfleet.reconciler.store.values import CORDONED

    url = settings_of(args).coordinator.db
    if store_problem("nodes", url, must_exist=True):
        return ExitCode.ERROR
    now = datetime.now(UTC)
    with Store.open(url) as store:
        cordoned = dict(store.sync_state(CORDONED) or {})
        if args.cordon:
            cordoned[args.name] = {"by": operator_name(), "since": now.isoformat(), "reason": args.reason}
        elif cordoned.pop(args.name, None) is None:
            print(f"dsfleet nodes uncordon: node {args.name} is not cordoned", file=sys.stderr)
            return ExitCode.FAILED
        store.set_sync_state(CORDONED, cordoned, now)
        store.record_event(
            now,
            "cordon",
            f"{'cordoned' if args.cordon else 'uncordoned'} by {operator_name()}",
            node=args.name,
        )
    print(f"node {args.name} {'cordoned: rollouts leave it out' if args.cordon else 'uncordoned'}")
    return ExitCode.OK
