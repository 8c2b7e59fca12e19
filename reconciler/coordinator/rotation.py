"""A new signing key reaches every node: when the coordinator starts with another key than the one it last
signed with (``dsfleet keys rotate --commit``, or a store that predates signed records), it re-publishes every
node's stored config signed by the new key, through the outbox, once. Without this a node would keep only records
signed by the old key until its next change, and an agent restarted after the old key left its trusted keys would
refuse them (its last good config keeps running, but it could not be told anything new).

Held configs (a camera handover under way) are left to their handover: their release publishes them signed by the
new key anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from dsfleet.reconciler.store.outbox import OutboxRecord
    from dsfleet.reconciler.store.values import OutboxRow, StoredNodeConfig

__all__ = ["SIGNING_KEY_STATE", "resign_configs"]

SIGNING_KEY_STATE: Final = "signing_key"
"""The sync-state key holding the id of the key the coordinator last signed with."""


class RotationStore(Protocol):
    def sync_state(self, key: str) -> Any: ...

    def set_sync_state(self, key: str, value: Any, at: datetime) -> None: ...

    def held_outbox(self) -> list[OutboxRow]: ...

    def enqueue(self, records: Any, now: datetime) -> list[int]: ...

    def record_events(self, at: datetime, kind: str, messages: Any) -> None: ...


def resign_configs(
    store: RotationStore,
    key_id: str,
    configs: Mapping[str, StoredNodeConfig],
    encode: Callable[[StoredNodeConfig], OutboxRecord],
    now: datetime,
) -> list[str]:
    """Queue every stored node config again, signed by ``key_id``'s key (``encode``), when the coordinator last
    signed with another key; the nodes queued (none when the key is the same)."""
    if store.sync_state(SIGNING_KEY_STATE) == key_id:
        return []
    held = {row.key for row in store.held_outbox()}
    nodes = [node for node in sorted(configs) if node not in held]
    if nodes:
        store.enqueue([encode(configs[node]) for node in nodes], now)
        store.record_events(
            now,
            "resync",
            [
                (node, f"generation {configs[node].generation} re-published signed by the new key {key_id}")
                for node in nodes
            ],
        )
    store.set_sync_state(SIGNING_KEY_STATE, key_id, now)
    return nodes
