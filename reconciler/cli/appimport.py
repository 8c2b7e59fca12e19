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
    parser.add_argument("--render", action="store_true", help="also write the files dsfleet renders")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.importers.deepstreamapp import (
        DEFAULT_IMAGE,
        AppImportError,
        import_app,
        read_gie_near,
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
        result = import_app(text, str(path), read_gie_near(path), image=args.image or DEFAULT_IMAGE,
                            name=args.name)  # fmt: skip
    except AppImportError as exc:
        print(str(exc), file=sys.stderr)
        return ExitCode.ERROR
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    header = f"Imported from {path.name} by `dsfleet import-deepstream-app`."
    assert result.profile is not None
    for name, docs in (("cameras.yaml", result.cameras), ("profiles.yaml", [result.profile]),
                       ("instances.yaml", [result.instance])):  # fmt: skip
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
    print(
        f"imported {path}: {len(result.cameras)} camera(s), {len(result.profile['spec']['gies'])} GIE(s) → {out}"
    )
    return status


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
