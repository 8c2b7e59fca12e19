"""``dsfleet status``: the fleet at a glance from the store (whether the coordinator runs and reaches its broker,
what waits in the outbox, the camera handovers under way, agents' keys waiting for approval and reports dropped for
their signature, nodes, instances with sync and health, the last revision, the pending plan of manual
sync). The document is :func:`dsfleet.reconciler.views.status_document`
(``dsfleet.status/v1``) of the store's :meth:`~dsfleet.reconciler.store.Store.status_snapshot`; this module only
prints it: ``rich`` tables on a terminal, plain columns otherwise, JSON with ``-o json``; ``--watch`` refreshes in
place."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from dsfleet.reconciler.cli.options import add_db, add_output, settings_of, store_problem
from dsfleet.schemas.errors import ExitCode
from dsfleet.schemas.findings import plural

__all__ = ["add_parser", "cameras_text", "cmd_status", "status_text"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show nodes, instances (sync, health, state), the last revision and the pending plan",
        description="Read the store and show whether the coordinator runs (its heartbeat) and reaches its broker, "
        "what waits in the outbox, agents' keys waiting for approval (with the command that approves each) and "
        "reports dropped for their signature, every node (online/offline/unknown, retiring, last seen, agent version, "
        "desired vs observed generation) and every instance (sync Synced/OutOfSync/Progressing, health Healthy/"
        "Degraded/Failed/Unknown, state, restarts, unhealed drift, fresh FPS, reason), the last revision "
        "(commit, author, accepted or rejected with its errors) and, in manual sync, the pending plan. JSON: the "
        "dsfleet.status/v1 document.",
        epilog="exit: 0 shown, 2 unusable store",
    )
    add_db(p)
    add_output(p)
    p.add_argument(
        "--cameras",
        action="store_true",
        help="show each camera of the instances served by DeepStream's stream REST API instead (node, instance, "
        "camera, state, reason, fps, frame, latency); JSON: the dsfleet.cameras/v1 document",
    )
    p.add_argument("--watch", action="store_true", help="refresh every --interval seconds until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="refresh period (default 1 s)")
    p.set_defaults(handler=cmd_status)


def read_status(db: str) -> dict[str, Any]:
    from dsfleet.reconciler.store import Store
    from dsfleet.reconciler.views import PUBLISHED_WINDOW, status_document

    now = datetime.now(UTC)
    with Store.open(db, readonly=True) as store:
        snapshot = store.status_snapshot(since=now - PUBLISHED_WINDOW)
    return status_document(snapshot, now)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return str(value)


def _ago(iso: str | None, now: datetime) -> str:
    if not iso:
        return "never"
    seconds = max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _fps(fps: dict[str, float]) -> str:
    return ",".join(f"{v:g}" for _, v in sorted(fps.items())) if fps else "-"


def _rows(doc: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    now = datetime.fromisoformat(doc["generatedAt"])
    nodes = [
        [
            n["name"],
            n["state"] + (" (retiring)" if n["retiring"] else ""),
            _ago(n["lastSeen"], now),
            _cell(n["agentVersion"]),
            f"{_cell(n['desiredGeneration'])}/{_cell(n['observedGeneration'])}",
            n["sync"],
            str(len(n["gpus"])),
            str(n["instances"]),
        ]
        for n in doc["nodes"]
    ]
    instances = [
        [
            i["name"],
            i["node"],
            i["sync"],
            i["health"],
            _cell(i["state"]),
            f"{_cell(i['desiredGeneration'])}/{_cell(i['observedGeneration'])}",
            str(i["restarts"]),
            str(sum(1 for d in i["drift"] if not d.get("healed"))),
            _fps(i["fps"]),
            _cell(i["reason"]),
        ]
        for i in doc["instances"]
    ]
    return nodes, instances


NODE_COLUMNS = ("NODE", "STATUS", "LAST SEEN", "AGENT", "GEN D/O", "SYNC", "GPUS", "INSTANCES")
INSTANCE_COLUMNS = (
    "INSTANCE",
    "NODE",
    "SYNC",
    "HEALTH",
    "STATE",
    "GEN D/O",
    "RESTARTS",
    "DRIFT",
    "FPS",
    "REASON",
)


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def _revision_lines(doc: dict[str, Any]) -> list[str]:
    rev = doc.get("revision")
    if rev is None:
        return ["revision: none yet"]
    verdict = "accepted" if rev["accepted"] else f"rejected ({plural(len(rev['errors']), 'error')})"
    commit = (rev["commit"] or "-")[:12]
    who = f" by {rev['author']}" if rev.get("author") else ""
    subject = f" {rev['subject']!r}" if rev.get("subject") else ""
    lines = [f"revision {rev['id']}: {verdict}, {rev['source']}, commit {commit}{who}{subject}"]
    for e in rev["errors"][:10]:
        where = ":".join(str(x) for x in (e.get("file"), e.get("line"), e.get("column")) if x is not None)
        lines.append(f"  {where}: {e.get('severity', 'error')}: {e.get('message', '')}")
    return lines


def _pending_lines(doc: dict[str, Any]) -> list[str]:
    pending = doc.get("pendingPlan")
    if not pending:
        return []
    if not pending.get("valid", True):
        return [f"pending plan: invalid manifests ({pending.get('errors', '?')} errors)"]
    return [f"pending plan (manual sync): {pending.get('text', '')}"]


def _pin_lines(doc: dict[str, Any]) -> list[str]:
    """The rollback pin, first and loud: automatic sync is held."""
    pin = doc.get("pin")
    return [pin["summary"]] if pin else []


def _rollout_lines(doc: dict[str, Any]) -> list[str]:
    """The rollout, when one runs or the last one was aborted (a succeeded one is in `dsfleet rollout status`)."""
    rollout = doc.get("rollout")
    if not rollout or rollout["state"] in ("succeeded", "superseded"):
        return []
    return [rollout["summary"]]


def _enrollment_lines(doc: dict[str, Any]) -> list[str]:
    """Keys waiting for approval, one line each with the command that approves it, and the dropped reports."""
    e = doc.get("enrollment")
    if not e:
        return []
    lines = [
        f"key waiting for approval: node {k['node']}, key {k['keyId']}, hostname {k['hostname'] or '-'}, "
        f"first seen {k['firstSeen']}: approve with {k['approve']}"
        for k in e["pendingKeys"]
    ]
    dropped = e["droppedReports"]
    if dropped["total"]:
        why = ", ".join(f"{reason} {n}" for reason, n in dropped["byReason"].items())
        since = f" since {dropped['since']}" if dropped["since"] else ""
        lines.append(
            f"reports dropped for their signature{since}: {dropped['total']} ({why}); `dsfleet nodes list` shows "
            "the keys"
        )
    return lines


def _summary_line(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    sync = ", ".join(f"{v} {k}" for k, v in s["instances"]["sync"].items()) or "none"
    health = ", ".join(f"{v} {k}" for k, v in s["instances"]["health"].items()) or "none"
    nodes = s["nodes"]
    extra = "".join(f", {nodes[k]} {k}" for k in ("unknown", "retiring") if nodes.get(k))
    drift = s["instances"]
    return (
        f"{nodes['online']}/{nodes['total']} nodes online{extra}; "
        f"{plural(drift['total'], 'instance')}: {sync}; {health}; "
        f"drift {drift['drift']} unhealed ({drift['driftEvents']} in all)"
    )


def _fleet_lines(doc: dict[str, Any]) -> list[str]:
    """Who runs the fleet and what waits: the coordinator, its broker, the outbox, foreign configs."""
    c = doc.get("coordinator")
    if c is None:
        lines = ["coordinator: none has run on this store"]
    else:
        lines = [c["summary"]]
        if c["running"] or c["broker"]["configured"]:
            lines.append(c["broker"]["summary"])
        foreign = c["foreignConfigs"]
        if foreign["count"]:
            records = "record" if foreign["count"] == 1 else "records"
            lines.append(
                f"another writer: {foreign['count']} AgentConfig {records} this coordinator did not write; "
                f"last: {foreign['last']}"
            )
    outbox = doc["outbox"]
    if outbox["depth"]:
        lines.append(outbox["summary"])
    for h in doc.get("handovers") or ():
        lines.append(f"handover {h['state']} on {h['node']}: {h['summary']}")
    return _pin_lines(doc) + _rollout_lines(doc) + lines + _enrollment_lines(doc)


CAMERA_COLUMNS = ("NODE", "INSTANCE", "CAMERA", "STATE", "REASON", "FPS", "FRAME", "LATENCY")


def _number(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def cameras_text(doc: dict[str, Any]) -> str:
    """``status --cameras`` as plain columns (a ``dsfleet.cameras/v1`` document in); a stale row (its node went
    silent) says so in its state."""
    rows = [
        [
            c["node"],
            c["instance"],
            c["camera"],
            c["state"] + ("" if c["nodeOnline"] else " (node offline)"),
            _cell(c["reason"]),
            _number(c["fps"]),
            _number(c["frameNumber"]),
            _number(c["latencyMs"], " ms"),
        ]
        for c in doc["cameras"]
    ]
    if not rows:
        return "No camera reported: no instance is served by DeepStream's stream REST API.\n"
    states = ", ".join(f"{n} {state}" for state, n in sorted(doc["states"].items()))
    return "\n".join([*_table(CAMERA_COLUMNS, rows), "", f"{plural(len(rows), 'camera')}: {states}"]) + "\n"


def _cameras(db: str, args: argparse.Namespace) -> int:
    from dsfleet.reconciler.views import cameras_document

    stop = threading.Event()
    while True:
        doc = cameras_document(read_status(db))
        if args.output == "json":
            sys.stdout.write(json.dumps(doc, indent=None if args.watch else 2) + "\n")
        else:
            sys.stdout.write("\x1b[H\x1b[2J" if args.watch and sys.stdout.isatty() else "")
            sys.stdout.write(cameras_text(doc))
        sys.stdout.flush()
        if not args.watch or stop.wait(max(0.1, args.interval)):
            return ExitCode.OK


def status_text(doc: dict[str, Any]) -> str:
    """The plain-text rendering (pipes, files, tests)."""
    nodes, instances = _rows(doc)
    lines = [
        *_fleet_lines(doc),
        "",
        *_table(NODE_COLUMNS, nodes),
        "",
        *_table(INSTANCE_COLUMNS, instances),
        "",
    ]
    lines += _revision_lines(doc) + _pending_lines(doc) + [_summary_line(doc)]
    return "\n".join(lines) + "\n"


_STYLE = {
    "Synced": "green",
    "OutOfSync": "yellow",
    "Progressing": "cyan",
    "Healthy": "green",
    "Degraded": "yellow",
    "Failed": "bold red",
    "Unknown": "dim",
    "online": "green",
    "offline": "red",
    "unknown": "dim",
}


def _rich(doc: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    nodes, instances = _rows(doc)
    parts: list[Any] = [Text(line) for line in _fleet_lines(doc)]
    for title, columns, rows in (("Nodes", NODE_COLUMNS, nodes), ("Instances", INSTANCE_COLUMNS, instances)):
        table = Table(title=title, title_justify="left", header_style="bold")
        for c in columns:
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(*(Text(v, style=_STYLE.get(v, "")) for v in r))
        parts.append(table)
    parts += [Text(line) for line in _revision_lines(doc) + _pending_lines(doc)]
    parts.append(Text(_summary_line(doc), style="bold"))
    return Group(*parts)


def cmd_status(args: argparse.Namespace) -> int:
    db = settings_of(args).coordinator.db
    if store_problem("status", db, must_exist=True):
        return ExitCode.ERROR
    if args.cameras:
        return _cameras(db, args)
    interactive = sys.stdout.isatty() and args.output == "text"
    if not args.watch:
        doc = read_status(db)
        if args.output == "json":
            json.dump(doc, sys.stdout, indent=2)
            sys.stdout.write("\n")
        elif interactive:
            from rich.console import Console

            Console().print(_rich(doc))
        else:
            sys.stdout.write(status_text(doc))
        return ExitCode.OK
    stop = threading.Event()
    interval = max(0.1, args.interval)
    if interactive:
        from rich.live import Live

        with Live(_rich(read_status(db)), auto_refresh=False, screen=False) as live:
            while not stop.wait(interval):
                live.update(_rich(read_status(db)), refresh=True)
        return ExitCode.OK  # pragma: no cover - ended by Ctrl-C (KeyboardInterrupt → 130 in main)
    while True:
        doc = read_status(db)
        if args.output == "json":
            sys.stdout.write(json.dumps(doc) + "\n")
        else:
            sys.stdout.write("\x1b[H\x1b[2J" if sys.stdout.isatty() else "")
            sys.stdout.write(status_text(doc) + "\n")
        sys.stdout.flush()
        if stop.wait(interval):  # pragma: no cover
            return ExitCode.OK
