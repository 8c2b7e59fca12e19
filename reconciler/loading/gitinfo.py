"""The git commit a manifests directory is at (adapter: runs ``git``)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitInfo:
    commit: str
    author: str
    message: str
    dirty: bool


def git_info(path: str | Path) -> GitInfo | None:
    """Commit, author and subject of HEAD when ``path`` is inside a git work tree, else None."""
    where = Path(path)
    directory = where if where.is_dir() else where.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), "log", "-1", "--format=%H%n%an <%ae>%n%s"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if out.returncode != 0:
            return None
        commit, author, message = ([*out.stdout.splitlines(), "", "", ""])[:3]
        status = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(directory), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return GitInfo(commit=commit, author=author, message=message, dirty=bool(status.stdout.strip()))
