"""Base model configuration and common field types."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

DnsLabel = Annotated[
    str, StringConstraints(strict=True, pattern=DNS_LABEL_RE.pattern, min_length=1, max_length=63)
]
"""A name as Kubernetes spells it: lowercase letters, digits and '-', at most 63 characters."""


class FrozenModel(BaseModel):
    """Immutable, strict about unknown fields; fields may be given by name or by alias."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
