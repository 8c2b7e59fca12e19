"""dsfleet schemas: pydantic models of everything that crosses a boundary.

Manifest kinds, DeepStream config models, wire messages, findings and the small pure helpers both the
coordinator and the agent need (canonical hashing, secret placeholders). Imports only stdlib and pydantic.
"""

API_VERSION = "dsfleet/v1"
