"""The bodies and answers of the manifest edit routes (:mod:`dsfleet.reconciler.api.routes.manifests`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dsfleet.reconciler.api.models import FieldError

__all__ = [
    "CameraAssignment",
    "CameraMove",
    "Discarded",
    "EditRefused",
    "EditRefusedDetail",
    "EditResult",
    "FindingOut",
    "Kind",
    "ManifestBody",
    "ManifestList",
    "ManifestObject",
    "NamePath",
    "Pending",
    "PendingCommit",
    "Stale",
    "StaleDetail",
]

Kind = Literal["Camera", "DsInstance", "Node", "InferenceProfile", "Policy"]
NamePath = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


# --------------------------------------------------------------------------------------------------- bodies


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ManifestBody(_Model):
    """One manifest object, as in a file (``kind`` may be left out: the path says it)."""

    apiVersion: Literal["dsfleet/v1"] = "dsfleet/v1"
    kind: Kind | None = None
    metadata: dict[str, Any]
    spec: dict[str, Any]


class CameraAssignment(_Model):
    camera: str = Field(min_length=1, max_length=63, description="the Camera's metadata.name")


class CameraMove(_Model):
    """A camera taken from one instance's ``spec.cameras`` and added to another's, in one commit."""

    camera: str = Field(min_length=1, max_length=63, description="the Camera's metadata.name")
    fromInstance: str = Field(min_length=1, max_length=63, description="the DsInstance that lists it now")
    fromVersion: str | None = Field(
        None, description="that instance's version as read (its If-Match); a stale one is refused with 412"
    )


class ManifestObject(_Model):
    kind: str
    name: str
    file: str = Field(description="its file, relative to the manifests directory")
    version: str = Field(description="its version (the ETag): send it back as If-Match to change it")
    object: dict[str, Any] | None = Field(None, description="the object as in its file (absent in lists)")


class ManifestList(_Model):
    items: list[ManifestObject]


class EditResult(_Model):
    action: Literal["created", "updated", "deleted"]
    kind: str
    name: str
    file: str
    version: str | None = Field(None, description="the object's new version; None once deleted")
    commit: str | None = Field(None, description="the git commit of the edit; None outside a git work tree")
    pushed: bool = False
    warnings: list[str] = Field(default_factory=list, description="findings of the edit that are warnings")


class FindingOut(_Model):
    severity: str
    rule: str
    message: str
    file: str | None
    line: int | None
    column: int | None
    text: str = Field(description="the finding as ``dsfleet validate`` prints it")


class EditRefusedDetail(_Model):
    status: int
    message: str
    fields: list[FieldError] = Field(default_factory=list)
    findings: list[FindingOut] = Field(default_factory=list)


class EditRefused(_Model):
    """An edit the manifests' rules refuse (422): the findings ``dsfleet validate`` would print."""

    error: EditRefusedDetail


class StaleDetail(_Model):
    status: int
    message: str
    version: str = Field(description="the object's current version")


class Stale(_Model):
    """The object changed since it was read (412): read it again."""

    error: StaleDetail


class PendingCommit(_Model):
    sha: str
    author: str
    subject: str
    byApi: bool


class Pending(_Model):
    schema_: Literal["dsfleet.pending/v1"] = Field("dsfleet.pending/v1", alias="schema")
    lastApplied: str | None = Field(None, description="the git commit of the last applied revision")
    head: str | None = None
    commits: list[PendingCommit] = Field(default_factory=list, description="commits since, newest first")
    valid: bool
    plan: dict[str, Any] | None = Field(
        None, description="the plan as ``dsfleet diff --output json`` prints it"
    )
    findings: list[FindingOut] = Field(default_factory=list)


class Discarded(_Model):
    discarded: list[str] = Field(description="the commits dropped, newest first")
    head: str | None


# ------------------------------------------------------------------------------------------------- helpers
