"""``workbench train``: export, fine-tune and register the next version."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import (
    emit,
    job_progress,
    open_workspace,
    option,
    with_export_options,
)
from workbench.params import ExportOptions, TrainParams


@with_export_options
def train(
    collection: str,
    base: Annotated[str | None, typer.Option(help="Version to fine-tune (default: active).")] = None,
    epochs: Annotated[int, option(TrainParams, "epochs")] = TrainParams.epochs,
    imgsz: Annotated[int | None, option(TrainParams, "imgsz")] = TrainParams.imgsz,
    batch: Annotated[int, option(TrainParams, "batch")] = TrainParams.batch,
    patience: Annotated[int, option(TrainParams, "patience")] = TrainParams.patience,
    device: Annotated[str | None, option(TrainParams, "device")] = TrainParams.device,
    options: ExportOptions = ExportOptions(),  # the export options, see with_export_options
    queue: Annotated[bool, typer.Option("--queue", help="Hand the run to the worker.")] = False,
) -> None:
    """Export, fine-tune and register the result as the next version (with its lineage)."""
    wb = open_workspace()
    params = TrainParams(epochs=epochs, imgsz=imgsz, batch=batch, patience=patience,
                         device=device)
    if queue:
        job = wb.training.submit(collection, base, options, params)
        emit(job, f"queued training job {job.id}")
        return
    with job_progress("train") as update:
        job = wb.training.run(collection, base, options, params, listener=update)
    last = job.result["epochs"][-1] if job.result["epochs"] else {}
    emit(job.result, f"registered {job.result['version']} (from {job.result['parent']}); "
                     f"last epoch mAP50-95 {last.get('mAP50-95(B)', 0):.3f}")
