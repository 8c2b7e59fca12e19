"""Alembic revisions of the store, oldest first (``0001`` is the baseline)."""
