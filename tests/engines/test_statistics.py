"""Planner statistics and settings on Postgres: a table that grew by half or more since its last analysis
is analysed by ``ensure_statistics`` (after a batch run, a bulk of verdicts, a taxonomy
apply), not a minute later by autovacuum; then not again until it grows that much more."""

from __future__ import annotations

import time

import pytest

from tests.store.test_statistics import _grow
from workbench import Workbench

pytestmark = pytest.mark.postgres


def _analysed(wb) -> bool:
    with wb.db.read() as conn:
        return conn.exec_driver_sql(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname = 'objects'").scalar()


def test_a_table_that_grew_is_analysed_at_once_and_not_again(tmp_path):
    wb = Workbench.open(tmp_path / "ws")
    assert wb.db.ensure_statistics() == []  # small tables: every plan is fast
    _grow(wb, 3000)
    # Postgres counts a transaction's writes once its backend reports them (within a second
    # or so of the commit): until then there is nothing to see.
    analysed, deadline = [], time.monotonic() + 20
    while not analysed and time.monotonic() < deadline:
        analysed = wb.db.ensure_statistics()
        time.sleep(0.2)
    assert analysed == ["objects"]
    assert _analysed(wb)
    time.sleep(1.5)  # let the ANALYZE's own counters be reported
    assert wb.db.ensure_statistics() == []  # measured: nothing to do
    wb.close()


def test_queries_are_not_jit_compiled(tmp_path):
    """The review queue's verdict subquery pushed its estimated cost over Postgres' JIT
    threshold; compiling took 16 of its 18 ms a page. The workbench's connections turn JIT
    off (a URL's own ``options`` win)."""
    wb = Workbench.open(tmp_path / "ws")
    with wb.db.read() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
    wb.close()
