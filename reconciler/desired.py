"""Manifests → validated fleet → per-node configs, with caches for the warm (coordinator) path.

``ManifestCache`` keeps parsed + validated files by content hash; ``CompileCache`` keeps compiled instances by
the hash of everything an instance's config depends on (its manifest, its cameras, its profile, its node's image),
so changing one camera re-renders one instance.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from policies.engine import evaluate, resolve_all
from policies.resolution import ResolvedInstance
from reconciler.compiling import compile_instance
from reconciler.manifests import LoadedManifests, ManifestCache, load_manifests, locate_findings
from schemas.fleet import Fleet
from schemas.hashing import sha256_hex
from schemas.nodeconfigs import InstanceConfig, NodeConfig, build_node


@dataclass
class CompileCache:
    entries: dict[str, InstanceConfig] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0


def _instance_key(fleet: Fleet, res: ResolvedInstance) -> str:
    parts = [res.instance.model_dump_json(), res.image or ""]
    parts.extend(fleet.cameras[c].model_dump_json() for c in res.cameras if c in fleet.cameras)
    profile = fleet.profiles.get(res.instance.spec.profile or "")
    parts.append(profile.model_dump_json() if profile else "")
    return sha256_hex("\x00".join(parts))


def compile_configs(
    fleet: Fleet, resolved: dict[str, ResolvedInstance], cache: CompileCache | None = None
) -> dict[str, NodeConfig]:
    per_node: dict[str, list[InstanceConfig]] = {name: [] for name in fleet.nodes}
    for name in sorted(resolved):
        res = resolved[name]
        node = res.instance.spec.node
        if node is None or node not in per_node:
            continue
        if cache is None:
            per_node[node].append(compile_instance(fleet, res))
            continue
        key = _instance_key(fleet, res)
        config = cache.entries.get(key)
        if config is None:
            cache.misses += 1
            config = cache.entries[key] = compile_instance(fleet, res)
        else:
            cache.hits += 1
        per_node[node].append(config)
    return {node: build_node(node, instances) for node, instances in sorted(per_node.items())}


@dataclass
class DesiredState:
    loaded: LoadedManifests
    resolved: dict[str, ResolvedInstance]
    configs: dict[str, NodeConfig] | None
    """None when the manifests have errors (nothing may be applied)."""

    @property
    def fleet(self) -> Fleet:
        return self.loaded.fleet


def desired_state(
    paths: Sequence[str | os.PathLike[str]],
    manifest_cache: ManifestCache | None = None,
    compile_cache: CompileCache | None = None,
) -> DesiredState:
    loaded = load_manifests(paths, cache=manifest_cache, run_policies=False)
    resolved = resolve_all(loaded.fleet)
    policy_findings = evaluate(loaded.fleet, resolved)
    loaded.findings = locate_findings([*loaded.findings, *policy_findings], loaded.texts)
    configs = compile_configs(loaded.fleet, resolved, compile_cache) if loaded.ok else None
    return DesiredState(loaded=loaded, resolved=resolved, configs=configs)
