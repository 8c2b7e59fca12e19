"""The store's one migration history: Alembic revisions in ``versions/``, run programmatically (``dsfleet db
upgrade``, or opening an older store for writing) inside the caller's transaction.

Each revision is self-contained: it spells out the tables and columns it creates or changes as they were at that
revision (``op.create_table``, ``op.add_column``, ...) and imports nothing from the store's modules, so a later
change to the current tables (:mod:`dsfleet.reconciler.store.schema`) never changes what an old revision does.
Upgrading an empty database to the head revision gives exactly the tables of ``schema.py`` (a test compares the
two on SQLite and PostgreSQL).

- ``0001`` (baseline): the schema of the release before Alembic. That release kept its own migration count in
  ``schema_version``; the baseline runs only the steps a store of that release is missing, so the store upgrades
  in place, then adds the row :data:`ALEMBIC_MARKER`, so that release refuses the upgraded store as newer than
  itself instead of writing to it.
- ``0002``: the live loop (``node_status``, ``sync_state``, more ``observed`` columns).
- ``0003``: the fleet id (a UUID made by this revision), the coordinator's heartbeat, instance conditions and FPS
  times, the fleet and refused configs of each node's agent.

Adding a table or column (revision ``0004``):

1. Change the tables in ``schema.py``.
2. Write ``versions/r0004_<what>.py`` with ``revision = "0004"`` and ``down_revision = "0003"``, making the same
   change with ``op.*`` calls and the column definitions written out (never import ``schema.py``). Alembic can
   draft it from the difference between a database at the head and ``schema.py``: in a source tree, ``alembic -c
   reconciler/store/migrations/alembic.ini -x url=sqlite:///scratch.db upgrade head``, then the same with
   ``revision --autogenerate --rev-id 0004 -m "<what>"``; review the draft. SQLite cannot alter or drop a column
   in place: use ``op.batch_alter_table`` for that. A new column of an existing table is nullable or has a
   ``server_default``, since stores in the field have rows.
3. Set :data:`HEAD` to ``"0004"``.

The tests then check that ``HEAD`` is the scripts' head and that the migrated database matches ``schema.py``.
Revisions go forward only (``downgrade`` raises): restore a backup to go back.

The state of a database (:func:`inspect_schema`) is one of ``uninitialised``, ``pre-alembic`` (a store of the
release before Alembic), ``older`` (behind the head revision), ``current``, ``newer`` (a revision this dsfleet
does not know: written by a newer release) or ``foreign`` (tables that are not dsfleet's).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "ALEMBIC_MARKER",
    "HEAD",
    "PRE_ALEMBIC_VERSION",
    "SCRIPT_LOCATION",
    "SchemaState",
    "head_revision",
    "inspect_schema",
    "known_revisions",
    "scripts_head",
    "upgrade",
]

SCRIPT_LOCATION: Final = Path(__file__).resolve().parent
PRE_ALEMBIC_VERSION: Final = 2
"""The last ``schema_version`` the release before Alembic wrote; a higher one without Alembic's own table is a
store of a release this dsfleet does not know."""
ALEMBIC_MARKER: Final = 100
"""The ``schema_version`` row the baseline adds: pre-Alembic releases read it as "too new for me"."""
VERSION_TABLE: Final = "alembic_version"
HEAD: Final = "0005"
"""The newest revision in ``versions/`` (a test checks it against Alembic's own reading of the scripts). Known
without loading Alembic and the scripts, which is most of the cost of opening a store that is up to date (every
read-only command); Alembic is imported only to migrate, or for a store at another revision."""

Status = Literal["uninitialised", "pre-alembic", "older", "current", "newer", "foreign"]


@dataclass(frozen=True)
class SchemaState:
    status: Status
    revision: str | None
    """The Alembic revision of the database (None: none recorded)."""
    head: str
    legacy_version: int | None = None
    """``max(schema_version.version)`` when that table exists."""
    foreign_tables: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for ``dsfleet db current`` and messages."""
        if self.status == "current":
            return f"{self.revision} (head)"
        if self.status == "older":
            return f"{self.revision}; head is {self.head}: run `dsfleet db upgrade`"
        if self.status == "pre-alembic":
            return f"schema version {self.legacy_version} of the release before migrations: run `dsfleet db upgrade`"
        if self.status == "newer":
            known = self.revision or f"schema version {self.legacy_version}"
            return f"{known}, newer than this dsfleet (head {self.head}): upgrade dsfleet"
        if self.status == "foreign":
            return f"not a dsfleet store (tables {', '.join(self.foreign_tables[:5])})"
        return "not initialised (no tables yet)"


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    return HEAD


def scripts_head() -> str | None:
    """The head revision as Alembic reads it from ``versions/`` (what :data:`HEAD` must equal)."""
    return _script().get_current_head()


def known_revisions() -> frozenset[str]:
    return frozenset(rev.revision for rev in _script().walk_revisions())


def inspect_schema(conn: Connection) -> SchemaState:
    """Where the database stands, without changing anything."""
    tables = set(sa.inspect(conn).get_table_names())
    head = head_revision()
    legacy: int | None = None
    if "schema_version" in tables:
        value = conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar()
        legacy = int(value) if value is not None else 0
    revision = _current_revision(conn) if VERSION_TABLE in tables else None
    if revision is not None:
        if revision != head and revision not in known_revisions():
            return SchemaState("newer", revision, head, legacy)
        return SchemaState("current" if revision == head else "older", revision, head, legacy)
    if legacy is not None:
        if legacy > PRE_ALEMBIC_VERSION:
            return SchemaState("newer", None, head, legacy)
        return SchemaState("pre-alembic", None, head, legacy)
    foreign = tuple(sorted(t for t in tables if not t.startswith("sqlite_") and t != VERSION_TABLE))
    if foreign:
        return SchemaState("foreign", None, head, None, foreign)
    return SchemaState("uninitialised", None, head)


def _current_revision(conn: Connection) -> str | None:
    """The revision recorded in ``alembic_version`` (what Alembic's ``get_current_revision`` reads; more than one
    row is a branched history, which dsfleet never writes: Alembic then reports it)."""
    rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()
    return str(rows[0]) if rows else None


def upgrade(conn: Connection, target: str = "head") -> None:
    """Run the missing migrations up to ``target`` on ``conn``, inside the caller's transaction."""
    from alembic import command

    command.upgrade(_config(conn), target)
