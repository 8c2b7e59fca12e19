"""Alembic's environment for the store: always online, never configures logging.

dsfleet passes its connection in ``config.attributes["connection"]`` and the revisions run inside the caller's
transaction. In a source tree, ``alembic -c reconciler/store/migrations/alembic.ini -x url=URL ...`` runs them on
a database of your choosing instead (to draft a new revision with ``revision --autogenerate``, which compares
that database with the current tables of :mod:`dsfleet.reconciler.store.schema`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from dsfleet.reconciler.store.schema import METADATA


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=METADATA, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


_given = context.config.attributes.get("connection")
if _given is not None:
    _run(_given)
else:
    _url = context.get_x_argument(as_dictionary=True).get("url")
    if _url is None:
        raise RuntimeError(
            "dsfleet runs its migrations programmatically (`dsfleet db upgrade`); from a source tree, name a "
            "database with `-x url=sqlite:///scratch.db` (there is no offline mode)"
        )
    _engine = sa.create_engine(_url)
    try:
        with _engine.begin() as _connection:
            _run(_connection)
    finally:
        _engine.dispose()
