"""The secret placeholder syntax shared by the coordinator and the agent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsfleet.schemas.placeholders import (
    PLACEHOLDER_RE,
    broker_connection_has_credentials,
    connection_has_credentials,
    secret_env_name,
    text_has_credentials,
    url_has_credentials,
    url_with_placeholder,
)


@pytest.mark.parametrize(
    ("url", "has"),
    [
        ("rtsp://admin:s3cret@127.0.0.1/main", True),
        ("rtsp://admin@127.0.0.1/main", True),
        ("rtsp://:pw@127.0.0.1/main", True),
        ("rtsp://127.0.0.1/main", False),
        ("rtsp://127.0.0.1/path@with-at", False),
        ("file:///media/a@b.mp4", False),
        ("rtsp://${secret:gate-1}@127.0.0.1/main", False),
        ("not a url", False),
        ("http://[::1", False),
    ],
)
def test_url_has_credentials(url: str, has: bool) -> None:
    assert url_has_credentials(url) is has


def test_placeholder_goes_into_the_user_info_and_is_found_again() -> None:
    url = url_with_placeholder("rtsp://127.0.0.1:8554/gate", "gate-1")
    assert url == "rtsp://${secret:gate-1}@127.0.0.1:8554/gate"
    assert [m.group(1) for m in PLACEHOLDER_RE.finditer(url)] == ["gate-1"]
    assert url_with_placeholder("rtsp://127.0.0.1/x", None) == "rtsp://127.0.0.1/x"


@pytest.mark.parametrize(
    ("url", "has"),
    [
        ("rtsp://127.0.0.1/main?user=admin&password=s3cret", True),
        ("rtsp://127.0.0.1/main?PassWord=s3cret", True),
        ("rtsp://127.0.0.1/main?passwd=x", True),
        ("rtsp://127.0.0.1/main?pwd=x", True),
        ("rtsp://127.0.0.1/main?pass=x", True),
        ("http://127.0.0.1/a?token=x", True),
        ("http://127.0.0.1/a?Api-Key=x", True),
        ("http://127.0.0.1/a?api_key=x", True),
        ("http://127.0.0.1/a?secret=x", True),
        ("http://127.0.0.1/a?auth=x", True),
        ("http://127.0.0.1/a?access_token=x", True),
        ("http://127.0.0.1/a;password=x", False),  # a path parameter, not a query
        ("http://127.0.0.1/a?x=1;password=x", True),
        ("http://127.0.0.1/a?password=", False),
        ("http://127.0.0.1/a?password=${secret:cam}", False),
        ("rtsp://127.0.0.1/main?channel=1&subtype=0", False),
        ("http://127.0.0.1/a?author=x", False),
    ],
)
def test_a_credential_in_the_query_string_counts(url: str, has: bool) -> None:
    assert url_has_credentials(url) is has


@pytest.mark.parametrize(
    ("value", "has"),
    [
        ("127.0.0.1:9092", False),
        ("127.0.0.1:9092,127.0.0.2:9092", False),
        ("admin:pw@127.0.0.1:9092", True),
        ("127.0.0.1:9092,admin:pw@127.0.0.2:9092", True),
        ("127.0.0.1:9092?password=pw", True),
        ("kafka://u:p@127.0.0.1:9092", True),
        ("127.0.0.1;9092;topic", False),
    ],
)
def test_connection_strings(value: str, has: bool) -> None:
    assert connection_has_credentials(value) is has


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DB_PASSWORD", True),
        ("db_passwd", True),
        ("MY_SECRET", True),
        ("GITHUB_TOKEN", True),
        ("OPENAI_API_KEY", True),
        ("AWS_CREDENTIALS", True),
        ("SSH_PRIVATE_KEY", True),
        ("GST_DEBUG", False),
        ("CUDA_VISIBLE_DEVICES", False),
    ],
)
def test_secret_looking_env_names(name: str, secret: bool) -> None:
    assert secret_env_name(name) is secret


@given(st.text(alphabet="abcpasword=:;@/?&,.-_ 19", max_size=40))
def test_broker_detection_covers_the_generic_connection_checks(value: str) -> None:
    """camera-url-credentials leaves broker connection strings to broker-credentials: no finding may be lost."""
    if connection_has_credentials(value) or text_has_credentials(value):
        assert broker_connection_has_credentials(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1;9092", False),
        ("HostName=hub.azure-devices.net;DeviceId=cam-7;SharedAccessKey=abc=", True),
        ("HostName=hub;SharedAccessSignature=SharedAccessSignature sr=x", True),
        ("broker;5672;guest;pass=x", True),
        ("user:pw@10.0.0.1;9092", True),
        ("10.0.0.1:9092,10.0.0.2:9092", False),
    ],
)
def test_broker_connection_credentials(value: str, expected: bool) -> None:
    assert broker_connection_has_credentials(value) is expected


@given(
    st.text(
        alphabet=st.sampled_from(list("abcAZ09:/;,=&#%._-+ ")) | st.characters(blacklist_characters="@?"),
        max_size=60,
    )
)
def test_a_string_without_at_or_question_mark_never_carries_credentials(value: str) -> None:
    """``camera-url-credentials`` skips a spec whose JSON has neither ``@`` nor ``?``: the checks must agree."""
    assert not text_has_credentials(value)
    assert not connection_has_credentials(value)
    assert not url_has_credentials(value)
