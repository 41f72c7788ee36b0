"""SketchWorld: a second synthetic world, drawn unlike ShapeWorld, for measuring whether the
flywheel improves a detector on images it was not tuned to.

ShapeWorld (``shapeworld.py``) paints flat, upright shapes on plain backgrounds. SketchWorld
draws the same kinds of objects the way a different camera and a different artist would:
shapes rotated to any angle, often only outlined with a thick pen stroke or filled with a
gradient, in a muted palette; on textured backgrounds (gradients, stripes, smoothed noise,
paper); with pen scribbles and lines as distractors; the whole frame then blurred, re-lit and
JPEG-compressed. Nothing here shares code with ShapeWorld's renderer, so a detector trained
on ShapeWorld meets a real domain shift.

Classes: ``circle``, ``square``, ``triangle`` (the starter knows them) and ``star`` (it does
not). Ground truth is the tight box of each shape's drawn outline, clipped to the frame;
shapes do not overlap. Everything is a pure function of ``(config, seed, index)``. Datasets
are written in ShapeWorld's layout (``images/``, ``labels/``, ``annotations.json``,
``data.yaml``), so the simulated reviewer and the benchmarks read either world the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "star")
BACKGROUNDS = ("gradient", "stripes", "noise", "paper")
_PALETTE = np.array([(120, 110, 160), (160, 120, 90), (90, 140, 120), (170, 160, 100),
                     (110, 110, 110), (150, 90, 110), (80, 110, 150), (130, 150, 80)],
                    dtype=np.float64)


@dataclass(frozen=True)
class SketchConfig:
    """What kind of sketches to draw (all checked on construction, ValueError)."""

    width: int = 320
    height: int = 240
    classes: tuple[str, ...] = ("circle", "square", "triangle")
    min_objects: int = 1
    max_objects: int = 5
    size_range: tuple[float, float] = (0.12, 0.3)  # diameter, fraction of min(width, height)
    outline_share: float = 0.5  # shapes drawn as an outline only
    scribbles: int = 3  # unlabelled pen strokes at most
    blur: float = 1.2  # largest Gaussian blur radius, pixels
    jpeg_quality: tuple[int, int] = (35, 80)
    dim: float = 0.0  # share of scenes re-lit dark and low in contrast (dusk)

    def __post_init__(self) -> None:
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"width and height must be 16-4096, got {self.width}×{self.height}")
        unknown = [c for c in self.classes if c not in CLASSES]
        if unknown or not self.classes:
            raise ValueError(f"classes must be a non-empty subset of {CLASSES}, got "
                             f"{self.classes}")
        if not 0 <= self.min_objects <= self.max_objects <= 50:
            raise ValueError("need 0 <= min_objects <= max_objects <= 50")
        low, high = self.size_range
        if not 0 < low <= high <= 0.9:
            raise ValueError(f"size_range must satisfy 0 < low <= high <= 0.9, got "
                             f"{self.size_range}")
        for name in ("outline_share", "dim"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        q_low, q_high = self.jpeg_quality
        if not 1 <= q_low <= q_high <= 100:
            raise ValueError(f"jpeg_quality must be 1 <= low <= high <= 100, got "
                             f"{self.jpeg_quality}")


@dataclass(frozen=True)
class SketchObject:
    """One drawn shape: its class and its tight pixel ``xyxy`` box, clipped to the frame."""

    cls: str
    xyxy: tuple[float, float, float, float]


def _polygon(cls: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple]:
    if cls == "circle":
        n, radii = 48, [radius]
    elif cls == "square":
        n, radii = 4, [radius]
    elif cls == "triangle":
        n, radii = 3, [radius]
    else:  # star: five points, alternating outer and inner radius
        n, radii = 10, [radius, radius * 0.45]
    return [(cx + radii[k % len(radii)] * math.cos(angle + 2 * math.pi * k / n),
             cy + radii[k % len(radii)] * math.sin(angle + 2 * math.pi * k / n))
            for k in range(n)]


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    base = rng.uniform(90, 210, size=3)
    other = np.clip(base + rng.normal(0, 45, size=3), 0, 255)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        t = (x * math.cos(angle) + y * math.sin(angle))
        t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    elif kind == "stripes":
        period = rng.uniform(8, 30)
        angle = rng.uniform(0, math.pi)
        t = 0.5 + 0.5 * np.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period)
        t *= 0.6
    elif kind == "noise":
        coarse = rng.random((height // 16 + 2, width // 16 + 2))
        t = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize(
            (width, height), Image.BICUBIC), dtype=np.float64) / 255
    else:  # paper: fine grain on a flat tone
        t = rng.random((height, width)) * 0.25
    pixels = base[None, None, :] * (1 - t[..., None]) + other[None, None, :] * t[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def generate_scene(config: SketchConfig, seed: int, index: int = 0
                   ) -> tuple[Image.Image, tuple[SketchObject, ...]]:
    """Draw scene ``index`` of the stream ``seed``: the image and its objects."""
    rng = np.random.default_rng([seed, index, 7919])
    width, height = config.width, config.height
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    placed: list[tuple[float, float, float]] = []
    objects = []
    wanted = int(rng.integers(config.min_objects, config.max_objects + 1))
    for _ in range(wanted):
        for _attempt in range(30):
            radius = rng.uniform(*config.size_range) * side / 2
            cx, cy = rng.uniform(radius * 0.6, width - radius * 0.6), rng.uniform(
                radius * 0.6, height - radius * 0.6)
            if all(math.hypot(cx - px, cy - py) > (radius + pr) * 1.05
                   for px, py, pr in placed):
                break
        else:
            continue
        cls = config.classes[int(rng.integers(len(config.classes)))]
        points = _polygon(cls, cx, cy, radius, rng.uniform(0, 2 * math.pi))
        color = tuple(int(v) for v in np.clip(
            _PALETTE[int(rng.integers(len(_PALETTE)))] + rng.normal(0, 18, 3), 0, 255))
        stroke = max(2, int(radius * rng.uniform(0.08, 0.18)))
        if rng.random() < config.outline_share:
            draw.line(points + points[:1], fill=color, width=stroke, joint="curve")
        else:
            draw.polygon(points, fill=color)
            darker = tuple(max(0, int(v * 0.6)) for v in color)
            draw.line(points + points[:1], fill=darker, width=max(1, stroke // 2))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        pad = stroke / 2
        x1, y1 = max(0.0, min(xs) - pad), max(0.0, min(ys) - pad)
        x2, y2 = min(float(width), max(xs) + pad), min(float(height), max(ys) + pad)
        if x2 - x1 >= 4 and y2 - y1 >= 4:
            placed.append((cx, cy, radius))
            objects.append(SketchObject(cls, (round(x1, 2), round(y1, 2), round(x2, 2),
                                              round(y2, 2))))
    for _ in range(int(rng.integers(0, config.scribbles + 1))):
        start = rng.uniform([0, 0], [width, height])
        points = [tuple(start)]
        for _step in range(int(rng.integers(3, 8))):
            start = start + rng.normal(0, side / 10, 2)
            points.append(tuple(start))
        draw.line(points, fill=tuple(int(v) for v in rng.uniform(20, 120, 3)),
                  width=int(rng.integers(1, 4)))
    if config.dim and rng.random() < config.dim:
        pixels = np.asarray(image, dtype=np.float64)
        pixels = pixels * rng.uniform(0.25, 0.45) + rng.uniform(5, 25)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if config.blur:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, config.blur)))
    return image, tuple(objects)


def write_dataset(out_dir: str | Path, config: SketchConfig, n: int, seed: int = 0, *,
                  split: str | None = None, names: tuple[str, ...] | None = None) -> Path:
    """Write ``n`` scenes in ShapeWorld's layout under ``out_dir``; returns ``out_dir``."""
    names = tuple(names or config.classes)
    out = Path(out_dir).absolute()
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    prefix = split or "sketch"
    records = []
    for index in range(n):
        image, objects = generate_scene(config, seed, index)
        stem = f"{prefix}_{seed}_{index:05d}"
        quality = int(np.random.default_rng([seed, index, 104729]).integers(
            config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        image.save(out / "images" / f"{stem}.jpg", format="JPEG", quality=quality)
        lines = []
        for obj in objects:
            x1, y1, x2, y2 = obj.xyxy
            lines.append(f"{names.index(obj.cls)} {(x1 + x2) / 2 / config.width:.6f} "
                         f"{(y1 + y2) / 2 / config.height:.6f} {(x2 - x1) / config.width:.6f} "
                         f"{(y2 - y1) / config.height:.6f}")
        (out / "labels" / f"{stem}.txt").write_text("".join(f"{line}\n" for line in lines))
        records.append({"file": f"images/{stem}.jpg", "width": config.width,
                        "height": config.height,
                        "objects": [{"class": o.cls, "xyxy": list(o.xyxy)} for o in objects]})
    (out / "annotations.json").write_text(json.dumps(records, indent=1))
    yaml_names = "".join(f"  {i}: {name}\n" for i, name in enumerate(names))
    (out / "data.yaml").write_text(
        f"path: {json.dumps(str(out))}\ntrain: images\nval: images\nnames:\n{yaml_names}")
    return out
