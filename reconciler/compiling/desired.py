"""Manifests → validated fleet → per-node configs, with caches for the warm (coordinator) path.

``ManifestCache`` keeps parsed + validated files by content hash; ``CompileCache`` keeps compiled instances by
the hash of everything an instance's config depends on (its manifest, its cameras, its profile, its node's image),
so changing one camera re-renders one instance.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from dsfleet.policies.engine import evaluate, resolve_all
from dsfleet.policies.syncs import FleetSync, fleet_sync, instance_self_heal
from dsfleet.reconciler.compiling.instances import compile_fleet, compile_instance
from dsfleet.reconciler.loading.manifestsets import (
    LoadedManifests,
    ManifestCache,
    load_manifests,
    locate_findings,
)
from dsfleet.reconciler.loading.yamlfiles import DEFAULT_LIMITS, Limits
from dsfleet.resolution.instances import (
    ResolvedInstance,
    all_profile_values,
    instance_cameras,
    instance_image,
    resolve_instance,
)
from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.hashing import sha256_hex
from dsfleet.schemas.manifests import DsInstance
from dsfleet.schemas.nodeconfigs import InstanceConfig, NodeConfig


@dataclass
class CompileCache:
    """Resolved and compiled instances by the hash of their inputs; manifests' content hashes by object.

    Unchanged files come back from the ManifestCache as the very same (frozen) objects, so a manifest's content
    hash is computed once per object and looked up by identity afterwards (the cache keeps the object alive,
    so its id cannot be reused).
    """

    entries: dict[str, InstanceConfig] = field(default_factory=dict)
    resolved: dict[str, ResolvedInstance] = field(default_factory=dict)
    fingerprints: dict[int, tuple[BaseModel, str]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def fingerprint(self, model: BaseModel) -> str:
        hit = self.fingerprints.get(id(model))
        if hit is not None and hit[0] is model:
            return hit[1]
        digest = sha256_hex(model.model_dump_json())
        self.fingerprints[id(model)] = (model, digest)
        return digest

    def trim(self, live: int) -> None:
        """Forget everything once the caches hold far more than the fleet has (old revisions' objects)."""
        if len(self.fingerprints) > 4 * live + 1000 or len(self.entries) > 4 * live + 1000:
            self.entries.clear()
            self.resolved.clear()
            self.fingerprints.clear()


def instance_key(fleet: Fleet, instance: DsInstance, cache: CompileCache, sync: FleetSync) -> str:
    """Hash of everything an instance's resolution and files depend on."""
    parts = [cache.fingerprint(instance), instance_image(fleet, instance) or ""]
    for name in instance_cameras(fleet, instance):
        camera = fleet.cameras.get(name)
        parts.append(name + "=" + (cache.fingerprint(camera) if camera else "missing"))
    profile = fleet.profiles.get(instance.spec.profile or "")
    parts.append(cache.fingerprint(profile) if profile else "no-profile")
    parts.append("self-heal" if instance_self_heal(sync, instance) else "no-self-heal")
    return sha256_hex("\x00".join(parts))


def resolve_cached(
    fleet: Fleet, cache: CompileCache | None, sync: FleetSync
) -> tuple[dict[str, ResolvedInstance], dict[str, str]]:
    if cache is None:
        return resolve_all(fleet), {}
    cache.trim(len(fleet))
    resolved: dict[str, ResolvedInstance] = {}
    keys: dict[str, str] = {}
    values: dict[str, Any] | None = None
    for name, instance in sorted(fleet.instances.items()):
        key = keys[name] = instance_key(fleet, instance, cache, sync)
        res = cache.resolved.get(key)
        if res is None:
            if values is None:
                values = all_profile_values(fleet)
            res = cache.resolved[key] = resolve_instance(fleet, instance, values)
        resolved[name] = res
    return resolved, keys


def compile_configs(
    fleet: Fleet,
    resolved: dict[str, ResolvedInstance],
    sync: FleetSync,
    cache: CompileCache | None = None,
    keys: dict[str, str] | None = None,
) -> dict[str, NodeConfig]:
    if cache is None:
        return compile_fleet(fleet, resolved, sync=sync)
    known = keys or {}

    def cached(fleet: Fleet, res: ResolvedInstance, sync: FleetSync) -> InstanceConfig:
        key = known.get(res.name) or instance_key(fleet, res.instance, cache, sync)
        config = cache.entries.get(key)
        if config is None:
            cache.misses += 1
            config = cache.entries[key] = compile_instance(fleet, res, sync)
        else:
            cache.hits += 1
        return config

    return compile_fleet(fleet, resolved, cached, sync)


@dataclass
class DesiredState:
    loaded: LoadedManifests
    resolved: dict[str, ResolvedInstance]
    sync: FleetSync
    """The Policies' sync settings, merged once per load."""
    configs: dict[str, NodeConfig] | None
    """None when the manifests have errors (nothing may be applied)."""

    @property
    def fleet(self) -> Fleet:
        return self.loaded.fleet


def desired_state(
    paths: Sequence[str | os.PathLike[str]],
    manifest_cache: ManifestCache | None = None,
    compile_cache: CompileCache | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> DesiredState:
    loaded = load_manifests(paths, limits=limits, cache=manifest_cache, run_policies=False)
    sync = fleet_sync(loaded.fleet)
    resolved, keys = resolve_cached(loaded.fleet, compile_cache, sync)
    policy_findings = evaluate(loaded.fleet, resolved)
    loaded.findings = locate_findings([*loaded.findings, *policy_findings], loaded.texts, loaded.locations)
    configs = compile_configs(loaded.fleet, resolved, sync, compile_cache, keys) if loaded.ok else None
    return DesiredState(loaded=loaded, resolved=resolved, sync=sync, configs=configs)
