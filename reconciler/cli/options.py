"""The options several commands share, defined once: ``-o/--output``, ``--db``, ``--bootstrap-servers``,
``--version``, and the settings a command runs with (``settings.toml`` < ``DSFLEET_*`` < these flags)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dsfleet.plumbing.settings import Settings, load_settings
from dsfleet.schemas.errors import ExitCode

__all__ = [
    "VersionAction",
    "add_bootstrap_servers",
    "add_cache_option",
    "add_db",
    "add_manifest_options",
    "add_output",
    "created_store",
    "settings_of",
    "sqlite_path",
    "store_problem",
]

_SETTINGS_ATTR = "_dsfleet_settings"


def add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format (default: text)"
    )


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        metavar="URL",
        help="store URL (default: [coordinator] db / DSFLEET_COORDINATOR_DB, else sqlite:///./.dsfleet/state.db)",
    )


def add_bootstrap_servers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default: [kafka] bootstrap_servers / DSFLEET_KAFKA_BOOTSTRAP_SERVERS)",
    )


class VersionAction(argparse.Action):
    """``--version``, resolved only when asked (importlib.metadata is slow to import)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault("help", "show the version and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("dsfleet")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            ver = "unknown"
        print(f"dsfleet {ver}")
        parser.exit(ExitCode.OK)


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings of this command: the file and environment, overridden by its ``--db`` and
    ``--bootstrap-servers`` (read once per command)."""
    cached = getattr(args, _SETTINGS_ATTR, None)
    if isinstance(cached, Settings):
        return cached
    settings = load_settings(
        overrides={
            "coordinator": {"db": getattr(args, "db", None)},
            "kafka": {"bootstrap_servers": getattr(args, "bootstrap_servers", None)},
        }
    )
    setattr(args, _SETTINGS_ATTR, settings)
    return settings


def add_manifest_options(p: argparse.ArgumentParser) -> None:
    """``--exclude GLOB`` (repeatable), beside the ``.dsfleetignore`` files of the manifest directories."""
    p.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        default=[],
        help="leave out files matching GLOB (gitignore syntax, relative to each PATH directory; repeatable); "
        "a .dsfleetignore file in a directory does the same for everyone",
    )


def add_cache_option(p: argparse.ArgumentParser) -> None:
    """``--no-cache``: start cold and write no cache (``dsfleet.reconciler.cli.caches``)."""
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the cache of parsed and compiled manifests "
        "($XDG_CACHE_HOME/dsfleet, default ~/.cache/dsfleet; also DSFLEET_NO_CACHE=1)",
    )


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite:///") or ":memory:" in url or "mode=memory" in url:
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


def store_problem(command: str, url: str, *, must_exist: bool) -> bool:
    """Print why ``url`` cannot be used (not a URL: with the ``sqlite:///PATH`` hint; a store file that does not
    exist for a command that only reads); True when the command must stop (exit 2)."""
    if "://" not in url:
        print(
            f"dsfleet {command}: error: --db {url!r} is not a database URL; did you mean sqlite:///{url}?",
            file=sys.stderr,
        )
        return True
    path = sqlite_path(url)
    if must_exist and path is not None and not path.exists():
        print(
            f"dsfleet {command}: error: no store at {path} (check --db / DSFLEET_COORDINATOR_DB; "
            "`dsfleet apply` creates one)",
            file=sys.stderr,
        )
        return True
    return False


@contextlib.contextmanager
def created_store(command: str, url: str) -> Iterator[None]:
    """Say so when the command creates a new SQLite store (a typo in --db would otherwise go unnoticed)."""
    path = sqlite_path(url)
    existed = path is None or path.exists()
    yield
    if not existed and path is not None and path.exists():
        print(f"dsfleet {command}: created a new store at {path}", file=sys.stderr)
