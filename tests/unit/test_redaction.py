"""dsfleet.schemas.redaction: the one redaction masks every credential shape, and nothing else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsfleet.schemas.redaction import MASK, names_credential, redact
from tests.unit.test_credential_scan import SECRETS, _spellings

PW = "Canary-Pa55!"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # URL user-info, whole
        (f"rtsp://admin:{PW}@10.0.0.5/main", "rtsp://***@10.0.0.5/main"),
        ("open http://u@h/x and rtsps://u:p@h2/y", "open http://***@h/x and rtsps://***@h2/y"),
        ("postgresql+psycopg://dsfleet:pw@db:5432/fleet", "postgresql+psycopg://***@db:5432/fleet"),
        ("rtsp://admin:p%40ss@cam/x", "rtsp://***@cam/x"),
        ("rtsp://admin:p@ss@cam/x then a@b", "rtsp://***@cam/x then a@b"),
        ("https://ghp_abcdef@github.com/o/r.git", "https://***@github.com/o/r.git"),
        # percent-encoded and escaped user-info
        ("?src=rtsp%3A%2F%2Fadmin%3Apw%40cam%2Fmain&x=1", f"?src=rtsp%3A%2F%2F{MASK}%40cam%2Fmain&x=1"),
        ("rtsp%3a%2f%2fadmin%3Ap%2540ss%40cam", f"rtsp%3a%2f%2f{MASK}%40cam"),
        ("rtsp://u:p\\x40127.0.0.1/c3", "rtsp://***\\x40127.0.0.1/c3"),
        ("rtsp://u:p\\u0040127.0.0.1/c3", "rtsp://***\\u0040127.0.0.1/c3"),
        # user:password@host without a scheme
        ("kafka user:secret@127.0.0.1:9092 down", "kafka user:***@127.0.0.1:9092 down"),
        # key=value, query strings, key: value
        (f"http://h/x?user=a&password={PW}&n=1", "http://h/x?user=a&password=***&n=1"),
        ("https://models.example/m.onnx?token=abc", "https://models.example/m.onnx?token=***"),
        (f"token={PW} node=n1", "token=*** node=n1"),
        (f"sasl.password: {PW}", "sasl.password: ***"),
        ("api_key='abc 123' rest", "api_key='***' rest"),
        ("PASSWORD=x; DB_PASSWORD=y, client_secret=z", "PASSWORD=***; DB_PASSWORD=***, client_secret=***"),
        (
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=ab+c/d=;EntityPath=e",
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=***;EntityPath=e",
        ),
        # JSON and Python mappings
        (f'{{"password": "{PW} x", "node": "n1"}}', '{"password": "***", "node": "n1"}'),
        ('{"token":"a\\"b","n":1}', '{"token":"***","n":1}'),
        ("{'password': 'x y', 'node': 'n1'}", "{'password': '***', 'node': 'n1'}"),
        ('{"token": 12345, "x": 1}', '{"token": ***, "x": 1}'),
        # authorization headers and bearer tokens
        (f"Authorization: Bearer {PW}abc", "Authorization: Bearer ***"),
        ("authorization=Basic dXNlcjpwdw==", "authorization=Basic ***"),
        ("curl -H 'Authorization: Token abcdef' x", "curl -H 'Authorization: Token ***' x"),
        ("sent Bearer eyJhbGciOi.abc.def-_", "sent Bearer ***"),
        # left alone
        ("rtsp://10.0.0.5/main node=gpu-node-1", "rtsp://10.0.0.5/main node=gpu-node-1"),
        ("${secret:cam-gate}@10.0.0.1", "${secret:cam-gate}@10.0.0.1"),
        ("rtsp://h/a@b", "rtsp://h/a@b"),
        (
            "nvcr.io/nvidia/deepstream:7.0-triton@sha256:ab12",
            "nvcr.io/nvidia/deepstream:7.0-triton@sha256:ab12",
        ),
        ("ubuntu:22.04@sha256:ab12", "ubuntu:22.04@sha256:ab12"),
        ("the author: J; secretRef=cam-gate; tokens=5", "the author: J; secretRef=cam-gate; tokens=5"),
        ("secret cam-gate not found at 12:30:00", "secret cam-gate not found at 12:30:00"),
        ("the bearer of news", "the bearer of news"),
        ("**PERF:  30.01 (29.87)\t29.99 (30.00)", "**PERF:  30.01 (29.87)\t29.99 (30.00)"),
        ("", ""),
    ],
)
def test_redact_masks_credentials_and_nothing_else(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "api_key",
        "apiKey",
        "access-key",
        "private_key",
        "SharedAccessKey",
        "SharedAccessSignature",
        "credentials",
        "authorization",
        "auth",
        "sasl.password",
    ],
)
def test_every_credential_key_is_masked(key: str) -> None:
    """Each key the pattern knows is also among the quick test's triggers (a text without any is left as is)."""
    assert redact(f"{key}=Value-123 n=1") == f"{key}=*** n=1"
    assert redact(f'{{"{key}": "Value 123"}}') == f'{{"{key}": "***"}}'


def test_none_stays_none() -> None:
    assert redact(None) is None


def test_known_secret_values_are_masked_in_every_spelling() -> None:
    text = "camera said hunter22 twice: hunter22; encoded my%20pass%2Fword and my pass/word"
    assert redact(text, ["hunter22", "my pass/word", "ab", ""]) == (
        "camera said *** twice: ***; encoded *** and ***"
    )
    assert redact("ab cd", ["ab"]) == "ab cd"  # too short to mask without mangling the text


def test_a_longer_secret_wins_over_a_shorter_one_inside_it() -> None:
    assert redact("x=token-long-value y", ["long", "token-long-value"]) == "x=*** y"


def test_redaction_is_idempotent_on_its_own_output() -> None:
    text = f'rtsp://a:{PW}@h/x password={PW} {{"token": "{PW}"}} Bearer {PW}abc'
    once = redact(text, [PW])
    assert PW not in once
    assert redact(once, [PW]) == once


@pytest.mark.parametrize("shape", SECRETS)
@pytest.mark.parametrize("how", range(4))
def test_no_credential_shape_of_the_credentials_rule_leaks(shape: str, how: int) -> None:
    """Every spelling of a credential the ``camera-url-credentials`` rule finds (plain, quoted, with ``@``/``?``
    escaped) is masked, alone and inside a log line or a JSON document."""
    spelled = _spellings(shape)[how]
    secret = "p" if "u:p" in shape else "abc"
    for text in (spelled, f"opening {spelled} failed", json.dumps({"url": spelled})):
        out = redact(text)
        assert MASK in out
        assert f":{secret}@" not in out and f":{secret}\\x40" not in out and f"={secret}" not in out


@pytest.mark.parametrize(
    "text",
    ["rtsp://user:pw@10.0.0.5/x", "https://models.example/m.onnx?token=abc", 'rtsp://u:p@h/"quoted"\\x'],
)
def test_the_values_the_credentials_rule_tests_are_masked(text: str) -> None:
    assert redact(text) != text and ("pw" not in redact(text) if "pw" in text else True)


_PASSWORD = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="@/\\\"'<>&;,}%"),
    min_size=6,
    max_size=20,
)


@given(_PASSWORD, st.sampled_from(["rtsp", "http", "rtsps", "postgresql+psycopg"]))
def test_any_password_in_a_url_is_masked(password: str, scheme: str) -> None:
    out = redact(f"connect {scheme}://admin:{password}@10.0.0.5:554/main failed")
    assert out == f"connect {scheme}://***@10.0.0.5:554/main failed"


@given(_PASSWORD, st.sampled_from(["password", "token", "SharedAccessKey", "api-key", "sasl.password"]))
def test_any_value_of_a_credential_key_is_masked(value: str, key: str) -> None:
    for text in (f"?{key}={value}&x=1", f"{key}: {value}", json.dumps({key: value})):
        assert value not in redact(text)


@given(st.text(max_size=200))
def test_redact_never_raises_and_keeps_clean_text(text: str) -> None:
    out = redact(text)
    if not any(mark in text for mark in ("@", "=", ":", "earer", "%")):
        assert out == text


@pytest.mark.parametrize(
    ("key", "credential"),
    [
        ("password", True),
        ("sasl.password", True),
        ("apiKey", True),
        ("Authorization", True),
        ("client_secret", True),
        ("node", False),
        ("secretRef", False),
        ("author", False),
    ],
)
def test_names_credential(key: str, credential: bool) -> None:
    assert names_credential(key) is credential
