"""Box conventions round-trip through every edge format."""

import pytest

from workbench.boxes import (
    center_to_xyxy,
    clip_xyxy,
    fiftyone_to_xyxy,
    xyxy_to_center,
    xyxy_to_fiftyone,
    xyxy_to_yolo,
    yolo_to_xyxy,
)

BOXES = [(10.0, 20.0, 110.0, 70.0), (0.0, 0.0, 640.0, 480.0), (33.5, 1.25, 34.5, 479.0)]


@pytest.mark.parametrize("box", BOXES)
def test_round_trips(box):
    assert center_to_xyxy(xyxy_to_center(box)) == pytest.approx(box)
    assert yolo_to_xyxy(xyxy_to_yolo(box, 640, 480), 640, 480) == pytest.approx(box)
    assert fiftyone_to_xyxy(xyxy_to_fiftyone(box, 640, 480), 640, 480) == pytest.approx(box)


def test_known_values():
    box = (10.0, 20.0, 110.0, 70.0)
    assert xyxy_to_center(box) == {"x": 60.0, "y": 45.0, "w": 100.0, "h": 50.0}
    assert xyxy_to_yolo(box, 200, 100) == pytest.approx((0.3, 0.45, 0.5, 0.5))
    assert xyxy_to_fiftyone(box, 200, 100) == pytest.approx((0.05, 0.2, 0.5, 0.5))
    assert clip_xyxy((-5, -5, 700, 100), 640, 480) == (0.0, 0.0, 640.0, 100.0)
