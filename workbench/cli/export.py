"""``workbench export``: reviewed detections as a YOLO dataset with COCO JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace, with_export_options
from workbench.params import ExportOptions


@with_export_options
def export(
    collection: str,
    out: Annotated[Path, typer.Option(help="Folder to write: a new or empty one, or an earlier "
                                           "export (replaced once the new one is complete).")],
    version: Annotated[str | None, typer.Option(help="Reviewed version (default: active).")] = None,
    options: ExportOptions = ExportOptions(),  # the export options, see with_export_options
) -> None:
    """Write reviewed detections as a YOLO dataset (data.yaml, images, labels) + COCO JSON."""
    result = open_workspace().export.yolo(collection, out, version, options)
    emit(result, "\n".join([
        f"exported {sum(result.images.values())} images ({result.images}) with "
        f"{sum(result.objects.values())} objects to {result.path}",
        f"classes: {', '.join(result.names)}; background images: {result.background_images}; "
        f"skipped: {result.skipped_images}; rejected boxes: {len(result.rejected_boxes)}",
        f"content hash {result.content_hash}"]))
