"""One writer per fleet: ``dsfleet apply`` refuses a store that a running coordinator holds.

A coordinator re-reads its manifests directory every few seconds and applies what it holds: a revision stored
beside it from another directory would run until that next read, then be silently undone. So ``apply`` asks
first — is the store's coordinator lock held, or is the coordinator's heartbeat fresh? — and if so names the
coordinator (host, pid, the directory it watches) and the ways to change what it applies instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dsfleet.reconciler.planning.conditions import age_text, coordinator_running

__all__ = ["coordinator_conflict"]


def coordinator_conflict(url: str, now: datetime | None = None) -> str | None:
    """Why ``apply`` must not write to the store at ``url`` (a coordinator runs on it), or None."""
    from dsfleet.reconciler.store import Store

    now = now or datetime.now(UTC)
    with Store.open(url, readonly=True) as store:
        if store.empty_fallback:
            return None
        beat = store.coordinator_heartbeat()
        held = store.coordinator_lock_held()
    running = beat is not None and coordinator_running(
        beat.seen_at, beat.stopped_at, beat.interval_seconds, now
    )
    if not running and held is None:
        return None
    if beat is not None and (running or beat.stopped_at is None):
        who = (
            f"a coordinator runs on this store (host {beat.host}, pid {beat.pid}, watching {beat.manifests}; "
            f"last heartbeat {age_text((now - beat.seen_at).total_seconds())} ago)"
        )
        where = beat.manifests
        manual = beat.sync == "manual"
    else:
        who = f"a coordinator runs on this store ({held})"
        where = "its manifests directory"
        manual = False
    ask = (
        "ask it to apply its pending plan (POST /api/v1/apply, or the dashboard's Apply)"
        if manual
        else "run it with --sync manual and ask it to apply (POST /api/v1/apply)"
    )
    return (
        f"{who}: it applies what {where} holds and would undo this apply at its next read of it; nothing "
        f"stored.\n  instead: push the change to the git remote {where} is a clone of, or write it into {where}, "
        f"or {ask}"
    )
