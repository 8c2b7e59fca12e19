"""The secret placeholder syntax shared by the coordinator and the agent."""

from __future__ import annotations

import pytest

from schemas.placeholders import PLACEHOLDER_RE, url_has_credentials, url_with_placeholder


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
