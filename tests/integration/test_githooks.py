"""The git workflow: a push to a bare repository with the installed post-receive hook applies that commit (the
revision records its SHA; the pusher sees the validation result), and git push webhooks (GitHub, Gitea, GitLab
signature schemes) pull and apply, while a wrong or missing signature is 401."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dsfleet.reconciler.store import Store
from tests.support.apiserver import WEBHOOK_SECRET, ServerProc
from tests.support.brokers import Tansu
from tests.support.livefleet import ROOT, wait_for

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Alice Operator",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice Operator",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **GIT_ENV},
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout + done.stderr


def _repos(tmp_path: Path) -> tuple[Path, Path]:
    """A bare repository holding the example fleet, and a developer's clone of it."""
    bare = tmp_path / "fleet.git"
    git("init", "--quiet", "--bare", str(bare))
    work = tmp_path / "dev"
    git("clone", "--quiet", str(bare), str(work))
    for item in (ROOT / "manifests").iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, work / item.name)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "the example fleet", cwd=work)
    git("branch", "-M", "main", cwd=work)
    return bare, work


def _edit(work: Path, old: str, new: str, message: str) -> str:
    gate = work / "cameras" / "gate.yaml"
    gate.write_text(gate.read_text().replace(old, new))
    git("commit", "--quiet", "-am", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def test_push_to_the_bare_repository_applies_that_commit(tmp_path: Path) -> None:
    bare, work = _repos(tmp_path)
    deployed = tmp_path / "deployed"
    db = f"sqlite:///{tmp_path / 'state.db'}"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "dsfleet.reconciler.cli",
            "hooks",
            "install",
            "--bare",
            str(bare),
            "--worktree",
            str(deployed),
            "--branch",
            "main",
            "--db",
            db,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert installed.returncode == 0, installed.stderr
    assert (bare / "hooks" / "post-receive").stat().st_mode & 0o111

    pushed = git("push", "origin", "main", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work).strip()
    assert "remote: dsfleet: deploying " + sha in pushed
    assert "remote: revision 1 applied" in pushed and "remote: dsfleet: apply ok" in pushed
    with Store.open(db, readonly=True) as store:
        rev = store.revisions(limit=1)[0]
    assert (rev.id, rev.accepted, rev.git_commit) == (1, True, sha)
    assert rev.git_author and "Alice Operator" in rev.git_author and rev.git_message == "the example fleet"

    # a broken manifest: the push goes through, the pusher reads the error with its place, nothing changes
    (work / "nodes" / "broken.yaml").write_text(
        "apiVersion: dsfleet/v1\nkind: Node\nmetadata:\n  name: Bad_Name\n"
    )
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "a broken node", cwd=work)
    bad_sha = git("rev-parse", "HEAD", cwd=work).strip()
    pushed = git("push", "origin", "main", cwd=work)
    assert "remote: " in pushed and "broken.yaml:" in pushed and ": error:" in pushed
    assert "manifests rejected" in pushed
    with Store.open(db, readonly=True) as store:
        rev = store.revisions(limit=1)[0]
        assert store.last_accepted_revision().id == 1  # type: ignore[union-attr]
    assert (rev.accepted, rev.git_commit) == (False, bad_sha)

    # a second install over dsfleet's own hook is fine; a foreign hook is kept unless --force
    hook = bare / "hooks" / "post-receive"
    hook.write_text("#!/bin/sh\necho mine\n")
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "dsfleet.reconciler.cli",
            "hooks",
            "install",
            "--bare",
            str(bare),
            "--worktree",
            str(deployed),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert again.returncode == 2 and "--force" in again.stderr
    assert hook.read_text() == "#!/bin/sh\necho mine\n"


def _sign(body: bytes) -> str:
    return hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_signed_webhooks_pull_and_apply(kafka_broker: Tansu, topic_prefix: str, tmp_path: Path) -> None:
    bare, work = _repos(tmp_path)
    git("push", "--quiet", "origin", "main", cwd=work)
    manifests = tmp_path / "coordinator-manifests"
    git("clone", "--quiet", str(bare), str(manifests))
    first = git("rev-parse", "HEAD", cwd=manifests).strip()
    db = f"sqlite:///{tmp_path / 'state.db'}"
    server = ServerProc(
        [
            "coordinator",
            "--manifests",
            str(manifests),
            "--db",
            db,
            "--sync",
            "manual",
            "--bootstrap-servers",
            kafka_broker.bootstrap,
            "-X",
            "fetch.wait.max.ms=10",
            "--topic-prefix",
            topic_prefix,
            "--partitions",
            "3",
        ],
        tmp_path / "coordinator.log",
    ).start()
    try:
        with server.client() as api:
            body = json.dumps({"ref": "refs/heads/main", "after": first}).encode()
            hook = "/api/v1/webhooks/git"
            # wrong or missing signatures: 401, nothing pulled
            second = _edit(work, "gate-2/main", "gate-2/sub", "gate-2 on its sub stream")
            git("push", "--quiet", "origin", "main", cwd=work)
            for headers in (
                {},
                {"X-Hub-Signature-256": "sha256=" + "0" * 64},
                {"X-Hub-Signature-256": "sha256=" + _sign(body + b" ")},
                {"X-Gitea-Signature": _sign(b"other")},
                {"X-Gitlab-Token": "not-the-secret"},
            ):
                resp = api.post(hook, content=body, headers={"Content-Type": "application/json", **headers})
                assert resp.status_code == 401, (headers, resp.text)
                assert WEBHOOK_SECRET not in resp.text
            assert git("rev-parse", "HEAD", cwd=manifests).strip() == first

            # GitHub's HMAC: pulled and applied (manual sync: the webhook is what applies)
            resp = api.post(
                hook,
                content=body,
                headers={
                    "X-GitHub-Event": "push",
                    "X-Hub-Signature-256": "sha256=" + _sign(body),
                    "Content-Type": "application/json",
                },
            )
            assert resp.status_code == 202, resp.text
            assert git("rev-parse", "HEAD", cwd=manifests).strip() == second

            def revision_of(sha: str) -> dict[str, object] | None:
                return next((r for r in api.get("/api/v1/revisions").json() if r["commit"] == sha), None)

            rev = wait_for(lambda: revision_of(second), 20, "the revision of the pushed commit")
            assert rev["accepted"] is True and rev["source"] == "webhook"
            assert rev["subject"] == "gate-2 on its sub stream" and "Alice" in str(rev["author"])

            # a ping, and a push to another branch, pull nothing
            ping = api.post(
                hook,
                content=b"{}",
                headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + _sign(b"{}")},
            )
            assert ping.status_code == 202 and ping.json()["detail"] == "pong"
            other = json.dumps({"ref": "refs/heads/feature"}).encode()
            ignored = api.post(hook, content=other, headers={"X-Gitea-Signature": _sign(other)})
            assert ignored.status_code == 202 and ignored.json()["detail"].startswith("ignored")

            # Gitea's HMAC header and GitLab's token work too
            third = _edit(work, "gate-2/sub", "gate-2/main", "back to main")
            git("push", "--quiet", "origin", "main", cwd=work)
            body = json.dumps({"ref": "refs/heads/main", "after": third}).encode()  # each push its own body
            resp = api.post(hook, content=body, headers={"X-Gitea-Signature": _sign(body)})
            assert resp.status_code == 202, resp.text
            wait_for(lambda: revision_of(third), 20, "the Gitea-triggered revision")
            fourth = _edit(work, "gate-2/main", "gate-2/sub", "sub again")
            git("push", "--quiet", "origin", "main", cwd=work)
            body = json.dumps({"ref": "refs/heads/main", "after": fourth}).encode()
            resp = api.post(hook, content=body, headers={"X-Gitlab-Token": WEBHOOK_SECRET})
            assert resp.status_code == 202, resp.text
            wait_for(lambda: revision_of(fourth), 20, "the GitLab-triggered revision")
    finally:
        assert server.stop() == 0
    assert WEBHOOK_SECRET not in server.text()


def test_pre_commit_hook_definition_runs_dsfleet_validate() -> None:
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    [hook] = hooks
    assert hook["id"] == "dsfleet-validate" and hook["entry"] == "dsfleet validate"
    assert hook["language"] == "python" and hook["pass_filenames"] is False
    done = subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", *hook["entry"].split()[1:], *hook["args"]],
        cwd=ROOT / "manifests",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
