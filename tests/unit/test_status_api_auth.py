"""Pure rules of the HTTP API: bearer tokens, push-webhook signatures, where the server may listen."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from dsfleet.reconciler.api.context import token_matches
from dsfleet.reconciler.api.server import parse_listen
from dsfleet.reconciler.api.webhooks import verify_push
from dsfleet.schemas.errors import PermanentError

SECRET = "s3cret"
BODY = b'{"ref": "refs/heads/main"}'
SIG = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("expected", "header", "ok"),
    [
        ("tok", "Bearer tok", True),
        ("tok", "bearer tok", True),
        ("tok", "Bearer  tok ", True),
        ("tok", "Bearer tok2", False),
        ("tok", "Basic tok", False),
        ("tok", "tok", False),
        ("tok", None, False),
        ("tok", "", False),
        (None, "Bearer tok", False),
        ("", "Bearer ", False),
    ],
)
def test_token_matches(expected: str | None, header: str | None, ok: bool) -> None:
    assert token_matches(expected, header) is ok


@pytest.mark.parametrize(
    ("headers", "forge", "ok"),
    [
        ({"x-hub-signature-256": "sha256=" + SIG}, "github", True),
        ({"x-hub-signature-256": SIG}, "github", False),
        ({"x-hub-signature-256": "sha256=" + "0" * 64}, "github", False),
        ({"x-gitea-signature": SIG}, "gitea", True),
        ({"x-forgejo-signature": SIG}, "gitea", True),
        ({"x-gitea-signature": SIG[:-1] + ("1" if SIG[-1] == "0" else "0")}, "gitea", False),
        ({"x-gitlab-token": SECRET}, "gitlab", True),
        ({"x-gitlab-token": SECRET + "x"}, "gitlab", False),
        ({}, None, False),
        ({"x-github-event": "push"}, None, False),
    ],
)
def test_verify_push(headers: dict[str, str], forge: str | None, ok: bool) -> None:
    verdict = verify_push(headers, BODY, SECRET)
    assert (verdict.forge, verdict.ok) == (forge, ok)


def test_a_signature_of_another_body_fails() -> None:
    assert not verify_push({"x-hub-signature-256": "sha256=" + SIG}, BODY + b" ", SECRET).ok


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080, True),
        ("localhost:80", "localhost", 80, True),
        ("[::1]:9000", "::1", 9000, True),
        ("0.0.0.0:8080", "0.0.0.0", 8080, False),
        ("10.1.2.3:0", "10.1.2.3", 0, False),
        ("coordinator.example:8080", "coordinator.example", 8080, False),
    ],
)
def test_parse_listen(text: str, host: str, port: int, loopback: bool) -> None:
    listen = parse_listen(text)
    assert (listen.host, listen.port, listen.loopback) == (host, port, loopback)


@pytest.mark.parametrize("text", ["8080", ":8080", "host:", "host:http", "host:70000"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(PermanentError, match="HOST:PORT"):
        parse_listen(text)
