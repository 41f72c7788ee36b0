"""In a real browser, as a new user: load the demo workspace from the empty Home page."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.with_worker]


def test_load_demo_workspace_with_the_apps_own_worker(app_server, page, home):
    page.goto(app_server)
    page.get_by_text("This workspace is empty").wait_for()
    page.get_by_role("button", name="Load demo workspace").click()
    # The jobs panel shows the demo job while it runs; the counts update when it is done.
    page.get_by_text("Recently finished").wait_for(timeout=120_000)
    def metric(label):
        card = page.locator("[data-testid='stMetric']").filter(has_text=label)
        return int(card.locator("[data-testid='stMetricValue']").inner_text())

    assert metric("Images") >= 100
    assert metric("Buckets") == 1
    assert metric("Failed jobs") == 0
    assert (home / "logs" / "worker.log").exists()
