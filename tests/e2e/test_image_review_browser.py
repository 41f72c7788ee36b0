"""In a real browser: finish one image in image review — the model's boxes pre-drawn, one
deleted, one object drawn on the canvas, the image marked done — and check the ground truth."""

import pytest

from tests.e2e.conftest import detected_scenes
from tests.e2e.test_review_browser import _draw_one_box

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_finish_an_image_in_image_review(app_server, page, home, tmp_path):
    wb = detected_scenes(home, tmp_path, images=4, seed=21)

    page.goto(f"{app_server}/Review")
    page.get_by_text("Images not complete").wait_for()
    page.get_by_text("Yellow: to judge").wait_for()  # the image, its boxes pre-drawn
    deletes = page.get_by_role("button", name="Delete")
    deletes.first.wait_for()
    boxes_before = _settled_count(page, deletes)  # a loaded machine renders in steps
    assert boxes_before >= 2
    deletes.first.click()
    page.wait_for_function(
        "n => [...document.querySelectorAll('button')].filter(b => b.innerText.trim() === "
        "'Delete').length === n - 1", arg=boxes_before)

    page.get_by_text("Draw what the model missed").click()
    canvas = page.locator("canvas.upper-canvas").first
    _draw_one_box(page, canvas, 0.05)
    page.get_by_role("button", name="Save drawn boxes").click()
    page.get_by_text("0 box(es) drawn").wait_for()  # saved: a fresh canvas

    page.get_by_role("button", name="Done: reject the rest (D)").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll(\"[data-testid='stMetric']\")]"
        ".some(m => m.innerText.includes('Finished in this session') && "
        "m.innerText.trim().endsWith('1'))")

    (done,) = wb.annotations.list(label="image_done").items
    (deleted,) = wb.annotations.list(label="false_positive").items
    (drawn,) = wb.annotations.list(label="missed").items
    assert drawn.document_id == done.document_id  # drawn on the image, not on a box
    truth = wb.truth.image("scenes", done.object_id)
    assert truth.state == "complete"
    assert [b.annotation_id for b in truth.objects] == [drawn.id]
    assert [b.annotation_id for b in truth.negatives] == [deleted.id]
    # The boxes left open were rejected with the image: carried over as false positives.
    carried = wb.annotations.list(label="false_positive", origin="carried").total
    assert carried == boxes_before - 1


def _settled_count(page, locator, quiet_ms: int = 1500, timeout_s: float = 60) -> int:
    """The locator's count once it has not changed for ``quiet_ms`` (Streamlit may still be
    rerunning the page when its first buttons show; a click then is lost)."""
    import time

    deadline = time.monotonic() + timeout_s
    last, since = locator.count(), time.monotonic()
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        now = locator.count()
        if now != last:
            last, since = now, time.monotonic()
        elif (time.monotonic() - since) * 1000 >= quiet_ms:
            return now
    return last
