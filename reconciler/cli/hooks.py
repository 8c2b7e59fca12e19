"""``dsfleet hooks install --bare REPO --worktree DIR``: a ``post-receive`` hook so that ``git push`` to the
coordinator host checks the pushed commit out in DIR (a clone of REPO, so revisions record the commit, author and
subject) and runs ``dsfleet apply DIR`` (or ``validate``); its output — the validation result, FILE:LINE:COL for
every finding, the revision applied — goes back to the pusher as ``remote:`` lines. The push itself is never
refused (a rejected revision leaves the fleet on the last good one)."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from dsfleet.schemas.errors import ExitCode

__all__ = ["add_parser", "cmd_hooks_install", "post_receive_script"]

MARKER = "# installed by dsfleet hooks install"


def add_parser(sub: Any) -> None:
    h = sub.add_parser("hooks", help="git hooks for the push-to-deploy workflow", description=__doc__)
    hsub = h.add_subparsers(dest="hooks_command", metavar="ACTION")
    hsub.required = True
    i = hsub.add_parser(
        "install",
        help="install a post-receive hook in a bare repository: checkout + dsfleet apply on every push",
        description="Install REPO/hooks/post-receive: on a push to BRANCH, check the new commit out in DIR (cloned "
        "from REPO when missing) and run `dsfleet apply DIR` (with --validate-only: `dsfleet validate DIR`, for "
        "a coordinator that watches DIR itself). The pusher sees the result.",
        epilog="exit: 0 installed, 2 not a bare repository, DIR not a clone of it, or an existing foreign hook",
    )
    i.add_argument("--bare", required=True, metavar="REPO", help="the bare repository pushed to")
    i.add_argument(
        "--worktree", required=True, metavar="DIR", help="the manifests directory (a clone of REPO)"
    )
    i.add_argument("--branch", metavar="NAME", help="the deployed branch (default: REPO's HEAD branch)")
    i.add_argument("--db", metavar="URL", help="store URL passed to dsfleet apply (default: its settings)")
    i.add_argument("--validate-only", action="store_true", help="run dsfleet validate instead of apply")
    i.add_argument("--force", action="store_true", help="replace a post-receive hook dsfleet did not install")
    i.set_defaults(handler=cmd_hooks_install)


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def post_receive_script(
    worktree: Path,
    branch: str,
    command: list[str],
    *,
    validate_only: bool = False,
    db: str | None = None,
    cwd: Path | None = None,
) -> str:
    """The hook: for the deployed branch's new commit, fetch + detached checkout in the worktree, then apply."""
    action = ["validate", str(worktree)] if validate_only else ["apply", str(worktree)]
    if db and not validate_only:
        action += ["--db", db]
    run = " ".join(shlex.quote(c) for c in [*command, *action])
    wt = shlex.quote(str(worktree))
    return f"""#!/bin/sh
{MARKER}
# push to {branch} → check the commit out in {worktree} → dsfleet {action[0]}
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_QUARANTINE_PATH
cd {shlex.quote(str(cwd or worktree))} || exit 1  # where settings.toml and the default store are
zero=0000000000000000000000000000000000000000
status=0
while read -r old new ref; do
    [ "$ref" = {shlex.quote("refs/heads/" + branch)} ] || continue
    [ "$new" = "$zero" ] && continue
    echo "dsfleet: deploying $new to {worktree}"
    if ! git -C {wt} fetch --quiet origin || ! git -C {wt} checkout --quiet --force --detach "$new"; then
        echo "dsfleet: error: could not check $new out in {worktree}"
        status=1
        continue
    fi
    {run} 2>&1
    code=$?
    case $code in
        0) echo "dsfleet: {action[0]} ok" ;;
        1) echo "dsfleet: manifests rejected; the fleet keeps running the last accepted revision"; status=1 ;;
        *) echo "dsfleet: {action[0]} failed (exit $code)"; status=1 ;;
    esac
done
exit $status
"""


def cmd_hooks_install(args: argparse.Namespace) -> int:
    bare = Path(args.bare).resolve()
    worktree = Path(args.worktree).resolve()
    is_bare = _git("rev-parse", "--is-bare-repository", cwd=bare) if bare.is_dir() else None
    if is_bare is None or is_bare.stdout.strip() != "true":
        print(f"dsfleet hooks install: error: {bare}: not a bare git repository", file=sys.stderr)
        return ExitCode.ERROR
    branch = args.branch
    if not branch:
        head = _git("symbolic-ref", "--short", "HEAD", cwd=bare)
        branch = head.stdout.strip() or "main"
    if not worktree.exists():
        cloned = _git("clone", "--quiet", str(bare), str(worktree))
        if cloned.returncode != 0:
            print(f"dsfleet hooks install: error: git clone failed: {cloned.stderr.strip()}", file=sys.stderr)
            return ExitCode.ERROR
    else:
        origin = _git("remote", "get-url", "origin", cwd=worktree)
        if origin.returncode != 0 or Path(origin.stdout.strip()).resolve() != bare:
            print(
                f"dsfleet hooks install: error: {worktree}: not a clone of {bare} (its origin must be the bare "
                "repository)",
                file=sys.stderr,
            )
            return ExitCode.ERROR
    hook = bare / "hooks" / "post-receive"
    if hook.exists() and MARKER not in hook.read_text(errors="replace") and not args.force:
        print(
            f"dsfleet hooks install: error: {hook} exists and was not installed by dsfleet (use --force)",
            file=sys.stderr,
        )
        return ExitCode.ERROR
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(
        post_receive_script(
            worktree,
            branch,
            [sys.executable, "-m", "dsfleet.reconciler.cli"],
            validate_only=args.validate_only,
            db=args.db,
            cwd=Path.cwd(),
        )
    )
    hook.chmod(0o755)
    print(
        f"installed {hook}: pushes to {branch} are checked out in {worktree} and "
        f"{'validated' if args.validate_only else 'applied'}"
    )
    return ExitCode.OK
