"""``dsfleet import-deepstream-app FILE --out DIR [--render]``: an existing deepstream-app config → manifests.

Registered by :func:`dsfleet.reconciler.cli.imports.add_parser`. Writes ``cameras.yaml``, ``profiles.yaml`` and
``instances.yaml`` under ``--out`` (credentials found in source URIs go to ``--secrets-out/<camera>/``, broker
connection strings with credentials whole to ``--secrets-out/<instance>-sinkN/password``, mode 0600); ``--render`` also writes what dsfleet would deploy under ``--out/rendered/``. Exit 0 imported, 1 the
imported set does not validate, 2 unreadable or unsupported input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dsfleet.schemas.errors import ExitCode

_DESCRIPTION = """\
Import a deepstream-app config (deepstream_app_config.txt) and the nvinfer / preprocess files its GIE groups
reference (config-file paths are relative to it) as Camera, InferenceProfile and DsInstance manifests. Every key
is read as deepstream-app reads it (GLib rules); keys and groups dsfleet does not model are kept verbatim in
app.extraGroups. A YAML app config (DS 6.2+) is read as the key file it stands for, its sources from the CSV its
source group names; its YAML GIE files are rendered as key files (.txt).

Relative paths are resolved as DeepStream resolves them, against the directory of the file that names them: the
text configs they name (labels, tracker, analytics, message converter) are imported and rendered with the
instance; models, engines, libraries and file:// sources become absolute paths in the container. --origin DIR
says where FILE's directory is in the container (e.g. /opt/nvidia/deepstream/deepstream/samples/configs/
deepstream-app for NVIDIA's samples, which the image holds); without it the paths are FILE's directory on this
host, which the instance mounts (read-only, at the same path).
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import-deepstream-app",
        help="import a deepstream-app config (+ its GIE files) as manifests",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", type=Path, help="the deepstream-app config (.txt or .yml)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="where to write the manifests")
    parser.add_argument("--secrets-out", type=Path, metavar="DIR",
                        help="where credentials found in source URIs and broker connection strings go "
                             "(default: DIR-secrets)")  # fmt: skip
    parser.add_argument("--image", metavar="IMAGE", help="container image of the DsInstance")
    parser.add_argument("--name", metavar="NAME", help="instance and profile name (default: from FILE)")
    parser.add_argument("--origin", metavar="DIR",
                        help="FILE's directory in the container (default: FILE's directory on this host, mounted)")  # fmt: skip
    parser.add_argument("--render", action="store_true", help="also write the files dsfleet renders")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.importers.appfiles import read_gie_near
    from dsfleet.reconciler.importers.deepstreamapp import (
        DEFAULT_IMAGE,
        AppImportError,
        import_app,
    )
    from dsfleet.reconciler.importers.legacy import _atomic_write, render_yaml, write_secrets
    from dsfleet.reconciler.importers.legacyrows import Conversion

    path: Path = args.file
    out: Path = args.out
    if not args.force and out.is_dir() and any(out.iterdir()):
        print(f"{out}: error: --out is not empty; choose an empty directory or pass --force", file=sys.stderr)
        return ExitCode.ERROR
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{path}: error: cannot read the file: {type(exc).__name__}", file=sys.stderr)
        return ExitCode.ERROR
    try:
        result = import_app(text, str(path), read_gie_near(path, args.origin), image=args.image or DEFAULT_IMAGE,
                            name=args.name, origin=args.origin or str(path.resolve().parent),
                            mount_origin=args.origin is None)  # fmt: skip
    except AppImportError as exc:
        print(str(exc), file=sys.stderr)
        return ExitCode.ERROR
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    header = f"Imported from {path.name} by `dsfleet import-deepstream-app`."
    profiles = [_literal_files(result.profile)] if result.profile is not None else []
    for name, docs in (("cameras.yaml", result.cameras), ("profiles.yaml", profiles),
                       ("instances.yaml", [_literal_files(result.instance)])):  # fmt: skip
        if docs:
            _atomic_write(out / name, render_yaml(docs, header).encode("utf-8"), 0o644)
    if result.secrets:
        secrets = args.secrets_out or out.with_name(out.name + "-secrets")
        users = tuple(s for s in result.secrets if s.username)
        whole = [s for s in result.secrets if not s.username]  # connection strings: a password only
        write_secrets(Conversion((), (), (), users, ()), secrets)
        for secret in whole:
            directory = secrets / secret.ref
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
            _atomic_write(directory / "password", secret.password.encode("utf-8"), 0o600)
        print(f"secrets: {len(users)} camera(s) with credentials, {len(whole)} connection string(s) under "
              f"{secrets}/", file=sys.stderr)  # fmt: skip
    status = render(out) if args.render else validate(out)
    gies = len(result.profile["spec"]["gies"]) if result.profile is not None else 0
    files = len(result.files)
    print(f"imported {path}: {len(result.cameras)} camera(s), {gies} GIE(s), {files} text file(s) → {out}")
    return status


def _literal_files(document: dict[str, Any]) -> dict[str, Any]:
    """The document with its imported files (``spec.files``, ``spec.app.files``) as YAML literal blocks where
    a literal block reads back to the same text (else they stay quoted strings)."""
    from ruamel.yaml.scalarstring import LiteralScalarString

    def literal(files: dict[str, str]) -> dict[str, str]:
        return {
            name: LiteralScalarString(text) if _literal_safe(text) else text for name, text in files.items()
        }

    spec = dict(document["spec"])
    if "files" in spec:
        spec["files"] = literal(spec["files"])
    app = spec.get("app")
    if isinstance(app, dict) and "files" in app:
        spec["app"] = {**app, "files": literal(app["files"])}
    return {**document, "spec": spec}


def _literal_safe(text: str) -> bool:
    """Whether ``text`` as a YAML literal block reads back to itself (no tabs, carriage returns or trailing
    spaces a block scalar would change)."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import LiteralScalarString

    if not text or "\t" in text or "\r" in text or not all(c.isprintable() or c == "\n" for c in text):
        return False
    if any(line != line.rstrip(" ") for line in text.split("\n")):
        return False
    buffer = io.StringIO()
    YAML(typ="rt").dump({"f": LiteralScalarString(text)}, buffer)
    return bool(YAML(typ="safe").load(buffer.getvalue()) == {"f": text})


def validate(out: Path) -> int:
    from dsfleet.reconciler.cli.findings import print_findings
    from dsfleet.reconciler.loading.manifestsets import load_manifests

    loaded = load_manifests([out])
    if loaded.errors:
        print_findings(loaded.errors, sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK


def render(out: Path) -> int:
    """Write the instance's rendered files under ``out/rendered/`` (what dsfleet would deploy)."""
    from dsfleet.reconciler.compiling.rendering import render_instance
    from dsfleet.reconciler.loading.manifestsets import load_manifests
    from dsfleet.resolution.instances import resolve_instance

    if validate(out) != ExitCode.OK:
        return ExitCode.FAILED
    fleet = load_manifests([out]).fleet
    target = out / "rendered"
    target.mkdir(exist_ok=True)
    for instance in fleet.instances.values():
        for f in render_instance(fleet, resolve_instance(fleet, instance)):
            (target / f.path).write_text(f.content)
    return ExitCode.OK
