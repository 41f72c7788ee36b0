"""The planner's statistics are renewed when a table has grown, so that a query naming a few
images takes the index on images instead of scanning the collection."""

from __future__ import annotations

import sqlalchemy as sa

from workbench import Workbench
from workbench.store import tables as t
from workbench.store.metadata import utcnow


def _grow(wb, n: int) -> None:
    now = utcnow()
    with wb.db.write() as conn:
        conn.execute(t.buckets.insert().values(id="bkt_s", name="s", schema={},
                                               description="", created_at=now))
        conn.execute(t.objects.insert(), [
            {"id": f"obj_{i}", "bucket_id": "bkt_s", "sha256": f"{i:064d}", "width": 10,
             "height": 10, "format": "PNG", "size_bytes": 1, "source": f"{i}.png",
             "metadata": {}, "created_at": now} for i in range(n)])


def _plan(wb) -> str:
    query = "EXPLAIN QUERY PLAN SELECT id FROM detections WHERE collection_id = 'c' " \
            "AND object_id IN ('a', 'b') ORDER BY object_id, extractor_key, idx"
    with wb.db.read() as conn:
        return " ".join(str(r[-1]) for r in conn.exec_driver_sql(query))


def test_statistics_are_taken_when_a_table_grows_and_not_again_until_it_doubles(tmp_path):
    wb = Workbench.open(tmp_path / "ws")
    assert wb.db.ensure_statistics() == []  # small tables: every plan is fast
    _grow(wb, 3000)
    assert wb.db.ensure_statistics() == ["objects"]
    with wb.db.read() as conn:
        stat = conn.exec_driver_sql(
            "SELECT stat FROM sqlite_stat1 WHERE tbl = 'objects'").scalars().all()
    assert stat and all(int(s.split()[0]) == 3000 for s in stat)  # measured, not sampled
    assert wb.db.ensure_statistics() == []  # measured: nothing to do
    assert Workbench.open(tmp_path / "ws").db.ensure_statistics() == []


def test_the_detections_of_a_few_images_are_read_by_the_image_index(tmp_path):
    wb = Workbench.open(tmp_path / "ws")
    assert "ix_detections_image" in _plan(wb)
    with wb.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.detections)).scalar() == 0
