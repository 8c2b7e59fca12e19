"""Helpers the tests and benchmarks share: real brokers, Docker engines, API servers, live fleets, in-process agents,
generated fleets and YAML, the GLib checker, prerequisites. Imported as ``tests.support.<module>``; the agent's
in-memory fakes ship with the product (``dsfleet.agent.testing``)."""
