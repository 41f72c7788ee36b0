"""tests/store/test_ground_truth_migration.py on Postgres: the backfills of 0010 and 0011 fill
in an old workspace's rows there too (the template database is migrated with no rows)."""

from __future__ import annotations

import pytest

import tests.store.test_ground_truth_migration as source
from tests.store.test_ground_truth_migration import *  # noqa: F403
from workbench.store.metadata import MetadataStore

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def old_workspace_on_postgres(workspace_on_postgres, blank_postgres_url, monkeypatch):
    """The old workspace is written to an empty database, which the test then opens."""
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", blank_postgres_url)
    monkeypatch.setattr(source, "MetadataStore",
                        lambda _url, lock_dir=None: MetadataStore(blank_postgres_url, lock_dir))
