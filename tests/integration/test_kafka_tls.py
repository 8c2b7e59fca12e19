"""The live loop over TLS to the broker: the coordinator and real agents talk to the embedded broker only through a
TLS-terminating forwarder (Tansu advertises the forwarder), with the CA from the settings file, and the fleet
converges; a client without TLS, or that does not trust the CA, gets nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dsfleet.plumbing.kafka import Admin, client_config
from dsfleet.schemas.errors import DsfleetError
from tests.support.brokers import Tansu, free_port
from tests.support.fleetstack import Stack
from tests.support.tlsproxy import TlsForwarder, make_pki

DEADLINE = 90.0


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Tansu, TlsForwarder]]:
    pki = make_pki(tmp_path / "pki")
    plain = free_port()
    forwarder = TlsForwarder(pki, target=plain).start()
    broker = Tansu(port=plain, advertised_port=forwarder.port).start()
    try:
        yield broker, forwarder
    finally:
        broker.close()
        forwarder.close()


def _settings(path: Path, ca: Path) -> Path:
    path.write_text(
        "[kafka]\n"
        '"security.protocol" = "SSL"\n'
        f'"ssl.ca.location" = "{ca}"\n'
        '"ssl.endpoint.identification.algorithm" = "https"\n'
    )
    return path


def test_the_live_loop_converges_over_tls(
    tls_broker: tuple[Tansu, TlsForwarder],
    docker_client: docker.DockerClient,
    stub_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, forwarder = tls_broker
    monkeypatch.setenv("DSFLEET_CONFIG", str(_settings(tmp_path / "settings.toml", forwarder.pki.ca)))
    bootstrap = f"127.0.0.1:{forwarder.port}"
    stack = Stack(
        tmp_path / "fleet", bootstrap, f"tls{uuid.uuid4().hex[:6]}.", docker_client, image=stub_image
    )
    stack.start()
    try:
        stack.wait_converged(DEADLINE)
        stack.check_invariants(DEADLINE)
        assert forwarder.handshakes >= 3  # the coordinator and both agents came in through TLS
        assert forwarder.failed_handshakes == 0
    finally:
        stack.stop()
        stack.cleanup()


def test_a_client_without_tls_or_without_the_ca_gets_nothing(
    tls_broker: tuple[Tansu, TlsForwarder], tmp_path: Path
) -> None:
    _, forwarder = tls_broker
    bootstrap = f"127.0.0.1:{forwarder.port}"
    trusted = Admin(
        client_config(bootstrap, {"security.protocol": "SSL", "ssl.ca.location": str(forwarder.pki.ca)})
    )
    trusted.list_topics(timeout=10)
    other_ca = make_pki(tmp_path / "other").ca
    for extra in ({}, {"security.protocol": "SSL", "ssl.ca.location": str(other_ca)}):
        before = forwarder.failed_handshakes
        with pytest.raises(DsfleetError):
            Admin(client_config(bootstrap, extra)).list_topics(timeout=3)
        assert forwarder.failed_handshakes > before
