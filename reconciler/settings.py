"""Settings: ``settings.toml`` (``[coordinator]``, ``[agent]``, ``[kafka]``), overridden by ``DSFLEET_*`` environment
variables, overridden by flags. Defaults work on one machine (SQLite at ./.dsfleet/state.db)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import PermanentError

DEFAULT_DB_URL = "sqlite:///./.dsfleet/state.db"


@dataclass(frozen=True)
class CoordinatorSettings:
    db: str = DEFAULT_DB_URL
    topic_prefix: str = ""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise PermanentError(f"{path}: error: {exc}") from exc


def coordinator_settings(config: str | None = None, *, db: str | None = None) -> CoordinatorSettings:
    path = Path(config or os.environ.get("DSFLEET_CONFIG", "settings.toml"))
    data = _read_toml(path).get("coordinator", {})
    kafka = _read_toml(path).get("kafka", {})
    url = db or os.environ.get("DSFLEET_COORDINATOR_DB") or data.get("db") or DEFAULT_DB_URL
    prefix = os.environ.get("DSFLEET_KAFKA_TOPIC_PREFIX") or kafka.get("topic_prefix", "")
    return CoordinatorSettings(db=str(url), topic_prefix=str(prefix))
