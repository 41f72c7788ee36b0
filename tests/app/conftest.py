"""App tests: a workspace per test, pages run through the entry point as the app runs them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO
from workbench import Workbench


@pytest.fixture
def workspace(home, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    wb = Workbench.open(home)
    yield wb
    wb.close()


def populate(wb: Workbench, tmp_path: Path) -> None:
    """A bucket of ShapeWorld scenes detected by the starter, and a job waiting in the queue."""
    from tests.conftest import STARTER
    from workbench.demo.shapeworld import SceneConfig, write_dataset
    from workbench.detection import DetectParams

    wb.buckets.create("cams", {"properties": {"image": {"type": "image"},
                                              "camera_id": {"type": "text"}}})
    # Mixed light and clutter, so that the starter is unsure of some boxes (a review queue).
    config = SceneConfig(width=320, height=240, lighting="mixed", clutter=3, min_objects=3)
    scenes = write_dataset(tmp_path / "scenes", config, 8, seed=3)
    wb.ingest.run("cams", [scenes / "images"], metadata={"camera_id": "c1"})
    wb.registry.register_yolo(STARTER, lineage={"imgsz": 320})
    wb.collections.create("cams", ["cams"])
    wb.detection.run("cams", params=DetectParams(imgsz=320, conf=0.1))
    wb.jobs.submit("ingest", wb.ingest._params("cams", [tmp_path / "imgs"], None, None))


def shown(element) -> str:
    """An element's text as the browser shows it (user strings are Markdown-escaped)."""
    return re.sub(r"\\(.)", r"\1", element.value)


def run_page(page: str) -> AppTest:
    """Run a page the way the app does: through the entry point, so navigation resolves."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    if page != "app.py":
        at.switch_page(page)
    return at.run()
