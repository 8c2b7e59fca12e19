"""Manifests → validated fleet → per-node configs, with caches for the warm (coordinator) path.

``ManifestCache`` keeps parsed + validated files by content hash; ``CompileCache`` keeps compiled instances by
the hash of everything an instance's config depends on (its manifest, its cameras, its profile, its node's image),
so changing one camera re-renders one instance.

Incremental (the coordinator, which keeps one ``CompileCache``): unchanged files come back from the
``ManifestCache`` as the very same objects and the fleet is built from the last one by replacing the changed
files' documents, so which documents changed is known (:func:`fleet_changes`). Only the instances a change can
affect (changed themselves, or naming a changed node, profile or camera, or selecting a changed camera: found
through :class:`Dependents`) get their keys computed, are resolved, checked by the instance-scoped and partitioned
rules (:class:`dsfleet.policies.engine.HitMemo`) and compiled again; only their nodes' configs are built again. A
change to a Policy, or a document that fails its schema, makes everything count as changed. The result equals a
full evaluation (``tests/unit/test_incremental.py`` checks it on random edit sequences); see
docs/architecture/decisions/0029-incremental-apply.md.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from dsfleet.policies.engine import Changes, HitMemo, evaluate, resolve_all
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
    dependents: Dependents | None = None
    """Which instances name which documents, for :attr:`last` (then the current fleet)."""
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


@dataclass
class Dependents:
    """Which instances name which documents (placed on a node, using a profile, listing a camera, selecting by
    labels), for the fleet :attr:`fleet`: what a changed document can affect, without a pass over the instances."""

    fleet: Fleet
    by_node: dict[str, set[str]] = field(default_factory=dict)
    by_profile: dict[str, set[str]] = field(default_factory=dict)
    by_camera: dict[str, set[str]] = field(default_factory=dict)
    by_label: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """A selecting instance under one of its selector's labels (every camera it selects carries that one)."""
    select_all: set[str] = field(default_factory=set)
    """Instances whose selector names no label (every camera)."""

    @classmethod
    def of(cls, fleet: Fleet) -> Dependents:
        out = cls(fleet)
        for name, instance in fleet.instances.items():
            out._add(name, instance)
        return out

    def _entries(self, instance: DsInstance) -> list[tuple[dict[Any, set[str]], Any]]:
        spec = instance.spec
        out: list[tuple[dict[Any, set[str]], Any]] = []
        if spec.node is not None:
            out.append((self.by_node, spec.node))
        if spec.profile is not None:
            out.append((self.by_profile, spec.profile))
        out.extend((self.by_camera, camera) for camera in spec.cameras)
        if spec.cameraSelector is not None and spec.cameraSelector.matchLabels:
            out.append((self.by_label, min(spec.cameraSelector.matchLabels.items())))
        return out

    def _add(self, name: str, instance: DsInstance) -> None:
        for table, key in self._entries(instance):
            table.setdefault(key, set()).add(name)
        if instance.spec.cameraSelector is not None and not instance.spec.cameraSelector.matchLabels:
            self.select_all.add(name)

    def _remove(self, name: str, instance: DsInstance) -> None:
        for table, key in self._entries(instance):
            names = table.get(key)
            if names is not None:
                names.discard(name)
                if not names:
                    del table[key]
        self.select_all.discard(name)

    def advance(self, new: Fleet, instances: Collection[str]) -> None:
        """Follow the fleet to ``new``, whose instances differ from :attr:`fleet`'s in ``instances`` only."""
        old = self.fleet
        for name in instances:
            before, after = old.instances.get(name), new.instances.get(name)
            if before is not None:
                self._remove(name, before)
            if after is not None:
                self._add(name, after)
        self.fleet = new

    def naming(self, nodes: Collection[str], profiles: Collection[str], cameras: Collection[str]) -> set[str]:
        """The instances placed on one of ``nodes``, using one of ``profiles`` or listing one of ``cameras``."""
        out: set[str] = set()
        for table, keys in ((self.by_node, nodes), (self.by_profile, profiles), (self.by_camera, cameras)):
            for key in keys:
                out.update(table.get(key, ()))
        return out

    def selecting(self, labels: Iterable[Mapping[str, str]], fleet: Fleet) -> set[str]:
        """The instances of ``fleet`` whose selector matches one of the label sets ``labels``."""
        out: set[str] = set(self.select_all)
        for have in labels:
            for item in have.items():
                for name in self.by_label.get(item, ()):
                    selector = fleet.instances[name].spec.cameraSelector
                    if selector is not None and all(
                        have.get(k) == v for k, v in selector.matchLabels.items()
                    ):
                        out.add(name)
        return out


def fleet_changes(
    old: Fleet,
    new: Fleet,
    replaced: Mapping[str, frozenset[str]] | None = None,
    dependents: Dependents | None = None,
) -> Changes | None:
    """The documents of ``new`` that are not the very objects of ``old`` (per kind), and the instances whose
    resolution, files or instance-scoped findings may differ: changed themselves, or naming (placed on, using,
    listing or selecting) a document that changed. None when anything may have: a Policy changed, or a document
    failed its schema (the consequences of an invalid document reach across the fleet). ``replaced``: kind → the
    names of the documents ``new`` was built from ``old`` by replacing (when the loader knows them), so the
    fleets need not be compared document by document."""
    if new.invalid or old.invalid:
        return None
    if replaced is not None:
        if replaced.get("Policy"):
            return None
        empty: frozenset[str] = frozenset()
        instances = set(replaced.get("DsInstance", empty))
        nodes = set(replaced.get("Node", empty))
        profiles = set(replaced.get("InferenceProfile", empty))
        cameras = set(replaced.get("Camera", empty))
    else:
        if _changed_names(old.policies, new.policies):
            return None
        instances = _changed_names(old.instances, new.instances)
        nodes = _changed_names(old.nodes, new.nodes)
        profiles = _changed_names(old.profiles, new.profiles)
        cameras = _changed_names(old.cameras, new.cameras)
    documents = {
        "DsInstance": frozenset(instances),
        "Node": frozenset(nodes),
        "InferenceProfile": frozenset(profiles),
        "Camera": frozenset(cameras),
    }
    out = instances & new.instances.keys()
    if not (nodes or profiles or cameras):
        return Changes(frozenset(out), documents)
    labels = [doc.metadata.labels for c in cameras for doc in (old.cameras.get(c), new.cameras.get(c)) if doc]
    if dependents is None or dependents.fleet is not old:
        dependents = Dependents.of(
            old
        )  # (the caller keeps one that follows the fleet: then no pass is needed)
    # an unchanged instance names what it named in the last fleet; a changed one is in ``out`` already
    named = dependents.naming(nodes, profiles, cameras) | dependents.selecting(labels, old)
    out |= {name for name in named if name in new.instances}
    return Changes(frozenset(out), documents)


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
    """Every instance resolved, with its key; ``changed`` (see :func:`fleet_changes`): the others are
    taken as they were in ``cache``'s last computation."""
    if cache is None:
        return resolve_all(fleet), {}
    cache.trim(len(fleet))
    last = cache.last_resolved
    if (
        changed is not None
        and len(last) == len(fleet.instances) == len(cache.keys)
        and all(name in last for name in changed)
    ):  # the same instances as last time (by name): only the changed ones again, in place
        resolved, keys = dict(last), dict(cache.keys)
        todo: Iterable[tuple[str, DsInstance]] = ((name, fleet.instances[name]) for name in changed)
        bulk = False
    else:
        resolved, keys = {}, {}
        todo = sorted(fleet.instances.items())
        bulk = True
    values: dict[str, Any] | None = None  # every profile's values, worth it when many instances are resolved
    for name, instance in todo:
        if changed is not None and name not in changed:
            key = cache.keys.get(name)
            res = cache.last_resolved.get(name)
            if key is not None and res is not None:
                keys[name], resolved[name] = key, res
                continue
        key = keys[name] = instance_key(fleet, instance, cache, sync)
        res = cache.resolved.get(key)
        if res is None:
            if values is None and bulk:
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
    changes: Changes | None = None,
) -> dict[str, NodeConfig]:
    """Every node's config; ``changes`` (see :func:`fleet_changes`): the configs of nodes that neither changed
    nor hold (or held) a changed instance are taken from ``cache``'s last computation."""
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

    last, dependents = cache.last, cache.dependents
    if (
        changes is None
        or last is None
        or cache.last_sync != sync
        or not cache.node_configs
        or dependents is None
        or dependents.fleet is not fleet
    ):
        return compile_fleet(fleet, resolved, cached, sync)
    touched = set(changes.documents.get("Node", ()))
    for name in {*changes.instances, *changes.documents.get("DsInstance", ())}:
        for side in (last.instances.get(name), fleet.instances.get(name)):
            if side is not None and side.spec.node is not None:
                touched.add(side.spec.node)
    out = dict(cache.node_configs)
    for node in touched:
        if node not in fleet.nodes:
            out.pop(node, None)
            continue
        on_node = [resolved[name] for name in sorted(dependents.by_node.get(node, ())) if name in resolved]
        out[node] = build_node(node, [cached(fleet, res, sync) for res in on_node], sync.prune)
    return out if out.keys() == cache.node_configs.keys() else dict(sorted(out.items()))


@dataclass
class DesiredState:
    loaded: LoadedManifests
    resolved: dict[str, ResolvedInstance]
    sync: FleetSync
    """The Policies' sync settings, merged once per load."""
    configs: dict[str, NodeConfig] | None
    """None when the manifests have errors (nothing may be applied)."""
    changes: Changes | None = None
    """What changed since :attr:`since` (None: not known; everything was computed)."""
    since: Fleet | None = None
    """The fleet of the computation :attr:`changes` are relative to."""

    @property
    def fleet(self) -> Fleet:
        return self.loaded.fleet


def desired_state(
    paths: Sequence[str | os.PathLike[str]],
    manifest_cache: ManifestCache | None = None,
    compile_cache: CompileCache | None = None,
    limits: Limits = DEFAULT_LIMITS,
    hint: AbstractSet[str] | None = None,
    warnings: bool = True,
) -> DesiredState:
    """The desired state of the manifests at ``paths`` (``hint``: see
    :func:`dsfleet.reconciler.loading.manifestsets.load_manifests`; ``warnings=False``: the findings are the
    errors only, for a caller that shows no warnings: locating a warning parses its file a second time, and a
    large fleet's warnings are many)."""
    loaded = load_manifests(paths, limits=limits, cache=manifest_cache, run_policies=False, hint=hint)
    fleet = loaded.fleet
    sync = fleet_sync(fleet)
    changes: Changes | None = None
    if compile_cache is not None and compile_cache.last is not None and compile_cache.last_sync == sync:
        built = manifest_cache.built if manifest_cache is not None else None
        replaced = built.changed if built is not None and built.base is compile_cache.last else None
        changes = fleet_changes(compile_cache.last, fleet, replaced, compile_cache.dependents)
    memo = compile_cache.rule_hits if compile_cache is not None else None
    if changes is not None and memo is not None and memo.refer_by_name:
        changes = Changes(changes.instances | memo.refer_by_name, changes.documents)
    changed = changes.instances if changes is not None else None
    if compile_cache is not None:
        dependents = compile_cache.dependents
        if changes is not None and dependents is not None and dependents.fleet is compile_cache.last:
            dependents.advance(fleet, changes.documents.get("DsInstance", frozenset()))
        elif dependents is None or dependents.fleet is not fleet:
            compile_cache.dependents = Dependents.of(fleet)
    resolved, keys = resolve_cached(fleet, compile_cache, sync, changed)
    policy_findings = evaluate(fleet, resolved, memo, changes, warnings=warnings)
    loaded.findings = locate_findings(
        [*loaded.findings, *policy_findings],
        loaded.texts,
        loaded.locations,
        manifest_cache.located if manifest_cache is not None else None,
        warnings=warnings,
    )
    configs = compile_configs(fleet, resolved, sync, compile_cache, keys, changes) if loaded.ok else None
    since = compile_cache.last if compile_cache is not None else None
    if compile_cache is not None:
        compile_cache.last, compile_cache.last_sync = fleet, sync
        compile_cache.keys, compile_cache.last_resolved = keys, resolved
        compile_cache.changed = frozenset(changed) if changed is not None else None
        if configs is not None:
            compile_cache.node_configs = configs
        else:
            compile_cache.node_configs = {}  # built again in full by the next valid computation
    return DesiredState(
        loaded=loaded,
        resolved=resolved,
        sync=sync,
        configs=configs,
        changes=changes,
        since=since if changes is not None else None,
    )
