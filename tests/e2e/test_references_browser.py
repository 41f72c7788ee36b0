"""In a real browser: select detections in the Detect page's grid by clicking their rows and
add them to a new reference set; the set holds exactly those detections."""

import pytest

from tests.conftest import STARTER
from tests.e2e.conftest import wait_idle as _idle
from workbench import Workbench

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HEADER_PX = 35  # the grid's header row
ROW_PX = 56  # workbench.ui.selection's row_height


def _click_row(page, grid, row: int, selected: int, tries: int = 2) -> None:
    """Click a row's left edge (its selection checkbox) until the page counts it; a retry
    only after a long wait, since a second click on a selected row unselects it."""
    for attempt in range(tries):
        _idle(page)
        grid.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)  # the grid's canvas settles after a scroll or a rerun
        box = grid.bounding_box()
        x, y = box["x"] + 14, box["y"] + HEADER_PX + ROW_PX * row + ROW_PX / 2
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        try:
            page.get_by_text(f"{selected} detection(s) selected").wait_for(timeout=60_000)
            return
        except Exception:
            assert attempt < tries - 1, f"row {row} never became selected"


def test_add_references_by_selecting_rows(app_server, page, home, tmp_path):
    from workbench.demo.shapeworld import SceneConfig, write_dataset
    from workbench.detection import DetectParams

    wb = Workbench.open(home)
    wb.buckets.create("scenes")
    scenes = write_dataset(tmp_path / "scenes", SceneConfig(min_objects=3), 2, seed=5)
    wb.ingest.run("scenes", [scenes / "images"])
    wb.registry.register_yolo(STARTER, lineage={"imgsz": 320})
    collection = wb.collections.create("scenes", ["scenes"])
    wb.detection.run("scenes", params=DetectParams(imgsz=320, conf=0.1))

    page.goto(f"{app_server}/Detect")
    page.get_by_text("0 detection(s) selected").wait_for()
    grid = page.locator("[data-testid='stDataFrame']").filter(has_text="detection").last
    _click_row(page, grid, 0, selected=1)
    _click_row(page, grid, 1, selected=2)

    page.get_by_label("New set's name").fill("clicked")
    _idle(page)
    page.get_by_role("button", name="Add 2 selected").click()
    page.get_by_text("2 added to clicked").wait_for()

    items = wb.references.items("clicked")
    assert len(items) == 2
    picked = [wb.detection.get(i.detection_id) for i in items]
    (object_id,) = {d.object_id for d in picked}  # both from the image on show
    on_show = wb.detection.detections(collection, collection.active_key,
                                      object_ids=[object_id])
    assert sorted(d.id for d in picked) == sorted([on_show[0].id, on_show[1].id])
    assert {i.true_class for i in items} == {on_show[0].class_name, on_show[1].class_name}
