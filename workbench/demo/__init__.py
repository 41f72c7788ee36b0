"""The demo workspace: ShapeWorld scenes that a starter detector handles only partly well.

``wb.demo.setup`` (the app's "Load demo workspace" button, ``workbench demo``) generates a
deterministic mix of scenes — day scenes like the starter's training data, night scenes,
cluttered scenes and scenes with the class the starter has never seen (star) — ingests them
into the ``shapeworld`` bucket with their metadata, registers the shipped starter detector
as ``yolo_detector@1.0.0`` and runs it over the ``shapeworld`` collection. The ground truth
stays beside them in the workspace (``demo/shapeworld``) for the simulated reviewer and evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import NotFoundError

# A progress callback: (done, total, message).
Progress = Callable[[int, int, str], None]

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.domain import IngestReport
    from workbench.jobs import JobContext

DEMO_BUCKET = "shapeworld"
DEMO_COLLECTION = "shapeworld"
DEMO_SCHEMA = {
    "properties": {
        "image": {"type": "image", "required": True},
        "camera_id": {"type": "text"},
        "timestamp": {"type": "datetime"},
        "lighting": {"type": "text"},
        "scenario": {"type": "text"},
    }
}


@dataclass(frozen=True)
class DemoPart:
    """One slice of the demo data and what makes it easy or hard for the starter model."""

    name: str
    count: int
    seed: int
    lighting: str
    classes: tuple[str, ...]
    clutter: int = 0
    occlusion: float = 0.0


def demo_parts(scale: float = 1.0) -> tuple[DemoPart, ...]:
    """The demo's slices, each count scaled by ``scale`` (at least one image each)."""
    base = ("circle", "square", "triangle")
    parts = (
        DemoPart("day", 60, 101, "day", base),
        DemoPart("night", 30, 102, "night", base),
        DemoPart("clutter", 20, 103, "day", base, clutter=4, occlusion=0.3),
        DemoPart("unseen_star", 40, 104, "day", base + ("star",)),
    )
    return tuple(
        DemoPart(p.name, max(1, round(p.count * scale)), p.seed, p.lighting, p.classes,
                 p.clutter, p.occlusion)
        for p in parts
    )


def generate_demo_data(
    out_dir: Path, scale: float = 1.0, progress: Callable[[int, int], None] | None = None
) -> list[tuple[Path, dict]]:
    """Write the demo scenes (idempotent) and return ``(image path, metadata)`` pairs."""
    from workbench.demo.shapeworld import ALL_CLASSES, SceneConfig, write_dataset

    parts = demo_parts(scale)
    total = sum(p.count for p in parts)
    done = 0
    items: list[tuple[Path, dict]] = []
    for part in parts:
        folder = Path(out_dir) / part.name
        if not (folder / "annotations.json").exists():
            config = SceneConfig(
                lighting=part.lighting, classes=part.classes, clutter=part.clutter,
                occlusion=part.occlusion,
            )
            base = done

            def step(i: int, _n: int, base: int = base) -> None:
                if progress:
                    progress(base + i, total)

            write_dataset(folder, config, part.count, seed=part.seed, split=part.name,
                          names=ALL_CLASSES, progress=step)
        done += part.count
        for record in json.loads((folder / "annotations.json").read_text()):
            meta = {
                "camera_id": record["camera_id"],
                "timestamp": record["timestamp"],
                "lighting": record["lighting"],
                "scenario": part.name,
            }
            items.append((folder / record["file"], meta))
    return items


class DemoService:
    """The demo workspace: ShapeWorld scenes in a bucket, the shipped starter detector, and a
    collection it has run over (``wb.demo``; the app's first start queues it as a job)."""

    def __init__(self, wb: Workbench):
        self.wb = wb

    def load(self, scale: float = 1.0, progress: Progress | None = None) -> IngestReport:
        """Generate the demo scenes and ingest them into the ``shapeworld`` bucket."""
        from workbench.ingest import Source

        wb = self.wb
        if not wb.buckets.exists(DEMO_BUCKET):
            wb.buckets.create(DEMO_BUCKET, DEMO_SCHEMA, "ShapeWorld demo scenes")
        out_dir = wb.home / "demo" / "shapeworld"

        def generated(i: int, n: int) -> None:
            if progress:
                progress(i, 2 * n, f"generating scenes {i}/{n}")

        items = generate_demo_data(out_dir, scale, generated)
        n = len(items)
        sources = [Source(str(path), f"{path.parent.parent.name}/{path.name}", meta)
                   for path, meta in items]

        def ingested(job) -> None:
            if progress:
                progress(n + job.progress_done, 2 * n, f"ingesting {job.progress_done}/{n}")

        return wb.ingest.run(DEMO_BUCKET, sources, listener=ingested)


    def register_starter(self):
        """Register the shipped starter detector as ``yolo_detector@1.0.0`` (once)."""
        from workbench.demo.train_starter import CARD_NAME, DEFAULT_OUT, WEIGHTS_NAME

        wb = self.wb
        existing = [v for v in wb.registry.list("yolo_detector") if v.version == "1.0.0"]
        if existing:
            return existing[0]
        weights = DEFAULT_OUT / WEIGHTS_NAME
        if not weights.exists():
            raise NotFoundError(
                f"the starter model {weights} is missing; train it with "
                "`python -m workbench.demo.train_starter`"
            )
        card = json.loads((DEFAULT_OUT / CARD_NAME).read_text())
        return wb.registry.register_yolo(
            weights, version="1.0.0", base_model=card["architecture"],
            lineage={"training_data": card["trained_on"], "epochs": card["epochs"],
                     "imgsz": card["imgsz"]},
            metrics=card["metrics"], notes="ShapeWorld starter detector shipped with the workbench",
        )


    def setup(self, scale: float = 1.0, progress: Progress | None = None) -> dict:
        """The whole demo: scenes ingested, the starter registered, a collection detected."""
        wb = self.wb
        report = self.load(scale, progress)
        version = self.register_starter()
        if not wb.collections.exists(DEMO_COLLECTION):
            wb.collections.create(DEMO_COLLECTION, [DEMO_BUCKET], version.name, version.version)

        def detected(job) -> None:
            if progress:
                progress(job.progress_done, job.progress_total, job.message)

        job = wb.detection.run(DEMO_COLLECTION, version.version, listener=detected)
        return {"accepted": report.accepted, "duplicate": report.duplicates,
                "rejected": report.rejected, "collection": DEMO_COLLECTION, "model": version.key,
                "detect_job": job.id, "documents": job.result["documents"],
                "detections": sum(wb.detection.class_counts(
                    wb.collections.get(DEMO_COLLECTION), version.key).values())}

    def execute(self, ctx: JobContext) -> dict:
        """The demo job: :meth:`setup` with progress and cancellation."""

        def step(done: int, total: int, message: str) -> None:
            ctx.check_cancelled()
            ctx.progress(done, total, message)

        return self.setup(scale=float(ctx.params.get("scale", 1.0)), progress=step)
