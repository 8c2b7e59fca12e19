"""``Policy.spec.rollout``: how a revision that recreates containers reaches the fleet, wave by wave, gated on
DeepStream's health (docs/operating/rollouts.md, decision 0027).

A governed change goes to the nodes of one **wave** at a time, at most ``maxUnavailable`` changed instances at a
time within it; the next nodes get it once every changed instance of the released ones passed the **gate**
(Synced, running, no condition, no new restart, optionally FPS per camera not below a fraction of what it was)
for ``soakSeconds``. A node whose instances cannot pass within ``deadlineSeconds`` has failed; the **abort** rule
(failures ≥ ``failures``, or ≥ ``percent`` % of the released nodes once ``after`` were released) returns every
changed node to the last good revision. A wave with ``pause: true`` waits for ``dsfleet rollout promote`` once its
gate passed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, model_validator

from dsfleet.schemas.base import DnsLabel, FrozenModel

__all__ = ["GOVERNED_KINDS", "RolloutAbort", "RolloutGate", "RolloutStrategy", "RolloutWave"]

GOVERNED_KINDS = ("image", "profile", "recreate", "restart")
"""What a rollout may govern: an instance whose image changes; whose inference profile changes; any recreate
(image, profile, container settings); any restart or recreate (files too). Hot camera changes, settings-only
changes (``selfHeal``, ``updateStrategy``), pausing/resuming and new or removed instances are never governed."""

NodeCount = Annotated[str, Field(pattern=r"^([1-9][0-9]{0,5}|([1-9][0-9]?|100)%)$")]


class RolloutWave(FrozenModel):
    """One wave: the nodes whose labels include ``selector`` (all nodes when empty), not yet in an earlier wave,
    at most ``nodes`` of them (a count, or a percentage of the nodes the revision changes, rounded up; every
    matching node when absent)."""

    name: DnsLabel | None = Field(None, description="shown in status (default: wave-1, wave-2, …)")
    selector: dict[
        Annotated[str, Field(min_length=1, max_length=253)], Annotated[StrictStr, Field(max_length=63)]
    ] = Field(default_factory=dict, description="node labels that must all match (empty: any node)")
    nodes: NodeCount | StrictInt | None = Field(
        None, description="how many nodes: a count (3) or a percentage of the changed nodes ('50%')"
    )
    pause: StrictBool = Field(
        False, description="after this wave's gate passed, wait for `dsfleet rollout promote`"
    )

    @model_validator(mode="after")
    def _positive(self) -> RolloutWave:
        if isinstance(self.nodes, int) and self.nodes < 1:
            raise ValueError("nodes must be at least 1")
        return self


class RolloutGate(FrozenModel):
    """What every changed instance of a released node must show, for ``soakSeconds``, within ``deadlineSeconds``
    of its release."""

    soakSeconds: Annotated[StrictInt, Field(ge=0, le=86_400)] = Field(
        30, description="how long the gate must hold without a break"
    )
    deadlineSeconds: Annotated[StrictInt, Field(ge=1, le=604_800)] = Field(
        600, description="a node whose instances do not pass within this long after their release has failed"
    )
    minFpsRatio: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None,
        description="each camera's FPS must be at least this fraction of its FPS before the change "
        "(cameras without a reading before are not compared)",
    )
    maxRestarts: Annotated[StrictInt, Field(ge=0, le=100)] = Field(
        0, description="restarts of a changed instance after its release that still count as healthy"
    )


class RolloutAbort(FrozenModel):
    """When to stop and roll back: ``failures`` failed nodes, or ``percent`` % of the released nodes once at
    least ``after`` nodes were released."""

    failures: Annotated[StrictInt, Field(ge=1)] = Field(1, description="failed nodes that abort the rollout")
    percent: Annotated[StrictInt, Field(ge=1, le=100)] | None = Field(
        None, description="failed share of the released nodes that aborts it"
    )
    after: Annotated[StrictInt, Field(ge=1)] = Field(1, description="released nodes before `percent` applies")


class RolloutStrategy(FrozenModel):
    governs: tuple[Literal["image", "profile", "recreate", "restart"], ...] = Field(
        ("recreate",), min_length=1, description="the instance changes it governs (see the rollouts page)"
    )
    waves: tuple[RolloutWave, ...] = Field(
        min_length=1, max_length=20, description="in order; nodes no wave selects form a last wave"
    )
    maxUnavailable: Annotated[StrictInt, Field(ge=1)] = Field(
        1, description="changed instances released at a time within a wave (at least one node)"
    )
    gate: RolloutGate = Field(default_factory=RolloutGate)
    abort: RolloutAbort = Field(default_factory=RolloutAbort)
    reason: StrictStr | None = Field(None, description="why the fleet rolls out this way (shown in status)")
