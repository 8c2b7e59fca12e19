"""JSON Schema of the manifest kinds, for editors' YAML language servers and for documentation."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from dsfleet.schemas.manifests import ANY_MANIFEST, MODELS

SCHEMA_ID = "https://dsfleet.dev/schemas/v1/manifest.json"


def manifest_json_schema(kind: str | None = None) -> dict[str, Any]:
    """The JSON Schema of one kind, or of any manifest (a ``oneOf`` over every kind) when ``kind`` is None."""
    if kind is None:
        schema = ANY_MANIFEST.json_schema(by_alias=True, mode="validation")
        title = "dsfleet manifest"
    else:
        model = MODELS[kind]
        schema = TypeAdapter(model).json_schema(by_alias=True, mode="validation")
        title = f"dsfleet {kind}"
    return {
        **schema,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": title,
    }
