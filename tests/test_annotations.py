"""Annotations: validation table, history on update, soft delete, lists, bulk."""

import pytest

from workbench.errors import NotFoundError, ValidationError

BOX = {"x": 50, "y": 50, "w": 20, "h": 20}


@pytest.fixture
def awb(review_wb):
    return review_wb


def create(wb, **fields):
    return wb.annotations.create(**{"collection_id": "col_x", "author": "ana", **fields})


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"document_id": "obj_a_0", "label": "confirmed"}, None),
        ({"document_id": "obj_a_0", "label": "corrected", "payload": {"true_class": "star"}},
         None),
        ({"document_id": "obj_a_0", "label": "corrected", "payload": {"bbox": BOX}}, None),
        ({"document_id": "obj_a_0", "label": "false_positive", "reasoning": "shadow"}, None),
        ({"document_id": "doc_obj_d", "label": "missed",
          "payload": {"bbox": BOX, "true_class": "star"}}, None),
        ({"document_id": "obj_a_0", "label": "needs_second_look", "confidence": 0.5},
         "label 'needs_second_look' is not a standard label (standard: confirmed, corrected"),
        ({"document_id": "obj_a_0", "label": "Confirmed"},
         "not a standard label — did you mean 'confirmed'?"),
        ({"document_id": "obj_a_0", "label": "false positive"}, "did you mean 'false_positive'"),
        ({"document_id": "obj_a_0", "label": "corrected"}, "needs payload.true_class or a new"),
        ({"document_id": "doc_obj_d", "label": "missed", "payload": {"bbox": BOX}},
         "needs payload.bbox and payload.true_class"),
        ({"document_id": "doc_obj_d", "label": "missed", "payload": {"true_class": "star"}},
         "needs payload.bbox"),
        ({"document_id": "obj_a_0", "label": "corrected",
          "payload": {"bbox": {"x": 95, "y": 50, "w": 20, "h": 20}}}, "outside the 100×100"),
        ({"document_id": "obj_a_0", "label": "corrected",
          "payload": {"bbox": {"x": 50, "y": 50, "w": 0, "h": 20}}}, "positive size"),
        ({"document_id": "obj_a_0", "label": "corrected", "payload": {"bbox": [1, 2, 3, 4]}},
         "centre box"),
        ({"document_id": "obj_a_0", "label": "confirmed",
          "payload": {"image_width": 1920, "image_height": 1080}},
         "image_width is 1920 but the image is 100×100"),
        ({"document_id": "obj_a_0", "label": "confirmed", "confidence": 1.5},
         "confidence: Input should be less than or equal to 1"),
        ({"document_id": "obj_a_0", "label": "x" * 101}, "label: String should have at most"),
        ({"document_id": "obj_a_0", "label": ""}, "label: String should have at least"),
        ({"document_id": "obj_a_0", "label": "confirmed", "colour": "red"},
         "unknown field 'colour'"),
        ({"document_id": "nope", "label": "confirmed"}, "no detection or image document 'nope'"),
        ({"document_id": "obj_a_0", "label": "corrected", "payload": {"true_class": " "}},
         "non-empty class name"),
    ],
)
def test_validation(awb, fields, error):
    if error is None:
        annotation = create(awb, **fields)
        assert annotation.label == fields["label"] and annotation.revision == 1
        assert annotation.payload["image_width"] == 100  # filled in from the image
        if fields["document_id"] == "obj_a_0":
            assert annotation.payload["predicted_class"] == "circle"
            assert annotation.object_id == "obj_a"
    else:
        exc = NotFoundError if fields["document_id"] == "nope" else ValidationError
        with pytest.raises(exc) as info:
            create(awb, **fields)
        assert error in str(info.value)
        assert awb.annotations.list(collection_id="col_x").total == 0


def test_a_document_of_another_collection_is_refused(awb):
    with pytest.raises(ValidationError, match="belongs to collection col_x"):
        awb.annotations.create(document_id="obj_a_0", collection_id="col_other",
                               label="confirmed")


def test_update_keeps_history_and_delete_is_soft(awb):
    first = create(awb, document_id="obj_a_1", label="confirmed", retriever_id="ret_1",
                   execution_id="exec_1")
    changed = awb.annotations.update(first.id, author="bo", label="corrected",
                                     payload={"true_class": "hexagon"}, reasoning="it has 6 sides")
    assert changed.revision == 2 and changed.label == "corrected" and changed.author == "bo"
    assert changed.execution_id == "exec_1"  # provenance survives an update
    (old,) = awb.annotations.history(first.id)
    assert old["label"] == "confirmed" and old["author"] == "ana" and old["changed_by"] == "bo"
    with pytest.raises(ValidationError, match="cannot update"):
        awb.annotations.update(first.id, document_id="obj_a_0")
    awb.annotations.delete(first.id, author="bo")
    with pytest.raises(NotFoundError):
        awb.annotations.get(first.id)
    assert awb.annotations.get(first.id, include_deleted=True).deleted_at is not None
    assert len(awb.annotations.history(first.id)) == 2
    assert awb.annotations.list(collection_id="col_x").total == 0
    assert awb.annotations.list(collection_id="col_x", include_deleted=True).total == 1
    types = [e["type"] for e in awb.events.recent()]
    assert types[:3] == ["annotation.deleted", "annotation.updated", "annotation.created"]


def test_list_filters_and_pages(awb):
    for i, det in enumerate(["obj_a_0", "obj_a_1", "obj_b_0", "obj_b_1", "obj_c_0"]):
        create(awb, document_id=det, label="confirmed" if i % 2 else "false_positive",
               author="ana" if i < 3 else "bo", retriever_id="ret_q", execution_id=f"exec_{i % 2}")
    assert awb.annotations.list(label="confirmed").total == 2
    assert awb.annotations.list(author="bo").total == 2
    assert awb.annotations.list(execution_id="exec_0").total == 3
    assert awb.annotations.list(document_id="obj_b_0").items[0].label == "false_positive"
    page = awb.annotations.list(collection_id="col_x", limit=2)
    assert len(page.items) == 2 and page.total == 5 and page.next_offset == 2
    last = awb.annotations.list(collection_id="col_x", offset=4, limit=2)
    assert len(last.items) == 1 and last.next_offset is None
    from datetime import UTC, datetime, timedelta

    future = datetime.now(UTC) + timedelta(hours=1)
    assert awb.annotations.list(since=future).total == 0
    assert awb.annotations.list(until=future).total == 5


def test_bulk_operations_succeed_or_fail_one_by_one(awb):
    existing = create(awb, document_id="obj_c_0", label="confirmed")
    results = awb.annotations.bulk([
        {"op": "create", "document_id": "obj_a_0", "collection_id": "col_x",
         "label": "confirmed"},
        {"op": "create", "document_id": "obj_a_1", "collection_id": "col_x",
         "label": "corrected"},  # no true_class, no box: fails alone
        {"op": "create", "document_id": "ghost", "collection_id": "col_x",
         "label": "confirmed"},
        {"op": "update", "id": existing.id, "label": "false_positive"},
        {"op": "delete", "id": "ann_missing"},
        {"op": "frobnicate"},
        {"op": "create", "document_id": "doc_obj_d", "collection_id": "col_x",
         "label": "missed", "payload": {"bbox": BOX, "true_class": "star"}},
    ])
    assert [r.ok for r in results] == [True, False, False, True, False, False, True]
    assert "true_class" in results[1].error and "ghost" in results[2].error
    assert "unknown op 'frobnicate'" in results[5].error
    assert awb.annotations.get(existing.id).label == "false_positive"
    assert awb.annotations.list(collection_id="col_x").total == 3
    with pytest.raises(ValidationError, match="at most 1000"):
        awb.annotations.bulk([{"op": "delete", "id": "x"}] * 1001)


def test_every_accepted_write_is_committed_before_returning(awb, home):
    from workbench import Workbench

    annotation = create(awb, document_id="obj_a_0", label="confirmed")
    other = Workbench.open(home)  # a second process would see the same
    assert other.annotations.get(annotation.id).label == "confirmed"


def test_custom_labels_once_the_collection_allows_them(awb):
    assert awb.annotations.vocabulary("x").allow_custom_labels is False
    with pytest.raises(ValidationError, match="workbench labels x --allow-custom"):
        create(awb, document_id="obj_a_0", label="needs_second_look")
    assert awb.annotations.allow_custom_labels("x").allow_custom_labels is True
    made = create(awb, document_id="obj_a_0", label="needs_second_look", confidence=0.5)
    assert made.label == "needs_second_look"
    assert awb.annotations.allow_custom_labels("col_x", False).allow_custom_labels is False
    # a label written while it was allowed stays, and the rest of the annotation can change
    assert awb.annotations.update(made.id, reasoning="later").label == "needs_second_look"
    with pytest.raises(ValidationError, match="did you mean 'corrected'"):
        awb.annotations.update(made.id, label="Corrected")
    results = awb.annotations.bulk([
        {"document_id": "obj_a_1", "collection_id": "x", "label": "confirmed"},
        {"document_id": "obj_b_0", "collection_id": "x", "label": "looks_odd"}])
    assert [r.ok for r in results] == [True, False] and "not a standard" in results[1].error
    with pytest.raises(NotFoundError, match="no collection 'nope'"):
        awb.annotations.vocabulary("nope")


def test_a_bulk_request_refreshes_each_image_once(awb, monkeypatch):
    """Four verdicts on two images: every one reaches the ground truth, which is rebuilt
    once per image at the end of the request."""
    from workbench import truth

    calls = []
    original = truth.refresh

    def counting(conn, collection_id, object_ids, *args):
        calls.append(sorted(object_ids))
        return original(conn, collection_id, object_ids, *args)

    monkeypatch.setattr(truth, "refresh", counting)
    results = awb.annotations.bulk([
        {"document_id": "obj_a_0", "collection_id": "x", "label": "confirmed"},
        {"document_id": "obj_a_1", "collection_id": "x", "label": "false_positive"},
        {"document_id": "obj_b_0", "collection_id": "x", "label": "corrected",
         "payload": {"true_class": "star"}},
        {"document_id": "obj_b_1", "collection_id": "x", "label": "corrected"},  # fails
        {"document_id": "doc_obj_a", "collection_id": "x", "label": "image_done"}])
    assert [r.ok for r in results] == [True, True, True, False, True]
    assert calls == [["obj_a", "obj_b"]]
    a, b = awb.truth.image("x", "obj_a"), awb.truth.image("x", "obj_b")
    assert a.state == "complete" and len(a.objects) == 1 and len(a.negatives) == 1
    assert b.state == "partial" and [o.cls for o in b.objects] == ["star"]


def test_two_refreshes_of_one_new_image_at_once_both_land(awb):
    """Two reviewers' verdicts on two boxes of one image race on the image's state row: the
    second transaction read no row, and on Postgres its plain insert failed on the key once
    the first committed. The write is an upsert: both land, the later one last."""
    import threading

    from sqlalchemy import func, select

    from workbench.store import tables as t
    from workbench.truth import refresh

    errors = []

    def second():
        try:
            with awb.db.write() as conn:
                refresh(conn, "col_x", ["obj_a"])
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    with awb.db.write() as conn:
        refresh(conn, "col_x", ["obj_a"])  # the state row, not committed yet
        other = threading.Thread(target=second)
        other.start()
        other.join(0.5)  # it has read no row and waits on ours (Postgres) or the lock (SQLite)
    other.join(60)
    assert not other.is_alive() and errors == []
    with awb.db.read() as conn:
        rows = conn.execute(select(func.count()).select_from(t.image_truth).where(
            t.image_truth.c.object_id == "obj_a")).scalar_one()
    assert rows == 1
