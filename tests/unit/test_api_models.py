"""The HTTP API's response models are true: every document the API serves (built by ``views`` and the route
helpers from a hand-made store snapshot, the golden diffs) validates against its model and dumps back to the same
JSON, key for key and in order; an undocumented key is refused; the OpenAPI document names the right models and
error statuses (404 as 404, 401 only where a token is needed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from dsfleet.reconciler.api.app import create_app
from dsfleet.reconciler.api.context import ApiContext
from dsfleet.reconciler.api.dependencies import FleetStatus
from dsfleet.reconciler.api.models import (
    DiffDocument,
    ErrorResponse,
    InstanceView,
    InvalidDiffDocument,
    NodeDetail,
    NodeListItem,
    StatusDocument,
    ValidationErrorResponse,
)
from dsfleet.reconciler.api.routes.inventory import instances_json, node_json, nodes_json
from dsfleet.reconciler.compiling.desired import desired_state
from dsfleet.reconciler.views import finding_json, status_document
from tests.support.statussnapshots import NOW, example_snapshot

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_PLANS = sorted(
    p / "expected.json" for p in (ROOT / "tests" / "golden" / "plan").iterdir() if p.is_dir()
)


def _fleet() -> FleetStatus:
    snapshot = example_snapshot()
    return FleetStatus(snapshot, status_document(snapshot, NOW))


def _same_json(adapter: TypeAdapter[Any], document: Any, **dump: Any) -> None:
    """``document`` validates and dumps back to the same JSON text (so the same keys, in the same order)."""
    dumped = adapter.dump_json(adapter.validate_python(document), by_alias=True, **dump)
    assert json.loads(dumped) == document
    assert dumped.decode() == json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def test_the_status_document_is_its_model() -> None:
    _same_json(TypeAdapter(StatusDocument), _fleet().document)


def test_the_inventory_views_are_their_models() -> None:
    fleet = _fleet()
    _same_json(TypeAdapter(list[NodeListItem]), nodes_json(fleet))
    _same_json(TypeAdapter(NodeDetail), node_json(fleet, "gpu-1"))
    instances = instances_json(fleet)
    # an instance no longer desired has no inventory fields; the route answers without them (exclude_unset)
    assert "image" not in {i["name"]: i for i in instances}["old"]
    _same_json(TypeAdapter(list[InstanceView]), instances, exclude_unset=True)


@pytest.mark.parametrize("expected", GOLDEN_PLANS, ids=[p.parent.name for p in GOLDEN_PLANS])
def test_the_golden_diffs_are_their_model(expected: Path) -> None:
    document = {**json.loads(expected.read_text()), "valid": True, "findings": []}
    adapter: TypeAdapter[Any] = TypeAdapter(DiffDocument | InvalidDiffDocument)
    assert isinstance(adapter.validate_python(document), DiffDocument)
    assert json.loads(adapter.dump_json(adapter.validate_python(document), by_alias=True)) == document


def test_a_diff_of_invalid_manifests_is_its_model(tmp_path: Path) -> None:
    (tmp_path / "node.yaml").write_text(
        "apiVersion: dsfleet/v1\nkind: Node\nmetadata:\n  name: Bad_Name\nspec: {}\n"
    )
    loaded = desired_state([tmp_path]).loaded
    document = {
        "schema": "dsfleet.diff/v1",
        "valid": False,
        "findings": [finding_json(f) for f in loaded.findings],
    }
    assert document["findings"]
    _same_json(TypeAdapter(DiffDocument | InvalidDiffDocument), document)


@pytest.mark.parametrize("where", [(), ("nodes", 0), ("instances", 1), ("summary", "instances")])
def test_an_undocumented_key_is_refused(where: tuple[str | int, ...]) -> None:
    document: Any = json.loads(json.dumps(_fleet().document))
    target = document
    for step in where:
        target = target[step]
    target["brokerReachable"] = True
    with pytest.raises(ValidationError, match="brokerReachable"):
        StatusDocument.model_validate(document)


def _openapi(**ctx: Any) -> dict[str, Any]:
    return create_app(ApiContext(db="sqlite://", **ctx)).openapi()


def _ref(response: dict[str, Any]) -> str:
    schema = response["content"]["application/json"]["schema"]
    return str(schema.get("$ref") or schema.get("items", {}).get("$ref") or schema)


def test_openapi_documents_models_and_error_statuses() -> None:
    paths = _openapi(token="t")["paths"]
    assert _ref(paths["/api/v1/status"]["get"]["responses"]["200"]).endswith("/StatusDocument")
    assert _ref(paths["/api/v1/nodes"]["get"]["responses"]["200"]).endswith("/NodeListItem")
    node = paths["/api/v1/nodes/{name}"]["get"]["responses"]
    assert set(node) == {"200", "404", "422", "503"}  # reads need no token on this server: no 401
    assert _ref(node["404"]).endswith("/ErrorResponse") and _ref(node["422"]).endswith(
        "/ValidationErrorResponse"
    )
    apply = paths["/api/v1/apply"]["post"]
    assert set(apply["responses"]) == {"202", "401", "408", "413", "422", "503"}
    assert apply["security"] == [{"token": []}]
    assert "WWW-Authenticate" in apply["responses"]["401"]["headers"]
    hook = paths["/api/v1/webhooks/git"]["post"]["responses"]
    assert set(hook) == {"200", "202", "401", "408", "409", "413", "503"}  # 200: a duplicate delivery
    for path, operations in paths.items():
        for method, operation in operations.items():
            ok = (
                operation["responses"].get("200")
                or operation["responses"].get("201")
                or operation["responses"]["202"]
            )
            assert _ref(ok).startswith("#/components/schemas/") or "anyOf" in _ref(ok), (method, path)


def test_openapi_documents_401_on_reads_when_they_need_the_token() -> None:
    status = _openapi(token="t", read_requires_token=True)["paths"]["/api/v1/status"]["get"]
    assert "401" in status["responses"] and status["security"] == [{"token": []}]
    assert "security" not in _openapi(token="t")["paths"]["/api/v1/status"]["get"]


def test_error_bodies_are_their_models() -> None:
    """Answered before anything reads the store (no database is opened)."""

    async def requests() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(ApiContext(db="sqlite://", token="t")))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return [
                await client.get("/api/v1/revisions", params={"limit": 0}),
                await client.post("/api/v1/apply", headers={"Authorization": "Bearer wrong"}),
                await client.get("/api/v1/no/such/path"),
            ]

    invalid, unauthorised, missing = asyncio.run(requests())
    assert invalid.status_code == 422
    assert ValidationErrorResponse.model_validate(invalid.json()).error.fields[0].loc == ["query", "limit"]
    assert unauthorised.status_code == 401 and unauthorised.headers["www-authenticate"] == "Bearer"
    ErrorResponse.model_validate(unauthorised.json())
    assert missing.status_code == 404
    assert ErrorResponse.model_validate(missing.json()).error.message == "no such resource"
