"""In a real browser: upload three images on the Ingest page and see them in the grid."""

import pytest

from tests.conftest import write_images
from workbench import Workbench

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_upload_three_images_and_see_them_in_the_grid(app_server, page, home, tmp_path):
    wb = Workbench.open(home)
    wb.buckets.create("uploads")
    files = write_images(tmp_path / "to_upload", 3, prefix="frame")

    page.goto(f"{app_server}/Ingest")
    page.get_by_text("Images in uploads").wait_for()
    page.locator("input[type=file]").first.set_input_files([str(f) for f in files])
    for f in files:
        page.get_by_text(f.name).first.wait_for()  # listed by the uploader
    page.get_by_role("button", name="Ingest uploads").click()
    page.get_by_text("3 accepted, 0 duplicate, 0 rejected").wait_for()
    page.get_by_text("3 images · page 1 of 1").wait_for()
    grid = page.locator("[data-testid='stImage'] img")
    grid.nth(2).wait_for()
    assert grid.count() == 3
    assert all(grid.nth(i).evaluate("img => img.naturalWidth") > 0 for i in range(3))
    # And they are really stored, with their uploaded names as the source.
    stored = wb.buckets.objects(wb.buckets.get("uploads"))
    assert sorted(o.source for o in stored) == sorted(f.name for f in files)
