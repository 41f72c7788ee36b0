"""A video frame on the Detect and Review pages shows the frames around it in its video."""

from __future__ import annotations

import pytest

from tests.app.conftest import run_page, shown

pytest.importorskip("cv2")


@pytest.fixture
def footage(workspace, tmp_path):
    """A clip ingested at 3 fps and detected by the starter."""
    from tests.conftest import STARTER
    from workbench.demo.clip import render_clip
    from workbench.detection import DetectParams

    (tmp_path / "clips").mkdir()
    render_clip(tmp_path / "clips" / "shapes.mp4")
    workspace.buckets.create("footage")
    workspace.ingest.run("footage", [tmp_path / "clips"], fps=3)
    workspace.registry.register_yolo(STARTER, lineage={"imgsz": 320})
    workspace.collections.create("footage", ["footage"])
    workspace.detection.run("footage", params=DetectParams(imgsz=320, conf=0.05))
    return workspace


def _strip(at) -> list[str]:
    """The strip's heading, with the video's file name (the metadata holds its path)."""
    return [shown(c).rsplit("/", 1)[-1] for c in at.caption
            if "Neighbouring frames in" in c.value]


def test_the_detect_detail_of_a_frame_shows_its_neighbours(footage):
    at = run_page("pages/2_Detect.py")
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="detail_image").value is not None
    assert _strip(at) == ["shapes.mp4"]
    frames = [c.value for c in at.caption if c.value.startswith(("frame ", "**▶ frame"))]
    assert len(frames) >= 2 and sum(f.startswith("**▶") for f in frames) == 1


def test_the_image_review_of_a_frame_shows_its_neighbours(footage):
    at = run_page("pages/3_Review.py")
    assert not at.exception, [e.message for e in at.exception]
    modes = [r for r in at.radio if "Whole images" in r.options]
    if modes:
        modes[0].set_value("Whole images").run()
    assert not at.exception, [e.message for e in at.exception]
    assert _strip(at) == ["shapes.mp4"]
