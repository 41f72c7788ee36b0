"""In a real browser: start a detection run from the Detect page and see boxes drawn."""

import pytest

from tests.conftest import STARTER
from workbench import Workbench

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.with_worker]


def test_run_detection_from_the_page_and_see_boxes(app_server, page, home, tmp_path):
    from workbench.demo.shapeworld import SceneConfig, write_dataset

    wb = Workbench.open(home)
    wb.buckets.create("scenes")
    scenes = write_dataset(tmp_path / "scenes", SceneConfig(width=320, height=240), 6, seed=8)
    wb.ingest.run("scenes", [scenes / "images"])
    wb.registry.register_yolo(STARTER, lineage={"imgsz": 320})
    wb.collections.create("scenes", ["scenes"])

    page.goto(f"{app_server}/Detect")
    page.get_by_text("0 of 6 images processed").wait_for()
    page.get_by_role("button", name="Run detection").click()
    page.get_by_text("6 of 6 images processed").wait_for(timeout=120_000)
    page.get_by_role("heading", name="Results").wait_for()
    drawn = page.locator("[data-testid='stImage'] img")
    drawn.first.wait_for()
    assert drawn.count() >= 2
    assert drawn.first.evaluate("img => img.naturalWidth") > 0
    collection = wb.collections.get("scenes")
    assert wb.detection.count_documents(collection, "yolo_detector@1.0.0") == 6
