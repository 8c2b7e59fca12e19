"""deepstream-app groups: typed and range-checked like nvinfer keys; sink and broker rules; the escape hatch."""

from __future__ import annotations

from typing import Any

import pytest

from policies.engine import evaluate
from schemas.manifests import ANY_MANIFEST
from tests.fleets import PROFILE, camera, fleet_of, instance, node


def _fleet_with(app: dict[str, Any]) -> Any:
    inst = instance("ds", "n1", ["cam-a"])
    inst["spec"]["app"].update(app)
    return fleet_of([node("n1"), PROFILE, camera("cam-a", "1"), inst])


def _rules(app: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in evaluate(_fleet_with(app)):
        out.setdefault(f.rule, []).append(f.message)
    return out


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        ({"osd": {"text-color": [1, 1, 1]}}, "exactly 4 items"),
        ({"osd": {"clock-color": [2, 0, 0, 1]}}, "between 0 and 1"),
        ({"osd": {"process-mode": 2}}, "must be one of"),
        ({"tracker": {"tracker-width": 16}}, "at least 32"),
        ({"tracker": {"enable-past-frame": "yes"}}, "true"),
        ({"sinks": [{"type": 7}]}, "must be one of"),
        ({"sinks": [{"type": 4, "rtsp-port": 70000}]}, "between 1 and 65535"),
        ({"img-save": {"min-confidence": 1.5}}, "between 0 and 1"),
        ({"message-consumers": [{"subscribe-topic-lists": "a"}]}, "extra"),
        ({"tests": {"pipeline-recreate-sec": -1}}, "at least 0"),
    ],
)
def test_app_group_values_are_checked(app: dict[str, Any], fragment: str) -> None:
    inst = instance("ds", "n1", ["cam-a"])
    inst["spec"]["app"].update(app)
    with pytest.raises(ValueError) as info:
        ANY_MANIFEST.validate_python(inst)
    assert fragment.lower() in str(info.value).lower()


def test_display_sinks_warn_and_broker_sinks_need_their_settings() -> None:
    rules = _rules({"sinks": [{"type": 2}, {"type": 6, "topic": "t"}, {"type": 6, "disable-msgconv": True,
                    "msg-broker-proto-lib": "/x.so", "msg-broker-conn-str": "127.0.0.1;9092"}]})  # fmt: skip
    assert len(rules["sink-needs-display"]) == 1
    assert rules["sink-broker-settings"] == [
        "instance 'ds': sink1 (type 6) needs msg-broker-proto-lib, msg-broker-conn-str, msg-conv-config"
    ]


@pytest.mark.parametrize(
    "conn", ["user:secret@10.0.0.1;9092", "amqp://guest:guest@127.0.0.1;5672", "h;1;password=x"]
)
def test_broker_credentials_are_refused(conn: str) -> None:
    rules = _rules({"sinks": [{"type": 6, "msg-broker-proto-lib": "/x.so", "msg-conv-config": "c.txt",
                               "msg-broker-conn-str": conn}]})  # fmt: skip
    assert len(rules["broker-credentials"]) == 1
    assert "secret" not in rules["broker-credentials"][0].split("carries")[0]  # the value is never echoed


def test_extra_groups_are_verbatim_with_a_warning() -> None:
    rules = _rules({"extraGroups": {"ds-example": {"enable": 1, "processing-width": 640}}})
    assert rules["app-extra-groups"] == [
        "instance 'ds': [ds-example] is written verbatim (dsfleet does not check its keys)"
    ]
