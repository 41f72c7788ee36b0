"""Images with their boxes drawn: colour by class, confidence on the label.

An image whose file cannot be read (deleted from the blob store, a network mount that moved)
is drawn as a grey tile that says so, with its boxes when its size is known, so that one lost
file costs its tile and not the page.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

HIGHLIGHT = "#facc15"  # the box under review, in a colour no class uses
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#9a6324", "#800000", "#469990", "#000075")
MISSING_TEXT = "image missing"
MISSING_SIZE = (640, 480)  # the placeholder's shape when the image's own is not known
MISSING_FILL = "#9ca3af"


def class_colour(name: str, classes: Sequence[str]) -> str:
    index = list(classes).index(name) if name in classes else sum(map(ord, name))
    return PALETTE[index % len(PALETTE)]


def image_missing(path: str | Path) -> bool:
    """Whether an image's file is absent or unreadable: what a page says under its tile."""
    return not os.access(path, os.R_OK)


def placeholder(size: tuple[int, int] | None, max_side: int = 640):
    """A grey RGB image saying "image missing", of ``size`` (the image's own width and
    height, so that its boxes land where they belong) scaled to ``max_side``; returns it
    and the scale applied to ``size``."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size if size and min(size) > 0 else MISSING_SIZE
    scale = min(1.0, max_side / max(width, height))
    image = Image.new("RGB", (max(1, round(width * scale)), max(1, round(height * scale))),
                      MISSING_FILL)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(11, round(image.width / 16)))
    draw.text((image.width / 2, image.height / 2), MISSING_TEXT, fill="white", font=font,
              anchor="mm")
    return image, scale


def draw_boxes(path: str, boxes: tuple, classes: tuple[str, ...], max_side: int = 640,
               highlight: int | None = None, colours: tuple[str, ...] | None = None,
               size: tuple[int, int] | None = None) -> bytes:
    """JPEG bytes of the image scaled to ``max_side`` with ``(class, conf, xyxy)`` boxes,
    coloured by class (or by ``colours``, one per box).

    If the file cannot be read, a grey "image missing" tile instead: of the image's ``size``
    (width, height) with the boxes on it when the caller knows it, without boxes when not
    (they could not be placed). The tile is not cached, so that a restored file shows."""
    try:
        return _draw_file(path, boxes, classes, max_side, highlight, colours)
    except OSError:  # FileNotFoundError, PermissionError, a truncated or foreign file
        image, scale = placeholder(size, max_side)
        return _draw(image, scale, boxes if size else (), classes, highlight, colours)


@st.cache_data(show_spinner=False, max_entries=2000)
def _draw_file(path: str, boxes: tuple, classes: tuple[str, ...], max_side: int,
               highlight: int | None, colours: tuple[str, ...] | None) -> bytes:
    from PIL import Image

    from workbench.images import load_image

    image = load_image(Path(path))
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:  # bilinear: a third of bicubic's time for a grid tile, alike at that size
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.Resampling.BILINEAR, reducing_gap=2.0)
    return _draw(image, scale, boxes, classes, highlight, colours)


def _draw(image, scale: float, boxes: tuple, classes: tuple[str, ...], highlight: int | None,
          colours: tuple[str, ...] | None) -> bytes:
    """JPEG bytes of ``image`` (already scaled by ``scale``) with the boxes on it."""
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(11, round(image.width / 50)))
    for index, (name, confidence, xyxy) in enumerate(boxes):
        current = index == highlight
        colour = HIGHLIGHT if current else (colours[index] if colours else
                                             class_colour(name, classes))
        x1, y1, x2, y2 = (v * scale for v in xyxy)
        width = 4 if current else 2
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        label = f"{name} {confidence:.2f}" if confidence is not None else name
        left, top, right, bottom = draw.textbbox((x1, y1), label, font=font)
        top_y = max(0, y1 - (bottom - top) - 2)
        draw.rectangle((x1, top_y, x1 + right - left + 4, top_y + bottom - top + 2), fill=colour)
        draw.text((x1 + 2, top_y), label, fill="white", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def boxes_of(detections) -> tuple:
    """Detections as the hashable tuple ``draw_boxes`` caches on."""
    return tuple((d.class_name, round(d.confidence, 3), tuple(round(v, 1) for v in d.xyxy))
                 for d in detections)
