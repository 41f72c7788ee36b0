"""Shared fixtures: a fresh workspace per test and tiny images made on the spot."""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Tests never reach a network and never start the app's background worker by themselves.
os.environ["WORKBENCH_AUTOSTART_WORKER"] = "false"
# No image is reserved for the gold set unless a test asks for it (tests of the gold set set
# their own share), so that a test's few complete images are all training data.
os.environ["WORKBENCH_GOLD_FRACTION"] = "0"
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
        # crc32, not hash(): str hashes change with every process (PYTHONHASHSEED), and the
        # same call must give the same bytes in a worker, a subprocess and a rerun
        seed = zlib.crc32(f"{prefix}:{i}".encode())
        path.write_bytes(noise_image_bytes(seed, fmt=fmt))
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


# A collection "x" with hand-made detections (exact values) and unit vectors, for retriever,
# annotation and review tests that need no model.
KEY = "yolo_detector@1.0.0"
URI = f"workbench://{KEY}/detection_embedding"
# (object, camera, detections as (class, confidence)), images ingested in this order
IMAGES = [
    ("obj_a", "cam_1", [("circle", 0.95), ("square", 0.40)]),
    ("obj_b", "cam_2", [("triangle", 0.55), ("circle", 0.30)]),
    ("obj_c", "cam_1", [("square", 0.65)]),
    ("obj_d", "cam_3", []),
]


@pytest.fixture
def review_wb(wb):
    """A workspace with hand-made detections (exact values) and their vectors."""
    return fill_review(wb)


def fill_review(wb):
    """Put the hand-made detections of ``review_wb`` into a workspace; returns it."""
    from datetime import timedelta

    from workbench.extractors.yolo import yolo_spec
    from workbench.store import tables as t
    from workbench.store.metadata import utcnow

    now = utcnow()
    with wb.db.write() as conn:
        conn.execute(t.buckets.insert().values(id="bkt_x", name="x", schema={"properties": {
            "image": {"type": "image"}, "camera_id": {"type": "text"},
            "frame": {"type": "integer"}}}, description="", created_at=now))
        conn.execute(t.extractor_versions.insert().values(
            id="ext_1", name="yolo_detector", version="1.0.0", kind="yolo",
            spec=yolo_spec("1.0.0", 4, 4).to_dict(), classes=["circle", "square", "triangle"],
            lineage={}, metrics={}, notes="", created_at=now))
        conn.execute(t.collections.insert().values(
            id="col_x", name="x", extractor_name="yolo_detector", active_version="1.0.0",
            bucket_ids=["bkt_x"], created_at=now))
        for n, (obj, camera, dets) in enumerate(IMAGES):
            conn.execute(t.objects.insert().values(
                id=obj, bucket_id="bkt_x", sha256=obj * 8, width=100, height=100, format="PNG",
                size_bytes=1, source=f"{obj}.png", metadata={"camera_id": camera, "frame": n},
                created_at=now + timedelta(seconds=n)))
            conn.execute(t.documents.insert().values(
                id=f"doc_{obj}", collection_id="col_x", object_id=obj, extractor_key=KEY,
                features={}, n_detections=len(dets), created_at=now))
            for i, (cls, conf) in enumerate(dets):
                conn.execute(t.detections.insert().values(
                    id=f"{obj}_{i}", document_id=f"doc_{obj}", collection_id="col_x",
                    object_id=obj, extractor_key=KEY, idx=i, class_name=cls, confidence=conf,
                    x1=10 * i, y1=0, x2=10 * i + 20 + 10 * n, y2=30, embedding_id=f"{obj}_{i}"))
    ids = ["obj_a_0", "obj_a_1", "obj_b_0", "obj_b_1", "obj_c_0"]
    vectors = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.99, 0.1, 0, 0],
                        [0, 0.98, 0.2, 0]], dtype="float32")
    wb.vectors.upsert(URI, ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return wb
