"""tests/store/test_metadata.py on Postgres: the migrations run from an empty database and
give the tables' definitions; transactions, snapshots and foreign keys behave the same; and
processes on two machines migrate a new database in turn."""

from __future__ import annotations

import threading

import pytest

from tests.store.test_metadata import *  # noqa: F403
from tests.store.test_metadata import _head, test_sqlite_runs_in_wal_mode_with_foreign_keys
from workbench.store.metadata import MetadataStore

pytestmark = pytest.mark.postgres
del test_sqlite_runs_in_wal_mode_with_foreign_keys  # SQLite's own settings


@pytest.fixture
def store(blank_postgres_url, tmp_path):
    db = MetadataStore(blank_postgres_url, lock_dir=tmp_path)
    db.migrate()
    yield db
    db.dispose()


def test_two_machines_migrate_a_new_database_in_turn(blank_postgres_url, tmp_path):
    """Opened at once from two machines (each with its own lock folder), an empty database
    is migrated once: the lock is the database's, not a file's."""
    stores = [MetadataStore(blank_postgres_url, lock_dir=tmp_path / name) for name in "ab"]
    versions, errors = [], []

    def migrate(store):
        try:
            versions.append(store.migrate())
        except Exception as exc:  # noqa: BLE001 — reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for store in stores:
        store.dispose()
    assert errors == []
    assert versions == [_head(), _head()]


def test_a_bare_postgresql_url_uses_the_installed_driver(postgres_url):
    """``WORKBENCH_DATABASE_URL=postgresql://…`` (as the README shows it) is opened with
    psycopg 3, not SQLAlchemy's default psycopg2, which is not installed."""
    bare = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    db = MetadataStore(bare)
    try:
        assert db.engine.dialect.driver == "psycopg"
        assert db.schema_version() == _head()
    finally:
        db.dispose()


def test_an_exclusive_lock_reaches_every_host(blank_postgres_url, tmp_path):
    """The rules engine's lock on a shared Postgres is the database's: a second machine (its
    own lock folder) waits for it, where a file lock would have let both engines run."""
    from workbench.store.metadata import RULES_LOCK_KEY

    first, second = (MetadataStore(blank_postgres_url, lock_dir=tmp_path / n) for n in "ab")
    order: list[str] = []

    def other_host():
        with second.exclusive("rules.lock", RULES_LOCK_KEY):
            order.append("second")

    with first.exclusive("rules.lock", RULES_LOCK_KEY):
        waiting = threading.Thread(target=other_host)
        waiting.start()
        waiting.join(1.0)
        assert waiting.is_alive()  # blocked on the database's lock
        order.append("first")
    waiting.join(30)
    assert order == ["first", "second"]
    for store in (first, second):
        store.dispose()
