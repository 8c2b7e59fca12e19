"""The coordinator's store (SQLAlchemy): the only package that imports ``sqlalchemy`` and ``alembic``."""

from reconciler.store._store import *  # noqa: F403
from reconciler.store._store import __all__ as __all__
