"""Images with their boxes drawn: colour by class, confidence on the label."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

HIGHLIGHT = "#facc15"  # the box under review, in a colour no class uses
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#9a6324", "#800000", "#469990", "#000075")


def class_colour(name: str, classes: Sequence[str]) -> str:
    index = list(classes).index(name) if name in classes else sum(map(ord, name))
    return PALETTE[index % len(PALETTE)]


@st.cache_data(show_spinner=False, max_entries=2000)
def draw_boxes(path: str, boxes: tuple, classes: tuple[str, ...], max_side: int = 640,
               highlight: int | None = None, colours: tuple[str, ...] | None = None) -> bytes:
    """JPEG bytes of the image scaled to ``max_side`` with ``(class, conf, xyxy)`` boxes,
    coloured by class (or by ``colours``, one per box)."""
    from PIL import ImageDraw, ImageFont

    from workbench.images import load_image

    image = load_image(Path(path))
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)))
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
