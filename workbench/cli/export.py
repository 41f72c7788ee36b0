"""``workbench export``: reviewed detections as a YOLO dataset with COCO JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.common import emit, export_options, open_workspace, option
from workbench.export import ExportOptions


def export(
    collection: str,
    out: Annotated[Path, typer.Option(help="Folder to write: a new or empty one, or an earlier "
                                           "export (replaced once the new one is complete).")],
    version: Annotated[str | None, typer.Option(help="Reviewed version (default: active).")] = None,
    unreviewed: Annotated[str, option(ExportOptions, "unreviewed")] = ExportOptions.unreviewed,
    fill_threshold: Annotated[float, option(ExportOptions, "fill_threshold")
                              ] = ExportOptions.fill_threshold,
    val: Annotated[float, option(ExportOptions, "val_fraction")] = ExportOptions.val_fraction,
    holdout: Annotated[float, option(ExportOptions, "holdout_fraction")
                       ] = ExportOptions.holdout_fraction,
    seed: Annotated[str, option(ExportOptions, "seed")] = ExportOptions.seed,
    pseudo_label: Annotated[bool, option(ExportOptions, "pseudo_label")
                            ] = ExportOptions.pseudo_label,
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
