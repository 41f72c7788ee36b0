"""In a real browser: review three detections with the keyboard, the class picker and the
canvas, then check what was stored."""

import time

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import STARTER
from tests.e2e.conftest import wait_idle
from workbench import Workbench

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _reviewed(page) -> int:
    card = page.locator("[data-testid='stMetric']").filter(has_text="Reviewed in this session")
    return int(card.locator("[data-testid='stMetricValue']").inner_text())


def _wait_reviewed(page, n: int, timeout: float | None = None) -> None:
    page.wait_for_function(
        """n => [...document.querySelectorAll("[data-testid='stMetric']")]
              .some(m => m.innerText.includes('Reviewed in this session')
                         && m.innerText.trim().endsWith(String(n)))""", arg=n,
        **({"timeout": timeout} if timeout else {}))


def _press_until(page, key: str, arrived, tries: int = 3) -> None:
    """Press a shortcut with the page focused, again if the app was rerunning and lost it."""
    for attempt in range(tries):
        page.locator("h1").click()  # focus the page, not an input
        page.keyboard.press(key)
        try:
            arrived()
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise


def _pick_queue(page, name: str) -> None:
    page.locator("[data-testid='stSelectbox']").filter(has_text="Queue").click()
    page.get_by_role("option", name=name).click()


def _settled(page, canvas) -> dict:
    """The canvas in view once the app has finished its run, and its box: the component is
    drawn again by a run that was still going when it first showed (detached meanwhile)."""
    for attempt in range(5):
        wait_idle(page)
        try:
            canvas.wait_for(state="visible")
            canvas.scroll_into_view_if_needed(timeout=5_000)
            box = canvas.bounding_box()
            if box is not None:
                return box
        except PlaywrightError:
            if attempt == 4:
                raise
        time.sleep(0.5)
    raise AssertionError("the drawing canvas never settled on the page")


def _draw_one_box(page, canvas, at: float) -> None:
    """Drag one box from ``at`` (a fraction of the canvas) over a fifth of its width.

    The canvas may take a moment to become interactive on a busy machine: draw again if the
    first stroke went nowhere (a second box would show as "2 box(es)")."""

    def drag():
        box = _settled(page, canvas)
        x, y = box["x"] + box["width"] * at, box["y"] + box["height"] * at
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + box["width"] * 0.2, y + box["height"] * 0.25, steps=8)
        page.mouse.up()

    drag()
    try:
        page.get_by_text("1 box(es) drawn").wait_for(timeout=8_000)
    except PlaywrightTimeout:
        page.get_by_text("0 box(es) drawn").wait_for()
        drag()
        page.get_by_text("1 box(es) drawn").wait_for()


def test_review_three_detections(app_server, page, home, tmp_path):
    from workbench.demo.shapeworld import SceneConfig, write_dataset
    from workbench.detection import DetectParams

    wb = Workbench.open(home)
    wb.buckets.create("scenes")
    scenes = write_dataset(tmp_path / "scenes", SceneConfig(lighting="night", clutter=3,
                                                            min_objects=3), 8, seed=4)
    wb.ingest.run("scenes", [scenes / "images"])
    wb.registry.register_yolo(STARTER, lineage={"imgsz": 320})
    wb.collections.create("scenes", ["scenes"])
    wb.detection.run("scenes", params=DetectParams(imgsz=320, conf=0.1))

    page.goto(f"{app_server}/Review")
    _pick_queue(page, "scenes:review")  # the detection queue (image review comes first)
    page.get_by_role("button", name="Confirm (A)").wait_for()
    assert _reviewed(page) == 0

    # 1. Confirm from the keyboard (pressed again if a rerun swallowed the first press).
    _press_until(page, "a", lambda: _wait_reviewed(page, 1, timeout=20_000))

    # 2. Correct with a new class.
    page.get_by_role("button", name="Correct (E)").click()
    page.get_by_text("Pick the right class").wait_for()
    page.locator("[data-testid='stSelectbox']").filter(has_text="Class").last.click()
    page.get_by_role("option", name="new class…").click()
    name = page.get_by_label("New class name")
    name.fill("star")
    name.press("Enter")
    save = page.get_by_role("button", name="Save correction")
    page.wait_for_function("() => [...document.querySelectorAll('button')].some("
                           "b => b.innerText.includes('Save correction') && !b.disabled)")
    save.click()
    _wait_reviewed(page, 2)

    # 3. Draw a missed box on the canvas with the mouse.
    _press_until(page, "m", lambda: page.get_by_text(
        "Draw a box around each missed object").wait_for(timeout=20_000))
    canvas = page.locator("canvas.upper-canvas").first
    _draw_one_box(page, canvas, 0.1)
    page.get_by_role("button", name="Save missed").click()
    _wait_reviewed(page, 3)

    labels = sorted(a.label for a in wb.annotations.list(limit=10).items)
    assert labels == ["confirmed", "corrected", "missed"]
    (corrected,) = wb.annotations.list(label="corrected").items
    assert corrected.payload["true_class"] == "star"
    (missed,) = wb.annotations.list(label="missed").items
    x1, y1, x2, y2 = missed.box_xyxy
    assert missed.payload["true_class"] == "circle"
    assert x2 - x1 > 50 and y2 - y1 > 50  # a real box, in image pixels (640×480 scene)
    assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
    assert missed.document_id.startswith("doc_")  # a missed object belongs to the image
    queue = wb.retrievers.review_queue("scenes")
    assert {a.retriever_id for a in wb.annotations.list(limit=10).items} == {queue.id}


def test_look_over_images_the_model_found_nothing_on(app_server, page, home, tmp_path):
    """Night scenes the starter finds nothing in: draw what it missed, or mark nothing here."""
    from workbench.demo.shapeworld import SceneConfig, write_dataset
    from workbench.detection import DetectParams

    wb = Workbench.open(home)
    wb.buckets.create("scenes")
    scenes = write_dataset(tmp_path / "scenes", SceneConfig(lighting="night", min_objects=2),
                           6, seed=9)
    wb.ingest.run("scenes", [scenes / "images"])
    wb.registry.register_yolo(STARTER, lineage={"imgsz": 320})
    wb.collections.create("scenes", ["scenes"])
    wb.detection.run("scenes", params=DetectParams(imgsz=320, conf=0.9))
    empty = wb.retrievers.images_to_check("scenes", limit=100)
    assert len(empty) >= 2

    page.goto(f"{app_server}/Review")
    _pick_queue(page, "Images with no detections")
    page.get_by_text("found **nothing**").or_(page.get_by_text("found nothing")).first.wait_for()
    canvas = page.locator("canvas.upper-canvas").first
    _draw_one_box(page, canvas, 0.3)
    page.get_by_role("button", name="Save missed").click()
    page.wait_for_function("() => document.body.innerText.includes('Looked over in this "
                           "session') && [...document.querySelectorAll(\"[data-testid="
                           "'stMetric']\")].some(m => m.innerText.includes('Looked over') "
                           "&& m.innerText.trim().endsWith('1'))")
    page.get_by_text("0 box(es) drawn").wait_for()  # the next image, on a fresh canvas
    for attempt in range(3):  # a click that lands during a rerun is lost: click again
        page.get_by_role("button", name="Nothing here (N)").click()
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll(\"[data-testid='stMetric']\")]"
                ".some(m => m.innerText.includes('Looked over') && "
                "m.innerText.trim().endsWith('2'))", timeout=15_000)
            break
        except PlaywrightTimeout:
            if attempt == 2 or wb.annotations.list(label="no_objects").total:
                raise
    (missed,) = wb.annotations.list(label="missed").items
    x1, y1, x2, y2 = missed.box_xyxy
    assert x2 - x1 > 50 and y2 - y1 > 50 and missed.payload["true_class"] == "circle"
    (mark,) = wb.annotations.list(label="no_objects").items
    assert {missed.document_id, mark.document_id} <= {h.document_id for h in empty}
    assert missed.document_id != mark.document_id
