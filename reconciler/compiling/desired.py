"""Manifests → validated fleet → per-node configs, with caches for the warm (coordinator) path.

``ManifestCache`` keeps parsed + validated files by content hash; ``CompileCache`` keeps compiled instances by
the hash of everything an instance's config depends on (its manifest, its cameras, its profile, its node's image),
so changing one camera re-renders one instance.

Incremental (the coordinator, which keeps one ``CompileCache``): unchanged files come back from the
``ManifestCache`` as the very same objects, so comparing the new fleet's documents with the last one's by identity
tells which documents changed (:func:`changed_instances`). Only the instances a change can affect (changed
themselves, or naming a changed node, profile or camera, or selecting a changed camera) get their keys computed,
are resolved, checked by the instance-scoped rules (:class:`dsfleet.policies.engine.HitMemo`) and compiled again;
only their nodes' configs are built again. A change to a Policy, or a document that fails its schema, makes
everything count as changed. The result equals a full evaluation (``tests/unit/test_incremental.py`` checks it on
random edit sequences); decision record 0029.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from dsfleet.policies.engine import HitMemo, evaluate, resolve_all
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
from dsfleet.schemas.nodeconfigs import InstanceConfig, NodeConfig, build_node


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
    last: Fleet | None = None
    """The fleet of the last desired state computed through this cache, and what was derived from it:"""
    last_sync: FleetSync | None = None
    keys: dict[str, str] = field(default_factory=dict)
    last_resolved: dict[str, ResolvedInstance] = field(default_factory=dict)
    node_configs: dict[str, NodeConfig] = field(default_factory=dict)
    rule_hits: HitMemo = field(default_factory=HitMemo)
    changed: frozenset[str] | None = None
    """The instances the last computation counted as changed (None: all of them)."""

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


def _changed_names(old: Mapping[str, object], new: Mapping[str, object]) -> set[str]:
    """Names whose document is not the very same object in both (added, removed or changed)."""
    if old is new:
        return set()
    out = {name for name, doc in new.items() if old.get(name) is not doc}
    added = sum(1 for name in out if name not in old)
    if len(old) != len(new) - added:  # some were removed
        out.update(name for name in old if name not in new)
    return out


def changed_instances(old: Fleet, new: Fleet) -> set[str] | None:
    """The instances of ``new`` whose resolution, files or instance-scoped findings may differ from ``old``'s:
    changed themselves, or naming (placed on, using, listing or selecting) a document that changed. None when
    anything may have: a Policy changed, or a document failed its schema (the consequences of an invalid
    document reach across the fleet)."""
    if new.invalid or old.invalid or _changed_names(old.policies, new.policies):
        return None
    out = _changed_names(old.instances, new.instances) & new.instances.keys()
    nodes = _changed_names(old.nodes, new.nodes)
    profiles = _changed_names(old.profiles, new.profiles)
    cameras = _changed_names(old.cameras, new.cameras)
    if not (nodes or profiles or cameras):
        return out
    labels = [doc.metadata.labels for c in cameras for doc in (old.cameras.get(c), new.cameras.get(c)) if doc]
    for name, instance in new.instances.items():
        if name in out:
            continue
        spec = instance.spec
        if (
            (spec.node is not None and spec.node in nodes)
            or (spec.profile is not None and spec.profile in profiles)
            or (cameras and any(c in cameras for c in spec.cameras))
            or (
                spec.cameraSelector is not None
                and any(
                    all(have.get(k) == v for k, v in spec.cameraSelector.matchLabels.items())
                    for have in labels
                )
            )
        ):
            out.add(name)
    return out


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
    fleet: Fleet, cache: CompileCache | None, sync: FleetSync, changed: Collection[str] | None = None
) -> tuple[dict[str, ResolvedInstance], dict[str, str]]:
    """Every instance resolved, with its key; ``changed`` (see :func:`changed_instances`): the others are
    taken as they were in ``cache``'s last computation."""
    if cache is None:
        return resolve_all(fleet), {}
    cache.trim(len(fleet))
    resolved: dict[str, ResolvedInstance] = {}
    keys: dict[str, str] = {}
    values: dict[str, Any] | None = None
    for name, instance in sorted(fleet.instances.items()):
        if changed is not None and name not in changed:
            key = cache.keys.get(name)
            res = cache.last_resolved.get(name)
            if key is not None and res is not None:
                keys[name], resolved[name] = key, res
                continue
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
    changed: Collection[str] | None = None,
) -> dict[str, NodeConfig]:
    """Every node's config; ``changed`` (see :func:`changed_instances`): the configs of nodes that neither
    changed nor hold (or held) a changed instance are taken from ``cache``'s last computation."""
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

    last = cache.last
    if changed is None or last is None or cache.last_sync != sync or not cache.node_configs:
        return compile_fleet(fleet, resolved, cached, sync)
    touched = _changed_names(last.nodes, fleet.nodes)
    for name in changed:
        for side in (last.instances.get(name), fleet.instances.get(name)):
            if side is not None and side.spec.node is not None:
                touched.add(side.spec.node)
    for name in _changed_names(last.instances, fleet.instances) - fleet.instances.keys():
        node = last.instances[name].spec.node
        if node is not None:
            touched.add(node)
    touched &= fleet.nodes.keys()
    per_node: dict[str, list[InstanceConfig]] = {node: [] for node in touched}
    for res in resolved.values():
        node = res.instance.spec.node
        if node in per_node:
            per_node[node].append(cached(fleet, res, sync))
    out = {node: cache.node_configs[node] for node in fleet.nodes if node not in touched}
    out.update((node, build_node(node, instances, sync.prune)) for node, instances in per_node.items())
    return dict(sorted(out.items()))


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
    fleet = loaded.fleet
    sync = fleet_sync(fleet)
    changed: set[str] | None = None
    if compile_cache is not None and compile_cache.last is not None and compile_cache.last_sync == sync:
        changed = changed_instances(compile_cache.last, fleet)
    resolved, keys = resolve_cached(fleet, compile_cache, sync, changed)
    memo = compile_cache.rule_hits if compile_cache is not None else None
    if memo is not None and changed is not None:
        changed |= memo.refer_by_name
    policy_findings = evaluate(fleet, resolved, memo, changed)
    loaded.findings = locate_findings(
        [*loaded.findings, *policy_findings],
        loaded.texts,
        loaded.locations,
        manifest_cache.located if manifest_cache is not None else None,
    )
    configs = compile_configs(fleet, resolved, sync, compile_cache, keys, changed) if loaded.ok else None
    if compile_cache is not None:
        compile_cache.last, compile_cache.last_sync = fleet, sync
        compile_cache.keys, compile_cache.last_resolved = keys, resolved
        compile_cache.changed = frozenset(changed) if changed is not None else None
        if configs is not None:
            compile_cache.node_configs = configs
        else:
            compile_cache.node_configs = {}  # built again in full by the next valid computation
    return DesiredState(loaded=loaded, resolved=resolved, sync=sync, configs=configs)
