"""The hostile suite's tools: a loaded workspace, the CLI run as a user runs it, and a
snapshot of the store (row counts of every table, every file) to compare before and after.

Every row of the suite is an input and the exact error it must produce; the store must be
the same afterwards.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import STARTER
from workbench import Workbench
from workbench.store import tables as t

# Files that change when a workspace is only opened or read (the SQLite journal, logs, the
# settings ultralytics writes on import), or that a failed run removes again.
VOLATILE = ("workbench.db", "workbench.db-wal", "workbench.db-shm", ".migrate.lock",
            "worker.lock", "worker.spawned")
VOLATILE_DIRS = ("logs", "ultralytics", "matplotlib", "blobs/tmp")


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, int]
    files: dict[str, int]

    @classmethod
    def of(cls, home: Path) -> Snapshot:
        wb = Workbench.open(home)
        try:
            with wb.db.read() as conn:
                rows = {name: conn.execute(sa.select(sa.func.count()).select_from(table))
                        .scalar_one() for name, table in t.metadata.tables.items()}
        finally:
            wb.close()
        files = {}
        for path in sorted(home.rglob("*")):
            relative = path.relative_to(home).as_posix()
            if path.is_dir() or relative in VOLATILE or relative.startswith(VOLATILE_DIRS):
                continue
            if relative.startswith("vectors/"):  # Chroma's own files: only that they exist
                files[relative] = 0
                continue
            files[relative] = path.stat().st_size
        return cls(rows, files)

    def changes(self, later: Snapshot) -> dict[str, object]:
        """What differs: tables whose row count changed, files added, removed or resized."""
        rows = {k: (v, later.rows.get(k)) for k, v in self.rows.items() if later.rows.get(k) != v}
        added = sorted(set(later.files) - set(self.files))
        removed = sorted(set(self.files) - set(later.files))
        resized = sorted(k for k in set(self.files) & set(later.files)
                         if self.files[k] != later.files[k])
        return {k: v for k, v in {"rows": rows, "added": added, "removed": removed,
                                  "resized": resized}.items() if v}


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``workbench --home HOME ARGS…`` through its real entry point, in this process."""
    from workbench import cli as module

    def run(home: Path, *args) -> Outcome:
        monkeypatch.setenv("WORKBENCH_HOME", str(home))  # --home sets it; undone afterwards
        monkeypatch.setattr(sys, "argv", ["workbench", "--home", str(home), *map(str, args)])
        code = 0
        try:
            module.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.stdout = sys.__stdout__ if module.state.out is None else module.state.out
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def assert_refused(outcome: Outcome, message: str) -> None:
    """A one-line error naming what was wrong, and a non-zero exit."""
    assert outcome.code != 0, (outcome.out, outcome.err)
    assert len(outcome.error_lines) == 1, outcome.err
    line = outcome.error_lines[0]
    assert line.startswith("error: "), line
    assert message in line, line


def build_workspace(home: Path, scenes: Path) -> Path:
    """A bucket of six ShapeWorld scenes run through the starter, a few verdicts, a reference
    set and a webhook: enough for every command to have something to refuse."""
    from workbench.demo.shapeworld import SceneConfig, write_dataset
    from workbench.detection import DetectParams

    wb = Workbench.open(home)
    try:
        wb.buckets.create("cams", {"properties": {"image": {"type": "image"},
                                                  "camera_id": {"type": "text"}}})
        images = write_dataset(scenes, SceneConfig(width=320, height=240), 6, seed=5) / "images"
        wb.ingest.run("cams", [images], metadata={"camera_id": "c1"})
        wb.registry.register_yolo(STARTER, lineage={"imgsz": 320})
        wb.collections.create("c", ["cams"])
        wb.detection.run("c", params=DetectParams(imgsz=320, conf=0.1))
        collection = wb.collections.get("c")
        detections = wb.detection.detections(collection, collection.active_key)
        reviewed = sorted({d.object_id for d in detections})[:3]  # three whole images
        for det in detections:
            if det.object_id in reviewed:
                wb.annotations.create(document_id=det.id, collection_id=collection.id,
                                      label="confirmed")
        for det in {d.object_id: d for d in detections if d.object_id in reviewed}.values():
            wb.annotations.create(document_id=det.document_id, collection_id=collection.id,
                                  label="image_done")
        wb.references.create("refs", "c")
        wb.references.promote("refs")
        wb.webhooks.create("hook", "http://127.0.0.1:9/hook")
    finally:
        wb.close()
    return home


@pytest.fixture(scope="session")
def loaded_home(tmp_path_factory) -> Path:
    """One loaded workspace for every row that must leave it as it was."""
    root = tmp_path_factory.mktemp("hostile")
    return build_workspace(root / "ws", root / "scenes")


@pytest.fixture
def own_copy(loaded_home, tmp_path) -> Path:
    """A copy of the loaded workspace for a test that changes it."""
    target = tmp_path / "ws"
    shutil.copytree(loaded_home, target)
    return target
