import threading

import pytest
import sqlalchemy as sa

from workbench.store import tables as t
from workbench.store.metadata import MetadataStore, utcnow


@pytest.fixture
def store(tmp_path):
    db = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}", lock_dir=tmp_path)
    db.migrate()
    yield db
    db.dispose()


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from workbench.store.metadata import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def test_migrations_reach_head_and_are_recorded(store):
    assert store.schema_version() == _head() >= "0003"
    # Running them again is a no-op.
    assert store.migrate() == _head()


def test_the_fast_head_check_agrees_with_alembic():
    """migrate() skips Alembic when the database is at head_revision(): it must be Alembic's
    head, or a new migration would never run."""
    from workbench.store.metadata import head_revision

    assert head_revision() == _head()


def test_migrated_schema_matches_the_table_definitions(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(store):
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def _bucket_row(name):
    return {"id": f"bkt_{name}", "name": name, "schema": {}, "description": "",
            "created_at": utcnow()}


def test_a_failed_write_transaction_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        with store.write() as conn:
            conn.execute(t.buckets.insert().values(**_bucket_row("a")))
            raise RuntimeError("boom")
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.buckets)).scalar() == 0


def test_readers_see_a_snapshot_while_a_writer_holds_the_lock(store):
    with store.write() as conn:
        conn.execute(t.buckets.insert().values(**_bucket_row("a")))
    writing, release = threading.Event(), threading.Event()

    def writer():
        with store.write() as conn:
            conn.execute(t.buckets.insert().values(**_bucket_row("b")))
            writing.set()
            release.wait(5)

    thread = threading.Thread(target=writer)
    thread.start()
    writing.wait(5)
    with store.read() as conn:  # does not wait for the writer
        assert conn.execute(sa.select(sa.func.count()).select_from(t.buckets)).scalar() == 1
    release.set()
    thread.join()
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.buckets)).scalar() == 2


def test_foreign_keys_are_enforced(store):
    with pytest.raises(sa.exc.IntegrityError):
        with store.write() as conn:
            conn.execute(t.objects.insert().values(
                id="obj_x", bucket_id="bkt_missing", sha256="0" * 64, width=1, height=1,
                format="PNG", size_bytes=1, source="x", metadata={}, created_at=utcnow()))
