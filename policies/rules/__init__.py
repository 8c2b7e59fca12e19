"""The rules: every module of this package registers its checks with :func:`dsfleet.policies.registry.rule`, and
:func:`dsfleet.policies.registry.load_rules` imports them all. Adding a rule is writing a decorated function in
one of these modules (or a new module here); nothing else lists it."""
