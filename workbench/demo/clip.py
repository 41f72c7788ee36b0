"""A short ShapeWorld video: coloured shapes sliding over a shaded background, with a still
stretch of identical frames, for testing and benchmarking video ingest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Clip:
    """A rendered clip: where it is, its frame rate and size, and which frames repeat."""

    path: Path
    fps: float
    frames: int
    size: tuple[int, int]
    still: tuple[int, int]  # frames [start, stop) repeat frame ``start`` exactly


def render_clip(path: Path, seconds: float = 3.0, fps: float = 10.0,
                size: tuple[int, int] = (320, 240), still: tuple[int, int] = (10, 15),
                seed: int = 0) -> Clip:
    """Write an MP4 (``mp4v``) clip of ``seconds`` at ``fps`` to ``path``: three ShapeWorld
    shapes (circle, square, triangle) crossing the frame, each frame different from the last,
    except frames ``still[0]`` to ``still[1] - 1``, which all repeat frame ``still[0]``."""
    import cv2

    width, height = size
    frames = round(seconds * fps)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 160, width, dtype=np.float32)
    background = np.dstack([np.tile(ramp, (height, 1)) * k for k in (1.0, 0.9, 0.7)])
    background = np.clip(background, 0, 255).astype(np.uint8)
    starts = rng.uniform(0.1, 0.9, (3, 2)) * (width, height)
    # Each shape moves a fifth of the frame's width per second, so consecutive frames differ
    # well above the near-identical threshold even at a few frames per second.
    speeds = rng.choice([-1, 1], (3, 2)) * rng.uniform(0.15, 0.25, (3, 2)) * width
    colours = [(40, 40, 220), (40, 200, 40), (220, 120, 30)]
    radius = max(8, min(width, height) // 8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an mp4v video to {path}")
    try:
        for index in range(frames):
            shown = still[0] if still[0] <= index < still[1] else index
            writer.write(_frame(background, starts, speeds, colours, radius, shown / fps))
    finally:
        writer.release()
    return Clip(Path(path), fps, frames, size, still)


def _frame(background: np.ndarray, starts: np.ndarray, speeds: np.ndarray, colours,
           radius: int, t: float) -> np.ndarray:
    """One frame at ``t`` seconds: each shape bounces between the frame's edges."""
    import cv2

    height, width = background.shape[:2]
    frame = background.copy()
    span = np.array([width - 2 * radius, height - 2 * radius], dtype=np.float64)
    for shape, (start, speed, colour) in enumerate(zip(starts, speeds, colours, strict=True)):
        travel = np.mod(start - radius + speed * t, 2 * span)
        x, y = (np.where(travel > span, 2 * span - travel, travel) + radius).astype(int)
        if shape == 0:
            cv2.circle(frame, (x, y), radius, colour, -1, cv2.LINE_AA)
        elif shape == 1:
            cv2.rectangle(frame, (x - radius, y - radius), (x + radius, y + radius), colour, -1)
        else:
            points = np.array([(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)])
            cv2.fillPoly(frame, [points.astype(np.int32)], colour, cv2.LINE_AA)
    return frame
