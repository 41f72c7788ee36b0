"""tests/store/test_metadata.py on Postgres: the migrations run from an empty database and
give the tables' definitions; transactions, snapshots and foreign keys behave the same."""

from __future__ import annotations

import pytest

from tests.store.test_metadata import *  # noqa: F403
from tests.store.test_metadata import test_sqlite_runs_in_wal_mode_with_foreign_keys
from workbench.store.metadata import MetadataStore

pytestmark = pytest.mark.postgres
del test_sqlite_runs_in_wal_mode_with_foreign_keys  # SQLite's own settings


@pytest.fixture
def store(blank_postgres_url, tmp_path):
    db = MetadataStore(blank_postgres_url, lock_dir=tmp_path)
    db.migrate()
    yield db
    db.dispose()
