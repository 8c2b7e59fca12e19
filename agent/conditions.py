"""Pure: the problems the agent reports per instance (``InstanceCondition``) — failed actions retried with
exponential backoff and jitter, and host-side problems with the instance's files.

When an action of an instance fails (pull, create, start, a file write; a replacement rolled back), the agent
keeps a :class:`Failure` per instance and holds the instance's forward actions until it is due again
(:func:`dsfleet.agent.containers.compute_plan`'s ``holding``), as kubelet does with a container's ``CrashLoopBackOff``
and Flux with a failed reconcile:

- the delay before attempt *n + 1* is ``min(cap, base * 2**(n-1))`` scaled by a jitter in ``[0.5, 1)``
  (:func:`backoff_delay`: 1 s, 2 s, 4 s, … up to :data:`CAP_SECONDS`). The jitter comes from a hash of the
  instance name and the attempt, not from a random generator: the same inputs give the same delay (testable),
  and the instances of a host, or of a fleet that failed together, still spread their retries;
- a failure is kept per instance together with the desired ``configHash`` it happened under; a new desired
  config of the instance starts again from attempt 1 (:func:`is_holding` is false at once), and a success clears it;
- the loop logs each attempt once at WARNING (it acts only when due, so never every tick) and reports the failure
  as an :class:`dsfleet.schemas.wire.InstanceCondition` with ``attempts``, ``since`` and ``nextRetryAt``
  (:func:`failure_condition`).

**Host-side problems** (:func:`files_condition`): files that cannot be rendered because a secret is missing
(``SecretMissing``: ``cameras`` names the cameras whose credentials it is, from the instance's ``cameraSecrets``),
an instance directory that cannot be read (``FilesUnwritable``), or a config this host's admission settings refuse
(``AdmissionDenied``, :mod:`dsfleet.agent.admission`). The instance is left alone — it keeps running its
last good files and container — and the condition lasts until the files can be rendered (the config admitted);
they are looked at again on every heartbeat, so it has no retry date. The loop logs it at WARNING once per change.

Reasons (``InstanceCondition.reason``): :data:`IMAGE_NOT_FOUND`, :data:`CREATE_FAILED`, :data:`START_FAILED`,
:data:`UNHEALTHY`, :data:`FILES_UNWRITABLE`, :data:`SECRET_MISSING`, :data:`ADMISSION_DENIED`,
:data:`ACTION_FAILED` (any other step), and :data:`PULLING` while an image is pulled for the instance;
:func:`instance_conditions` gathers what an instance reports. Times: ``now`` (monotonic, for due dates) and ``wall`` (epoch seconds, for what is reported) are passed in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from dsfleet.agent.errors import FileWriteError, ImageNotFoundError, SecretError
from dsfleet.schemas.nodeconfigs import InstanceConfig
from dsfleet.schemas.wire import InstanceCondition

__all__ = [
    "ACTION_FAILED",
    "ADMISSION_DENIED",
    "BASE_SECONDS",
    "CAP_SECONDS",
    "CREATE_FAILED",
    "FILES_UNWRITABLE",
    "IMAGE_NOT_FOUND",
    "PULLING",
    "SECRET_MISSING",
    "START_FAILED",
    "UNHEALTHY",
    "Failure",
    "backoff_delay",
    "failure_condition",
    "failure_reason",
    "files_condition",
    "instance_conditions",
    "is_holding",
    "iso",
    "jitter",
    "record_failure",
]

IMAGE_NOT_FOUND = "ImageNotFound"
CREATE_FAILED = "CreateFailed"
START_FAILED = "StartFailed"
UNHEALTHY = "Unhealthy"
FILES_UNWRITABLE = "FilesUnwritable"
SECRET_MISSING = "SecretMissing"
ACTION_FAILED = "ActionFailed"
ADMISSION_DENIED = "AdmissionDenied"
"""The host's admission settings refuse the instance's config (:mod:`dsfleet.agent.admission`)."""
PULLING = "Pulling"
"""Not a failure: the image is being pulled (reported while it lasts, with no retry date)."""

BASE_SECONDS = 1.0
CAP_SECONDS = 300.0
MAX_MESSAGE = 2000


def jitter(instance: str, attempt: int) -> float:
    """A fraction in ``[0, 1)`` fixed by ``instance`` and ``attempt``."""
    digest = hashlib.sha256(f"{instance}\0{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def backoff_delay(
    instance: str, attempt: int, *, base: float = BASE_SECONDS, cap: float = CAP_SECONDS
) -> float:
    """Seconds to wait after the ``attempt``-th failure (1, 2, …) before trying again: exponential, capped,
    scaled by ``0.5 + jitter / 2`` (so never below half the nominal delay)."""
    nominal = min(cap, base * 2.0 ** max(0, attempt - 1))
    return nominal * (0.5 + jitter(instance, attempt) / 2)


@dataclass(frozen=True)
class Failure:
    """The last failure of an instance's action, and when to try again."""

    reason: str
    message: str
    config_hash: str
    """The instance's desired configHash when it failed: another one makes the failure void."""
    attempts: int
    since: float
    """Wall time (epoch seconds) of the first failure of this config."""
    retry_at: float
    """Monotonic time from which the next attempt is due."""
    retry_wall: float
    """The same as wall time (reported as ``nextRetryAt``)."""


def record_failure(
    previous: Failure | None,
    instance: str,
    *,
    reason: str,
    message: str,
    config_hash: str,
    now: float,
    wall: float,
) -> Failure:
    """The failure after one more failed attempt (the first one when ``previous`` was of another config)."""
    same = previous is not None and previous.config_hash == config_hash
    attempts = previous.attempts + 1 if previous is not None and same else 1
    since = previous.since if previous is not None and same else wall
    delay = backoff_delay(instance, attempts)
    return Failure(
        reason=reason,
        message=message[:MAX_MESSAGE],
        config_hash=config_hash,
        attempts=attempts,
        since=since,
        retry_at=now + delay,
        retry_wall=wall + delay,
    )


def is_holding(failure: Failure | None, config_hash: str, now: float) -> bool:
    """Whether the instance's forward actions wait: a failure of this very config whose retry is not due."""
    return failure is not None and failure.config_hash == config_hash and now < failure.retry_at


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat()


def failure_condition(failure: Failure) -> InstanceCondition:
    return InstanceCondition(
        reason=failure.reason,
        message=failure.message,
        since=iso(failure.since),
        attempts=failure.attempts,
        nextRetryAt=iso(failure.retry_wall),
    )


def failure_reason(step: str, error: Exception) -> str:
    """The condition a failed ``step`` (``image``, ``files``, ``create``, ``start``, …) stands for."""
    if isinstance(error, ImageNotFoundError):
        return IMAGE_NOT_FOUND
    if isinstance(error, SecretError):
        return SECRET_MISSING
    if isinstance(error, FileWriteError):
        return FILES_UNWRITABLE
    return {"create": CREATE_FAILED, "start": START_FAILED, "files": FILES_UNWRITABLE}.get(
        step, ACTION_FAILED
    )


def files_condition(
    inst: InstanceConfig, reason: str, error: str, refs: tuple[str, ...], since: str
) -> InstanceCondition:
    """The condition of an instance whose files cannot be rendered (``reason`` of its file state)."""
    cameras = tuple(sorted(cam for cam, ref in inst.cameraSecrets.items() if ref in refs))
    message = error
    if cameras:
        message += f"; camera{'s' if len(cameras) > 1 else ''} {', '.join(cameras)} cannot be added"
    if reason == ADMISSION_DENIED:
        message += "; the instance keeps running its last good config"
    else:
        message += "; the instance keeps running its last good files"
    return InstanceCondition(reason=reason, message=message[:MAX_MESSAGE], cameras=cameras, since=since)


def instance_conditions(
    config_hash: str,
    *,
    files: InstanceCondition | None,
    failure: Failure | None,
    pulling: str | None,
) -> list[InstanceCondition]:
    """The conditions an instance reports: its files' problem, its failure (only one under the desired
    ``config_hash``: an older one no longer holds it), the image being pulled for it (``pulling``)."""
    found: list[InstanceCondition] = []
    if files is not None:
        found.append(files)
    if failure is not None and failure.config_hash == config_hash:
        found.append(failure_condition(failure))
    if pulling is not None:
        found.append(InstanceCondition(reason=PULLING, message=f"pulling image {pulling}"))
    return found
