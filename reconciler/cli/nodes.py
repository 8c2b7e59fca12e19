"""``dsfleet nodes``: the nodes agents announced, the keys that may speak for them, and enrollment tokens.

Every agent signs its reports with a key of its own (``dsfleet-agent key`` prints it); the coordinator takes a
node's reports only from the key *enrolled* for that node. A key that announces itself for a node without being
enrolled waits as *pending* until an operator approves it (``dsfleet nodes approve NAME [--key ID]``), or is
enrolled at once when the agent proves it holds a one-time enrollment token (``dsfleet nodes token create``; the
store keeps only a derived public key, never the token). ``dsfleet nodes revoke`` stops a key (a stolen host, a
reinstalled one). Approvals and revocations are events (``key-enrolled``, ``key-revoked``).

``dsfleet nodes forget NAME`` forgets at once a node the manifests no longer declare. The coordinator retires such
a node by itself once its agent reports its instances gone, or ``[coordinator] retire_after_seconds`` (10 minutes)
after its removal when the agent never does (a host gone for good); this command does it now. A node the manifests
still declare is refused: remove it from them first.

The decisions (which key an approval means, a token's state, a duration) are the pure functions of this module;
the commands read and write the store around them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from dsfleet.reconciler.cli.options import add_db, add_output, settings_of, store_problem
from dsfleet.schemas.errors import DsfleetError, ExitCode

if TYPE_CHECKING:
    from dsfleet.reconciler.store import EnrollmentTokenRow, NodeKeyRow, Store

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "KeyChoice",
    "add_parser",
    "approve_hint",
    "choose_key",
    "cmd_nodes_approve",
    "cmd_nodes_forget",
    "cmd_nodes_list",
    "cmd_nodes_revoke",
    "cmd_token_create",
    "cmd_token_list",
    "nodes_json",
    "parse_ttl",
    "token_state",
]

DEFAULT_TTL: Final = timedelta(hours=24)
MAX_TTL: Final = timedelta(days=30)
"""An enrollment token lives at most this long: a token is a credential, and an old one is a forgotten one."""

_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


# ---------------------------------------------------------------------------------------------------- decisions


def parse_ttl(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d`` or plain seconds; more than zero and at most :data:`MAX_TTL`."""
    found = _TTL.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 30m, 24h, 7d)")
    ttl = timedelta(seconds=float(found[1]) * _UNITS[found[2]])
    if ttl <= timedelta(0):
        raise ValueError(f"{text!r}: a token must live longer than that")
    if ttl > MAX_TTL:
        raise ValueError(f"{text!r}: at most {MAX_TTL.days}d")
    return ttl


def approve_hint(node: str, key_id: str) -> str:
    return f"dsfleet nodes approve {node} --key {key_id}"


@dataclass(frozen=True)
class KeyChoice:
    """The key an approval means (``key``), or why there is none (``problem``), or that it is enrolled already."""

    key: NodeKeyRow | None = None
    problem: str | None = None
    already: bool = False


def _matching(keys: Sequence[NodeKeyRow], wanted: str) -> list[NodeKeyRow]:
    exact = [k for k in keys if k.key_id == wanted]
    return exact or [k for k in keys if k.key_id.startswith(wanted)]


def choose_key(node: str, keys: Sequence[NodeKeyRow], wanted: str | None) -> KeyChoice:
    """Which of ``node``'s keys ``dsfleet nodes approve NODE [--key ID]`` enrolls: ``wanted`` (its id, or a
    prefix only one key has), else the node's only pending key. Several pending keys and no ``--key`` is refused:
    an operator must say which host to believe."""
    from dsfleet.reconciler.store.nodekeys import ENROLLED, PENDING

    mine = [k for k in keys if k.node == node]
    pending = [k for k in mine if k.state == PENDING]
    if wanted is None:
        if not pending:
            enrolled = [k.key_id for k in mine if k.state == ENROLLED]
            now = f" (enrolled: {enrolled[0]})" if enrolled else ""
            return KeyChoice(
                problem=f"node {node} has no key waiting for approval{now}; its agent announces its key when it "
                "starts (`dsfleet nodes list` shows what waits)"
            )
        if len(pending) > 1:
            listed = "; ".join(f"{k.key_id} (hostname {k.hostname or '?'})" for k in pending)
            return KeyChoice(
                problem=f"node {node} has {len(pending)} keys waiting for approval: {listed}; say which with "
                f"--key ID (compare with `dsfleet-agent key` on the host)"
            )
        return KeyChoice(key=pending[0])
    found = _matching(mine, wanted)
    if not found:
        return KeyChoice(problem=f"node {node} has no key {wanted} (`dsfleet nodes list` shows its keys)")
    if len(found) > 1:
        return KeyChoice(
            problem=f"key {wanted} of node {node} is ambiguous: {', '.join(k.key_id for k in found)}; give more "
            "of its id"
        )
    return KeyChoice(key=found[0], already=found[0].state == ENROLLED)


def token_state(token: EnrollmentTokenRow, now: datetime) -> str:
    """``used``, ``expired`` or ``usable``."""
    if token.used_at is not None:
        return "used"
    return "expired" if token.expires_at <= now else "usable"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def nodes_json(names: Sequence[str], keys: Sequence[NodeKeyRow]) -> list[dict[str, Any]]:
    """Every node (``names`` and those keys were seen for) with its enrolled key, its pending keys (and how to
    approve each) and how many of its keys are revoked; by name."""
    from dsfleet.reconciler.store.nodekeys import ENROLLED, PENDING, REVOKED

    by_node: dict[str, list[NodeKeyRow]] = {n: [] for n in names}
    for k in keys:
        by_node.setdefault(k.node, []).append(k)
    out = []
    for node in sorted(by_node):
        mine = by_node[node]
        enrolled = next((k for k in mine if k.state == ENROLLED), None)
        out.append(
            {
                "name": node,
                "enrolledKey": (
                    {
                        "id": enrolled.key_id,
                        "publicKey": enrolled.public_key,
                        "enrolledAt": _iso(enrolled.enrolled_at),
                        "enrolledBy": enrolled.enrolled_by,
                        "lastSeen": _iso(enrolled.last_seen),
                        "hostname": enrolled.hostname,
                    }
                    if enrolled is not None
                    else None
                ),
                "pendingKeys": [
                    {
                        "id": k.key_id,
                        "publicKey": k.public_key,
                        "hostname": k.hostname,
                        "machineId": k.machine_id,
                        "firstSeen": _iso(k.first_seen),
                        "lastSeen": _iso(k.last_seen),
                        "approve": approve_hint(node, k.key_id),
                    }
                    for k in mine
                    if k.state == PENDING
                ],
                "revokedKeys": sum(1 for k in mine if k.state == REVOKED),
            }
        )
    return out


# ------------------------------------------------------------------------------------------------------ parsers


def add_parser(sub: Any) -> None:
    n = sub.add_parser(
        "nodes",
        help="nodes, the agents' keys that may speak for them, enrollment tokens",
        description=(__doc__ or "").split("\n\nThe decisions", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    nsub = n.add_subparsers(dest="nodes_command", metavar="ACTION")
    nsub.required = True

    p = nsub.add_parser(
        "list",
        help="every node with its enrolled key and the keys waiting for approval",
        description="Every node the manifests declare or an agent announced, with the id of the key enrolled for "
        "it and the keys waiting for approval (first and last sighting, hostname).",
        epilog="exit: 0 shown, 2 unusable store",
    )
    add_db(p)
    add_output(p)
    p.set_defaults(handler=cmd_nodes_list)
    from dsfleet.reconciler.cli.rollouts import add_node_parsers

    add_node_parsers(nsub)

    p = nsub.add_parser(
        "approve",
        help="enroll the key waiting for approval for a node",
        description="Enroll a pending key for NAME: the node's reports are taken from that key from now on (the "
        "coordinator reads keys every second); its previous enrolled key is revoked. Check the id against "
        "`dsfleet-agent key` on the host before approving.",
        epilog="exit: 0 enrolled (or already enrolled), 2 no such key, several pending keys and no --key, or "
        "an unusable store",
    )
    p.add_argument("name", metavar="NAME", help="the node's name")
    p.add_argument(
        "--key", metavar="ID", help="the key's id (or a prefix only it has); default: the only one"
    )
    add_db(p)
    p.set_defaults(handler=cmd_nodes_approve)

    p = nsub.add_parser(
        "revoke",
        help="revoke a node's key (all of them without --key)",
        description="Revoke a key of NAME (every key it has without --key): its reports are dropped from now on, "
        "and announcing it again does not make it pending. Approve a key again with `dsfleet nodes approve`.",
        epilog="exit: 0 revoked, 2 no such key (or revoked already) or an unusable store",
    )
    p.add_argument("name", metavar="NAME", help="the node's name")
    p.add_argument("--key", metavar="ID", help="the key's id (or a prefix only it has); default: every key")
    add_db(p)
    p.set_defaults(handler=cmd_nodes_revoke)

    f = nsub.add_parser(
        "forget",
        help="forget a node removed from the manifests (its status and reported instances) now",
        description="Forget at once a node the manifests no longer declare (its status and the instances its "
        "agent reported); the coordinator does it by itself once the agent reports them gone, or "
        "[coordinator] retire_after_seconds after the removal.",
        epilog="exit: 0 forgotten, 2 the manifests still declare it, nothing is known of it, or the store is "
        "unusable",
    )
    f.add_argument("name", metavar="NAME", help="the node's name")
    add_db(f)
    f.set_defaults(handler=cmd_nodes_forget)

    t = nsub.add_parser(
        "token",
        help="one-time enrollment tokens an agent is installed with",
        description="An agent started with --enroll-token TOKEN proves it holds the token; the coordinator "
        "enrolls its key at once and the token is used up. The store keeps a public key derived from the token, "
        "never the token.",
    )
    tsub = t.add_subparsers(dest="token_command", metavar="ACTION")
    tsub.required = True
    p = tsub.add_parser(
        "create",
        help="make a token (printed once)",
        description="Make a one-time enrollment token and print it (once: it cannot be shown again). A token "
        "bound to a node (--node) enrolls only that node's agent; an unbound one enrolls any node that has no "
        "enrolled key yet.",
        epilog="exit: 0 made, 2 a bad --ttl or an unusable store",
    )
    p.add_argument(
        "--node", metavar="NAME", help="the only node the token may enroll (default: any new node)"
    )
    p.add_argument(
        "--ttl",
        default="24h",
        metavar="DURATION",
        help=f"how long it may be used: 30m, 24h, 7d (default 24h, at most {MAX_TTL.days}d)",
    )
    add_db(p)
    add_output(p)
    p.set_defaults(handler=cmd_token_create)
    p = tsub.add_parser(
        "list",
        help="the tokens: id, node, expiry, used (never the token)",
        description="Every enrollment token with its id, node, creation and expiry times, whether it was used "
        "and by which key. The tokens themselves are not stored.",
        epilog="exit: 0 shown, 2 unusable store",
    )
    add_db(p)
    add_output(p)
    p.set_defaults(handler=cmd_token_list)


# ----------------------------------------------------------------------------------------------------- commands


def _store(command: str, args: argparse.Namespace, *, readonly: bool = False) -> Store | None:
    from dsfleet.reconciler.store import Store

    url = settings_of(args).coordinator.db
    if store_problem(command, url, must_exist=True):
        return None
    return Store.open(url, readonly=readonly)


def _fail(command: str, message: str) -> int:
    print(f"dsfleet {command}: error: {message}", file=sys.stderr)
    return ExitCode.ERROR


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "an operator"


def _known_nodes(store: Store) -> list[str]:
    names = {n.name for n in store.inventory(cameras=False).nodes}
    names.update(s.node for s in store.node_statuses())
    return sorted(names)


def cmd_nodes_list(args: argparse.Namespace) -> int:
    try:
        store = _store("nodes list", args, readonly=True)
        if store is None:
            return ExitCode.ERROR
        with store:
            nodes = nodes_json(_known_nodes(store), store.node_keys())
    except DsfleetError as exc:
        return _fail("nodes list", str(exc))
    if args.output == "json":
        json.dump({"nodes": nodes}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return ExitCode.OK
    if not nodes:
        print("no nodes: apply manifests, or start an agent")
        return ExitCode.OK
    width = max(len("NODE"), *(len(n["name"]) for n in nodes))
    print(f"{'NODE':<{width}}  {'ENROLLED KEY':<16}  PENDING  REVOKED")
    for n in nodes:
        enrolled = n["enrolledKey"]["id"] if n["enrolledKey"] else "-"
        print(f"{n['name']:<{width}}  {enrolled:<16}  {len(n['pendingKeys']):<7}  {n['revokedKeys']}")
    waiting = [(n["name"], k) for n in nodes for k in n["pendingKeys"]]
    if waiting:
        print()
        print("keys waiting for approval (compare the id with `dsfleet-agent key` on the host):")
        for name, k in waiting:
            print(
                f"  {name}  key {k['id']}  hostname {k['hostname'] or '-'}  first seen {k['firstSeen']}  "
                f"last seen {k['lastSeen'] or '-'}"
            )
            print(f"    approve with {k['approve']}")
    return ExitCode.OK


def cmd_nodes_approve(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.store.nodekeys import ENROLLED

    now = datetime.now(UTC)
    try:
        store = _store("nodes approve", args)
        if store is None:
            return ExitCode.ERROR
        with store:
            choice = choose_key(args.name, store.node_keys(args.name), args.key)
            if choice.key is None:
                return _fail("nodes approve", choice.problem or "no key")
            if choice.already:
                print(f"key {choice.key.key_id} is already the enrolled key of node {args.name}")
                return ExitCode.OK
            replaced = [k.key_id for k in store.node_keys(args.name) if k.state == ENROLLED]
            by = f"{_operator()} (dsfleet nodes approve)"
            row = store.enroll_key(args.name, choice.key.key_id, by=by, at=now)
            if row is None:
                return _fail("nodes approve", f"node {args.name} has no key {choice.key.key_id} any more")
            message = f"key {row.key_id} enrolled by {by}" + (
                f"; key {', '.join(replaced)} revoked" if replaced else ""
            )
            store.record_event(now, "key-enrolled", message, node=args.name)
    except DsfleetError as exc:
        return _fail("nodes approve", str(exc))
    print(f"node {args.name}: {message}; its reports are taken from this key from now on")
    return ExitCode.OK


def cmd_nodes_revoke(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.store.nodekeys import REVOKED

    now = datetime.now(UTC)
    try:
        store = _store("nodes revoke", args)
        if store is None:
            return ExitCode.ERROR
        with store:
            keys = [k for k in store.node_keys(args.name) if k.state != REVOKED]
            if args.key is not None:
                found = _matching(keys, args.key)
                if len(found) != 1:
                    what = "no key" if not found else "more than one key starting with"
                    return _fail(
                        "nodes revoke", f"node {args.name} has {what} {args.key} that is not revoked already"
                    )
                keys = found
            if not keys:
                return _fail("nodes revoke", f"node {args.name} has no key that is not revoked already")
            for k in keys:
                store.revoke_key(args.name, k.key_id)
            ids = ", ".join(k.key_id for k in keys)
            store.record_event(
                now,
                "key-revoked",
                f"key {ids} revoked by {_operator()} (dsfleet nodes revoke)",
                node=args.name,
            )
    except DsfleetError as exc:
        return _fail("nodes revoke", str(exc))
    print(f"node {args.name}: key {ids} revoked; reports signed by it are dropped from now on")
    return ExitCode.OK


def cmd_nodes_forget(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.store import Store

    url = settings_of(args).coordinator.db
    if store_problem("nodes forget", url, must_exist=True):
        return ExitCode.ERROR
    try:
        with Store.open(url) as store:
            forgotten = store.retire_node(args.name, datetime.now(UTC), "forgotten by `dsfleet nodes forget`")
    except DsfleetError as exc:
        print(f"dsfleet nodes forget: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    if not forgotten:
        print(f"dsfleet nodes forget: error: the store knows nothing of node {args.name}", file=sys.stderr)
        return ExitCode.ERROR
    print(f"node {args.name} forgotten: its status and the instances its agent reported are gone")
    return ExitCode.OK


def cmd_token_create(args: argparse.Namespace) -> int:
    from dsfleet.plumbing.signing import new_enrollment_token, token_public

    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        return _fail("nodes token create", f"--ttl {exc}")
    now = datetime.now(UTC)
    token = new_enrollment_token()
    try:
        store = _store("nodes token create", args)
        if store is None:
            return ExitCode.ERROR
        with store:
            row_id = store.create_enrollment_token(
                token_public(token), node=args.node, at=now, expires_at=now + ttl
            )
    except DsfleetError as exc:
        return _fail("nodes token create", str(exc))
    expires = (now + ttl).isoformat()
    if args.output == "json":
        doc = {"id": row_id, "token": token, "node": args.node, "expiresAt": expires}
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return ExitCode.OK
    for_node = f"node {args.node}" if args.node else "any node that has no enrolled key yet"
    print(f"enrollment token {row_id} for {for_node}, usable once until {expires}:")
    print(f"  {token}")
    print("it is shown only now (the store keeps a key derived from it); install the agent with")
    print("  dsfleet-agent run --enroll-token-file FILE ...   (or --enroll-token TOKEN)")
    return ExitCode.OK


def cmd_token_list(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        store = _store("nodes token list", args, readonly=True)
        if store is None:
            return ExitCode.ERROR
        with store:
            tokens = store.enrollment_tokens()
    except DsfleetError as exc:
        return _fail("nodes token list", str(exc))
    rows = [
        {
            "id": t.id,
            "node": t.node,
            "createdAt": t.created_at.isoformat(),
            "expiresAt": t.expires_at.isoformat(),
            "state": token_state(t, now),
            "usedAt": _iso(t.used_at),
            "usedBy": t.used_by,
        }
        for t in tokens
    ]
    if args.output == "json":
        json.dump({"tokens": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return ExitCode.OK
    if not rows:
        print("no enrollment tokens (make one with `dsfleet nodes token create`)")
        return ExitCode.OK
    print(f"{'ID':<4}  {'NODE':<20}  {'EXPIRES':<25}  STATE")
    for r in rows:
        used = f" by key {r['usedBy']} at {r['usedAt']}" if r["usedBy"] else ""
        print(f"{r['id']:<4}  {r['node'] or '(any)':<20}  {r['expiresAt']:<25}  {r['state']}{used}")
    return ExitCode.OK
