"""In a real browser, as a new user: load the demo workspace from the empty Home page."""

import time

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.with_worker]


def test_load_demo_workspace_with_the_apps_own_worker(app_server, page, home):
    page.goto(app_server)
    page.get_by_text("This workspace is empty").wait_for()
    page.get_by_role("button", name="Load demo workspace").click()

    def metric(label):
        card = page.locator("[data-testid='stMetric']").filter(has_text=label)
        return int(card.locator("[data-testid='stMetricValue']").inner_text())

    # The page refreshes itself as jobs finish; the demo is done when none is active.
    deadline = time.monotonic() + 240
    while not (metric("Images") >= 100 and metric("Active jobs") == 0):
        assert time.monotonic() < deadline, "the demo did not finish in 4 minutes"
        time.sleep(1)
    assert metric("Buckets") == 1
    assert metric("Failed jobs") == 0
    page.get_by_role("link", name="Detect").click()
    page.get_by_text("150 of 150 images processed").wait_for()
    page.locator("[data-testid='stImage'] img").first.wait_for()
    assert (home / "logs" / "worker.log").exists()
