"""``dsfleet import-legacy``: the older system's SQLite DB (and sample configs) → manifests + secrets.

``add_parser(subparsers)`` registers the sub-command (its handler is ``args.func(args) -> int``); ``python -m
dsfleet.reconciler.cli.legacy import-legacy ...`` runs it on its own. Exit 0 when imported (warnings included), 2 when
the database is unreadable, the URL template is bad, or the output cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsfleet.schemas.errors import ExitCode

DEFAULT_URL_TEMPLATE = "rtsp://{ip_address}/main"  # dsfleet.reconciler.importers.legacy checks it is the same


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import-legacy",
        help="import the older system's SQLite DB (cameras, agents, dsInstance) as manifests",
        description=(
            "Read the older system's camera.db (tables cameras, agents, dsInstance) and, with --configs, its "
            "app_conf.json; write nodes.yaml, cameras.yaml and instances.yaml under --out, and each camera's "
            "user name and password under --secrets-out/<camera>/ (mode 0600). No credential is ever "
            "written to a manifest or printed."
        ),
    )
    parser.add_argument("--db", required=True, type=Path, metavar="FILE", help="the older system's camera.db")
    parser.add_argument(
        "--configs",
        type=Path,
        metavar="DIR",
        help="directory with the older app_conf.json (default values) and GIE files (default: the older "
        "app's sample files)",
    )
    parser.add_argument(
        "--url-template",
        default=DEFAULT_URL_TEMPLATE,
        metavar="TEMPLATE",
        help="camera URL from the cameras table's columns in single braces, without credentials, e.g. "
        "--url-template 'rtsp://{ip_address}:554/Streaming/Channels/101' "
        f"(default: {DEFAULT_URL_TEMPLATE})".replace("%", "%%"),
    )
    parser.add_argument(
        "--legacy-settings",
        type=Path,
        metavar="FILE",
        help="the older agents' settings.toml: its IMAGE_NAME:IMAGE_TAG becomes every Node's image",
    )
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out directory")
    parser.add_argument("--image", metavar="IMAGE", help="container image to set on every DsInstance")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="where to write the manifests")
    parser.add_argument(
        "--secrets-out", required=True, type=Path, metavar="DIR", help="where to write camera credentials"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.importers.legacy import LegacyImportError, import_legacy

    try:
        result = import_legacy(
            args.db,
            out_dir=args.out,
            secrets_dir=args.secrets_out,
            url_template=args.url_template,
            configs_dir=args.configs,
            image=args.image,
            legacy_settings=args.legacy_settings,
            force=args.force,
        )
    except LegacyImportError as err:
        print(str(err), file=sys.stderr)
        return ExitCode.ERROR
    except OSError as err:
        print(f"{err.filename or args.out}: error: cannot write: {err.strerror or err}", file=sys.stderr)
        return ExitCode.ERROR
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    sys.stdout.write(result.summary())
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dsfleet")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_parser(subparsers)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
