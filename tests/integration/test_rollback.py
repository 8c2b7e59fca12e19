"""``dsfleet rollback`` against a running coordinator watching a git work tree: the rollback stays while the bad
commit is HEAD (past two periodic re-reads), a new commit lifts the pin and applies; ``unpin`` by hand;
``history diff`` names the changed fields. The store is SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsfleet.reconciler.store import Store
from tests.support.apiserver import ServerProc
from tests.support.keys import coordinator_env
from tests.support.livefleet import ROOT, CoordinatorProc, copy_fleet

GOOD = "nvcr.io/nvidia/deepstream:7.0-triton-multiarch"
BAD = "nvcr.io/nvidia/deepstream:7.0-bad"
NEXT = "nvcr.io/nvidia/deepstream:7.1-triton-multiarch"


@pytest.fixture
def db(store_url: str) -> str:
    return store_url


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        **coordinator_env(tmp_path / "coordinator.key"),
        "DSFLEET_COORDINATOR__DIRECTORY_RESYNC_SECONDS": "0.5",
    }


def _git(work: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=ops", "-c", "user.email=ops@example.com", *args],
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip()


def _commit(work: Path, image: str, message: str) -> str:
    nodes = work / "nodes" / "nodes.yaml"
    text = nodes.read_text()
    for old in (GOOD, BAD, NEXT):
        text = text.replace(old, image)
    nodes.write_text(text)
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", message)
    return _git(work, "rev-parse", "HEAD")


def _dsfleet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _images(db: str) -> set[str]:
    with Store.open(db, readonly=True) as store:
        configs = store.latest_node_configs()
    return {i["container"]["image"] for c in configs.values() for i in c.payload["instances"]}


def _newest(db: str) -> tuple[int, str]:
    with Store.open(db, readonly=True) as store:
        rev = store.revisions(limit=1)[0]
    return rev.id, rev.source


@pytest.fixture
def work(tmp_path: Path) -> Path:
    work = copy_fleet(tmp_path / "manifests")
    _git(work, "init", "-q")
    _commit(work, GOOD, "good image")
    return work


@pytest.fixture
def coordinator(work: Path, db: str, env: dict[str, str], tmp_path: Path) -> Iterator[CoordinatorProc]:
    proc = CoordinatorProc(work, db, None, "rb.", tmp_path / "coordinator.log", env=env).start()
    try:
        proc.wait_log(r"revision applied revision=1 ", 60)
        yield proc
    finally:
        proc.stop()


def _api_says_pinned(work: Path, db: str, tmp_path: Path) -> None:
    """The HTTP API's status document, ``/metrics`` and the revisions' diff while the fleet is pinned."""
    server = ServerProc(["serve", "--manifests", str(work), "--db", db], tmp_path / "serve.log").start()
    try:
        with server.client() as api:
            pin = api.get("/api/v1/status").json()["pin"]
            assert pin["revision"] == 1 and pin["summary"].startswith("PINNED: the fleet rolled back")
            assert 'dsfleet_sync_pinned{revision="1"} 1.0' in api.get("/metrics").text
            diff = api.get("/api/v1/revisions/1/diff/2").json()
            assert diff["changed"] is True and (diff["fromRevision"], diff["toRevision"]) == (1, 2)
            assert api.get("/api/v1/revisions/1/diff/99").status_code == 404
    finally:
        assert server.stop() == 0


def test_rollback_holds_auto_sync_until_a_new_commit(
    work: Path, db: str, env: dict[str, str], coordinator: CoordinatorProc, tmp_path: Path
) -> None:
    _commit(work, BAD, "bad image")
    coordinator.wait_log(r"revision applied revision=2 ", 30)
    assert _images(db) == {BAD}

    done = _dsfleet(env, "rollback", "--db", db)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "revision 3 stored: the fleet back to revision 1" in done.stdout
    assert "PINNED: automatic sync is held; lifted by a new commit" in done.stdout
    assert _images(db) == {GOOD}
    assert _newest(db) == (3, "rollback")

    # the bad commit is still HEAD: the first held read, then two periodic re-reads, and nothing applied
    coordinator.wait_log(r"auto sync held by a rollback pin revision=1 ", 20)
    coordinator.wait_log(r"auto sync still held by a rollback pin revision=1", 20, count=2)
    assert _newest(db) == (3, "rollback")
    assert _images(db) == {GOOD}
    status = _dsfleet(env, "status", "--db", db, "-o", "json")
    pin = json.loads(status.stdout)["pin"]
    assert pin["revision"] == 1 and pin["fromRevision"] == 2 and pin["rollbackRevision"] == 3
    assert pin["commit"] == _git(work, "rev-parse", "HEAD")
    text = _dsfleet(env, "status", "--db", db).stdout
    assert text.startswith("PINNED: the fleet rolled back to revision 1 (from revision 2)"), text
    _api_says_pinned(work, db, tmp_path)

    # a new commit moves past the pin: it is lifted and the new commit applied
    _commit(work, NEXT, "next image")
    coordinator.wait_log(r"rollback pin lifted revision=1", 20)
    coordinator.wait_log(r"revision applied revision=4 ", 20)
    assert _images(db) == {NEXT}
    assert json.loads(_dsfleet(env, "status", "--db", db, "-o", "json").stdout)["pin"] is None
    with Store.open(db, readonly=True) as store:
        assert store.sync_state("rollback_pin") is None

    history = _dsfleet(env, "history", "--db", db)
    assert "rollback of the fleet to revision 1 (from revision 2)" in history.stdout
    assert "pinned" in history.stdout and "unpinned" in history.stdout
    assert "moved past the pin of revision 1" in history.stdout


def test_unpin_by_hand_resumes_auto_sync(
    work: Path, db: str, env: dict[str, str], coordinator: CoordinatorProc
) -> None:
    _commit(work, BAD, "bad image")
    coordinator.wait_log(r"revision applied revision=2 ", 30)
    done = _dsfleet(env, "rollback", "1", "--db", db, "--node", "gpu-node-1")
    assert done.returncode == 0, done.stdout + done.stderr
    with Store.open(db, readonly=True) as store:
        configs = store.latest_node_configs()
    images = {n: {i["container"]["image"] for i in c.payload["instances"]} for n, c in configs.items()}
    assert images["gpu-node-1"] == {GOOD} and images["gpu-node-2"] == {BAD}
    coordinator.wait_log(r"auto sync still held by a rollback pin revision=1", 20, count=2)
    assert _newest(db) == (3, "rollback")

    unpinned = _dsfleet(env, "unpin", "--db", db)
    assert unpinned.returncode == 0, unpinned.stdout + unpinned.stderr
    # the source still holds the bad commit: resuming applies it again (what unpin means)
    coordinator.wait_log(r"revision applied revision=4 ", 20)
    assert _images(db) == {BAD}
    again = _dsfleet(env, "unpin", "--db", db)
    assert again.returncode == 1 and "nothing is pinned" in again.stderr


def test_history_diff_prints_the_changed_fields(
    work: Path, db: str, env: dict[str, str], coordinator: CoordinatorProc
) -> None:
    _commit(work, BAD, "bad image")
    coordinator.wait_log(r"revision applied revision=2 ", 30)
    diff = _dsfleet(env, "history", "diff", "1", "2", "--db", db)
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert "revision 1 → revision 2" in diff.stdout
    assert GOOD in diff.stdout and BAD in diff.stdout
    same = _dsfleet(env, "history", "diff", "2", "2", "--db", db)
    assert same.returncode == 0, same.stdout + same.stderr
    as_json = json.loads(_dsfleet(env, "history", "diff", "1", "2", "--db", db, "-o", "json").stdout)
    assert as_json["fromRevision"] == 1 and as_json["toRevision"] == 2 and as_json["changed"] is True
    bad = _dsfleet(env, "history", "diff", "1", "--db", db)
    assert bad.returncode == 2 and "usage: dsfleet history diff A B" in bad.stderr
