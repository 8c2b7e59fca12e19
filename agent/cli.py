"""``dsfleet-agent`` — the host-side command line (argparse).

This version has one command, ``materialize``: write a node config's files into the state directory with the
camera credentials filled in from the local secret store. The long-running agent (Kafka consumer, Docker
runtime, status reports) is not part of this version.

Exit codes: 0 ok; 1 the input cannot be applied (invalid config, missing or badly protected secrets);
2 usage (bad arguments, unknown instance, unreadable config file) or the state directory cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.errors import AgentError, PermanentError, SecretError

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_ERROR = 2

PROG = "dsfleet-agent"

DESCRIPTION = """\
dsfleet-agent runs on each GPU host of a dsfleet fleet. It turns the node's desired config (compiled by the
dsfleet coordinator from the manifests) into files and DeepStream containers on this host.

This version writes files only: the long-running loop (reading the AgentConfig topic from Kafka, creating and
healing containers through Docker, reporting status) is not in it yet. What it does now:

  materialize   write a node config's rendered files to <state-dir>/instances/<instance>/, with the
                ${secret:<ref>} placeholders of camera URLs replaced by credentials from the local secret
                store, and keep the config as <state-dir>/desired.json

Secret store: files <state-dir>/secrets/<ref>/username and .../password (mode 0600; one trailing newline is
ignored), overridden key by key by env DSFLEET_SECRET_<REF>_USERNAME / _PASSWORD (<REF> upper-cased, '-' → '_').
Secret values are never printed.
"""

EPILOG = """\
exit codes: 0 ok; 1 invalid config (nothing written) or missing/unprotected secrets (no instance file
            written; desired.json is updated, the config itself being valid);
            2 usage, unknown instance, unreadable config file or unwritable state directory.
examples:
  dsfleet-agent materialize --config node.json --state-dir /var/lib/dsfleet
  dsfleet-agent materialize --config node.json --state-dir /var/lib/dsfleet --instance ccm-gate
"""


MATERIALIZE_DESCRIPTION = """\
Write the rendered files of every instance of a node config (or of one instance) to
<state-dir>/instances/<instance>/, atomically: files with credentials 0600, the others 0644, stale files
removed, unchanged files left alone. Placeholders ${secret:<ref>} are replaced by the percent-encoded
user:password of <ref> from the local secret store; every secret is checked before any instance file is
written. The config is kept as <state-dir>/desired.json (0600, no secret values).
Prints one line per instance ("instance NAME: N files written, M removed"); never prints a secret.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on usage errors, as the contract says
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


class _Version(argparse.Action):
    """``--version``, resolved only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("dsfleet")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            ver = "unknown"
        print(f"{PROG} {ver}")
        parser.exit(EXIT_OK)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "materialize",
        help="write a node config's files (secrets filled in) into the state directory",
        description=MATERIALIZE_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        required=True,
        type=Path,
        metavar="FILE",
        help="JSON: an AgentConfig message (topic 210) or a NodeConfig as compiled by the coordinator",
    )
    p.add_argument(
        "--state-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="the agent's state directory (holds secrets/, instances/ and desired.json)",
    )
    p.add_argument("--instance", metavar="NAME", help="write only this instance's files")
    p.set_defaults(handler=cmd_materialize)
    return parser


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def cmd_materialize(args: argparse.Namespace) -> int:
    from agent.desiredconfigs import parse_config, select_instances
    from agent.filestore import save_desired, write_node_files
    from agent.secrets import LocalSecretStore

    try:
        data = args.config.read_bytes()
    except OSError as exc:
        _error(f"{args.config}: cannot read: {exc.strerror}")
        return EXIT_ERROR
    config = parse_config(data, str(args.config))
    try:
        instances = select_instances(config, args.instance)
    except LookupError as exc:
        _error(str(exc.args[0]))
        return EXIT_ERROR
    save_desired(args.state_dir, config)
    results = write_node_files(args.state_dir, instances, LocalSecretStore(args.state_dir))
    for name, result in results:
        print(f"instance {name}: {_files(len(result.changed))} written, {len(result.removed)} removed")
    return EXIT_OK


def _error(message: str) -> None:
    lines = message.splitlines() or [""]
    for line in lines:
        # gcc-style lines (``FILE:...: error: ...``) already say what they are
        print(line if ": error: " in line else f"{PROG}: error: {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except SecretError as exc:
        _error(str(exc))
        n = len(exc.refs)
        _error(f"{n} secret{'' if n == 1 else 's'} unavailable; no instance file was written")
        return EXIT_FAIL
    except PermanentError as exc:
        _error(str(exc))
        return EXIT_FAIL
    except AgentError as exc:
        _error(str(exc))
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
