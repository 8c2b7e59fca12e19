"""Which planned changes make nvinfer build a TensorRT engine again (pure), per instance and GIE file.

An engine is rebuilt when a key it was built for changes (batch size, precision, model/ONNX file, ``infer-dims``,
… — :data:`dsfleet.resolution.tensorrt.ENGINE_KEYS`), when a GIE is added, or when the image changes (the engine volume is
recreated with it: docs/architecture/decisions/0013-engine-volume-per-instance.md). Building takes minutes where a
restart takes seconds, so ``diff`` says so.
The rendered GIE files are dsfleet's own output (one ``key=value`` per line, no inline comments), so a plain
line reader is exact here.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsfleet.resolution.tensorrt import ENGINE_KEYS
from dsfleet.schemas.nodeconfigs import InstanceConfig

DOWNTIME_ENGINE_BUILD = "minutes"
"""Expected downtime class of an engine rebuild (a restart or recreate alone: seconds)."""
_NVINFER_MARKERS = frozenset(ENGINE_KEYS)
"""No nvdspreprocess or ccm-align key is among them: a [property] group with one of these is nvinfer's."""


@dataclass(frozen=True)
class EngineRebuild:
    gie: str
    """The GIE's rendered file."""
    reasons: tuple[str, ...]
    downtime: str = DOWNTIME_ENGINE_BUILD


def property_group(content: str) -> dict[str, str] | None:
    """The ``[property]`` keys of a rendered nvinfer file; None for any other file."""
    group: str | None = None
    props: dict[str, str] = {}
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
            continue
        if group == "property" and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props if _NVINFER_MARKERS & props.keys() else None


def _gie_files(inst: InstanceConfig) -> dict[str, dict[str, str]]:
    out = {}
    for f in inst.files:
        if f.path.endswith((".txt", ".cfg", ".conf")):
            props = property_group(f.content)
            if props is not None:
                out[f.path] = props
    return out


def engine_rebuilds(old: InstanceConfig, new: InstanceConfig) -> tuple[EngineRebuild, ...]:
    """The GIEs of an updated instance whose engine nvinfer builds again, with why."""
    before, after = _gie_files(old), _gie_files(new)
    image = old.container.image != new.container.image
    out = []
    for path in sorted(after):
        props = after[path]
        if path not in before:
            out.append(EngineRebuild(path, ("new GIE",)))
            continue
        reasons = [
            f"{key} {before[path].get(key, '(unset)')} → {props.get(key, '(unset)')}"
            for key in ENGINE_KEYS
            if before[path].get(key) != props.get(key)
        ]
        if image:
            reasons.append(f"image {old.container.image} → {new.container.image} (engine volume recreated)")
        if reasons:
            out.append(EngineRebuild(path, tuple(reasons)))
    return tuple(out)
