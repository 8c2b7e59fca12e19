"""Commits of the API's edits to the manifests' git work tree (adapter: runs ``git``).

Every commit made here carries the trailer :data:`EDIT_TRAILER` in its message, which is how
:func:`commits_since` tells the API's own commits from others (``discard`` drops only those)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from dsfleet.schemas.errors import PermanentError, TemporaryError

__all__ = [
    "EDIT_TRAILER",
    "Commit",
    "GitWriteError",
    "commit_files",
    "commits_since",
    "current_branch",
    "head_commit",
    "is_dirty",
    "push",
    "reset_to",
    "work_tree",
]

EDIT_TRAILER: Final = "Dsfleet-Edit: api"
LOCK_WAIT = 3.0
"""How long a git command waits for another git process's index lock."""
TIMEOUT: Final = 60.0


class GitWriteError(PermanentError):
    """git refused (the message is git's last line, which names no credential: remotes are configured names)."""


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    subject: str
    by_api: bool


def _git(directory: Path, *args: str, check: bool = True, timeout: float = TIMEOUT) -> str:
    """Run git; a command that meets another git process's index lock (``index.lock``: the watcher's ``git
    status``, a webhook's pull) is tried again for up to :data:`LOCK_WAIT` seconds."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            done = subprocess.run(
                ["git", "-C", str(directory), *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
            )
        except subprocess.TimeoutExpired as exc:
            raise TemporaryError(f"git {args[0]} took longer than {timeout:.0f}s") from exc
        except OSError as exc:
            raise GitWriteError(f"git cannot run: {exc.strerror or exc}") from exc
        if done.returncode == 0 or "index.lock" not in done.stderr or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if check and done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise GitWriteError(f"git {args[0]} failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    return done.stdout


def work_tree(directory: Path) -> Path | None:
    """The top of the git work tree ``directory`` is in, None when it is in none (or git is absent)."""
    try:
        top = _git(directory, "rev-parse", "--show-toplevel", check=True).strip()
    except (GitWriteError, TemporaryError):
        return None
    return Path(top) if top else None


def head_commit(directory: Path) -> str | None:
    try:
        return _git(directory, "rev-parse", "--verify", "--quiet", "HEAD").strip() or None
    except GitWriteError:
        return None


def is_dirty(directory: Path) -> bool:
    """Uncommitted changes under ``directory`` (untracked files included)."""
    return bool(_git(directory, "--no-optional-locks", "status", "--porcelain", "--", ".").strip())


def commit_files(directory: Path, paths: Sequence[Path], message: str, author: str, email: str) -> str:
    """Stage ``paths`` (written or removed) and commit only them, as ``author``; the new commit's sha."""
    names = [str(p) for p in paths]
    _git(directory, "add", "--all", "--", *names)
    identity = ("-c", f"user.name={author}", "-c", f"user.email={email}")
    _git(
        directory,
        *identity,
        "commit",
        "--quiet",
        "--no-verify",
        "--author",
        f"{author} <{email}>",
        "-m",
        message,
        "-m",
        EDIT_TRAILER,
        "--",
        *names,
    )
    return _git(directory, "rev-parse", "HEAD").strip()


def commits_since(directory: Path, base: str | None) -> list[Commit] | None:
    """The commits after ``base`` up to HEAD, newest first (every commit when ``base`` is None); None when
    ``base`` is not an ancestor of HEAD (history rewritten since it was applied)."""
    if base is not None:
        done = subprocess.run(
            ["git", "-C", str(directory), "merge-base", "--is-ancestor", base, "HEAD"],
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            return None
    span = f"{base}..HEAD" if base else "HEAD"
    out = _git(
        directory, "log", "--format=%H%x1f%an%x1f%s%x1f%(trailers:key=Dsfleet-Edit,valueonly)%x1e", span
    )
    commits: list[Commit] = []
    for record in out.split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) < 4:
            continue
        sha, author, subject, trailer = fields[:4]
        commits.append(Commit(sha, author, subject, trailer.strip() == "api"))
    return commits


def reset_to(directory: Path, commit: str) -> None:
    """``git reset --hard commit`` (the caller has checked that only the API's commits are dropped)."""
    _git(directory, "reset", "--quiet", "--hard", commit)


def current_branch(directory: Path) -> str:
    """The branch HEAD is on ("main" when detached)."""
    return _git(directory, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip() or "main"


def push(directory: Path, remote: str, branch: str) -> None:
    """``git push remote HEAD:branch``."""
    _git(directory, "push", "--quiet", remote, f"HEAD:refs/heads/{branch}", timeout=120.0)
