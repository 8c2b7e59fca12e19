"""Helpers the tests and benchmarks share: real brokers, Docker engines, API servers, live fleets, generated
fleets and YAML, the GLib checker. Imported as ``tests.support.<module>``."""
