"""In a real browser: create a retriever with an ``{{INPUT.class}}`` on the Retrievers page,
then review its queue on the Review page, which asks for the input before it runs."""

import json
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import detected_scenes
from tests.e2e.conftest import wait_idle as _idle
from workbench.errors import NotFoundError

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STAGES = [
    {"stage_name": "of_a_class", "stage_type": "filter", "config": {"filters": {"AND": [
        {"field": "class", "operator": "eq", "value": "{{INPUT.class}}"},
        {"field": "annotation.label", "operator": "exists", "value": False}]}}},
    {"stage_name": "most_uncertain", "stage_type": "sort", "config": {"by": "uncertainty"}},
    {"stage_name": "page", "stage_type": "limit", "config": {"limit": 10}},
]


def _until(done, action, tries: int = 3, wait: float = 15) -> None:
    """Do ``action`` until ``done()`` holds (a rerun can swallow a click or a keystroke)."""
    for _ in range(tries):
        action()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.3)
    raise AssertionError("the app never did it")


def _saved(wb) -> bool:
    try:
        wb.retrievers.get("circles")
        return True
    except NotFoundError:
        return False


def test_create_a_retriever_and_review_its_queue_with_an_input(app_server, page, home,
                                                                tmp_path):
    wb = detected_scenes(home, tmp_path)

    # 1. Create it on the Retrievers page.
    page.goto(f"{app_server}/Retrievers")
    page.get_by_text("Create a retriever").wait_for()

    def fill_and_save():
        _idle(page)
        name = page.get_by_role("textbox", name="Name", exact=True)
        name.fill("circles")
        name.press("Enter")
        _idle(page)
        stages = page.get_by_role("textbox", name="Stages (JSON)")
        stages.fill(json.dumps(STAGES, indent=1))
        stages.press("Control+Enter")
        _idle(page)
        page.get_by_role("button", name="Validate").click()
        page.get_by_text("Valid: 3 stage(s)").wait_for()
        page.get_by_role("button", name="Save", exact=True).click()

    _until(lambda: _saved(wb), fill_and_save)
    page.get_by_text("Saved retriever 'circles'").wait_for()
    saved = wb.retrievers.get("circles")
    assert saved.stages[0]["config"]["filters"]["AND"][0]["value"] == "{{INPUT.class}}"

    # 2. Review its queue: the page asks for the class first.
    page.goto(f"{app_server}/Review")
    page.locator("[data-testid='stSelectbox']").filter(has_text="Queue").click()
    page.get_by_role("option", name="circles").click()
    page.get_by_text("asks for inputs before it runs").wait_for()
    assert not page.get_by_role("button", name="Confirm (A)").count()
    field = page.get_by_role("textbox", name="class (required)")
    field.fill("circle")
    _idle(page)
    page.get_by_role("button", name="Start reviewing").click()
    page.get_by_role("button", name="Confirm (A)").wait_for()

    def confirm():
        _idle(page)
        try:
            page.get_by_role("button", name="Confirm (A)").click(timeout=10_000)
        except PlaywrightTimeout:
            pass

    _until(lambda: wb.annotations.list(label="confirmed").total >= 1, confirm)
    (confirmed,) = wb.annotations.list(label="confirmed").items
    assert confirmed.retriever_id == saved.id
    assert confirmed.payload["true_class"] == "circle"
    assert wb.retrievers.execution(confirmed.execution_id)["inputs"] == {"class": "circle"}
    assert wb.detection.get(confirmed.document_id).class_name == "circle"
