"""In a real browser: upload a generated video on the Ingest page, sampled at 3 frames a
second, then review one of its frames, with its neighbours in the video beside it."""

import pytest

from tests.conftest import STARTER
from workbench import Workbench

pytestmark = [pytest.mark.browser, pytest.mark.slow]
pytest.importorskip("cv2")


def test_ingest_a_video_and_review_one_of_its_frames(app_server, page, home, tmp_path):
    from workbench.demo.clip import render_clip
    from workbench.detection import DetectParams

    wb = Workbench.open(home)
    wb.buckets.create("footage")
    clip = tmp_path / "shapes.mp4"
    render_clip(clip)  # 3 s at 10 fps, frames 10-14 the same still

    page.goto(f"{app_server}/Ingest")
    page.get_by_text("Images in footage").wait_for()
    fps = page.locator("input[aria-label='Video frames per second'] >> visible=true").first
    fps.fill("3")
    fps.press("Enter")
    page.locator("input[type=file]").first.set_input_files([str(clip)])
    page.get_by_text("shapes.mp4").first.wait_for()  # listed by the uploader
    page.get_by_role("button", name="Ingest uploads").click()
    page.get_by_text("0 rejected").first.wait_for()
    frames = wb.buckets.objects(wb.buckets.get("footage"), limit=100)
    assert 5 <= len(frames) <= 9  # 3 a second over 3 s, the repeated still once
    assert all(f.metadata["video"].endswith("shapes.mp4") for f in frames)
    assert len({f.metadata["frame_index"] for f in frames}) == len(frames)

    # The starter detects the frames (the Detect page's own run is tested elsewhere).
    wb.registry.register_yolo(STARTER, lineage={"imgsz": 320})
    wb.collections.create("footage", ["footage"])
    wb.detection.run("footage", params=DetectParams(imgsz=320, conf=0.05))

    page.goto(f"{app_server}/Review")
    page.get_by_text("Neighbouring frames in").first.wait_for()
    assert "shapes.mp4" in page.get_by_text("Neighbouring frames in").first.inner_text()
    strip = page.get_by_text("frame ", exact=False)
    assert strip.count() >= 2  # the frame under review and at least one neighbour
