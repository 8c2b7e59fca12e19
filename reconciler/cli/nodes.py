"""``dsfleet nodes forget NAME``: forget at once a node the manifests no longer declare.

The coordinator retires such a node by itself once its agent reports its instances gone, or
``[coordinator] retire_after_seconds`` (10 minutes) after its removal when the agent never does (a host gone for
good); this command does it now. A node the manifests still declare is refused: remove it from them first.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from dsfleet.reconciler.cli.options import add_db, settings_of, store_problem
from dsfleet.schemas.errors import DsfleetError, ExitCode

__all__ = ["add_parser", "cmd_nodes_forget"]


def add_parser(sub: Any) -> None:
    n = sub.add_parser(
        "nodes",
        help="manage the nodes agents announced",
        description="Manage what the store keeps of the nodes agents announced.",
    )
    nsub = n.add_subparsers(dest="nodes_command", metavar="ACTION")
    nsub.required = True
    f = nsub.add_parser(
        "forget",
        help="forget a node removed from the manifests (its status and reported instances) now",
        description=__doc__,
        epilog="exit: 0 forgotten, 2 the manifests still declare it, nothing is known of it, or the store is "
        "unusable",
    )
    f.add_argument("name", metavar="NAME", help="the node's name")
    add_db(f)
    f.set_defaults(handler=cmd_nodes_forget)


def cmd_nodes_forget(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.store import Store

    url = settings_of(args).coordinator.db
    if store_problem("nodes forget", url, must_exist=True):
        return ExitCode.ERROR
    try:
        with Store.open(url) as store:
            forgotten = store.retire_node(args.name, datetime.now(UTC), "forgotten by `dsfleet nodes forget`")
    except DsfleetError as exc:
        print(f"dsfleet nodes forget: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    if not forgotten:
        print(f"dsfleet nodes forget: error: the store knows nothing of node {args.name}", file=sys.stderr)
        return ExitCode.ERROR
    print(f"node {args.name} forgotten: its status and the instances its agent reported are gone")
    return ExitCode.OK
