"""``dsfleet db upgrade`` and ``dsfleet db current``: the store's migrations (Alembic, run programmatically)."""

from __future__ import annotations

import argparse
from typing import Any

from dsfleet.reconciler.cli.options import add_db, settings_of
from dsfleet.schemas.errors import ExitCode


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "db",
        help="the store's schema: upgrade it, show where it stands",
        description="The store's schema migrations (Alembic). Commands that write upgrade an older store "
        "themselves and refuse a store newer than this dsfleet; read-only commands read an older SQLite store "
        "through an upgraded in-memory copy and never migrate it.",
    )
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dsub.required = True
    up = dsub.add_parser(
        "upgrade",
        help="migrate the store to this dsfleet's schema (also a store written by the release before migrations)",
        description="Run the missing migrations in one transaction. A store newer than this dsfleet is refused.",
        epilog="exit: 0 upgraded or already current, 2 newer than this dsfleet, not a dsfleet store, or error",
    )
    add_db(up)
    up.set_defaults(handler=cmd_upgrade)
    cur = dsub.add_parser(
        "current",
        help="show the store's schema revision and this dsfleet's head",
        description="Print the store's schema revision (never creates or migrates anything).",
        epilog="exit: 0 (whatever the revision), 2 unreachable store",
    )
    add_db(cur)
    cur.set_defaults(handler=cmd_current)


def cmd_upgrade(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.cli.plan import ensure_parent
    from dsfleet.reconciler.store import Store

    url = settings_of(args).coordinator.db
    ensure_parent(url)
    with Store.open(url, migrate=False) as store:
        before = store.schema_state()
        after = store.migrate()
        if before.status == "current":
            print(f"{store.where}: already at {after.describe()}")
        else:
            was = before.revision or (
                f"schema version {before.legacy_version}" if before.legacy_version is not None else "empty"
            )
            print(f"{store.where}: upgraded from {was} to {after.describe()}")
    return ExitCode.OK


def cmd_current(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.store import Store

    with Store.open(settings_of(args).coordinator.db, readonly=True, migrate=False) as store:
        if store.empty_fallback:
            print(f"{store.where}: no store yet (head is {store.schema_state().head})")
        else:
            print(f"{store.where}: {store.schema_state().describe()}")
    return ExitCode.OK
