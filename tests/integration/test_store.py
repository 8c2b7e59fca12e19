"""The store against real databases: a SQLite file and a throw-away PostgreSQL server (same tests)."""

from __future__ import annotations

import ast
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from dsfleet.reconciler.store import (
    CameraRow,
    InstanceRow,
    Inventory,
    NewRevision,
    NodeChange,
    NodeRow,
    ObservedRow,
    PermanentStoreError,
    Store,
    StoreError,
    TemporaryStoreError,
    default_url,
    head_revision,
)
from dsfleet.reconciler.store import database as store_module
from dsfleet.reconciler.store import migrations as migrations_module
from dsfleet.reconciler.store import revisions as revisions_module
from dsfleet.reconciler.store import schema as schema_module
from dsfleet.reconciler.store.migrations import ALEMBIC_MARKER, HEAD, PRE_ALEMBIC_VERSION, scripts_head
from dsfleet.schemas.errors import DsfleetError, PermanentError, TemporaryError
from dsfleet.schemas.hashing import canonical_hash, canonical_json

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
CANARY = "canary-Pa55word!%40"
TABLES = {
    "schema_version",
    "revisions",
    "nodes",
    "cameras",
    "instances",
    "node_configs",
    "node_generations",
    "outbox",
    "observed",
    "events",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/state.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store.open(url) as s:
        yield s


def rev(n: int = 0, *, source: str = "cli", **kw: Any) -> NewRevision:
    return NewRevision(
        source=source, created_at=T0 + timedelta(minutes=n), manifests_hash=canonical_hash(n), **kw
    )


def payload(node: str, version: int) -> dict[str, Any]:
    return {
        "node": node,
        "instances": {
            f"{node}-a": {
                "files": {
                    "source_list.json": f'{{"address": "rtsp://${{secret:cam-{version}}}@10.0.0.{version}/"}}'
                }
            }
        },
        "version": version,
    }


def change(node: str, version: int) -> NodeChange:
    body = payload(node, version)
    return NodeChange(node=node, config_hash=canonical_hash(body), payload=body)


def delete(node: str) -> NodeChange:
    return NodeChange(node=node, config_hash=None, payload=None)


def encode(
    node: str, generation: int, body: dict[str, Any] | None
) -> tuple[str, str, bytes | None, dict[str, str]]:
    value = None if body is None else canonical_json({"generation": generation, "config": body}).encode()
    return "AgentConfig", node, value, {"generation": str(generation), "node": node}


def inventory(*nodes: str, password_in_url: str | None = None) -> Inventory:
    userinfo = f"admin:{password_in_url}@" if password_in_url else ""
    return Inventory(
        nodes=[
            NodeRow(name=n, hostname=f"{n}.lan", labels={"zone": "a"}, capacity=8, gpus=(0, 1)) for n in nodes
        ],
        instances=[
            InstanceRow(name=f"{n}-a", node=n, image="ds:7.0", app_type="NORMAL", camera_count=1)
            for n in nodes
        ]
        + [InstanceRow(name="spare", node=None, camera_count=0)],
        cameras=[
            CameraRow(
                name=f"cam-{n}",
                camera_id=str(i),
                url=f"rtsp://{userinfo}10.0.0.{i}/main",
                secret_ref=f"cam-{n}",
                encoding="h265",
                type="rtsp",
                width=1920,
                height=1080,
                instance=f"{n}-a",
            )
            for i, n in enumerate(nodes, start=1)
        ]
        + [CameraRow(name="loose", camera_id="99", url="file:///media/loose.mp4", type="file")],
    )


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as stored."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            out: dict[str, list[tuple[Any, ...]]] = {}
            for name in sorted(sa.inspect(conn).get_table_names()):
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                out[name] = [tuple(r) for r in conn.execute(sa.select(table))]
            return out
    finally:
        engine.dispose()


def dump_text(url: str) -> str:
    parts = []
    for name, rows in dump(url).items():
        for row in rows:
            for value in row:
                parts.append(
                    bytes(value).decode("utf-8", "replace")
                    if isinstance(value, bytes | memoryview)
                    else str(value)
                )
        parts.append(name)
    return "\n".join(parts)


def without(tables: dict[str, list[tuple[Any, ...]]], *names: str) -> dict[str, list[tuple[Any, ...]]]:
    return {k: sorted(v, key=repr) for k, v in tables.items() if k not in names}


# ------------------------------------------------------------------------------------------------ migrations


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def pre_alembic(url: str, version: int) -> None:
    """A store as the release before Alembic left it at its schema version ``version``: the baseline revision's
    tables without Alembic's marks (``test_db_upgrade`` checks the baseline's tables against a store that release
    really wrote)."""
    with Store.open(url, migrate=False) as s:
        s.migrate(target="0001")
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("DELETE FROM schema_version WHERE version > :v"), {"v": version})
        if version < 2:  # version 2 added the generation counter and the outbox's pending index
            conn.execute(sa.text("DROP INDEX ix_outbox_pending"))
            conn.execute(sa.text("DROP TABLE node_generations"))
    engine.dispose()


def schema_differences(url: str, metadata: sa.MetaData = schema_module.METADATA) -> list[Any]:
    """Alembic's differences between the database and ``metadata`` (types and server defaults included)."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def autoincrementing_tables(url: str) -> set[str]:
    """The tables whose integer key the database generates (SQLite ``AUTOINCREMENT``, PostgreSQL ``serial``):
    what :func:`compare_metadata` does not look at."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                rows = conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
                return {name for name, sql in rows if "AUTOINCREMENT" in (sql or "")}
            query = sa.text(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND (column_default LIKE 'nextval(%' OR is_identity = 'YES')"
            )
            return set(conn.execute(query).scalars())
    finally:
        engine.dispose()


def test_migrations_from_empty_build_exactly_the_current_tables(url: str) -> None:
    with Store.open(url):
        pass
    assert schema_differences(url) == []
    assert (
        autoincrementing_tables(url)
        == {t.name for t in schema_module.METADATA.sorted_tables if t.autoincrement_column is not None}
        == {"revisions", "node_configs", "outbox", "events", "enrollment_tokens"}
    )
    changed = sa.MetaData()  # the comparison sees a column and an index that the migrations do not make
    for table in schema_module.METADATA.sorted_tables:
        table.to_metadata(changed)
    changed.tables["nodes"].append_column(sa.Column("zone", sa.String(63)))
    changed.tables["outbox"].indexes.clear()
    found = {(d[0], d[-1].name) for d in schema_differences(url, changed)}
    assert found == {("add_column", "zone"), ("remove_index", "ix_outbox_pending")}


def test_the_revisions_import_nothing_from_the_store_but_the_migrations_package() -> None:
    """A revision spells out its own tables: importing ``schema.py`` (or another store module) would let a later
    change there change what an old revision does."""
    versions = Path(migrations_module.__file__).parent / "versions"
    scripts = sorted(p for p in versions.glob("r*.py"))
    assert [p.name[:5] for p in scripts] == [f"r{n:04d}" for n in range(1, int(HEAD) + 1)]
    for script in scripts:
        imported: set[str | None] = set()
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        stdlib = {m for m in imported if m and m.partition(".")[0] in sys.stdlib_module_names}
        assert imported - stdlib <= {"sqlalchemy", "alembic", "dsfleet.reconciler.store.migrations"}, script


def test_migrates_an_empty_database_and_reopening_is_idempotent(url: str) -> None:
    with Store.open(url) as s:
        state = s.schema_state()
        assert (state.status, state.revision) == ("current", head_revision())
    first = dump(url)
    assert set(first) >= TABLES | {"alembic_version"}
    assert sorted(r[0] for r in first["schema_version"]) == [
        *range(1, PRE_ALEMBIC_VERSION + 1),
        ALEMBIC_MARKER,
    ]
    assert first["alembic_version"] == [(head_revision(),)]
    with Store.open(url) as s:
        assert s.migrate().status == "current"
    assert dump(url) == first


def test_the_head_constant_is_the_scripts_head() -> None:
    assert scripts_head() == HEAD == head_revision()


def test_reading_a_current_store_does_not_load_alembic(tmp_path: Path) -> None:
    """Opening an up-to-date store (what every read-only command does) needs neither Alembic nor the migration
    scripts: loading them was a fifth of a cold `dsfleet diff`. Migrating still loads them."""
    url = f"sqlite:///{tmp_path}/state.db"
    with Store.open(url):
        pass
    code = (
        "import sys\n"
        "from dsfleet.reconciler.store import Store\n"
        f"with Store.open({url!r}, readonly=True) as s:\n"
        "    assert s.schema_state().status == 'current'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_opening_an_older_database_upgrades_it(url: str) -> None:
    pre_alembic(url, 1)
    with Store.open(url, migrate=False) as s:
        assert (s.schema_state().status, s.schema_state().legacy_version) == ("pre-alembic", 1)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        assert "node_generations" not in sa.inspect(conn).get_table_names()
        conn.execute(
            sa.text(
                "INSERT INTO revisions (created_at, source, manifests_hash, accepted, errors, nodes_changed)"
                " VALUES (:t, 'cli', 'h', :yes, '[]', 1)"
            ),
            {"t": T0, "yes": True},
        )
        revision_id = conn.execute(sa.text("SELECT max(id) FROM revisions")).scalar_one()
        for generation in (1, 2, 3):
            conn.execute(
                sa.text(
                    "INSERT INTO node_configs (node, generation, config_hash, payload, revision_id, deleted)"
                    " VALUES ('n1', :g, 'x', '{}', :r, :no)"
                ),
                {"g": generation, "r": revision_id, "no": False},
            )
    engine.dispose()
    with Store.open(url) as s:
        assert s.schema_state().status == "current"
        assert s.node_generation("n1") == 3  # backfilled by the baseline's step to version 2
        applied = s.apply_revision(rev(1), [change("n1", 4)], None, encode)
        assert applied.generations == {"n1": 4}


def test_a_database_newer_than_the_code_is_refused(url: str) -> None:
    with Store.open(url):
        pass
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    for readonly in (False, True):
        with pytest.raises(PermanentStoreError, match="newer than this dsfleet: 9999_future"):
            Store.open(url, readonly=readonly)
    with Store.open(url, migrate=False) as s:  # as is: for `dsfleet db current`
        assert s.schema_state().status == "newer"
        with pytest.raises(PermanentStoreError, match="newer than this dsfleet"):
            s.migrate()


def test_a_pre_alembic_database_newer_than_the_code_is_refused(url: str) -> None:
    pre_alembic(url, PRE_ALEMBIC_VERSION)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO schema_version (version, description) VALUES (99, 'future')"))
    engine.dispose()
    for readonly in (False, True):
        with pytest.raises(PermanentStoreError, match="schema version 99, newer than this dsfleet"):
            Store.open(url, readonly=readonly)


def test_a_database_that_is_not_a_dsfleet_store_is_refused(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE cameras (id INTEGER PRIMARY KEY, password VARCHAR)"))
    engine.dispose()
    with pytest.raises(PermanentStoreError, match="not a dsfleet store"):
        Store.open(url)
    assert set(dump(url)) == {"cameras"}


def test_readonly_open_of_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "nothing" / "state.db"
    with Store.open(f"sqlite:///{target}", readonly=True) as s:
        assert s.empty_fallback
        assert s.latest_node_configs() == {}
        assert s.revisions() == []
        assert s.last_accepted_revision() is None
        assert s.pending_outbox(10) == []
        assert s.legacy_cameras() == [] and s.legacy_agents() == [] and s.legacy_ds_instances() == []
        with pytest.raises(PermanentStoreError, match="read-only"):
            s.record_rejected(rev(), [])
    assert not (tmp_path / "nothing").exists()
    assert list(tmp_path.iterdir()) == []


def test_default_url_creates_nothing_until_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_url() == "sqlite:///./.dsfleet/state.db"
    assert default_url(tmp_path / "st") == f"sqlite:///{tmp_path}/st/state.db"
    with Store.open(default_url(), readonly=True) as s:
        assert s.revisions() == []
    assert not (tmp_path / ".dsfleet").exists()
    with Store.open(default_url()) as s:
        assert s.schema_state().status == "current"
    assert (tmp_path / ".dsfleet" / "state.db").is_file()


def test_readonly_open_reads_but_never_writes_or_migrates(url: str) -> None:
    with Store.open(url) as s:
        s.apply_revision(rev(), [change("n1", 1)], inventory("n1"), encode)
    before = dump(url)
    with Store.open(url, readonly=True) as s:
        assert not s.empty_fallback
        assert set(s.latest_node_configs()) == {"n1"}
        with pytest.raises(PermanentStoreError, match="read-only"):
            s.apply_revision(rev(1), [change("n1", 2)], None, encode)
        with pytest.raises(PermanentStoreError, match="read-only"):
            s.migrate()
    assert dump(url) == before


def test_readonly_open_of_an_uninitialised_database_reads_as_empty(url: str) -> None:
    with Store.open(url, readonly=True) as s:
        assert s.empty_fallback
        assert s.latest_node_configs() == {}
    if url.startswith("sqlite"):
        assert not Path(url.removeprefix("sqlite:///")).exists()
    else:
        assert dump(url) == {}


def test_readonly_open_of_an_older_sqlite_file_reads_an_upgraded_copy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    pre_alembic(url, 1)
    with Store.open(url, readonly=True) as s:
        assert s.schema_state().status == "current"
        assert s.latest_node_configs() == {}
    with sqlite3.connect(tmp_path / "state.db") as raw:
        assert raw.execute("SELECT max(version) FROM schema_version").fetchone() == (1,)
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "node_generations" not in tables and "alembic_version" not in tables


def test_sqlite_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path}/state.db") as s:
        s.apply_revision(rev(), [], inventory("n1"), encode)
    with sqlite3.connect(tmp_path / "state.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# ------------------------------------------------------------------------------------------------ revisions


def test_generations_start_at_one_and_count_per_node(store: Store) -> None:
    a = store.apply_revision(rev(1), [change("n1", 1), change("n2", 1)], inventory("n1", "n2"), encode)
    b = store.apply_revision(rev(2), [change("n1", 2)], inventory("n1", "n2"), encode)
    c = store.apply_revision(rev(3), [change("n1", 3), change("n2", 2)], inventory("n1", "n2"), encode)
    assert (a.generations, b.generations, c.generations) == (
        {"n1": 1, "n2": 1},
        {"n1": 2},
        {"n1": 3, "n2": 2},
    )
    latest = store.latest_node_configs()
    assert {n: (cfg.generation, cfg.revision_id) for n, cfg in latest.items()} == {
        "n1": (3, c.revision_id),
        "n2": (2, c.revision_id),
    }
    assert latest["n1"].payload == payload("n1", 3)
    assert latest["n1"].config_hash == canonical_hash(payload("n1", 3))
    assert a.revision_id < b.revision_id < c.revision_id


def test_latest_node_changes_reads_only_the_configs_whose_hash_differs(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(revisions_module, "IN_LIST_CHUNK", 2)  # several IN lists for three nodes
    store.apply_revision(
        rev(1), [change(f"n{i}", 1) for i in range(1, 5)], inventory("n1", "n2", "n3", "n4"), encode
    )
    store.apply_revision(rev(2), [change("n2", 2), delete("n4")], inventory("n1", "n2", "n3"), encode)
    known = {
        "n1": canonical_hash(payload("n1", 1)),  # the same: left out
        "n2": canonical_hash(payload("n2", 1)),  # stale: n2 changed since
        "n5": "0" * 64,  # never stored
    }
    same, changed = store.latest_node_changes(known)
    assert same == {"n1"}
    assert set(changed) == {"n2", "n3"}  # n3 unknown to the caller, n4 deleted
    latest = store.latest_node_configs()
    assert changed == {n: latest[n] for n in ("n2", "n3")}
    assert store.latest_node_changes({}) == (frozenset(), latest)


def test_generations_are_never_reused_after_delete_and_recreate(store: Store, url: str) -> None:
    store.apply_revision(rev(1), [change("n1", 1), change("n2", 1)], inventory("n1", "n2"), encode)
    deleted = store.apply_revision(rev(2), [delete("n1")], inventory("n2"), encode)
    assert deleted.generations == {"n1": 2}
    assert set(store.latest_node_configs()) == {"n2"}
    assert store.node_generation("n1") == 2
    recreated = store.apply_revision(rev(3), [change("n1", 1)], inventory("n1", "n2"), encode)
    assert recreated.generations == {"n1": 3}
    assert store.latest_node_configs()["n1"].generation == 3

    rows = sorted(r for r in dump(url)["node_configs"] if r[1] == "n1")
    tombstones = [r for r in rows if r[6]]
    assert len(tombstones) == 1
    _id, _node, generation, config_hash, body, revision_id, _deleted = tombstones[0]
    assert (generation, config_hash, body, revision_id) == (2, None, None, deleted.revision_id)


def test_a_deletion_publishes_a_tombstone(store: Store) -> None:
    store.apply_revision(rev(1), [change("n1", 1)], inventory("n1"), encode)
    applied = store.apply_revision(rev(2), [delete("n1")], inventory(), encode)
    pending = {row.id: row for row in store.pending_outbox(10)}
    tombstone = pending[applied.outbox_ids[0]]
    assert (tombstone.topic, tombstone.key, tombstone.value) == ("AgentConfig", "n1", None)
    assert tombstone.headers == {"generation": "2", "node": "n1"}
    assert store.latest_node_configs() == {}
    assert store.legacy_agents() == []


def test_apply_is_all_or_nothing_when_encode_raises(store: Store, url: str) -> None:
    store.apply_revision(rev(1), [change("n1", 1)], inventory("n1"), encode)
    before = dump(url)

    def failing(
        node: str, generation: int, body: dict[str, Any] | None
    ) -> tuple[str, str, bytes | None, dict[str, str]]:
        if node == "n3":
            raise RuntimeError("broker schema exploded")
        return encode(node, generation, body)

    with pytest.raises(RuntimeError, match="exploded"):
        store.apply_revision(
            rev(2), [change("n1", 2), change("n2", 1), change("n3", 1)], inventory("n1", "n2", "n3"), failing
        )
    assert dump(url) == before
    assert store.node_generation("n1") == 1 and store.node_generation("n2") == 0
    assert [r.id for r in store.revisions()] == [1]


def test_apply_is_all_or_nothing_when_the_database_refuses(store: Store, url: str) -> None:
    store.apply_revision(rev(1), [change("n1", 1)], inventory("n1"), encode)
    before = dump(url)
    bad = Inventory(
        nodes=[NodeRow(name="n1")],
        cameras=[CameraRow(name="c", camera_id="1", url="rtsp://10.0.0.1/", instance="no-such-instance")],
    )
    with pytest.raises(PermanentStoreError) as info:
        store.apply_revision(rev(2), [change("n1", 2)], bad, encode)
    assert isinstance(info.value, DsfleetError) and isinstance(info.value, PermanentError)
    assert dump(url) == before


def test_invalid_changes_are_refused_before_anything_is_written(store: Store, url: str) -> None:
    before = dump(url)
    with pytest.raises(ValueError, match="twice"):
        store.apply_revision(rev(1), [change("n1", 1), change("n1", 2)], None, encode)
    with pytest.raises(ValueError, match="both"):
        NodeChange(node="n1", config_hash="x", payload=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        NewRevision(source="cli", created_at=datetime(2025, 1, 1), manifests_hash="h")
    with pytest.raises(ValueError, match="source"):
        NewRevision(source="ftp", created_at=T0, manifests_hash="h")
    assert dump(url) == before


def test_rejected_revisions_change_nothing_else(store: Store, url: str) -> None:
    good = store.apply_revision(rev(1), [change("n1", 1)], inventory("n1"), encode)
    before = dump(url)
    errors: list[dict[str, Any]] = [
        {
            "severity": "error",
            "rule": "schema",
            "message": "spec.url: invalid",
            "location": {"file": "a.yaml"},
        },
        {"severity": "error", "rule": "dns-label", "message": "metadata.name: not a DNS label"},
    ]
    rejected_id = store.record_rejected(rev(2, source="watch", git_commit="abc123"), errors)
    after = dump(url)
    assert without(after, "revisions") == without(before, "revisions")
    assert len(after["revisions"]) == len(before["revisions"]) + 1

    record = store.revision(rejected_id)
    assert record is not None
    assert (record.accepted, record.source, record.git_commit, record.nodes_changed) == (
        False,
        "watch",
        "abc123",
        0,
    )
    assert list(record.errors) == errors
    last = store.last_accepted_revision()
    assert last is not None and last.id == good.revision_id
    assert [r.id for r in store.revisions()] == [rejected_id, good.revision_id]


def test_revisions_keep_git_metadata_and_utc_times(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2025, 3, 1, 14, 0, 0, tzinfo=plus_two)
    first = store.apply_revision(
        NewRevision(
            source="webhook",
            created_at=local,
            manifests_hash="m" * 64,
            git_commit="0123456789abcdef0123456789abcdef01234567",
            git_author="Ann <ann@example.com>",
            git_message="fleet: add gate cameras\n\nlong body",
        ),
        [change("n1", 1)],
        inventory("n1"),
        encode,
    )
    for n in range(2, 6):
        store.record_rejected(rev(n), [])
    record = store.revision(first.revision_id)
    assert record is not None
    assert record.created_at == T0 and record.created_at.tzinfo == UTC
    assert (record.source, record.git_author, record.git_message) == (
        "webhook",
        "Ann <ann@example.com>",
        "fleet: add gate cameras\n\nlong body",
    )
    assert record.nodes_changed == 1 and record.accepted and record.errors == ()
    assert [r.id for r in store.revisions(limit=2)] == [5, 4]
    assert store.revision(12345) is None


# ------------------------------------------------------------------------------------------------ outbox


def test_outbox_has_exactly_one_row_per_change(store: Store) -> None:
    applied = store.apply_revision(
        rev(1), [change("n1", 1), change("n2", 1), change("n3", 1)], inventory("n1", "n2", "n3"), encode
    )
    assert len(applied.outbox_ids) == 3
    pending = store.pending_outbox(100)
    assert [r.id for r in pending] == list(applied.outbox_ids)
    for row, node in zip(pending, ("n1", "n2", "n3"), strict=True):
        assert (row.topic, row.key, row.attempts, row.published_at) == ("AgentConfig", node, 0, None)
        assert row.value == canonical_json({"generation": 1, "config": payload(node, 1)}).encode()
        assert row.created_at == T0 + timedelta(minutes=1)

    store.apply_revision(rev(2), [], inventory("n1", "n2", "n3"), encode)
    assert len(store.pending_outbox(100)) == 3  # a revision without changes publishes nothing

    store.record_publish_attempt([applied.outbox_ids[0]])
    assert store.pending_outbox(1)[0].attempts == 1
    assert store.mark_published(applied.outbox_ids[:2], T0 + timedelta(hours=1)) == 2
    assert store.mark_published(applied.outbox_ids[:2], T0 + timedelta(hours=2)) == 0
    assert [r.id for r in store.pending_outbox(100)] == [applied.outbox_ids[2]]
    assert store.mark_published([], T0) == 0


def test_outbox_depth_counts_unpublished_rows(store: Store) -> None:
    assert store.outbox_depth() == 0
    applied = store.apply_revision(rev(1), [change("n1", 1), change("n2", 1)], inventory("n1", "n2"), encode)
    assert store.outbox_depth() == 2
    store.record_publish_attempt(applied.outbox_ids)
    assert store.outbox_depth() == 2  # a failed attempt leaves the row pending
    store.mark_published(applied.outbox_ids[:1], T0)
    assert store.outbox_depth() == 1
    assert [r.id for r in store.pending_outbox(limit=5)] == list(applied.outbox_ids[1:])


# ------------------------------------------------------------------------------------------------ observed, events


def test_observed_rows_of_a_node_are_replaced_as_a_whole(store: Store) -> None:
    a = ObservedRow(node="n1", instance="n1-a", state="running", updated_at=T0, generation=2, restarts=1)
    b = ObservedRow(node="n1", instance="n1-b", state="backoff", updated_at=T0, drift=("stopped by hand",))
    c = ObservedRow(node="n2", instance="n2-a", state="running", updated_at=T0 + timedelta(seconds=5))
    store.replace_observed("n1", [a, b])
    store.replace_observed("n2", [c])
    assert store.observed() == [a, b, c]
    store.replace_observed("n1", [b])
    assert store.observed("n1") == [b]
    assert store.observed() == [b, c]
    with pytest.raises(ValueError, match="node n2"):
        store.replace_observed("n1", [c])


def test_events_come_back_newest_first(store: Store) -> None:
    first = store.record_event(T0, "published", "gpu-node-1 generation 1", node="gpu-node-1")
    second = store.record_event(T0 + timedelta(seconds=1), "crash-loop", "restarting", instance="ccm-gate")
    events = store.events(limit=10)
    assert [e.id for e in events] == [second, first]
    assert (events[0].kind, events[0].instance, events[0].node) == ("crash-loop", "ccm-gate", None)
    assert events[1].at == T0
    assert [e.id for e in store.events(limit=1)] == [second]


def test_status_of_many_nodes_is_written_and_transitions_mark_each_node(store: Store) -> None:
    from dsfleet.reconciler.store.nodestates import OnlineTransition
    from dsfleet.schemas.wire import AgentInfo

    store.apply_revision(rev(1), [], inventory("n1", "n2", "n3"), encode)

    def info(node: str, gen: int) -> AgentInfo:
        return AgentInfo(sent_at=T0.isoformat(), node=node, hostname=f"{node}.lan", observedGeneration=gen)

    store.record_agent_infos({"n1": info("n1", 1), "n2": info("n2", 1)}, {"n1": True, "n2": True}, T0)
    later = T0 + timedelta(seconds=5)
    store.record_agent_infos(  # two rows updated, one inserted
        {"n1": info("n1", 2), "n2": info("n2", 3), "n3": info("n3", 1)},
        {"n1": True, "n2": True, "n3": True},
        later,
    )
    rows = {r.node: r for r in store.node_statuses()}
    assert {n: (r.observed_generation, r.hostname, r.online) for n, r in rows.items()} == {
        "n1": (2, "n1.lan", True),
        "n2": (3, "n2.lan", True),
        "n3": (1, "n3.lan", True),
    }
    assert rows["n1"].last_seen == later
    gone = T0 + timedelta(seconds=30)
    store.record_transitions(
        [OnlineTransition("n1", False, gone, "missed"), OnlineTransition("n3", False, gone, "missed")]
    )
    assert {r.node: r.online for r in store.node_statuses()} == {"n1": False, "n2": True, "n3": False}
    with store._read() as conn:  # the older system's "connected" flag, in the inventory
        flags = dict(conn.execute(sa.select(schema_module.NODES.c.name, schema_module.NODES.c.online)).all())
    assert flags == {"n1": False, "n2": True, "n3": False}
    assert sorted((e.node, e.kind) for e in store.events(limit=10) if e.kind == "offline") == [
        ("n1", "offline"),
        ("n3", "offline"),
    ]


def test_first_reports_of_nodes_with_and_without_a_fleet_are_written_in_one_batch(store: Store) -> None:
    from dsfleet.schemas.wire import AgentResponse

    store.apply_revision(rev(1), [], inventory("n1", "n2", "n3"), encode)
    responses = {
        "n1": AgentResponse(sent_at=T0.isoformat(), node="n1", observedGeneration=None),
        "n2": AgentResponse(sent_at=T0.isoformat(), node="n2", observedGeneration=1, fleet="fleet-a"),
        "n3": AgentResponse(sent_at=T0.isoformat(), node="n3", observedGeneration=None),
    }
    store.record_agent_responses(responses, T0)  # no status rows yet: every row is inserted
    rows = {r.node: r for r in store.node_statuses()}
    assert {n: (r.observed_generation, r.fleet, r.reported_at) for n, r in rows.items()} == {
        "n1": (None, None, T0),
        "n2": (1, "fleet-a", T0),
        "n3": (None, None, T0),
    }


def test_many_events_are_recorded_in_one_call(store: Store) -> None:
    store.record_events(
        T0, "resync", [("n1", "generation 3 re-published"), ("n2", "generation 1 re-published")]
    )
    store.record_events(T0, "resync", [])
    events = store.events(limit=10)
    assert sorted((e.node, e.kind, e.message) for e in events) == [
        ("n1", "resync", "generation 3 re-published"),
        ("n2", "resync", "generation 1 re-published"),
    ]


# ------------------------------------------------------------------------------------------------ inventory


def test_inventory_is_replaced_and_nodes_are_soft_deleted(store: Store, url: str) -> None:
    store.apply_revision(rev(1), [], inventory("n1", "n2"), encode)
    assert store.record_node_seen("n1", ip="192.0.2.10", seen_at=T0)
    assert not store.record_node_seen("ghost", ip=None, seen_at=T0)
    as_mappings = Inventory(
        nodes=[{"name": "n1", "hostname": "n1.lan", "gpus": (0,)}],
        instances=[{"name": "n1-a", "node": "n1", "camera_count": 1}],
        cameras=[{"name": "cam-n1", "camera_id": "1", "url": "rtsp://10.0.0.1/main", "instance": "n1-a"}],
    )
    store.apply_revision(rev(2), [], as_mappings, encode)
    inv = store.inventory()
    assert [n.name for n in inv.nodes] == ["n1"]
    assert [(c.name, c.instance) for c in inv.cameras] == [("cam-n1", "n1-a")]
    assert [i.name for i in inv.instances] == ["n1-a"]
    nodes = {r[0]: r for r in dump(url)["nodes"]}
    assert set(nodes) == {"n1", "n2"}  # n2 kept as deleted: its history stays readable
    agents = store.legacy_agents()
    assert [(a.agent_name, a.ip_address, a.connected) for a in agents] == [("n1", "192.0.2.10", True)]


def test_legacy_views_speak_the_older_terms(store: Store) -> None:
    store.apply_revision(rev(1), [], inventory("gpu-1"), encode)
    cameras = {c.name: c for c in store.legacy_cameras()}
    assert cameras["cam-gpu-1"].ip_address == "10.0.0.1"
    assert (cameras["cam-gpu-1"].instance_name, cameras["cam-gpu-1"].agent_name) == ("gpu-1-a", "gpu-1")
    assert (cameras["loose"].instance_name, cameras["loose"].agent_name, cameras["loose"].ip_address) == (
        None,
        None,
        None,
    )
    instances = {i.instance_name: i for i in store.legacy_ds_instances()}
    assert (instances["gpu-1-a"].agent_name, instances["gpu-1-a"].cameras) == ("gpu-1", ("cam-gpu-1",))
    assert (instances["spare"].agent_name, instances["spare"].cameras) == ("Not assigned", ())
    assert instances["gpu-1-a"].app_type == "NORMAL"
    agents = store.legacy_agents()
    assert [(a.agent_name, a.hostname, a.connected) for a in agents] == [("gpu-1", "gpu-1.lan", False)]


# ------------------------------------------------------------------------------------------------ secrets


def test_no_password_reaches_the_store_or_its_views(store: Store, url: str) -> None:
    with pytest.raises(PermanentStoreError) as info:
        store.apply_revision(rev(1), [change("n1", 1)], inventory("n1", password_in_url=CANARY), encode)
    assert CANARY not in str(info.value)
    assert "cam-n1" in str(info.value)
    assert CANARY not in dump_text(url)
    assert store.revisions() == []

    store.apply_revision(rev(2), [change("n1", 1)], inventory("n1"), encode)
    store.record_rejected(
        rev(3), [{"severity": "error", "rule": "credentials", "message": "spec.url: inline"}]
    )
    text = dump_text(url)
    assert CANARY not in text
    assert "${secret:cam-1}" in text  # payloads carry placeholders, not values
    views = [*store.legacy_cameras(), *store.legacy_agents(), *store.legacy_ds_instances()]
    assert views
    for view in views:
        assert not {"password", "username"} & set(vars(view))
        assert CANARY not in repr(view)


# ------------------------------------------------------------------------------------------------ errors


def test_a_locked_sqlite_database_is_a_temporary_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 50)
    url = f"sqlite:///{tmp_path}/state.db"
    with Store.open(url) as s:
        blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            with pytest.raises(TemporaryStoreError) as info:
                s.record_rejected(rev(), [])
            assert isinstance(info.value, TemporaryError) and isinstance(info.value, StoreError)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert s.record_rejected(rev(), []) == 1


def test_an_unreachable_server_is_a_temporary_error(tmp_path: Path) -> None:
    with pytest.raises(TemporaryStoreError):
        Store.open(f"postgresql+psycopg://postgres@/dsfleet?host={tmp_path}/no-socket&connect_timeout=2")


def test_a_bad_url_is_a_permanent_error() -> None:
    with pytest.raises(PermanentStoreError):
        Store.open("not a url")
