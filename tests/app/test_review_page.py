"""The Review page: verdicts are stored at once, with provenance; skip and undo work."""

import pytest

from tests.app.conftest import populate, run_page


@pytest.fixture
def reviewing(workspace, tmp_path):
    populate(workspace, tmp_path)
    return workspace


def _current(at):
    return at.session_state["review"].current


def _detection_queue(at):
    """The page opens on image review; these tests use the detection queue."""
    at.selectbox(key="review_retriever").select("cams:review").run()
    return at


def test_confirm_false_positive_skip_and_undo(reviewing):
    wb = reviewing
    at = _detection_queue(run_page("pages/3_Review.py"))
    assert not at.exception, [e.message for e in at.exception]
    first = _current(at)
    assert first is not None and first.confidence < 0.7
    at.button(key="confirm").click().run()
    (confirmed,) = wb.annotations.list(label="confirmed").items
    assert confirmed.document_id == first.detection_id
    queue = wb.retrievers.review_queue("cams")
    assert confirmed.retriever_id == queue.id and confirmed.execution_id.startswith("exec_")
    second = _current(at)
    assert second.detection_id != first.detection_id
    at.button(key="false_positive").click().run()
    assert wb.annotations.list(label="false_positive").items[0].document_id == \
        second.detection_id
    third = _current(at)
    at.button(key="skip").click().run()
    assert _current(at) is None or _current(at).detection_id != third.detection_id
    assert wb.annotations.list(document_id=third.detection_id).total == 0
    at.button(key="undo").click().run()  # takes back the false positive
    assert wb.annotations.list(label="false_positive").total == 0
    assert _current(at).detection_id == second.detection_id


def test_correct_with_a_new_class(reviewing):
    wb = reviewing
    at = _detection_queue(run_page("pages/3_Review.py"))
    target = _current(at)
    at.button(key="correct").click().run()
    assert not at.exception, [e.message for e in at.exception]
    at.selectbox(key="correct_class").select("new class…").run()
    at.text_input(key="correct_new_class").input("star").run()
    at.button(key="save_correct").click().run()
    assert not at.exception
    (corrected,) = wb.annotations.list(label="corrected").items
    assert corrected.document_id == target.detection_id
    assert corrected.payload["true_class"] == "star"
    assert corrected.payload["predicted_class"] == target.class_name


def test_an_empty_workspace_explains_what_to_do(workspace):
    at = run_page("pages/3_Review.py")
    assert not at.exception
    assert any("Nothing to review yet" in i.value for i in at.info)


def test_images_with_no_detections_are_looked_over(reviewing):
    """An image the model found nothing on leaves the image queue once marked."""
    from workbench.store import tables as t

    wb = reviewing
    collection = wb.collections.get("cams")
    blank = next(d for d in wb.detection.detections(collection, collection.active_key))
    with wb.db.write() as conn:  # the model finds nothing on this image
        conn.execute(t.detections.delete().where(
            t.detections.c.document_id == blank.document_id))
        conn.execute(t.documents.update().where(t.documents.c.id == blank.document_id)
                     .values(n_detections=0))
    waiting = {h.document_id for h in wb.retrievers.images_to_check("cams", limit=100)}
    assert blank.document_id in waiting
    at = run_page("pages/3_Review.py")
    options = at.selectbox(key="review_retriever").options
    assert "cams:spot-check" in options
    at.selectbox(key="review_retriever").select("Images with no detections").run()
    assert not at.exception, [e.message for e in at.exception]
    shown = at.session_state["image_check"].current
    assert shown is not None and shown.document_id in waiting
    at.button(key="image_no_objects").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (mark,) = wb.annotations.list(label="no_objects").items
    assert mark.document_id == shown.document_id
    assert shown.document_id not in {
        h.document_id for h in wb.retrievers.images_to_check("cams", limit=100)}
    at.button(key="image_undo").click().run()
    assert wb.annotations.list(label="no_objects").total == 0


def test_image_review_accepts_deletes_and_finishes_an_image(reviewing):
    """Whole images: each box judged (or left to the done button), the image complete."""
    wb = reviewing
    at = run_page("pages/3_Review.py")
    assert not at.exception, [e.message for e in at.exception]
    state = at.session_state["image_review"]
    image = state.current
    assert image is not None and state.remaining == 8
    collection = wb.collections.get("cams")
    boxes = wb.detection.detections(collection, collection.active_key,
                                    object_ids=[image.object_id])
    assert len(boxes) >= 2
    at.button(key=f"ir_accept_{boxes[0].id}").click().run()
    at.button(key=f"ir_delete_{boxes[1].id}").click().run()
    assert not at.exception, [e.message for e in at.exception]
    at.button(key="ir_done").click().run()  # the rest are rejected
    assert not at.exception, [e.message for e in at.exception]
    truth = wb.truth.image("cams", image.object_id)
    assert truth.state == "complete"
    assert [b.detection_id for b in truth.objects] == [boxes[0].id]
    assert [b.detection_id for b in truth.negatives] == [boxes[1].id]
    marks = wb.annotations.list(label="image_done").items
    queue = wb.retrievers.image_review("cams")
    assert [m.retriever_id for m in marks] == [queue.id]
    # The next image is up; undo takes the done mark back and the image is partial again.
    assert at.session_state["image_review"].current.object_id != image.object_id
    at.button(key="ir_undo").click().run()
    assert wb.truth.image("cams", image.object_id).state == "partial"


def test_disagreements_show_where_a_version_and_the_truth_differ(reviewing):
    wb = reviewing
    collection = wb.collections.get("cams")
    (first, *_) = wb.detection.detections(collection, collection.active_key)
    wb.image_review.finish("cams", first.document_id, [
        {"document_id": first.id, "label": "false_positive"}])
    (row,) = [r for r in wb.image_review.disagreements("cams") if r["object_id"] ==
              first.object_id]
    assert row["false_positives"] >= 1
    at = run_page("pages/3_Review.py")
    at.selectbox(key="review_retriever").select("Disagreements with the ground truth").run()
    assert not at.exception, [e.message for e in at.exception]
    assert first.object_id in at.selectbox(key="disagreement_pick").options
