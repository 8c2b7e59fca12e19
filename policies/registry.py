"""The registry of fleet and DeepStream rules: the modules of :mod:`dsfleet.policies.rules` register into it with
:func:`rule` (the one way a rule is registered); :func:`load_rules` imports them all, and the engine
(:mod:`dsfleet.policies.engine`) evaluates what they registered. The rule modules import only this module, never
the engine, so there is no import cycle."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from dsfleet.resolution.instances import ResolvedInstance
from dsfleet.schemas.deepstream import DeepStreamKeys
from dsfleet.schemas.findings import Note, SourceRef
from dsfleet.schemas.fleet import Fleet
from dsfleet.schemas.manifests import (
    Camera,
    DeepstreamAppInstanceSpec,
    DsInstance,
    InferenceProfile,
    Node,
    RuleSeverity,
)

__all__ = [
    "FLEET",
    "INSTANCE",
    "PARTITIONED",
    "REGISTRY",
    "Check",
    "Context",
    "Hit",
    "Part",
    "Partitions",
    "Rule",
    "by_node",
    "did_you_mean",
    "each_document",
    "load_rules",
    "rule",
    "same_finding",
    "same_place",
]

INSTANCE = "instance"
"""The scope of a rule whose hits about an instance depend only on that instance and what it names (its node,
cameras, profile, image; its documents' places; the rules' parameters), never on other instances: the engine
checks such a rule one instance at a time and keeps each instance's hits until one of those inputs changes
(:func:`dsfleet.policies.engine.evaluate`). Such a rule walks the instances only through :attr:`Context.instances`,
:attr:`Context.resolved_instances`, :attr:`Context.apps` or :attr:`Context.resolved`, and reports about them
alone (a rule that also checks documents of other kinds is :data:`PARTITIONED`)."""
PARTITIONED = "partitioned"
"""The scope of a rule over several documents whose inputs split into independent parts (:class:`Partitions`):
cameras by ``cameraId``, the instances on one node, one camera's users. The engine keeps each part's hits and
checks again only the parts a change touched. Such a rule walks documents only through :attr:`Context.cameras`,
:attr:`Context.nodes`, :attr:`Context.profiles` and the instance views (restricted to one part), and keeps to
:attr:`Context.part` where a document belongs to several parts."""
FLEET = "fleet"
"""The scope of every other rule: checked over the whole fleet on every evaluation."""

Part = Hashable
"""The key of one part of a :data:`PARTITIONED` rule's inputs."""


@dataclass(frozen=True)
class Partitions:
    """How a :data:`PARTITIONED` rule's inputs split: ``of(kind, name, document)`` → the parts a document of one
    of ``kinds`` belongs to, read from that document alone (an instance is given resolved: its cameras)."""

    kinds: frozenset[str]
    of: Callable[[str, str, Any], Iterable[Part]]


def _node_of(kind: str, name: str, doc: Any) -> tuple[str, ...]:
    if kind == "Node":
        return (name,)
    node = doc.instance.spec.node  # a resolved instance
    return (node,) if node else ()


def by_node(kinds: Iterable[str]) -> Partitions:
    """Each node its own part: its instances (and its Node document, when ``kinds`` names it)."""
    return Partitions(frozenset(kinds), _node_of)


def each_document(kinds: Iterable[str]) -> Partitions:
    """Every document of ``kinds`` its own part (a rule whose hits about a document depend on it alone)."""
    return Partitions(frozenset(kinds), lambda kind, name, _doc: ((kind, name),))


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'gate-1'?"`` (or ``"; did you mean one of 'a', 'b'?"``) for the nearest names, else ``""``.
    Case differences count as near (``node`` → ``Node``)."""
    names = sorted(set(candidates))
    lowered = {c.lower(): c for c in names}
    if word.lower() in lowered and lowered[word.lower()] != word:
        near = [lowered[word.lower()]]
    else:
        scored = sorted(  # nearest first, ties by name
            (-difflib.SequenceMatcher(None, word.lower(), n.lower()).ratio(), n) for n in names
        )
        near = [n for score, n in scored[:3] if -score >= 0.6]
    if not near:
        return ""
    if len(near) == 1:
        return f"; did you mean {near[0]!r}?"
    return "; did you mean one of " + ", ".join(repr(n) for n in near) + "?"


@dataclass(frozen=True)
class Hit:
    message: str
    source: SourceRef | None = None
    notes: tuple[Note, ...] = ()
    instance: str | None = None
    """The instance this finding is about, when its source is elsewhere (a profile): rule scoping
    (``rules.<id>.match``) selects by it; otherwise the instance is the document the source points into."""


@dataclass
class Context:
    fleet: Fleet
    resolved: dict[str, ResolvedInstance]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    view: Mapping[str, frozenset[str]] | None = None
    """Kind → the names of the documents of one part of a :data:`PARTITIONED` rule (None: every document)."""
    part: Part | None = None
    """The part being checked (see :data:`PARTITIONED`)."""
    _dumped: dict[int, tuple[DeepStreamKeys, dict[str, Any]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """:meth:`keys` by model (the model is kept, so its id cannot be reused meanwhile)."""

    def param(self, rule: str, name: str, default: Any = None) -> Any:
        return self.params.get(rule, {}).get(name, default)

    # What many rules walk or derive, once per evaluation (the fleet is frozen, so none of it goes stale).

    @cached_property
    def instances(self) -> list[tuple[str, DsInstance]]:
        """The fleet's instances by name (those of :attr:`resolved`: every instance, or the one checked)."""
        return [(name, self.fleet.instances[name]) for name in sorted(self.resolved)]

    def _documents(self, kind: str, table: Mapping[str, Any]) -> list[tuple[str, Any]]:
        if self.view is None:
            return sorted(table.items())
        return [(name, table[name]) for name in sorted(self.view.get(kind, ())) if name in table]

    @cached_property
    def cameras(self) -> list[tuple[str, Camera]]:
        """The fleet's cameras by name (those of the part checked: :attr:`view`)."""
        return self._documents("Camera", self.fleet.cameras)

    @cached_property
    def nodes(self) -> list[tuple[str, Node]]:
        """The fleet's nodes by name (those of the part checked: :attr:`view`)."""
        return self._documents("Node", self.fleet.nodes)

    @cached_property
    def profiles(self) -> list[tuple[str, InferenceProfile]]:
        """The fleet's inference profiles by name (those of the part checked: :attr:`view`)."""
        return self._documents("InferenceProfile", self.fleet.profiles)

    @cached_property
    def resolved_instances(self) -> list[tuple[str, ResolvedInstance]]:
        """The resolved instances by name."""
        return sorted(self.resolved.items())

    @cached_property
    def apps(self) -> list[tuple[str, DeepstreamAppInstanceSpec]]:
        """The specs of the deepstream-app layout's instances, by name."""
        return [
            (name, inst.spec)
            for name, inst in self.instances
            if isinstance(inst.spec, DeepstreamAppInstanceSpec)
        ]

    def keys(self, settings: DeepStreamKeys) -> dict[str, Any]:
        """``settings.values_by_key()``, dumped once for every rule that reads it (do not change the result)."""
        hit = self._dumped.get(id(settings))
        if hit is None or hit[0] is not settings:
            hit = self._dumped[id(settings)] = (settings, settings.values_by_key())
        return hit[1]


Check = Callable[[Context], Iterable[Hit]]


def same_finding(hit: Hit) -> Hashable:
    """Two hits are one finding when message and place are the same (a profile's problem, found per instance)."""
    return (hit.message, hit.source)


def same_place(hit: Hit) -> Hashable:
    """Two hits are one finding when they point at the same place (the first instance's message is kept)."""
    return hit.source


@dataclass(frozen=True)
class Rule:
    id: str
    severity: RuleSeverity
    description: str
    check: Check
    params: Mapping[str, Any] = field(default_factory=dict)
    relaxable: bool = True
    category: str = "fleet"
    scope: str = FLEET
    """:data:`INSTANCE`, :data:`PARTITIONED` or :data:`FLEET`."""
    partitions: Partitions | None = None
    """How a :data:`PARTITIONED` rule's inputs split."""
    once: Callable[[Hit], Hashable] | None = None
    """An instance-scoped rule that reports a finding several instances share (a profile's) once: the engine
    drops a hit whose ``once(hit)`` equals that of one already reported (:func:`same_finding`,
    :func:`same_place`), as the rule does over the whole fleet."""


REGISTRY: dict[str, Rule] = {}


def rule(
    rule_id: str,
    severity: RuleSeverity,
    description: str,
    *,
    params: Mapping[str, Any] | None = None,
    relaxable: bool = True,
    category: str = "fleet",
    scope: str = FLEET,
    once: Callable[[Hit], Hashable] | None = None,
    partitions: Partitions | None = None,
) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        if rule_id in REGISTRY:
            raise ValueError(f"rule {rule_id} registered twice")
        if (
            scope not in (INSTANCE, PARTITIONED, FLEET)
            or (once is not None and scope != INSTANCE)
            or ((partitions is None) != (scope != PARTITIONED))
        ):
            raise ValueError(f"rule {rule_id}: scope {scope!r}, once={once}, partitions={partitions}")
        REGISTRY[rule_id] = Rule(
            rule_id,
            severity,
            description,
            fn,
            dict(params or {}),
            relaxable,
            category,
            scope=scope,
            partitions=partitions,
            once=once,
        )
        return fn

    return register


def load_rules() -> dict[str, Rule]:
    """Import every module of :mod:`dsfleet.policies.rules` (in name order), which registers their rules."""
    from dsfleet.policies import rules

    for module in sorted(m.name for m in pkgutil.iter_modules(rules.__path__)):
        importlib.import_module(f"{rules.__name__}.{module}")
    return REGISTRY
