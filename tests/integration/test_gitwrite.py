"""The API's git writes against a real repository meet another git process's index lock (the watcher's ``git
status``, a webhook's pull) and wait for it rather than fail; a lock that stays is reported, not waited on forever."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from dsfleet.reconciler.loading import gitwrite

pytestmark = pytest.mark.integration


def _repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.yaml").write_text("a: 1\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "a.yaml"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-qm",
            "a",
        ],
        check=True,
    )
    return tmp_path


def test_a_commit_waits_for_another_gits_index_lock(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "a.yaml").write_text("a: 2\n")
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    released = threading.Timer(0.4, lock.unlink)
    released.start()
    try:
        sha = gitwrite.commit_files(repo, [repo / "a.yaml"], "Update a", "alice", "alice@example.invalid")
    finally:
        released.join()
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%H %an"], check=True, capture_output=True, text=True
    )
    assert log.stdout.split() == [sha, "alice"]


def test_a_lock_that_stays_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _repo(tmp_path)
    (repo / "a.yaml").write_text("a: 3\n")
    (repo / ".git" / "index.lock").write_text("")
    monkeypatch.setattr(gitwrite, "LOCK_WAIT", 0.2)
    with pytest.raises(gitwrite.GitWriteError, match="git add failed"):
        gitwrite.commit_files(repo, [repo / "a.yaml"], "Update a", "alice", "alice@example.invalid")
