"""``dsfleet coordinator --http``: the API in the coordinator's process (manual sync, a fake agent, a real broker):
POST apply applies in-process and answers with the revision; POST refresh reaches the agents as an AgentCommand;
/metrics shows the coordinator's counters; a bounded schemathesis run finds no 5xx and every response (status,
content type, headers, body) as the OpenAPI document says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dsfleet.schemas.wire import AgentCommand, Topic
from tests.support.apiserver import TOKEN, ServerProc
from tests.support.brokers import Tansu
from tests.support.livefleet import FakeAgent, TopicReader, copy_fleet, wait_for


def coordinator_server(
    fleet: Path, db: str, broker: Tansu, prefix: str, log: Path, *extra: str
) -> ServerProc:
    return ServerProc(
        [
            "coordinator",
            "--manifests",
            str(fleet),
            "--db",
            db,
            "--bootstrap-servers",
            broker.bootstrap,
            "-X",
            "fetch.wait.max.ms=10",
            "--topic-prefix",
            prefix,
            "--partitions",
            "3",
            *extra,
        ],
        log,
    )


@pytest.fixture
def coordinator(kafka_broker: Tansu, topic_prefix: str, tmp_path: Path) -> Iterator[ServerProc]:
    fleet = copy_fleet(tmp_path / "manifests")
    server = coordinator_server(
        fleet,
        f"sqlite:///{tmp_path / 'state.db'}",
        kafka_broker,
        topic_prefix,
        tmp_path / "c.log",
        "--sync",
        "manual",
    ).start()
    try:
        yield server
    finally:
        assert server.stop() == 0
    assert "coordinator stopped" in server.text()


def _status(api: httpx.Client) -> dict[str, Any]:
    resp = api.get("/api/v1/status")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_apply_refresh_and_metrics_in_the_coordinator(
    coordinator: ServerProc, kafka_broker: Tansu, topic_prefix: str
) -> None:
    commands = TopicReader(kafka_broker.bootstrap, topic_prefix, Topic.AGENT_COMMAND)
    db = coordinator.args[coordinator.args.index("--db") + 1]
    agent = FakeAgent(kafka_broker.bootstrap, topic_prefix, "gpu-node-1", "gpu-node-1", heartbeat=30.0, db=db)
    try:
        with coordinator.client(TOKEN) as api:
            pending = wait_for(lambda: _status(api)["pendingPlan"], 20, "the pending plan of manual sync")
            assert pending["valid"] is True
            applied = api.post("/api/v1/apply")
            assert applied.status_code == 202, applied.text
            assert applied.json()["revision"] == 1 and applied.json()["detail"] == "applied"
            revision = api.get("/api/v1/revisions/1").json()
            assert revision["source"] == "api" and revision["accepted"] is True
            assert _status(api)["pendingPlan"] is None

            gate = api.get("/api/v1/instances/ccm-gate").json()
            agent.announce(generation=1)
            agent.respond(
                1,
                [
                    {
                        "name": "ccm-gate",
                        "state": "running",
                        "generation": 1,
                        "configHash": gate["desiredConfigHash"],
                        "fps": {"0": 25.0},
                    }
                ],
            )

            def synced() -> dict[str, Any] | None:
                agent.announce(generation=1)  # heartbeats every 0.5 s: the node stays online
                i = api.get("/api/v1/instances/ccm-gate").json()
                return i if (i["sync"], i["health"]) == ("Synced", "Healthy") else None

            wait_for(synced, 30, "ccm-gate Synced and Healthy", interval=0.2)
            agent.announce(generation=1)
            assert api.get("/api/v1/nodes/gpu-node-1").json()["online"] is True

            refreshed = api.post("/api/v1/refresh", json={"node": "gpu-node-1"})
            assert refreshed.status_code == 202, refreshed.text
            request_id = refreshed.json()["requestId"]

            def refresh_command(records: list[Any]) -> bool:
                return any(
                    AgentCommand.model_validate_json(r.value).requestId == request_id
                    for r in records
                    if r.value
                )

            commands.wait(refresh_command, 20, "the AgentCommand refresh")
            command = next(
                AgentCommand.model_validate_json(r.value)
                for r in commands.records
                if r.value
                if AgentCommand.model_validate_json(r.value).requestId == request_id
            )
            assert (command.command.value, command.target) == ("refresh", "gpu-node-1")

            def converged() -> str | None:
                text = api.get("/metrics").text
                return text if "dsfleet_convergence_seconds_count 1.0" in text else None

            metrics = wait_for(converged, 20, "one convergence in /metrics")
            assert 'dsfleet_applies_total{outcome="applied"} 1.0' in metrics
            assert "dsfleet_messages_consumed_total{topic=" in metrics
            assert 'dsfleet_messages_published_total{topic="agent-config"}' in metrics
            assert "dsfleet_apply_duration_seconds_count 1.0" in metrics
            assert 'dsfleet_nodes{state="online"} 1.0' in metrics
    finally:
        agent.close()
        commands.close()


@pytest.fixture(scope="module")
def schema_server(kafka_broker: Tansu, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    import uuid

    tmp = tmp_path_factory.mktemp("schemathesis")
    server = coordinator_server(
        copy_fleet(tmp / "manifests"),
        f"sqlite:///{tmp / 'state.db'}",
        kafka_broker,
        f"t{uuid.uuid4().hex[:10]}.",
        tmp / "c.log",
    ).start()
    try:
        yield server
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.text()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


def test_schemathesis_finds_no_server_error(schema_server: ServerProc) -> None:
    """Every operation of /openapi.json with generated inputs (and the token, so writes go through): never a
    5xx, and every answer is one the document declares, body checked against its schema (the typed models);
    operations that declare the bearer token refuse a request without it. Bounded: a few examples per
    operation, well under a minute."""
    from hypothesis import given

    api_schema = schemathesis.openapi.from_url(f"{schema_server.url}/openapi.json")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(
                base_url=schema_server.url,
                headers={"Authorization": f"Bearer {TOKEN}"},
                checks=CHECKS,
            )

        run()
    assert calls >= len(operations)
