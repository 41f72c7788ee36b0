"""Shared fixtures: a fresh workspace per test and tiny images made on the spot."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Tests never reach a network and never start the app's background worker by themselves.
os.environ["WORKBENCH_AUTOSTART_WORKER"] = "false"
os.environ.setdefault("WORKBENCH_OFFLINE", "true")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def wb(home: Path):
    from workbench import Workbench

    workbench = Workbench.open(home)
    yield workbench
    workbench.close()


def image_bytes(size=(64, 48), color=(200, 30, 30), fmt="JPEG", exif=None) -> bytes:
    """A small solid image; each distinct colour gives distinct bytes."""
    buffer = io.BytesIO()
    image = Image.new("RGB", size, color)
    kwargs = {"exif": exif} if exif is not None else {}
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noise_image_bytes(seed: int, size=(64, 48), fmt="JPEG") -> bytes:
    """A small noise image; different seeds give different bytes (solid colours can collide)."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size[1], size[0], 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def write_images(folder: Path, count: int, prefix: str = "img", fmt="JPEG") -> list[Path]:
    """``count`` different small images in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = {"JPEG": ".jpg", "PNG": ".png"}[fmt]
    paths = []
    for i in range(count):
        path = folder / f"{prefix}_{i:04d}{ext}"
        path.write_bytes(noise_image_bytes(hash((prefix, i)) % 2**32, fmt=fmt))
        paths.append(path)
    return paths


STARTER = REPO / "data" / "starter" / "shapeworld_starter.pt"


@pytest.fixture(scope="session")
def starter_weights() -> Path:
    """The detector the project trains and ships (data/starter)."""
    assert STARTER.exists(), "data/starter is missing: python -m workbench.demo.train_starter"
    return STARTER


@pytest.fixture
def shapeworld_images(tmp_path) -> Path:
    """A folder of six small ShapeWorld day scenes (with ground truth beside it)."""
    from workbench.demo.shapeworld import SceneConfig, write_dataset

    root = write_dataset(tmp_path / "scenes", SceneConfig(width=320, height=240), 6, seed=11)
    return root / "images"
