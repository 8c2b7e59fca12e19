"""Every ``io.dsfleet.*`` name dsfleet puts on Docker objects: the one place they are spelled.

Docker labels cannot change on an existing container, so a container's labels carry only what stays true for
its whole life. Two sides set them, each once:

- the **coordinator's compiler** puts into each instance's container spec (so they are part of its spec hash)
  :data:`LABEL_MANAGED` ``=true``, :data:`LABEL_INSTANCE` ``=<instance>`` and the instance's manifest labels as
  ``io.dsfleet.label.<key>=<value>`` (:func:`manifest_label`);
- the **agent** adds what only the host knows when it creates the container: :data:`LABEL_NODE` ``=<node>``,
  :data:`LABEL_SPEC_HASH` ``=<specHash>`` — the hash of the *container spec* the container was created from (not the
  instance's configHash, which also covers the rendered files: a files-only change restarts the container with
  the same labels, so this one stays true) — and :data:`LABEL_GENERATION` ``=<n>``, the generation it was created at.

An engine volume (one per instance and image, ``<instance>_engine-<hash of the image>``) carries the container spec's
labels, :data:`LABEL_NODE` and :data:`LABEL_IMAGE` ``=<image>``: TensorRT engines belong to the image that built them.

An agent touches only objects labelled :data:`LABEL_MANAGED` ``=true`` of its own node; anything else, even a container
named ``dsfleet-<instance>``, is never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

LABEL_MANAGED: Final = "io.dsfleet.managed"
LABEL_INSTANCE: Final = "io.dsfleet.instance"
LABEL_NODE: Final = "io.dsfleet.node"
LABEL_SPEC_HASH: Final = "io.dsfleet.config-hash"
"""Named ``config-hash`` since the first release (containers in the field carry it); it holds the spec hash."""
LABEL_GENERATION: Final = "io.dsfleet.generation"
LABEL_IMAGE: Final = "io.dsfleet.image"
MANIFEST_PREFIX: Final = "io.dsfleet.label."

HOST_ONLY: Final = frozenset({LABEL_NODE, LABEL_SPEC_HASH, LABEL_GENERATION, LABEL_IMAGE})
"""Labels only the agent sets: a container spec that carries one is refused."""


def manifest_label(key: str) -> str:
    """The Docker label of a manifest's ``metadata.labels`` key."""
    return MANIFEST_PREFIX + key


def instance_labels(instance: str, manifest_labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels the compiler puts into an instance's container spec."""
    labels = {manifest_label(k): v for k, v in sorted((manifest_labels or {}).items())}
    labels[LABEL_MANAGED] = "true"
    labels[LABEL_INSTANCE] = instance
    return labels
