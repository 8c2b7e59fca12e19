"""Settings: ``settings.toml`` (``[coordinator]``, ``[agent]``, ``[kafka]``), overridden by ``DSFLEET_*`` environment
variables, overridden by flags. Defaults work on one machine (SQLite at ./.dsfleet/state.db)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.loading.yamlfiles import DEFAULT_LIMITS, Limits
from schemas.errors import PermanentError

DEFAULT_DB_URL = "sqlite:///./.dsfleet/state.db"


@dataclass(frozen=True)
class CoordinatorSettings:
    db: str = DEFAULT_DB_URL
    topic_prefix: str = ""
    limits: Limits = DEFAULT_LIMITS
    """Loader limits (DESIGN §9.14): ``[coordinator] max_file_bytes``, ``max_depth``, ``max_aliases``."""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise PermanentError(f"{path}: error: {exc}") from exc


def _positive_int(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PermanentError(f"{path}: error: [coordinator] {key} must be a positive integer")
    return value


def coordinator_settings(config: str | None = None, *, db: str | None = None) -> CoordinatorSettings:
    path = Path(config or os.environ.get("DSFLEET_CONFIG", "settings.toml"))
    document = _read_toml(path)
    data = document.get("coordinator", {})
    kafka = document.get("kafka", {})
    url = db or os.environ.get("DSFLEET_COORDINATOR_DB") or data.get("db") or DEFAULT_DB_URL
    prefix = os.environ.get("DSFLEET_KAFKA_TOPIC_PREFIX") or kafka.get("topic_prefix", "")
    limits = Limits(
        max_file_bytes=_positive_int(
            path, "max_file_bytes", data.get("max_file_bytes", DEFAULT_LIMITS.max_file_bytes)
        ),
        max_depth=_positive_int(path, "max_depth", data.get("max_depth", DEFAULT_LIMITS.max_depth)),
        max_aliases=_positive_int(path, "max_aliases", data.get("max_aliases", DEFAULT_LIMITS.max_aliases)),
    )
    return CoordinatorSettings(db=str(url), topic_prefix=str(prefix), limits=limits)
