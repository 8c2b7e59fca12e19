"""``dsfleet import-nvinfer FILE... [--render]``: turn existing DeepStream key files into InferenceProfile GIEs.

CLI glue around the pure ``dsfleet.reconciler.importers``: reads the files, prints each GIE as YAML (or, with
``--render``, the key file dsfleet would write back from it) to stdout, and the findings gcc-style to stderr
(``FILE:LINE:COL: warning: MESSAGE [rule-id]``). Exit status: 0 no errors, 1 errors found, 2 unreadable file or
usage error. ``dsfleet.reconciler.cli`` calls ``add_parser``; ``main(argv)`` runs the command on its own.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from dsfleet.schemas.errors import ExitCode

# Heavy modules are imported by the handler, so `dsfleet validate` does not pay for them at start-up.

__all__ = ["add_parser", "dump_gie_yaml", "main", "run"]


_DESCRIPTION = """\
Import DeepStream key files (nvinfer, nvdspreprocess, or the CCM align plugin's config) as GIEs of an
InferenceProfile manifest. Each file is read exactly as DeepStream reads it (GLib key-file rules, the typed
getter of every key), so the YAML shows the values DeepStream really uses: 'network-mode=2 # FP16' imports as 2.
A YAML config (.yml, DS 6.2+) is read as the key file it stands for and rendered as one (.txt). Relative paths
(models, engines, labels, libraries) are resolved against the file's directory (--origin: where it sits in the
container), as nvinfer opens them: the GIE file is rendered into another directory.

stdout: one YAML document per file (paste it under spec.gies of an InferenceProfile).
stderr: findings, FILE:LINE:COL: warning|error: MESSAGE [rule-id] - inline comments, duplicate keys,
        deprecated and unknown keys (did-you-mean), values DeepStream would reject.
--render: print instead the key file dsfleet would write from the imported GIE (to review the round trip).

exit status: 0 no errors, 1 some file has errors, 2 a file could not be read or bad usage.
"""


def add_parser(subparsers: Any) -> None:
    """Register ``import-nvinfer`` and ``import-deepstream-app`` on a ``dsfleet`` subparsers object; the handler
    is ``args.func(args) -> int``."""
    from dsfleet.reconciler.cli import appimport

    appimport.add_parser(subparsers)
    parser = subparsers.add_parser(
        "import-nvinfer",
        help="import nvinfer / nvdspreprocess key files as InferenceProfile GIEs (YAML on stdout)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "files", metavar="FILE", nargs="+", help="key files (.txt) or YAML configs (.yml) to import"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="print the key file dsfleet would render from each imported GIE instead of the YAML",
    )
    parser.add_argument(
        "--origin",
        metavar="DIR",
        help="the directory the files sit in, in the container: relative paths (models, engines, labels) are "
        "resolved against it (default: each file's own directory on this host)",
    )
    parser.set_defaults(func=run)


def _yaml_value(value: Any) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        out = CommentedMap()
        for key, item in value.items():
            out[key] = _yaml_value(item)
        return out
    if isinstance(value, list | tuple):
        seq = CommentedSeq(_yaml_value(item) for item in value)
        if all(isinstance(item, int | float) for item in value):
            seq.fa.set_flow_style()  # numbers only: strings like "a:0" need quoting in flow style
        return seq
    return value


def dump_gie_yaml(gie: dict[str, Any], source: str) -> str:
    """The GIE as a block-style YAML document headed by ``# from SOURCE`` (number lists in flow style)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    yaml.dump(_yaml_value(gie), buffer)
    return f"# from {source}\n{buffer.getvalue()}"


def _read(path: str) -> str:
    # Bytes → text without newline translation: GLib itself only drops a \r before \n.
    return Path(path).read_bytes().decode("utf-8")


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    from pydantic import ValidationError

    from dsfleet.reconciler.cli.findings import format_finding
    from dsfleet.reconciler.compiling.keyfilewriter import render_gie_mapping
    from dsfleet.reconciler.importers.nvinfer import import_keyfile

    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    status = ExitCode.OK
    documents = 0
    for path in args.files:
        try:
            text = _read(path)
        except (OSError, UnicodeDecodeError) as exc:
            reason = (
                "not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else exc.strerror or "cannot read"
            )
            err.write(f"{path}: error: cannot read the file: {reason}\n")
            status = ExitCode.ERROR
            continue
        origin = PurePosixPath(args.origin) if args.origin else PurePosixPath(Path(path).resolve().parent)
        result = import_keyfile(text, path, origin)
        for finding in result.findings:
            for line in format_finding(finding):
                err.write(line + "\n")
        if result.has_errors:
            status = max(status, ExitCode.FAILED)
        if not result.gie:
            continue
        if args.render:
            try:
                rendered = render_gie_mapping(result.gie, header_comment=f"rendered by dsfleet from {path}")
            except (ValidationError, ValueError, TypeError) as exc:
                count = exc.error_count() if isinstance(exc, ValidationError) else 1
                err.write(f"{path}: error: cannot render the imported GIE ({count} invalid value(s) above)\n")
                status = max(status, ExitCode.FAILED)
                continue
            out.write(("\n" if documents else "") + rendered)
        else:
            out.write(("---\n" if documents else "") + dump_gie_yaml(result.gie, path))
        documents += 1
    return status


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run ``import-nvinfer`` on its own: ``main(["import-nvinfer", "pgie.txt"])``."""
    parser = argparse.ArgumentParser(prog="dsfleet")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_parser(subparsers)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.ERROR
    status: int = run(args, stdout, stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
