"""The store's coordinator lock in one process (SQLite's ``flock`` is per open file): a second holder fails at
once, a standby waits and gets it as soon as the first lets go, and a standby told to stop gives up cleanly."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dsfleet.reconciler.store import Store
from dsfleet.reconciler.store.locks import Standby, StandbyStopped
from dsfleet.schemas.errors import PermanentError


def test_a_standby_gets_the_lock_when_the_holder_lets_go(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with Store.open(url) as first, Store.open(url) as second, Store.open(url) as third:
        holding = first.coordinator_lock()
        holding.__enter__()
        with (
            pytest.raises(PermanentError, match="another coordinator is running on this store"),
            third.coordinator_lock(),
        ):
            pass
        seen: list[str] = []
        waiting = threading.Event()
        got = threading.Event()

        def standby() -> None:
            def note(holder: str) -> None:
                seen.append(holder)
                waiting.set()

            with second.coordinator_lock(Standby(threading.Event(), note, poll=0.05)):
                got.set()

        thread = threading.Thread(target=standby)
        thread.start()
        assert waiting.wait(10), "the standby never found the lock held"
        assert not got.is_set()
        holding.__exit__(None, None, None)
        assert got.wait(10), "the standby never took the lock"
        thread.join(10)
        assert len(seen) == 1 and "holds state.db.coordinator.lock" in seen[0], seen


def test_a_standby_asked_to_stop_gives_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    stop = threading.Event()
    with Store.open(url) as first, Store.open(url) as second, first.coordinator_lock():
        stop.set()
        with pytest.raises(StandbyStopped), second.coordinator_lock(Standby(stop, lambda _holder: None)):
            pass


def test_the_leadership_fence_refuses_a_deposed_coordinators_writes(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from dsfleet.reconciler.store.errors import Deposed

    url = f"sqlite:///{tmp_path / 'state.db'}"
    now = datetime.now(UTC)
    with Store.open(url) as old, Store.open(url) as new, Store.open(url) as cli:
        assert old.claim_leadership("host-a pid 1", now) == 1
        old.set_sync_state("probe", 1, now)  # its own epoch: written
        assert old.still_leader()
        assert new.claim_leadership("host-b pid 2", now) == 2
        with pytest.raises(Deposed, match=r"epoch 2 \(host-b pid 2\) took over from epoch 1"):
            old.set_sync_state("probe", 2, now)
        assert old.deposed is not None and not old.still_leader()
        new.set_sync_state("probe", 3, now)
        cli.set_sync_state(
            "probe", 4, now
        )  # a store that claimed nothing is not fenced (dsfleet rollback, …)
        assert cli.sync_state("probe") == 4 and cli.leadership() == {
            "epoch": 2,
            "holder": "host-b pid 2",
            "since": now.isoformat(),
        }


def test_the_configs_a_store_writes_carry_its_writers_leadership_epoch(tmp_path: Path) -> None:
    """A coordinator stamps the epoch it claimed on every AgentConfig row it stores, a writer that claimed nothing
    (``dsfleet apply``) the store's current one, and a store no coordinator ever led none (read as 0)."""
    import re
    import shutil
    from datetime import UTC, datetime, timedelta

    from dsfleet.reconciler.applying import apply_manifests
    from dsfleet.reconciler.store import NewRevision
    from tests.support.livefleet import ROOT

    manifests = tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests", manifests)
    ccm = manifests / "instances" / "ccm.yaml"
    now = datetime(2026, 3, 1, tzinfo=UTC)
    url = f"sqlite:///{tmp_path / 'state.db'}"

    def apply(store: Store, threshold: str) -> set[str | None]:
        ccm.write_text(
            re.sub(
                r"motConfidenceThreshold: [0-9.]+", f"motConfidenceThreshold: {threshold}", ccm.read_text()
            )
        )
        result = apply_manifests(
            [manifests], store, NewRevision(source="cli", created_at=now, manifests_hash="")
        )
        assert result.applied is not None, result.outcome
        rows = store.pending_outbox()
        store.mark_published([r.id for r in rows], now)
        assert rows
        return {r.headers.get("epoch") for r in rows}

    with Store.open(url) as cli, Store.open(url) as old, Store.open(url) as leader:
        assert cli.writer_epoch() == 0
        assert apply(cli, "0.6") == {None}
        assert old.claim_leadership("host-a pid 1", now) == 1
        assert leader.claim_leadership("host-b pid 2", now + timedelta(seconds=1)) == 2
        assert (leader.writer_epoch(), cli.writer_epoch()) == (2, 2)
        assert apply(leader, "0.45") == {"2"}
        assert apply(cli, "0.5") == {"2"}
