"""``dsfleet keys init|show|rotate`` as an operator runs them: the key file is made 0600 and never overwritten, the
private key is never printed, and a rotation (prepare → commit → back) changes the key ``dsfleet apply`` signs the
outbox rows with, checked by the agents' own verification (:class:`~dsfleet.plumbing.signing.Keyring`) against a
real SQLite store."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from dsfleet.plumbing.signing import Keyring, PublicKey, generate_key, save_signing_key
from dsfleet.reconciler.store import Store
from dsfleet.schemas.signatures import HEADER_KEY

ROOT = Path(__file__).resolve().parents[2]


def dsfleet(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def keys_json(*args: str) -> dict[str, dict[str, Any]]:
    done = dsfleet("keys", *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    return {k["role"]: k for k in json.loads(done.stdout)["keys"]}


def verifies(db: str, public: str) -> bool:
    """Whether every outbox row of the newest apply checks out against an agent that trusts ``public`` only."""
    ring = Keyring.of([PublicKey.from_text(public)])
    with Store.open(db) as store:
        rows = store.outbox_rows(1000)
    newest = [r for r in rows if r.created_at == max(r.created_at for r in rows)]
    assert newest and all(r.headers.get(HEADER_KEY) for r in newest)
    return all(ring.check_record(r.key, r.value, r.headers).ok for r in newest)


def test_init_show_and_a_full_rotation(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'state.db'}"
    keys = tmp_path / "keys"
    missing = dsfleet("keys", "show", "--db", db)
    assert missing.returncode == 2 and "dsfleet keys init" in missing.stderr
    assert not keys.exists()  # show never makes a key

    made = dsfleet("keys", "init", "--db", db)
    assert made.returncode == 0, made.stderr
    path = keys / "coordinator.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in made.stdout and "--trust-key ed25519:" in made.stdout
    assert "PRIVATE" not in made.stdout
    first = keys_json("show", "--db", db)["signing"]
    assert first["id"] in made.stdout and first["publicKey"] in made.stdout

    pem = path.read_bytes()
    again = dsfleet("keys", "init", "--db", db)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    assert path.read_bytes() == pem

    site = tmp_path / "fleet"
    shutil.copytree(ROOT / "manifests", site)
    assert dsfleet("apply", str(site), "--db", db).returncode == 0
    assert verifies(db, first["publicKey"])

    assert dsfleet("keys", "rotate", "--commit", "--db", db).returncode == 2  # nothing prepared
    prepared = keys_json("rotate", "--prepare", "--db", db)["next"]
    assert prepared["id"] != first["id"]
    assert stat.S_IMODE((keys / "coordinator.next.key").stat().st_mode) == 0o600
    twice = dsfleet("keys", "rotate", "--prepare", "--db", db)
    assert twice.returncode == 2 and prepared["id"] in twice.stderr
    shown = keys_json("show", "--db", db)
    assert shown["signing"]["id"] == first["id"] and shown["next"]["id"] == prepared["id"]

    committed = keys_json("rotate", "--commit", "--db", db)
    assert committed["signing"]["id"] == prepared["id"] and committed["previous"]["id"] == first["id"]
    assert not (keys / "coordinator.next.key").exists()
    gate = site / "cameras" / "gate.yaml"
    gate.write_text(gate.read_text().replace("/gate-1/main", "/gate-1/sub", 1))  # gpu-node-1's config changes
    assert dsfleet("apply", str(site), "--db", db).returncode == 0
    assert verifies(db, prepared["publicKey"]) and not verifies(db, first["publicKey"])

    back = keys_json("rotate", "--back", "--db", db)
    assert back["signing"]["id"] == first["id"] and back["next"]["id"] == prepared["id"]
    blocked = dsfleet("keys", "rotate", "--back", "--db", db)
    assert blocked.returncode == 2  # no previous key any more (and a prepared next key is never replaced)
    text = dsfleet("keys", "show", "--db", db)
    assert text.returncode == 0 and "PRIVATE" not in text.stdout and first["publicKey"] in text.stdout


def test_show_api_prints_the_api_process_key_and_a_loose_key_file_is_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'state.db'}"
    none = dsfleet("keys", "show", "--api", "--db", db)
    assert none.returncode == 2 and "dsfleet serve" in none.stderr
    api = generate_key()
    save_signing_key(tmp_path / "keys" / "api.key", api)
    shown = keys_json("show", "--api", "--db", db)
    assert list(shown) == ["api"] and shown["api"]["id"] == api.id

    assert dsfleet("keys", "init", "--db", db).returncode == 0
    os.chmod(tmp_path / "keys" / "coordinator.key", 0o644)
    loose = dsfleet("keys", "show", "--db", db)
    assert loose.returncode == 2 and "chmod 600" in loose.stderr
