"""The Annotations page (browse, filter, edit, delete, export) and the Review page's confidence
input for a verdict."""

from datetime import date

import pytest

from tests.app.conftest import populate, run_page


@pytest.fixture
def populated(workspace, tmp_path):
    populate(workspace, tmp_path)
    return workspace


def test_review_sets_the_verdicts_confidence(populated):
    """The reviewer's confidence goes with the verdict; left empty, the verdict has none."""
    wb = populated
    at = run_page("pages/3_Review.py")
    at.selectbox(key="review_retriever").select("cams:review").run()
    at.button(key="confirm").click().run()
    assert wb.annotations.list(label="confirmed").items[0].confidence is None
    (box,) = [n for n in at.number_input if n.key.startswith("verdict_confidence_")]
    box.set_value(0.8).run()
    at.button(key="false_positive").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert wb.annotations.list(label="false_positive").items[0].confidence == 0.8


PAGE = "pages/10_Annotations.py"


def _verdicts(wb, n: int = 4):
    """``n`` verdicts on the populated workspace's detections: confirmed, then false
    positives, each a second apart in the listing's order."""
    collection = wb.collections.get("cams")
    detections = wb.detection.detections(collection, collection.active_key)[:n]
    made = []
    for index, detection in enumerate(detections):
        label = "confirmed" if index % 2 == 0 else "false_positive"
        made.append(wb.annotations.create(
            document_id=detection.id, collection_id=collection.id, label=label,
            payload={"true_class": detection.class_name} if label == "confirmed" else {},
            author="ana" if index < 2 else "bo"))
    return made


def _table(at):
    return at.dataframe[0].value  # the table; the selected row's history is the second


def _ok(at):
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_an_empty_workspace_says_so(workspace):
    at = _ok(run_page(PAGE))
    assert any("No annotations yet" in i.value for i in at.info)


def test_lists_and_filters_by_label_and_author(populated):
    made = _verdicts(populated)
    at = _ok(run_page(PAGE))
    assert set(_table(at)["id"]) == {a.id for a in made}
    at.selectbox(key="ann_label").select("false_positive").run()
    assert set(_ok(at).dataframe[0].value["label"]) == {"false_positive"}
    assert len(_table(at)) == 2
    at.selectbox(key="ann_author").select("bo").run()
    assert list(_table(at)["id"]) == [made[3].id]


def test_the_selected_row_shows_its_image_and_history(populated):
    first, *_ = _verdicts(populated)
    populated.annotations.update(first.id, reasoning="looked twice")
    at = _ok(run_page(PAGE))
    at.selectbox(key="ann_selected").select(first.id).run()
    assert _ok(at).get("image")  # the image with the box
    revisions = at.dataframe[1].value
    assert list(revisions["revision"]) == [1, 2]
    assert list(revisions["reasoning"]) == ["", "looked twice"]


def test_editing_a_verdict_is_a_new_revision_and_an_event(populated):
    wb = populated
    _, target, *_ = _verdicts(wb)
    at = _ok(run_page(PAGE))
    at.selectbox(key="ann_selected").select(target.id).run()
    at.selectbox(key=f"ann_edit_label_{target.id}_1").select("corrected")
    at.text_input(key=f"ann_edit_class_{target.id}_1").input("star")
    at.number_input(key=f"ann_edit_confidence_{target.id}_1").set_value(0.7)
    at.button(key=f"FormSubmitter:ann_edit_{target.id}_1-Save verdict").click().run()
    _ok(at)
    changed = wb.annotations.get(target.id)
    assert (changed.label, changed.payload["true_class"], changed.confidence,
            changed.revision) == ("corrected", "star", 0.7, 2)
    assert any(f"{target.id}: saved as revision 2" in m.value for m in at.success)
    (event,) = wb.events.recent("annotation.updated")
    assert event["payload"]["annotation_id"] == target.id
    assert "corrected" in set(_table(at)["label"])


def test_delete_needs_the_confirmation(populated):
    wb = populated
    target, *_ = _verdicts(wb)
    at = _ok(run_page(PAGE))
    at.selectbox(key="ann_selected").select(target.id).run()
    at.button(key="ann_delete").click().run()
    assert wb.annotations.list(document_id=target.document_id).total == 1  # not yet
    at.button(key="ann_delete_cancel").click().run()
    assert wb.annotations.list(document_id=target.document_id).total == 1
    at.selectbox(key="ann_selected").select(target.id).run()
    at.button(key="ann_delete").click().run()
    at.button(key="ann_delete_confirm").click().run()
    _ok(at)
    assert wb.annotations.list(document_id=target.document_id).total == 0
    assert target.id not in set(_table(at)["id"])


def test_csv_and_parquet_hold_the_filtered_rows(populated):
    import io

    import polars as pl

    made = _verdicts(populated)
    at = _ok(run_page(PAGE))
    at.selectbox(key="ann_label").select("confirmed").run()
    at.button(key="ann_export_prepare").click().run()
    _ok(at)
    _, count, csv, parquet = at.session_state["ann_export"]
    wanted = {a.id for a in made if a.label == "confirmed"}
    assert count == 2
    assert set(pl.read_csv(io.BytesIO(csv))["id"]) == wanted
    from_parquet = pl.read_parquet(io.BytesIO(parquet))
    assert set(from_parquet["id"]) == wanted and set(from_parquet["label"]) == {"confirmed"}
    assert len(at.get("download_button")) == 2


def test_pages_by_cursor_through_every_row(populated):
    """The service's keyset page: each row once, newest first, filters kept in the cursor."""
    wb = populated
    made = _verdicts(wb, 5)
    seen, cursor = [], None
    while True:
        page = wb.annotations.page(cursor=cursor, limit=2)
        assert page.total == 5
        seen += [a.id for a in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(a.id for a in made) and len(seen) == 5
    assert [a.id for a in wb.annotations.page(class_name=made[0].payload["true_class"],
                                              label="confirmed").items]
    from workbench.errors import ValidationError

    first = wb.annotations.page(limit=2)
    with pytest.raises(ValidationError, match="other filters"):
        wb.annotations.page(label="confirmed", cursor=first.next_cursor, limit=2)


def test_pages_forward_and_back_and_says_more_than_past_the_count_limit(populated, monkeypatch):
    import workbench.paging
    import workbench.ui.annotations

    made = _verdicts(populated)
    monkeypatch.setattr(workbench.ui.annotations, "PAGE_SIZE", 3)
    monkeypatch.setattr(workbench.paging, "COUNT_LIMIT", 3)  # counting stops at 3 rows
    at = _ok(run_page(PAGE))
    first = list(_table(at)["id"])
    assert len(first) == 3 and any("3 of more than 3 annotations" in c.value
                                   for c in at.caption)
    at.button(key="ann_next").click().run()
    second = list(_ok(at).dataframe[0].value["id"])
    assert len(second) == 1 and set(first + second) == {a.id for a in made}
    assert at.button(key="ann_next").disabled
    at.button(key="ann_previous").click().run()
    assert list(_table(at)["id"]) == first


@pytest.mark.parametrize(("days", "expected"), [
    ((), (None, None)),
    ((date(2026, 3, 1),), ("2026-03-01T00:00:00+00:00", "2026-03-02T00:00:00+00:00")),
    ((date(2026, 3, 1), date(2026, 3, 3)),
     ("2026-03-01T00:00:00+00:00", "2026-03-04T00:00:00+00:00")),
])
def test_the_time_filter_covers_whole_utc_days(days, expected):
    """(AppTest cannot set an empty date range, so the widget's reading is tested here.)"""
    from workbench.ui.annotations import _day_range

    since, until = _day_range(days)
    assert (since and since.isoformat(), until and until.isoformat()) == expected


def test_the_time_filter_narrows_the_page(populated):
    from datetime import UTC, datetime, timedelta

    from workbench.ui.annotations import _day_range

    _verdicts(populated)
    today = datetime.now(UTC).date()
    since, until = _day_range((today,))
    assert populated.annotations.page(since=since, until=until).total == 4
    since, until = _day_range((today - timedelta(days=3), today - timedelta(days=1)))
    assert populated.annotations.page(since=since, until=until).total == 0
