"""Listings that must not read (or sort) every row of their kind: their SQL, as the services
send it, is planned from an index (SQLite's EXPLAIN QUERY PLAN)."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event

from tests.conftest import write_images


@contextmanager
def statements(wb):
    sent: list[tuple[str, tuple]] = []

    def record(conn, cursor, statement, params, context, executemany):
        sent.append((statement, params))

    event.listen(wb.db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(wb.db.engine, "before_cursor_execute", record)


def plan(wb, statement: str, params) -> str:
    with wb.db.read() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
    return " | ".join(str(r[-1]) for r in rows)


def test_a_page_of_a_bucket_comes_in_index_order(wb, tmp_path):
    """Images stamped in one instant (a bulk import) were sorted whole for every page of the
    Ingest page (620 ms at 200k images): the page's order is the index's."""
    wb.buckets.create("b")
    wb.ingest.run("b", [p.parent for p in write_images(tmp_path / "imgs", 3)][:1])
    with statements(wb) as sent:
        page = wb.buckets.objects(wb.buckets.get("b"), limit=2)
    assert len(page) == 2
    (statement, params), = [s for s in sent if "FROM objects" in s[0]]
    found = plan(wb, statement, params)
    assert "ix_objects_bucket_created" in found and "TEMP B-TREE" not in found, found


def test_a_taxonomy_counts_its_labels_from_an_index_alone(review_wb):
    """A taxonomy's label counts on one version: 449 ms at 1M assignments when each row was
    looked up, a covering index now."""
    wb = review_wb
    wb.annotations.create(document_id="obj_a_0", collection_id="x", label="confirmed")
    wb.references.create("refs", "x")
    wb.references.promote("refs")
    wb.taxonomies.create("shapes", "refs", threshold=0.5, top_k=1)
    wb.taxonomies.apply("shapes")
    with statements(wb) as sent:
        assert sum(wb.taxonomies.label_counts("shapes").values()) > 0
    (statement, params), = [s for s in sent if "GROUP BY taxonomy_assignments.label" in s[0]]
    assert "COVERING INDEX ix_taxonomy_assignments_version_label" in plan(wb, statement, params)
