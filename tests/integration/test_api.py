"""The HTTP API against a real server (``dsfleet serve`` on loopback, uvicorn) with httpx: every endpoint, the
404/422/401/503 paths, a right token → 202 and the message on a real broker, no secret in any response."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from dsfleet.plumbing.signing import Keyring, Verdict, load_signing_key
from dsfleet.reconciler.store import Store
from dsfleet.schemas.signatures import text_headers
from dsfleet.schemas.wire import AgentInfo, AgentResponse, Refresh, Topic, UpdateConfig
from tests.support.apiserver import TOKEN, WEBHOOK_SECRET, ServerProc
from tests.support.brokers import Tansu, free_port
from tests.support.livefleet import ROOT, TopicReader, copy_fleet

SECRET_LINE = "opening rtsp://admin:hunter2-secret@10.1.2.3/stream failed"


def _seed(db: str, manifests: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", "apply", str(manifests), "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    now = datetime.now(UTC)
    with Store.open(db) as store:
        hashes = {
            i["name"]: i["configHash"]
            for c in store.latest_node_configs().values()
            for i in c.payload["instances"]
        }
        info = AgentInfo(
            sent_at=now.isoformat(), node="gpu-node-1", hostname="gpu-node-1", agentVersion="0.1.0"
        )
        store.record_agent_infos({"gpu-node-1": info}, {"gpu-node-1": True}, now)
        resp = AgentResponse.model_validate(
            {
                "sent_at": now.isoformat(),
                "node": "gpu-node-1",
                "observedGeneration": 1,
                "instances": [
                    {
                        "name": "ccm-gate",
                        "state": "running",
                        "generation": 1,
                        "configHash": hashes["ccm-gate"],
                        "fps": {"0": 30.0},
                        "lastLogLine": SECRET_LINE,
                    },
                    {"name": "ccm-lobby", "state": "exited", "exitCode": 2, "error": SECRET_LINE},
                ],
            }
        )
        store.record_agent_responses({"gpu-node-1": resp}, now)


@pytest.fixture(scope="module")
def served(kafka_broker: Tansu, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    import uuid

    prefix = f"t{uuid.uuid4().hex[:10]}."
    tmp = tmp_path_factory.mktemp("api")
    manifests = copy_fleet(tmp / "manifests")
    db = f"sqlite:///{tmp / 'state.db'}"
    _seed(db, manifests)
    server = ServerProc(
        [
            "serve",
            "--manifests",
            str(manifests),
            "--db",
            db,
            "--bootstrap-servers",
            kafka_broker.bootstrap,
            "--topic-prefix",
            prefix,
            "-X",
            "fetch.wait.max.ms=10",
        ],
        tmp / "serve.log",
    ).start()
    try:
        yield server, prefix
    finally:
        assert server.stop() == 0
        assert "hunter2" not in server.text()


@pytest.fixture
def api(served: tuple[ServerProc, str]) -> Iterator[httpx.Client]:
    with served[0].client() as client:
        yield client


def _error(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    return str(body["error"]["message"])


def test_read_endpoints(api: httpx.Client) -> None:
    status = api.get("/api/v1/status").json()
    assert status["schema"] == "dsfleet.status/v1"
    assert {i["name"]: i["health"] for i in status["instances"]} == {
        "ccm-gate": "Healthy",
        "ccm-lobby": "Failed",
        "traffic-parking": "Unknown",
    }

    nodes = api.get("/api/v1/nodes").json()
    assert [n["name"] for n in nodes] == ["gpu-node-1", "gpu-node-2"]
    assert nodes[0]["online"] is True and "labels" in nodes[0]
    node = api.get("/api/v1/nodes/gpu-node-1").json()
    assert node["agentVersion"] == "0.1.0"
    assert {i["name"] for i in node["instanceList"]} == {"ccm-gate", "ccm-lobby"}

    cameras = api.get("/api/v1/cameras").json()
    assert cameras and all("@" not in c["url"] for c in cameras)
    legacy = api.get("/api/v1/cameras", params={"legacy": "true"}).json()
    assert {"name", "camera_id", "ip_address", "instance_name", "agent_name"} <= set(legacy[0])

    instances = api.get("/api/v1/instances").json()
    assert {i["name"] for i in instances} == {"ccm-gate", "ccm-lobby", "traffic-parking"}
    gate = api.get("/api/v1/instances/ccm-gate").json()
    assert gate["sync"] == "Synced" and gate["image"] and gate["fps"] == {"0": 30.0}
    assert api.get("/api/v1/instances", params={"legacy": "true"}).json()[0]["instance_name"]
    assert {a["agent_name"] for a in api.get("/api/v1/agents").json()} == {"gpu-node-1", "gpu-node-2"}

    revisions = api.get("/api/v1/revisions").json()
    assert revisions[0]["id"] == 1 and revisions[0]["accepted"] is True
    assert api.get("/api/v1/revisions/1").json()["nodesChanged"] == 2
    assert api.get("/api/v1/revisions", params={"limit": 1}).status_code == 200
    assert api.get("/api/v1/events").json()

    diff = api.get("/api/v1/diff").json()
    assert diff["schema"] == "dsfleet.diff/v1" and diff["valid"] is True and diff["changed"] is False

    openapi = api.get("/openapi.json").json()
    assert "/api/v1/status" in openapi["paths"] and "/api/v1/apply" in openapi["paths"]
    assert api.get("/docs").status_code == 200
    page = api.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/dashboard.js"></script>' in page.text and "<script>" not in page.text
    script = api.get("/static/dashboard.js")
    assert script.status_code == 200 and "/api/v1/status" in script.text


def test_no_secret_in_any_response(api: httpx.Client) -> None:
    for path in (
        "/api/v1/status",
        "/api/v1/instances",
        "/api/v1/instances/ccm-lobby",
        "/api/v1/cameras",
        "/api/v1/events",
        "/api/v1/diff",
        "/api/v1/nodes/gpu-node-1",
        "/metrics",
    ):
        resp = api.get(path)
        assert resp.status_code == 200, path
        assert "hunter2" not in resp.text, path
    lobby = api.get("/api/v1/instances/ccm-lobby").json()
    assert lobby["error"] == "opening rtsp://***@10.1.2.3/stream failed"


def test_errors(api: httpx.Client, served: tuple[ServerProc, str]) -> None:
    assert "not found" in _error(api.get("/api/v1/nodes/no-such-node"), 404)
    assert "not found" in _error(api.get("/api/v1/instances/no-such"), 404)
    _error(api.get("/api/v1/revisions/999"), 404)
    _error(api.get("/api/v1/no/such/path"), 404)
    _error(api.get("/api/v1/revisions/abc"), 422)
    _error(api.get("/api/v1/revisions", params={"limit": 0}), 422)
    _error(api.get("/api/v1/revisions/99999999999999999999999"), 422)
    # writes without, with a wrong, with a malformed token
    _error(api.post("/api/v1/apply"), 401)
    _error(api.post("/api/v1/refresh", headers={"Authorization": "Bearer wrong"}), 401)
    resp = api.post("/api/v1/apply", headers={"Authorization": f"Basic {TOKEN}"})
    _error(resp, 401)
    assert resp.headers["www-authenticate"] == "Bearer"
    with served[0].client(TOKEN) as authed:
        message = _error(authed.post("/api/v1/refresh", json={"node": 5, "extra": True}), 422)
        assert "body" in message
        _error(
            authed.post("/api/v1/apply", content=b"{not json", headers={"content-type": "application/json"}),
            422,
        )
        _error(authed.post("/api/v1/refresh", json={"node": "x" * 100}), 422)
    _error(api.post("/api/v1/webhooks/git", content=b"{}"), 401)


def test_apply_and_refresh_reach_the_broker(served: tuple[ServerProc, str], kafka_broker: Tansu) -> None:
    server, prefix = served
    updates = TopicReader(kafka_broker.bootstrap, prefix, Topic.UPDATE_CONFIG)
    refreshes = TopicReader(kafka_broker.bootstrap, prefix, Topic.REFRESH)
    try:
        with server.client(TOKEN) as api:
            applied = api.post("/api/v1/apply", json={"requestedBy": "alice"})
            assert applied.status_code == 202, applied.text
            request_id = applied.json()["requestId"]
            refreshed = api.post("/api/v1/refresh", json={"node": "gpu-node-2"})
            assert refreshed.status_code == 202, refreshed.text
            everyone = api.post("/api/v1/refresh")
            assert everyone.status_code == 202, everyone.text
        updates.wait(lambda rs: len(rs) >= 1, 20, "the UpdateConfig record")
        message = UpdateConfig.model_validate_json(updates.records[0].value or b"")
        assert message.requestId == request_id and message.requestedBy == "alice"
        refreshes.wait(lambda rs: len(rs) >= 2, 20, "two Refresh records")
        got = [Refresh.model_validate_json(r.value or b"") for r in refreshes.records]
        by_id = {r.requestId: r.node for r in got}  # different keys: different partitions, any order
        assert by_id == {refreshed.json()["requestId"]: "gpu-node-2", everyone.json()["requestId"]: None}
        # signed with the API's own key, made next to the store at its first start; the fleet is named
        db = server.args[server.args.index("--db") + 1]
        api_key = load_signing_key(Path(db.removeprefix("sqlite:///")).parent / "keys" / "api.key")
        with Store.open(db, readonly=True) as reader:
            fleet = reader.fleet_id()
        assert fleet and message.fleet == fleet and all(r.fleet == fleet for r in got)
        trusted = Keyring.of([api_key.public])
        for record in [*updates.records, *refreshes.records]:
            key = record.key.decode() if record.key is not None else None
            headers = text_headers(record.headers)
            assert trusted.check_record(key, record.value, headers).verdict is Verdict.OK
            altered = trusted.check_record(key, (record.value or b"") + b" ", headers)
            assert altered.verdict is Verdict.BAD_SIGNATURE
    finally:
        updates.close()
        refreshes.close()


def test_metrics(api: httpx.Client) -> None:
    text = api.get("/metrics").text
    for name in (
        "dsfleet_nodes{",
        "dsfleet_instances{",
        "dsfleet_drift ",
        "dsfleet_heartbeat_age_seconds{",
        "dsfleet_outbox_depth ",
        'dsfleet_revisions{verdict="accepted"} 1.0',
    ):
        assert name in text, name
    assert 'dsfleet_instances{health="Failed",sync="OutOfSync"}' in text or "Failed" in text


def test_no_broker_is_503_and_reads_may_require_a_token(tmp_path: Path) -> None:
    manifests = copy_fleet(tmp_path / "manifests")
    db = f"sqlite:///{tmp_path / 'state.db'}"
    server = ServerProc(
        ["serve", "--manifests", str(manifests), "--db", db],
        tmp_path / "serve.log",
        env={"DSFLEET_API_READ_REQUIRES_TOKEN": "true"},
    ).start()
    try:
        with server.client() as anonymous:
            _error(anonymous.get("/api/v1/status"), 401)
        with server.client(TOKEN) as api:
            empty = api.get("/api/v1/status").json()  # no database file yet: an empty store
            assert empty["nodes"] == [] and empty["revision"] is None
            assert "no broker" in _error(api.post("/api/v1/apply"), 503)
            _error(api.post("/api/v1/refresh"), 503)
            signature = hmac.new(WEBHOOK_SECRET.encode(), b"{}", hashlib.sha256).hexdigest()
            hook = api.post("/api/v1/webhooks/git", content=b"{}", headers={"X-Gitea-Signature": signature})
            assert "nothing could apply" in _error(hook, 503)  # refused before pulling anything
    finally:
        assert server.stop() == 0


def test_token_file_and_loopback_rule(tmp_path: Path) -> None:
    manifests = copy_fleet(tmp_path / "manifests")
    env = {k: v for k, v in __import__("os").environ.items() if k != "DSFLEET_API_TOKEN"}
    cmd = [
        sys.executable,
        "-m",
        "dsfleet.reconciler.cli",
        "serve",
        "--manifests",
        str(manifests),
        "--db",
        f"sqlite:///{tmp_path / 's.db'}",
        "--http",
        f"0.0.0.0:{free_port()}",
    ]
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False)
    assert refused.returncode == 2
    assert "refusing to listen beyond loopback without an API token" in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    server = ServerProc(
        ["serve", "--manifests", str(manifests), "--token-file", str(token_file)], tmp_path / "serve.log"
    ).start()
    try:
        with server.client("from-a-file") as api:
            assert api.post("/api/v1/apply").status_code == 503  # authorised; no broker
        with server.client(TOKEN) as api:
            _error(api.post("/api/v1/apply"), 401)  # the file wins over DSFLEET_API_TOKEN
    finally:
        assert server.stop() == 0
    assert json.dumps(TOKEN) not in server.text() and "from-a-file" not in server.text()


def test_rollout_read_and_commands(api: httpx.Client, served: tuple[ServerProc, str]) -> None:
    """``GET /rollout``: 404 before any rollout, then the stored one with its one-line summary; ``POST
    /rollout/{action}`` leaves the request for the coordinator (202), refuses an unknown action (422) and an
    action when none runs (409)."""
    from dsfleet.reconciler.planning.rollouts import start_rollout
    from dsfleet.reconciler.store.values import ROLLOUT, ROLLOUT_REQUEST
    from dsfleet.schemas.rollouts import RolloutStrategy

    server = served[0]
    db = server.args[server.args.index("--db") + 1]
    assert "no rollout yet" in _error(api.get("/api/v1/rollout"), 404)
    admin = server.client(TOKEN)
    assert "no rollout is running" in _error(admin.post("/api/v1/rollout/abort"), 409)
    now = datetime.now(UTC)
    strategy = RolloutStrategy.model_validate({"waves": [{"nodes": 1}, {}]})
    rollout = start_rollout(
        5, 4, strategy, {"gpu-node-1": ("ccm-gate",), "gpu-node-2": ("traffic-parking",)}, {}, now
    )
    with Store.open(db) as store:
        store.set_sync_state(ROLLOUT, rollout.to_json(), now)
    try:
        got = api.get("/api/v1/rollout").json()
        assert (
            got["schema"] == "dsfleet.rollout/v1"
            and got["revision"] == 5
            and got["waves"] == ["wave-1", "wave-2"]
        )
        assert got["summary"].startswith("ROLLOUT of revision 5 progressing, wave wave-1 (0/2 nodes passed)")
        assert "fpsBefore" not in got["nodes"][0] and got["governs"] == ["recreate"]
        _error(admin.post("/api/v1/rollout/explode"), 422)
        assert api.post("/api/v1/rollout/abort").status_code == 401  # no token
        answer = admin.post("/api/v1/rollout/abort")
        assert answer.status_code == 202, answer.text
        assert answer.json()["revision"] == 5
        with Store.open(db, readonly=True) as store:
            request = store.sync_state(ROLLOUT_REQUEST)
        assert request["action"] == "abort" and request["revision"] == 5 and "from the API" in request["by"]
    finally:
        admin.close()
        with Store.open(db) as store:
            store.set_sync_state(ROLLOUT, None, now)
            store.set_sync_state(ROLLOUT_REQUEST, None, now)
