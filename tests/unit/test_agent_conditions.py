"""Backoff of an instance's failing action (exponential, capped, deterministic jitter), the failure kept per instance
and config, and the conditions reported: pure functions of ``dsfleet.agent.conditions``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsfleet.agent.conditions import (
    CAP_SECONDS,
    CREATE_FAILED,
    FILES_UNWRITABLE,
    IMAGE_NOT_FOUND,
    SECRET_MISSING,
    START_FAILED,
    backoff_delay,
    failure_condition,
    failure_reason,
    files_condition,
    is_holding,
    jitter,
    record_failure,
)
from dsfleet.agent.errors import FileWriteError, ImageNotFoundError, PermanentError, SecretError
from dsfleet.schemas.labels import instance_labels
from dsfleet.schemas.nodeconfigs import ContainerSpec, RestartPolicySpec, build_instance


@given(st.text(min_size=1, max_size=20), st.integers(min_value=1, max_value=40))
def test_the_delay_doubles_within_half_and_whole_of_its_nominal_value_and_is_capped(
    name: str, attempt: int
) -> None:
    nominal = min(CAP_SECONDS, 2.0 ** (attempt - 1))
    delay = backoff_delay(name, attempt)
    assert nominal / 2 <= delay < nominal
    assert delay == backoff_delay(name, attempt)  # deterministic: testable, no random generator


def test_the_jitter_spreads_instances_that_failed_together() -> None:
    assert len({round(jitter(f"cam-{i}", 3), 6) for i in range(50)}) == 50
    assert backoff_delay("cam", 20) < CAP_SECONDS


def test_a_failure_counts_attempts_per_config_and_holds_until_due() -> None:
    first = record_failure(
        None, "cam", reason=IMAGE_NOT_FOUND, message="m", config_hash="h1", now=10.0, wall=1000.0
    )
    assert first.attempts == 1 and first.since == 1000.0
    assert is_holding(first, "h1", 10.0 + 0.4) and not is_holding(first, "h1", first.retry_at)
    assert not is_holding(first, "h2", 10.0)  # a new desired config is tried at once
    second = record_failure(
        first, "cam", reason=IMAGE_NOT_FOUND, message="m", config_hash="h1", now=12.0, wall=1002.0
    )
    assert second.attempts == 2 and second.since == 1000.0
    assert second.retry_at - 12.0 == pytest.approx(backoff_delay("cam", 2))
    other = record_failure(
        second, "cam", reason=CREATE_FAILED, message="m", config_hash="h2", now=13.0, wall=1003.0
    )
    assert other.attempts == 1 and other.since == 1003.0


def test_the_condition_says_attempts_since_and_next_retry() -> None:
    f = record_failure(
        None, "cam", reason=START_FAILED, message="start: boom", config_hash="h", now=0.0, wall=0.0
    )
    c = failure_condition(f)
    assert (c.reason, c.message, c.attempts) == (START_FAILED, "start: boom", 1)
    assert c.since == "1970-01-01T00:00:00+00:00" and c.nextRetryAt is not None and c.nextRetryAt > c.since


@pytest.mark.parametrize(
    ("step", "error", "reason"),
    [
        ("image", ImageNotFoundError("ds:9"), IMAGE_NOT_FOUND),
        ("create", ImageNotFoundError("ds:9"), IMAGE_NOT_FOUND),
        ("create", PermanentError("400"), CREATE_FAILED),
        ("start", PermanentError("400"), START_FAILED),
        ("files", FileWriteError("disk full"), FILES_UNWRITABLE),
        ("secrets", SecretError("secret 'x' not found", ["x"]), SECRET_MISSING),
        ("stop", PermanentError("x"), "ActionFailed"),
    ],
)
def test_failure_reasons(step: str, error: Exception, reason: str) -> None:
    assert failure_reason(step, error) == reason


def test_a_missing_secret_names_the_cameras_it_leaves_out() -> None:
    spec = ContainerSpec(
        image="ds:7.0",
        engineVolume="x_engine",
        labels=instance_labels("x"),
        restartPolicy=RestartPolicySpec(name="unless-stopped"),
    )
    inst = build_instance(
        "x",
        "ccm",
        False,
        ("gate-1", "gate-2", "lobby"),
        spec,
        (),
        camera_secrets={"gate-2": "gate", "gate-1": "gate"},
    )
    c = files_condition(
        inst, SECRET_MISSING, "secret 'gate' not found", ("gate",), "2026-01-01T00:00:00+00:00"
    )
    assert c.cameras == ("gate-1", "gate-2")
    assert (
        "cameras gate-1, gate-2 cannot be added" in c.message
        and "keeps running its last good files" in c.message
    )
    assert c.nextRetryAt is None and c.attempts == 0
