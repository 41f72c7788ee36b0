"""In a real browser: change a verdict on the Annotations page, then find its
``annotation.updated`` event among the recent events on the Automation page."""

import time

import pytest

from tests.conftest import STARTER
from tests.e2e.conftest import wait_idle as _idle
from workbench import Workbench

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _save_verdict(page, saved, tries: int = 3) -> None:
    """Correct the selected verdict to a star, again if a rerun swallowed the first try."""
    for attempt in range(tries):
        page.get_by_role("button", name="Save verdict").wait_for()
        _idle(page)
        page.locator("[data-testid='stTextInput']").filter(has_text="True class") \
            .locator("input").fill("star")
        page.get_by_label("Reasoning").fill("a star, not a circle")
        page.locator("[data-testid='stSelectbox']").filter(has_text="Label").last.click()
        page.get_by_role("option", name="corrected").click()
        page.get_by_role("button", name="Save verdict").click()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if saved():
                page.get_by_text("saved as revision 2").wait_for()
                return
            time.sleep(0.5)
        assert attempt < tries - 1, "the verdict was never saved"


def test_edit_a_verdict_and_see_the_event(app_server, page, home, tmp_path):
    from workbench.demo.shapeworld import SceneConfig, write_dataset
    from workbench.detection import DetectParams

    wb = Workbench.open(home)
    wb.buckets.create("scenes")
    scenes = write_dataset(tmp_path / "scenes", SceneConfig(min_objects=2), 3, seed=5)
    wb.ingest.run("scenes", [scenes / "images"])
    wb.registry.register_yolo(STARTER, lineage={"imgsz": 320})
    collection = wb.collections.create("scenes", ["scenes"])
    wb.detection.run("scenes", params=DetectParams(imgsz=320, conf=0.1))
    detection = wb.detection.detections(collection, collection.active_key)[0]
    made = wb.annotations.create(document_id=detection.id, collection_id=collection.id,
                                 label="confirmed",
                                 payload={"true_class": detection.class_name})

    page.goto(f"{app_server}/Annotations")
    _save_verdict(page, lambda: wb.annotations.get(made.id).revision == 2)

    changed = wb.annotations.get(made.id)
    assert (changed.label, changed.payload["true_class"], changed.revision) == \
        ("corrected", "star", 2)
    assert changed.reasoning == "a star, not a circle"

    page.goto(f"{app_server}/Automation")
    page.get_by_text("Recent events").wait_for()
    # the events table is a canvas grid; its cells are also in the accessible table
    page.wait_for_function("() => document.body.textContent.includes('annotation.updated')")
