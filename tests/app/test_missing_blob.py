"""An image whose file has gone (deleted from the blob store, a network mount that moved)
costs its tile, not the page: a grey "image missing" tile, captioned, boxes still drawn."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.app.conftest import populate, run_page
from workbench.ui.render import MISSING_FILL, draw_boxes, placeholder


@pytest.fixture
def missing(workspace, tmp_path):
    """A populated workspace whose first image (first in the Detect grid too) lost its file."""
    populate(workspace, tmp_path)
    collection = workspace.collections.get("cams")
    key = workspace.registry.get(collection.extractor_name, collection.active_version).key
    (first,) = workspace.detection.images_with_detections(collection, key, limit=1).items
    obj = workspace.buckets.get_object(first)
    workspace.image_path(obj).unlink()
    return obj


@pytest.mark.parametrize("page", ["pages/1_Ingest.py", "pages/2_Detect.py",
                                  "pages/3_Review.py"])
def test_a_page_with_a_missing_image_renders(missing, page):
    at = run_page(page)
    assert not at.exception, [e.message for e in at.exception]


def test_the_ingest_grid_captions_the_missing_image(missing):
    at = run_page("pages/1_Ingest.py")
    assert any("image missing" in c.value for c in at.caption)


def test_the_detect_page_shows_the_missing_image_and_its_detail(missing):
    at = run_page("pages/2_Detect.py")
    assert any("image missing" in c.value for c in at.caption)
    at.selectbox(key="detail_image").select(missing.id).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("missing from the blob store" in w.value for w in at.warning)
    assert at.dataframe, "the detections are still listed"


def test_the_placeholder_has_the_image_shape_and_its_boxes(tmp_path):
    boxes = (("circle", 0.9, (10.0, 10.0, 200.0, 150.0)),)
    drawn = Image.open(io.BytesIO(draw_boxes(str(tmp_path / "gone.jpg"), boxes, ("circle",),
                                             640, size=(1280, 720))))
    bare, scale = placeholder((1280, 720), 640)
    assert drawn.size == bare.size == (640, 360) and scale == 0.5
    grey = Image.new("RGB", (1, 1), MISSING_FILL).getpixel((0, 0))
    assert _near(drawn.getpixel((600, 300)), grey), "the tile is grey away from the box"
    assert not _near(drawn.getpixel((5, 40)), grey), "the box's left edge, at x = 10 × 0.5"


def test_an_unknown_size_gives_a_tile_without_boxes(tmp_path):
    boxes = (("circle", 0.9, (10.0, 10.0, 200.0, 150.0)),)
    drawn = Image.open(io.BytesIO(draw_boxes(str(tmp_path / "gone.jpg"), boxes, ("circle",),
                                             320)))
    assert drawn.size == (320, 240)
    assert _near(drawn.getpixel((5, 40)), Image.new("RGB", (1, 1), MISSING_FILL).getpixel((0, 0)))


def _near(pixel, other, tolerance: int = 12) -> bool:
    """Equal but for JPEG's rounding."""
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, other, strict=True))


def test_a_crop_of_a_missing_image_is_a_grey_tile(tmp_path):
    """The Review page's strip and the cluster and taxonomy grids crop detections out of the
    image: a missing file gives the grey tile there too, and a restored one its crop."""
    from workbench.ui.review import crop

    path = tmp_path / "gone.png"
    tile = Image.open(io.BytesIO(crop(str(path), (10, 10, 50, 50))))
    assert tile.getpixel((2, 2)) == pytest.approx(Image.new("RGB", (1, 1), MISSING_FILL)
                                                  .getpixel((0, 0)), abs=8)
    Image.new("RGB", (100, 80), (255, 0, 0)).save(path)
    restored = Image.open(io.BytesIO(crop(str(path), (10, 10, 50, 50))))
    assert restored.getpixel((restored.width // 2, restored.height // 2))[0] > 200
