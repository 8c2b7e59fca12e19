"""The way one camera URL takes through the code, from its YAML to the file the agent writes for the container.

Runs the real path in process on the example fleet (``manifests/``): load and compile the manifests, encode the
node's AgentConfig, and let the real agent loop (on the in-memory fakes of its ports) accept it and write the
instance's files. A profiler hook notes every call into the project's modules whose arguments hold the URL
(directly, or inside a model, a dataclass, a tuple or a dict), in order. Printed: the modules the URL crosses and
how often it comes back to a module it had already left (a "return": back and forth, the thing a clean data path
avoids).

    python benchmarks/dataway.py [--tree DIR] [-o json]

``--tree`` measures another checkout of the project (e.g. a worktree of an older commit) with the same method, so
two trees can be compared side by side; it must have the example fleet and the agent loop's unit-test helpers.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CAMERA_URL = "127.0.0.1:8554/gate-1/main"
"""The address of camera gate-1 of the example fleet (its credentials come from the host's secret store)."""


def _holds(value: Any, needle: str, depth: int = 0) -> bool:
    if isinstance(value, str):
        return needle in value
    if depth >= 3 or value is None or isinstance(value, int | float | bool | bytes | Path):
        return False
    if isinstance(value, dict):
        return any(_holds(v, needle, depth + 1) for v in list(value.values())[:200])
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds(v, needle, depth + 1) for v in list(value)[:200])
    fields = getattr(type(value), "model_fields", None)
    if fields is not None:
        return any(_holds(getattr(value, f, None), needle, depth + 1) for f in fields)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_holds(getattr(value, f.name), needle, depth + 1) for f in dataclasses.fields(value))
    return False


def _module_of(filename: str, tree: Path) -> str | None:
    path = Path(filename).resolve()
    try:
        rel = path.relative_to(tree.resolve())
    except ValueError:
        return None
    if rel.parts[0] in ("tests", "benchmarks", ".venv") or rel.suffix != ".py":
        return None
    return ".".join(rel.with_suffix("").parts)


def trace(tree: Path, functions: bool = False) -> list[str]:
    """The modules the URL enters, in order (consecutive repeats collapsed)."""
    sys.path.insert(0, str(tree))
    prefix = "dsfleet." if (tree / "dsfleet" / "__init__.py").exists() else ""

    def imp(name: str) -> Any:
        return importlib.import_module(prefix + name)

    desired_state = imp("reconciler.compiling.desired").desired_state
    agent_config_record = imp("schemas.wire").agent_config_record
    ports = imp("agent.ports")
    credentials = imp("agent.credentials")
    spec = importlib.util.spec_from_file_location(
        "dataway_agent_loop", tree / "tests/unit/test_agent_loop.py"
    )
    assert spec is not None and spec.loader is not None
    helpers = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = helpers  # dataclasses look their module up
    spec.loader.exec_module(helpers)

    seen: list[str] = []
    calls: list[str] = []

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = _module_of(frame.f_code.co_filename, tree)
        if module is None:
            return
        args = [
            frame.f_locals[n]
            for n in frame.f_code.co_varnames[: frame.f_code.co_argcount]
            if n in frame.f_locals
        ]
        if any(_holds(a, CAMERA_URL) for a in args):
            calls.append(f"{module}.{frame.f_code.co_name}")
            if not seen or seen[-1] != module:
                seen.append(module)

    def run() -> None:
        desired = desired_state([tree / "manifests"])
        assert desired.configs is not None, "the example fleet must be valid"
        node, config = next(
            (n, c)
            for n, c in desired.configs.items()
            if any(CAMERA_URL in f.content for i in c.instances for f in i.files)
        )
        _, key, value, _ = agent_config_record(
            node, 1, config.model_dump(mode="json"), "2026-01-01T00:00:00+00:00"
        )
        with tempfile.TemporaryDirectory() as state:
            agent, _runtime, bus, _clock = helpers.make(Path(state), node)
            secret = credentials.Credential("viewer", "not-a-real-password")
            agent.secrets = credentials.MemorySecretStore(dict.fromkeys(_refs(config), secret))
            batch = ports.BusBatch(configs=[(key.encode(), value)], caught_up=True)
            if hasattr(bus, "enqueue"):
                bus.enqueue(batch)
            else:
                bus.batches.append(batch)
            agent.step()
            written = list(Path(state).rglob("*"))
            assert any(p.is_file() and CAMERA_URL in p.read_text(errors="replace") for p in written), (
                "not written"
            )

    previous: Callable[..., Any] | None = sys.getprofile()
    sys.setprofile(hook)
    threading.setprofile(hook)  # the agent applies actions on a thread pool
    try:
        run()
    finally:
        sys.setprofile(previous)
        threading.setprofile(None)  # type: ignore[arg-type]
    if functions:
        print("\n".join(calls))
    return seen


def _refs(config: Any) -> set[str]:
    return {ref for inst in config.instances for f in inst.files for ref in f.secrets}


def summary(way: list[str]) -> dict[str, Any]:
    returns = sum(1 for i, m in enumerate(way) if m in way[:i])
    return {"modules": len(set(way)), "hops": len(way), "returns": returns, "way": way}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument("--functions", action="store_true", help="also print every call that carries the URL")
    args = parser.parse_args(argv)
    result = summary(trace(args.tree, args.functions))
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(f"modules crossed: {result['modules']}, hops: {result['hops']}, returns: {result['returns']}")
        print(" -> ".join(result["way"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
