"""In a real browser: Find similar on a Review item opens the Search page on its neighbours;
three of them are selected and given one verdict, which is stored (bulk, by the app's
reviewer, with the search's execution)."""

import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import detected_scenes
from tests.e2e.conftest import wait_idle as _idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _check(page, index: int) -> None:
    """Tick the ``index``-th result's checkbox and wait until the app counts it; again if a
    rerun swallowed the click, and untick-then-tick when the box shows ticked but the app
    never counted it (a click during a rerun, seen under load)."""
    box = page.locator("[data-testid='stCheckbox']").filter(has_text="select").nth(index)
    for attempt in range(3):
        _idle(page)
        if not box.locator("input").is_checked():
            box.locator("label").click()
        try:
            page.wait_for_function(
                "i => [...document.querySelectorAll(\"[data-testid='stCheckbox']\")]"
                ".filter(c => c.innerText.includes('select'))[i]"
                ".querySelector('input').checked", arg=index, timeout=10_000)
            page.get_by_text(f"{index + 1} selected").wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            if box.locator("input").is_checked():  # ticked here, lost by the app: send it
                box.locator("label").click()       # again (untick, then tick next round)
                _idle(page)


def test_find_similar_then_one_verdict_for_three_neighbours(app_server, page, home, tmp_path):
    wb = detected_scenes(home, tmp_path)

    page.goto(f"{app_server}/Review")
    page.locator("[data-testid='stSelectbox']").filter(has_text="Queue").click()
    page.get_by_role("option", name="scenes:review").click()
    page.get_by_role("button", name="Confirm (A)").wait_for()
    _idle(page)
    page.get_by_role("button", name="Find similar").click()

    page.get_by_role("heading", name="Search").wait_for()
    page.get_by_text("result(s)").first.wait_for()
    assert page.url.endswith("/Search")
    for index in range(3):
        _check(page, index)
    page.get_by_text("3 selected").wait_for()
    page.locator("[data-testid='stRadio']").filter(has_text="Verdict") \
        .get_by_text("false_positive").click()
    _idle(page)
    page.get_by_role("button", name="Apply verdict").click()
    page.get_by_text("verdict(s) 'false_positive' stored").wait_for()

    deadline = time.monotonic() + 10
    while wb.annotations.list(label="false_positive").total < 3 and \
            time.monotonic() < deadline:
        time.sleep(0.3)
    stored = wb.annotations.list(label="false_positive").items
    (run,) = wb.retrievers.executions("scenes:search")
    search = wb.retrievers.get("scenes:search")
    assert len(stored) == 3, [(a.document_id, a.created_at.isoformat(), a.origin,
                               a.execution_id, a.retriever_id) for a in stored]
    # The three are the first three neighbours the search found, around the Review item.
    assert sorted(a.document_id for a in stored) == sorted(run["result_ids"][:3])
    assert run["inputs"]["detection_id"] not in {a.document_id for a in stored}
    assert {(a.author, a.retriever_id, a.execution_id) for a in stored} == {
        (wb.annotations.default_author, search.id, run["id"])}
