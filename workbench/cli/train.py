"""``workbench train``: export, fine-tune and register the next version."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, export_options, job_progress, open_workspace, option
from workbench.export import ExportOptions
from workbench.training import TrainParams


def train(
    collection: str,
    base: Annotated[str | None, typer.Option(help="Version to fine-tune (default: active).")] = None,
    epochs: Annotated[int, option(TrainParams, "epochs")] = TrainParams.epochs,
    imgsz: Annotated[int | None, option(TrainParams, "imgsz")] = TrainParams.imgsz,
    batch: Annotated[int, option(TrainParams, "batch")] = TrainParams.batch,
    patience: Annotated[int, option(TrainParams, "patience")] = TrainParams.patience,
    device: Annotated[str | None, option(TrainParams, "device")] = TrainParams.device,
    unreviewed: Annotated[str, option(ExportOptions, "unreviewed")] = ExportOptions.unreviewed,
    fill_threshold: Annotated[float, option(ExportOptions, "fill_threshold")
                              ] = ExportOptions.fill_threshold,
    val: Annotated[float, option(ExportOptions, "val_fraction")] = ExportOptions.val_fraction,
    holdout: Annotated[float, option(ExportOptions, "holdout_fraction")
                       ] = ExportOptions.holdout_fraction,
    seed: Annotated[str, option(ExportOptions, "seed")] = ExportOptions.seed,
    pseudo_label: Annotated[bool, option(ExportOptions, "pseudo_label")
                            ] = ExportOptions.pseudo_label,
    queue: Annotated[bool, typer.Option("--queue", help="Hand the run to the worker.")] = False,
) -> None:
    """Export, fine-tune and register the result as the next version (with its lineage)."""
    wb = open_workspace()
    options = export_options(unreviewed, fill_threshold, val, holdout, seed, pseudo_label)
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
