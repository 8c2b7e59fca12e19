"""``dsfleet keys``: the coordinator's signing key (Ed25519), which signs every record the coordinator writes.

The key file (PEM, mode 0600, never overwritten, never logged) is ``[coordinator] signing_key``, by default
``keys/coordinator.key`` next to the SQLite store (``./.dsfleet/keys/coordinator.key`` for PostgreSQL). A
coordinator that finds none makes one at its first start and logs its public key, which every agent must be given
(``--trust-key``, ``[agent] trusted_keys``); ``dsfleet keys init`` makes it up front, ``dsfleet keys show``
prints the public key again. Operator keys (``[coordinator] operator_keys``) are the public keys whose
``UpdateConfig`` and ``Refresh`` requests on the bus the coordinator obeys; the key of a ``dsfleet serve`` process
run against the same store (``keys/api.key`` next to the store, :func:`api_key_path`) is one of them by itself.

Rotation (``dsfleet keys rotate``), with agents that trust several keys at once:

1. ``dsfleet keys rotate --prepare`` makes the next key (``coordinator.next.key`` beside the signing key) and
   prints its public key; add it to every agent's trusted keys (``--trust-key``, ``[agent] trusted_keys``) next
   to the current one and restart the agents.
2. ``dsfleet keys rotate --commit`` makes the next key the signing key; the old one is kept as
   ``coordinator.previous.key`` (to go back: ``rotate --back``). Restart the coordinator (and ``dsfleet apply``
   signs with the new key from now on).
3. Once each node received a config signed by the new key, remove the old key from the agents' trusted keys
   (docs/security/wire.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsfleet.plumbing.settings import CoordinatorSettings
from dsfleet.reconciler.cli.options import add_db, add_output, settings_of
from dsfleet.schemas.errors import DsfleetError, ExitCode

if TYPE_CHECKING:  # the command line imports this module to build its parser: cryptography only when used
    from dsfleet.plumbing.signing import PublicKey, SigningKey
    from dsfleet.schemas.signatures import SignedFields
    from dsfleet.schemas.wire import Signer

__all__ = [
    "add_parser",
    "api_key_path",
    "cmd_keys_init",
    "cmd_keys_rotate",
    "cmd_keys_show",
    "coordinator_keys",
    "next_key_path",
    "operator_keys",
    "previous_key_path",
    "signer_of",
    "signing_key_path",
]

KEY_FILE = "coordinator.key"
API_KEY_FILE = "api.key"


def _keys_dir(conf: CoordinatorSettings) -> Path:
    """``keys/`` next to the SQLite store file; ``./.dsfleet/keys`` for other databases."""
    url = conf.db
    if url.startswith("sqlite:///") and ":memory:" not in url:
        store = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        return store.parent / "keys"
    return Path(".dsfleet") / "keys"


def signing_key_path(conf: CoordinatorSettings) -> Path:
    """Where the coordinator's signing key lives."""
    if conf.signing_key is not None:
        return Path(conf.signing_key)
    return _keys_dir(conf) / KEY_FILE


def next_key_path(conf: CoordinatorSettings) -> Path:
    """Where ``dsfleet keys rotate --prepare`` keeps the next signing key (beside the signing key)."""
    current = signing_key_path(conf)
    return current.with_name(f"{current.stem}.next{current.suffix or '.key'}")


def previous_key_path(conf: CoordinatorSettings) -> Path:
    """Where ``dsfleet keys rotate --commit`` keeps the signing key it replaced (beside the signing key)."""
    current = signing_key_path(conf)
    return current.with_name(f"{current.stem}.previous{current.suffix or '.key'}")


def api_key_path(conf: CoordinatorSettings) -> Path:
    """The key of a ``dsfleet serve`` process run against the same store: ``keys/api.key`` next to the SQLite
    store (``./.dsfleet/keys/api.key`` otherwise). That process makes it on its first start; when the file is
    there, its public key is an operator key (:func:`operator_keys`): the coordinator obeys the UpdateConfig and
    Refresh requests it signs."""
    return _keys_dir(conf) / API_KEY_FILE


def coordinator_keys(conf: CoordinatorSettings) -> tuple[SigningKey, bool]:
    """The coordinator's signing key, made now when there is none (``True``: just made)."""
    from dsfleet.plumbing.signing import load_or_create_key

    return load_or_create_key(signing_key_path(conf))


def operator_keys(conf: CoordinatorSettings) -> tuple[PublicKey, ...]:
    """The keys whose bus requests (UpdateConfig, Refresh) the coordinator obeys: ``[coordinator]
    operator_keys`` and ``operator_keys_file``, and the public half of the ``dsfleet serve`` key
    (:func:`api_key_path`) when that file exists."""
    from dsfleet.plumbing.signing import load_public_keys, load_signing_key

    keys = load_public_keys(conf.operator_keys, conf.operator_keys_file, what="[coordinator] operator_keys")
    api = api_key_path(conf)
    if not api.exists():
        return keys
    public = load_signing_key(api).public
    return keys if any(k.id == public.id for k in keys) else (*keys, public)


def signer_of(key: SigningKey) -> Signer:
    """Sign records with ``key`` (what the outbox rows of an apply carry)."""
    from dsfleet.plumbing.signing import sign_record

    def sign(fields: SignedFields, record_key: str | None, payload: bytes | None) -> dict[str, str]:
        return sign_record(key, fields, record_key, payload)

    return sign


# ------------------------------------------------------------------------------------------------------ command

_ROTATION = """\
rotation (agents trust several keys at once):
  1. dsfleet keys rotate --prepare   makes the next key; add the public key it prints to every agent's
                                     trusted keys (--trust-key, [agent] trusted_keys), keep the current one
  2. dsfleet keys rotate --commit    signs with the next key from now on (restart the coordinator); the old
                                     key is kept as coordinator.previous.key (rotate --back to return to it)
  3. remove the old key from every agent's trusted keys once each node received a config signed by the new one
"""


def add_parser(sub: Any) -> None:
    k = sub.add_parser(
        "keys",
        help="the coordinator's signing key: make it, show its public key, rotate it",
        description="The coordinator signs every record it writes (AgentConfig, AgentCommand) with an Ed25519 key "
        "(a PEM file of mode 0600, [coordinator] signing_key, default keys/coordinator.key next to the SQLite "
        "store). Agents believe only the public keys they are given (dsfleet-agent run --trust-key). The private "
        "key is never printed.",
        epilog=_ROTATION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ksub = k.add_subparsers(dest="keys_command", metavar="ACTION")
    ksub.required = True

    p = ksub.add_parser(
        "init",
        help="make the signing key (never overwrites one)",
        description="Make the coordinator's signing key and print its path, id and public key (give the public "
        "key to every agent: --trust-key). An existing key is never overwritten.",
        epilog="exit: 0 made, 2 a key is already there or the file cannot be written",
    )
    add_db(p)
    add_output(p)
    p.set_defaults(handler=cmd_keys_init)

    p = ksub.add_parser(
        "show",
        help="print the signing key's id and public key (never the private key)",
        description="Print the id and public key of the signing key, and of the next key (rotate --prepare), "
        "the previous key (rotate --commit) and the key of a `dsfleet serve` process when they exist. "
        "Nothing is made: with no signing key, it says how to make one.",
        epilog="exit: 0 shown, 2 no key or an unusable key file",
    )
    add_db(p)
    add_output(p)
    p.add_argument(
        "--api",
        action="store_true",
        help="only the public key of the `dsfleet serve` process (keys/api.key next to the store)",
    )
    p.set_defaults(handler=cmd_keys_show)

    p = ksub.add_parser(
        "rotate",
        help="make the next signing key (--prepare), switch to it (--commit), or go back (--back)",
        description="Rotate the signing key without a moment in which agents refuse the coordinator's records.",
        epilog=_ROTATION
        + "exit: 0 done, 2 nothing to commit or go back to, a next key already prepared, or an "
        "unusable key file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    step = p.add_mutually_exclusive_group(required=True)
    step.add_argument("--prepare", action="store_true", help="make the next key and print its public key")
    step.add_argument("--commit", action="store_true", help="make the next key the signing key")
    step.add_argument(
        "--back", action="store_true", help="make the previous key the signing key again (undo --commit)"
    )
    add_db(p)
    add_output(p)
    p.set_defaults(handler=cmd_keys_rotate)


def _conf(args: argparse.Namespace) -> CoordinatorSettings:
    return settings_of(args).coordinator


def _key_json(role: str, path: Path, key: SigningKey) -> dict[str, str]:
    return {"role": role, "path": str(path), "id": key.id, "publicKey": key.public.text()}


def _print_keys(args: argparse.Namespace, keys: list[dict[str, str]], note: str | None = None) -> None:
    if args.output == "json":
        json.dump({"keys": keys, **({"note": note} if note else {})}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for k in keys:
        print(f"{k['role']} key: {k['path']}")
        print(f"  id:         {k['id']}")
        print(f"  public key: {k['publicKey']}")
    if note:
        print(note)


def _error(command: str, message: str) -> int:
    print(f"dsfleet keys {command}: error: {message}", file=sys.stderr)
    return ExitCode.ERROR


def cmd_keys_init(args: argparse.Namespace) -> int:
    from dsfleet.plumbing.signing import generate_key, load_signing_key, save_signing_key

    path = signing_key_path(_conf(args))
    if path.exists():
        return _error(
            "init",
            f"{path}: a signing key is already there (it is never overwritten; see it with "
            "`dsfleet keys show`, replace it with `dsfleet keys rotate`)",
        )
    try:
        key = load_signing_key(save_signing_key(path, generate_key()))
    except DsfleetError as exc:
        return _error("init", str(exc))
    except OSError as exc:
        return _error("init", f"{path}: cannot write: {exc.strerror}")
    _print_keys(
        args,
        [_key_json("signing", path, key)],
        f"give every agent this key: dsfleet-agent run --trust-key {key.public.text()}",
    )
    return ExitCode.OK


def cmd_keys_show(args: argparse.Namespace) -> int:
    from dsfleet.plumbing.signing import load_signing_key

    conf = _conf(args)
    if args.api:
        wanted = [("api", api_key_path(conf), True)]
    else:
        wanted = [
            ("signing", signing_key_path(conf), True),
            ("next", next_key_path(conf), False),
            ("previous", previous_key_path(conf), False),
            ("api", api_key_path(conf), False),
        ]
    shown: list[dict[str, str]] = []
    for role, path, required in wanted:
        if not path.exists():
            if required:
                how = "`dsfleet keys init`" if role == "signing" else "the first start of `dsfleet serve`"
                return _error("show", f"no {role} key at {path} (made by {how})")
            continue
        try:
            shown.append(_key_json(role, path, load_signing_key(path)))
        except DsfleetError as exc:
            return _error("show", str(exc))
    _print_keys(args, shown)
    return ExitCode.OK


def _replace(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` (a file already at ``target`` is replaced) while ``source`` stays."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.link(source, tmp)
    os.replace(tmp, target)


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    conf = _conf(args)
    current, upcoming, previous = signing_key_path(conf), next_key_path(conf), previous_key_path(conf)
    try:
        if args.prepare:
            return _prepare(args, current, upcoming)
        if args.commit:
            return _switch(args, "commit", current, upcoming, previous)
        return _switch(args, "back", current, previous, upcoming)
    except DsfleetError as exc:
        return _error("rotate", str(exc))
    except OSError as exc:
        return _error("rotate", f"{exc.filename or current}: {exc.strerror}")


def _prepare(args: argparse.Namespace, current: Path, upcoming: Path) -> int:
    from dsfleet.plumbing.signing import generate_key, load_signing_key, save_signing_key

    if not current.exists():
        return _error("rotate", f"no signing key at {current} to rotate (make one with `dsfleet keys init`)")
    load_signing_key(current)
    if upcoming.exists():
        key = load_signing_key(upcoming)
        return _error(
            "rotate",
            f"{upcoming}: a next key is already prepared ({key.id}, {key.public.text()}); commit it with "
            "`dsfleet keys rotate --commit`, or delete the file to prepare another",
        )
    key = load_signing_key(save_signing_key(upcoming, generate_key()))
    _print_keys(
        args,
        [_key_json("next", upcoming, key)],
        "add this key to every agent's trusted keys, next to the current one "
        f"(--trust-key {key.public.text()}), then run `dsfleet keys rotate --commit`",
    )
    return ExitCode.OK


def _switch(args: argparse.Namespace, step: str, current: Path, incoming: Path, outgoing: Path) -> int:
    """Make ``incoming`` the signing key; the signing key it replaces goes to ``outgoing`` (``commit``: the next
    key comes in, the current one becomes the previous; ``back``: the previous comes in, the current one becomes
    the next again)."""
    from dsfleet.plumbing.signing import load_signing_key

    if not incoming.exists():
        what = (
            "no next key: prepare one with `dsfleet keys rotate --prepare`"
            if step == "commit"
            else ("no previous key to go back to")
        )
        return _error("rotate", f"{incoming}: {what}")
    if step == "back" and outgoing.exists():
        return _error(
            "rotate",
            f"{outgoing}: a next key is prepared; going back would replace it (delete it first if it is not "
            "needed)",
        )
    new = load_signing_key(incoming)
    old = load_signing_key(current)
    _replace(current, outgoing)  # the signing key file is never absent: a starting coordinator would make one
    os.replace(incoming, current)
    _print_keys(
        args,
        [
            _key_json("signing", current, new),
            _key_json("next" if step == "back" else "previous", outgoing, old),
        ],
        f"the coordinator signs with key {new.id} from its next start: restart it"
        + (
            "; remove the old key from the agents' trusted keys once each node received a config signed by the new one"
            if step == "commit"
            else ""
        ),
    )
    return ExitCode.OK
