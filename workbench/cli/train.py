"""``workbench train``: export, fine-tune and register the next version."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, export_options, job_progress, open_workspace


def train(
    collection: str,
    base: Annotated[str | None, typer.Option(help="Version to fine-tune (default: active).")] = None,
    epochs: int = 10,
    imgsz: Annotated[int | None, typer.Option(help="Default: the base version's size.")] = None,
    batch: int = 8,
    patience: int = 10,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda:N.")] = None,
    unreviewed: str = "skip",
    fill_threshold: float = 0.5,
    val: float = 0.2,
    holdout: float = 0.0,
    seed: str = "workbench",
    pseudo_label: Annotated[bool, typer.Option(help="With fill: also train on unreviewed images on which the model is sure of every box.")] = False,
    queue: Annotated[bool, typer.Option("--queue", help="Hand the run to the worker.")] = False,
) -> None:
    """Export, fine-tune and register the result as the next version (with its lineage)."""
    from workbench.training import TrainParams

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
