"""The options several commands share, defined once: ``-o/--output``, ``--db``, ``--bootstrap-servers``,
``--version``, and the settings a command runs with (``settings.toml`` < ``DSFLEET_*`` < these flags)."""

from __future__ import annotations

import argparse
from typing import Any

from plumbing.settings import Settings, load_settings
from schemas.errors import ExitCode

__all__ = ["VersionAction", "add_bootstrap_servers", "add_db", "add_output", "settings_of"]

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
