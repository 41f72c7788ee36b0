"""Box conventions. Inside the library a box is absolute pixel ``xyxy`` floats; these
functions are the edges where other conventions come in or go out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

XYXY = tuple[float, float, float, float]


def xyxy_to_center(box: Sequence[float]) -> dict[str, float]:
    """Seed-style centre box ``{"x", "y", "w", "h"}`` in pixels."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2, "w": x2 - x1, "h": y2 - y1}


def center_to_xyxy(box: Mapping[str, float]) -> XYXY:
    """Pixel ``xyxy`` from a seed-style centre box ``{x, y, w, h}``."""
    x, y, w, h = (float(box[k]) for k in ("x", "y", "w", "h"))
    return (x - w / 2, y - h / 2, x + w / 2, y + h / 2)


def xyxy_to_yolo(box: Sequence[float], width: int, height: int) -> XYXY:
    """YOLO label: normalised centre x, centre y, width, height."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)


def yolo_to_xyxy(box: Sequence[float], width: int, height: int) -> XYXY:
    """Pixel ``xyxy`` from a YOLO label: normalised centre x, centre y, width, height."""
    cx, cy, w, h = (float(v) for v in box)
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
            (cy + h / 2) * height)


def xyxy_to_fiftyone(box: Sequence[float], width: int, height: int) -> XYXY:
    """FiftyOne: relative top-left x, y, width, height."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height)


def fiftyone_to_xyxy(box: Sequence[float], width: int, height: int) -> XYXY:
    """Pixel ``xyxy`` from FiftyOne's relative top-left x, y, width, height."""
    x, y, w, h = (float(v) for v in box)
    return (x * width, y * height, (x + w) * width, (y + h) * height)


def clip_xyxy(box: Sequence[float], width: int, height: int) -> XYXY:
    """The box clamped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height))

