"""``workbench export``: reviewed detections as a YOLO dataset with COCO JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.common import emit, export_options, open_workspace


def export(
    collection: str,
    out: Annotated[Path, typer.Option(help="Folder to write: a new or empty one, or an earlier "
                                           "export (replaced once the new one is complete).")],
    version: Annotated[str | None, typer.Option(help="Reviewed version (default: active).")] = None,
    unreviewed: Annotated[str, typer.Option(help="skip: leave out images with unreviewed boxes; fill: complete them.")] = "skip",
    fill_threshold: Annotated[float, typer.Option(help="With fill: unreviewed boxes at or above this.")] = 0.5,
    val: Annotated[float, typer.Option(help="Validation fraction (by image).")] = 0.2,
    holdout: Annotated[float, typer.Option(help="Fixed holdout fraction, never trained on.")] = 0.0,
    seed: Annotated[str, typer.Option(help="Split seed.")] = "workbench",
    pseudo_label: Annotated[bool, typer.Option(help="With fill: add unreviewed images on which the model is sure of every box (those with none are left out).")] = False,
) -> None:
    """Write reviewed detections as a YOLO dataset (data.yaml, images, labels) + COCO JSON."""
    result = open_workspace().export.yolo(collection, out, version,
                                          export_options(unreviewed, fill_threshold, val,
                                                         holdout, seed, pseudo_label))
    emit(result, "\n".join([
        f"exported {sum(result.images.values())} images ({result.images}) with "
        f"{sum(result.objects.values())} objects to {result.path}",
        f"classes: {', '.join(result.names)}; background images: {result.background_images}; "
        f"skipped: {result.skipped_images}; rejected boxes: {len(result.rejected_boxes)}",
        f"content hash {result.content_hash}"]))
