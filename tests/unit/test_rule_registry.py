"""Rules are registered one way: a decorated function in a module of dsfleet.policies.rules."""

from __future__ import annotations

import pkgutil

from dsfleet.policies import rules
from dsfleet.policies.engine import all_rules
from dsfleet.policies.registry import REGISTRY, load_rules


def test_every_rule_module_is_loaded_and_every_rule_comes_from_one() -> None:
    modules = {f"{rules.__name__}.{m.name}" for m in pkgutil.iter_modules(rules.__path__)}
    registered_from = {r.check.__module__ for r in REGISTRY.values()}
    assert registered_from == modules
    order = ["fleet", "security", "deepstream"]
    assert [r.id for r in all_rules()] == sorted(
        REGISTRY, key=lambda i: (order.index(REGISTRY[i].category), i)
    )


def test_loading_again_registers_nothing_twice() -> None:
    before = dict(REGISTRY)
    assert load_rules() == before
