"""Alembic's environment for the store: always online, on the connection the caller passes (in
``config.attributes["connection"]``), inside the caller's transaction. Never configures logging."""

from __future__ import annotations

from alembic import context

from dsfleet.reconciler.store.schema import _META

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "dsfleet runs its migrations programmatically (`dsfleet db upgrade`); it has no offline mode"
    )
context.configure(connection=connection, target_metadata=_META, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
