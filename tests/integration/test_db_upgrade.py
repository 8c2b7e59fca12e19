"""`dsfleet db upgrade|current` and a store written by the release before migrations (tests/data/).

tests/data/store-v0.1.0.db was written by that release's `dsfleet apply` on the example fleet (four revisions:
applied, unchanged, rejected, an instance removed); store-v0.1.0.history.json is its `history -o json` then.
It is the reference for what the baseline revision must recognise and, from an empty database, build."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from dsfleet.reconciler.store import Store, head_revision
from dsfleet.reconciler.store.migrations import ALEMBIC_MARKER
from dsfleet.reconciler.store.schema import METADATA

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def dsfleet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=120,
        check=False,
    )


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    copy = tmp_path / "old.db"
    shutil.copyfile(DATA / "store-v0.1.0.db", copy)
    return copy


def _history(stdout: str) -> list[dict[str, object]]:
    """``history -o json``'s revisions in the shape the previous release printed (no schema key, no hash)."""
    return [{k: v for k, v in r.items() if k != "manifests_hash"} for r in json.loads(stdout)["revisions"]]


def test_a_store_of_the_previous_release_upgrades_in_place_and_reads_back_the_same(
    old_store: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{old_store}"
    proc = dsfleet("db", "current", "--db", url, cwd=tmp_path)
    assert proc.returncode == 0 and "run `dsfleet db upgrade`" in proc.stdout
    proc = dsfleet("db", "upgrade", "--db", url, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"upgraded from schema version 2 to {head_revision()} (head)" in proc.stdout
    proc = dsfleet("history", "--db", url, "-o", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _history(proc.stdout) == json.loads((DATA / "store-v0.1.0.history.json").read_text())
    with Store.open(url, readonly=True) as store:
        configs = store.latest_node_configs()
        assert {n: c.generation for n, c in configs.items()} == {"gpu-node-1": 1, "gpu-node-2": 2}
        assert store.node_generation("gpu-node-2") == 2
    with sqlite3.connect(old_store) as raw:  # the release before migrations now refuses it as too new
        assert raw.execute("SELECT max(version) FROM schema_version").fetchone() == (ALEMBIC_MARKER,)
    proc = dsfleet("db", "upgrade", "--db", url, cwd=tmp_path)
    assert proc.returncode == 0 and "already at" in proc.stdout
    proc = dsfleet("db", "current", "--db", url, cwd=tmp_path)
    assert proc.stdout.strip().endswith(f"{head_revision()} (head)")


def _rows(path: Path) -> dict[str, tuple[list[str], list[tuple[object, ...]]]]:
    """Every table's column names and rows, as SQLite stores them."""
    with sqlite3.connect(path) as raw:
        out: dict[str, tuple[list[str], list[tuple[object, ...]]]] = {}
        for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            cursor = raw.execute(f'SELECT * FROM "{name}" ORDER BY 1')
            out[name] = ([c[0] for c in cursor.description], cursor.fetchall())
    return out


def _sqlite_master(path: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(path) as raw:
        return raw.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE tbl_name != 'alembic_version' ORDER BY name"
        ).fetchall()


def test_upgrading_a_store_of_the_previous_release_keeps_every_row(old_store: Path) -> None:
    before = _rows(old_store)
    assert len(before["revisions"][1]) == 4 and len(before["cameras"][1]) == 10  # not an empty reference
    with Store.open(f"sqlite:///{old_store}") as store:
        assert store.schema_state().status == "current"
    after = _rows(old_store)
    for name, (columns, rows) in before.items():
        new_columns, new_rows = after[name]
        assert new_columns[: len(columns)] == columns, name  # new columns only at the end
        kept = [row[: len(columns)] for row in new_rows]
        if name == "schema_version":
            assert kept == [*rows, (ALEMBIC_MARKER, kept[-1][1])]
        else:
            assert kept == rows, name
            # new columns are empty, or false where the revision declares that default (outbox.held)
            assert all(set(row[len(columns) :]) <= {None, 0} for row in new_rows), name
    assert after["alembic_version"][1] == [(head_revision(),)]
    assert set(after) - set(before) == {
        "alembic_version",
        "node_status",
        "sync_state",
        "fleet",
        "coordinator",
        "node_keys",
        "enrollment_tokens",
        "webhook_deliveries",
    }
    [(fleet_id, _created)] = after["fleet"][1]  # the upgrade gives the store its fleet id
    assert str(uuid.UUID(fleet_id)) == fleet_id
    engine = sa.create_engine(f"sqlite:///{old_store}")
    try:
        with engine.connect() as conn:  # and the tables are exactly the current ones
            assert compare_metadata(MigrationContext.configure(conn), METADATA) == []
    finally:
        engine.dispose()


def test_the_baseline_builds_from_empty_what_the_previous_release_wrote(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    with Store.open(f"sqlite:///{fresh}", migrate=False) as store:
        assert store.migrate(target="0001").revision == "0001"
    assert _sqlite_master(fresh) == _sqlite_master(DATA / "store-v0.1.0.db")
    old, new = _rows(DATA / "store-v0.1.0.db")["schema_version"], _rows(fresh)["schema_version"]
    assert new[1] == [*old[1], (ALEMBIC_MARKER, new[1][-1][1])]


def test_read_only_commands_never_migrate_an_older_store(old_store: Path, tmp_path: Path) -> None:
    before = old_store.read_bytes()
    proc = dsfleet("history", "--db", f"sqlite:///{old_store}", "-o", "json", cwd=tmp_path)
    assert proc.returncode == 0
    assert _history(proc.stdout) == json.loads((DATA / "store-v0.1.0.history.json").read_text())
    assert old_store.read_bytes() == before


def test_writing_commands_refuse_a_newer_store_and_say_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    assert dsfleet("db", "upgrade", "--db", url, cwd=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "new.db") as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999_future'")
    for command in (("apply", str(ROOT / "manifests")), ("db", "upgrade")):
        proc = dsfleet(*command, "--db", url, cwd=tmp_path)
        assert proc.returncode == 2
        assert "the store's schema is newer than this dsfleet: 9999_future" in proc.stderr
        assert "upgrade dsfleet" in proc.stderr and "Traceback" not in proc.stderr
    proc = dsfleet("db", "current", "--db", url, cwd=tmp_path)
    assert proc.returncode == 0 and "newer than this dsfleet" in proc.stdout


def test_db_current_of_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    proc = dsfleet("db", "current", "--db", f"sqlite:///{tmp_path}/none/state.db", cwd=tmp_path)
    assert proc.returncode == 0 and "no store yet" in proc.stdout
    assert not (tmp_path / "none").exists()


def test_the_migrations_ship_inside_the_package() -> None:
    from dsfleet.reconciler.store import migrations

    location = Path(migrations.__file__).parent
    assert (location / "env.py").is_file() and (location / "script.py.mako").is_file()
    assert any(p.name.endswith("_baseline.py") for p in (location / "versions").iterdir())
