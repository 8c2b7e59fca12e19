"""Printing a plan: terraform-like text (``+``/``~``/``-``, colours on a TTY) or stable, versioned JSON.

JSON schema ``dsfleet.diff/v1`` (documented in docs/cli/index.md):
``{"schema", "changed": bool, "summary": {nodes_to_add, nodes_to_change, nodes_to_remove, instances_to_create,
instances_to_delete, instances_to_restart, instances_to_recreate, instances_to_stop, instances_to_start,
instances_settings_changed, instances_hot},
"nodes": [{"name", "action", "old_hash", "new_hash", "instances": [{"name", "action", "kind", "old_hash",
"new_hash", "fields": [{"path", "action", "old", "new"}], "files": [{"path", "action", "diff"}],
"engineRebuilds": [{"gie", "reasons", "downtime"}]}]}], "engineRebuilds": [{"node", "instance", "gie", "reasons",
"downtime"}]}``; unchanged nodes are listed with ``action: "unchanged"`` and no instances. The top-level
``engineRebuilds`` lists every GIE whose TensorRT engine nvinfer builds again (``downtime: "minutes"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dsfleet.reconciler.planning.plans import SENSITIVE, Action, ChangeKind, InstanceChange, NodeChange, Plan
from dsfleet.reconciler.planning.rebuilds import EngineRebuild
from dsfleet.schemas.findings import plural

_SIGN = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-", Action.UNCHANGED: " "}
_COLOR = {
    Action.CREATE: "\033[32m",
    Action.UPDATE: "\033[33m",
    Action.DELETE: "\033[31m",
    Action.UNCHANGED: "",
}
_RESET = "\033[0m"


def summary(plan: Plan) -> dict[str, int]:
    return {
        "nodes_to_add": plan.count(Action.CREATE),
        "nodes_to_change": plan.count(Action.UPDATE),
        "nodes_to_remove": plan.count(Action.DELETE),
        "instances_to_create": plan.count_instances(action=Action.CREATE),
        "instances_to_delete": plan.count_instances(action=Action.DELETE),
        "instances_to_restart": plan.count_instances(kind=ChangeKind.RESTART),
        "instances_to_recreate": plan.count_instances(kind=ChangeKind.RECREATE),
        "instances_to_stop": plan.count_instances(kind=ChangeKind.STOP),
        "instances_to_start": plan.count_instances(kind=ChangeKind.START),
        "instances_settings_changed": plan.count_instances(kind=ChangeKind.SETTINGS),
        "instances_hot": plan.count_instances(kind=ChangeKind.HOT),
    }


def summary_line(plan: Plan) -> str:
    s = summary(plan)
    line = (
        f"Plan: {plural(s['nodes_to_add'], 'node')} to add, {s['nodes_to_change']} to change, "
        f"{s['nodes_to_remove']} to remove; {plural(s['instances_to_restart'], 'instance')} to restart, "
        f"{s['instances_to_recreate']} to recreate"
    )
    extras = [
        f"{s['instances_to_create']} to create" if s["instances_to_create"] else "",
        f"{s['instances_to_delete']} to delete" if s["instances_to_delete"] else "",
        f"{s['instances_to_stop']} to stop" if s["instances_to_stop"] else "",
        f"{s['instances_to_start']} to start" if s["instances_to_start"] else "",
        f"{s['instances_settings_changed']} with new settings only"
        if s["instances_settings_changed"]
        else "",
        f"{s['instances_hot']} with cameras changed live (no restart)" if s["instances_hot"] else "",
    ]
    extras = [e for e in extras if e]
    return line + (", " + ", ".join(extras) if extras else "") + "."


_YAML_SPECIAL = re.compile(
    r"^(|~|null|Null|NULL|true|True|TRUE|false|False|FALSE|yes|no|on|off|y|n|[-+]?(\.[0-9]+|[0-9][0-9_.:eE+-]*)|"
    r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$"
)


def yaml_value(value: Any) -> str:
    """A value as it would be written in a manifest (flow style): ``true``, ``null``, ``'3'``, ``{a: 1}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if value == SENSITIVE:
            return value
        plain = (
            not _YAML_SPECIAL.match(value)
            and value == value.strip()
            and not re.search(r"[:#,\[\]{}&*!|>'\"%@`]|^[-?]", value)
        )
        return value if plain else "'" + value.replace("'", "''") + "'"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{yaml_value(k)}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return yaml_value(str(value))


def _short(h: str | None) -> str:
    return h[:12] if h else "none"


def _paint(text: str, action: Action, color: bool) -> str:
    return f"{_COLOR[action]}{text}{_RESET}" if color and _COLOR[action] else text


_KIND_TEXT = {
    ChangeKind.SETTINGS: "settings only (no restart)",
    ChangeKind.HOT: "hot (cameras added/removed through the REST API; no restart)",
}


def _instance_lines(inst: InstanceChange, color: bool, bodies: bool = True, files: bool = True) -> list[str]:
    what = inst.action.value if inst.kind is None else _KIND_TEXT.get(inst.kind, inst.kind.value)
    lines = [_paint(f"  {_SIGN[inst.action]} instance {inst.name}: {what}", inst.action, color)]
    for rebuild in inst.engine_rebuilds:
        lines.append(
            f"      ! engine rebuild: {rebuild.gie} ({'; '.join(rebuild.reasons)}): "
            f"expect {rebuild.downtime} of downtime while TensorRT builds it"
        )
    for fc in inst.fields:
        if inst.action is Action.CREATE:
            continue  # the whole container spec: the files below say what the instance is
        if fc.action == "changed":
            lines.append(f"      ~ {fc.path}: {yaml_value(fc.old)} → {yaml_value(fc.new)}")
        elif fc.action == "added":
            lines.append(f"      + {fc.path}: {yaml_value(fc.new)}")
        else:
            lines.append(f"      - {fc.path}: {yaml_value(fc.old)}")
    if not files and inst.files:
        lines.append(f"      {plural(len(inst.files), 'file')} {_FILE_VERB[inst.action]}")
    for f in inst.files if files else ():
        lines.append(_paint(f"      {_SIGN[f.action]} file {f.path}", f.action, color))
        if inst.action in (Action.UPDATE, Action.CREATE) and bodies:
            for dl in f.diff.splitlines():
                if color and dl.startswith("+") and not dl.startswith("+++"):
                    dl = f"\033[32m{dl}{_RESET}"
                elif color and dl.startswith("-") and not dl.startswith("---"):
                    dl = f"\033[31m{dl}{_RESET}"
                lines.append("          " + dl)
    return lines


_FILE_VERB = {
    Action.CREATE: "written",
    Action.UPDATE: "changed",
    Action.DELETE: "removed",
    Action.UNCHANGED: "unchanged",
}


def plan_text(
    plan: Plan,
    color: bool = False,
    show_unchanged: bool = False,
    bodies: bool = True,
    files: bool = True,
) -> str:
    """The plan as text; ``bodies=False`` lists changed files without their unified diffs (``diff --stat``);
    ``files=False`` counts each instance's files instead of listing them (``apply``'s default)."""
    lines: list[str] = []
    for node in plan.nodes:
        if node.action is Action.UNCHANGED and not show_unchanged:
            continue
        head = f"{_SIGN[node.action]} node {node.name}"
        if node.action is Action.UPDATE:
            head += f"  (config {_short(node.old_hash)} → {_short(node.new_hash)})"
        elif node.action is Action.CREATE:
            head += f"  (config {_short(node.new_hash)})"
        elif node.action is Action.DELETE:
            head += "  (tombstone: its agent removes every managed container)"
        lines.append(_paint(head, node.action, color))
        for inst in node.instances:
            lines.extend(_instance_lines(inst, color, bodies, files))
    if plan.empty:
        lines.append("No changes. The stored fleet matches the manifests.")
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def _node_json(node: NodeChange) -> dict[str, Any]:
    return {
        "name": node.name,
        "action": node.action.value,
        "old_hash": node.old_hash,
        "new_hash": node.new_hash,
        "instances": [
            {
                "name": i.name,
                "action": i.action.value,
                "kind": i.kind.value if i.kind else None,
                "old_hash": i.old_hash,
                "new_hash": i.new_hash,
                "fields": [
                    {"path": f.path, "action": f.action, "old": f.old, "new": f.new} for f in i.fields
                ],
                "files": [{"path": f.path, "action": f.action.value, "diff": f.diff} for f in i.files],
                "engineRebuilds": [_rebuild_json(r) for r in i.engine_rebuilds],
            }
            for i in node.instances
        ],
    }


def _rebuild_json(rebuild: EngineRebuild) -> dict[str, Any]:
    return {"gie": rebuild.gie, "reasons": list(rebuild.reasons), "downtime": rebuild.downtime}


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "schema": "dsfleet.diff/v1",
        "changed": not plan.empty,
        "summary": summary(plan),
        "nodes": [_node_json(n) for n in plan.nodes],
        "engineRebuilds": [
            {"node": n.name, "instance": i.name, **_rebuild_json(r)}
            for n in plan.nodes
            for i in n.instances
            for r in i.engine_rebuilds
        ],
    }
