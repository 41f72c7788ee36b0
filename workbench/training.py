"""Fine-tuning: a training job that exports, trains with ultralytics from the parent version's
weights, and registers the result as the next version with its lineage.

The job trains in its own run folder; the registry only changes when training has finished,
so a kill or a cancel leaves every earlier version untouched. Each epoch reports its losses and
validation mAP as job progress (the app draws them live; the CLI shows a bar).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import JobFailed, ValidationError
from workbench.export import ExportOptions
from workbench.faults import crash_point
from workbench.params import MIN_VAL_FOR_BEST, TrainParams

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.domain import Collection, ExtractorVersion
    from workbench.jobs import JobContext, ProgressListener




def prepare_ultralytics(config_dir: Path | None = None) -> None:
    """Offline ultralytics: its own config dir, a local font (else it downloads Arial), no
    sync. Safe to call more than once."""
    if config_dir is not None:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    font_dir = Path(os.environ.get("YOLO_CONFIG_DIR", Path.home() / ".config")) / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    if not (font_dir / "Arial.ttf").exists():
        import matplotlib

        dejavu = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        shutil.copy(dejavu, font_dir / "Arial.ttf")
    from ultralytics import settings

    settings.update({"sync": False})


def carry_class_weights(parent_model, model) -> int:
    """Copy the parent's class-output weights into a model whose class list extends it.

    When the export appends new classes, ultralytics builds a head with more outputs and, as
    the shapes differ, starts those last layers from scratch: the model forgets every class
    at once. Keeping the known classes' rows (new rows keep their fresh initialisation) is
    what "new classes are appended" should mean. Returns how many layers were carried.
    """
    import torch

    old_head, new_head = parent_model.model[-1], model.model[-1]
    carried = 0
    for old_branch, new_branch in zip(old_head.cv3, new_head.cv3, strict=True):
        old_conv, new_conv = old_branch[-1], new_branch[-1]
        known = old_conv.out_channels
        if new_conv.out_channels <= known:
            continue
        with torch.no_grad():
            new_conv.weight[:known].copy_(old_conv.weight.to(new_conv.weight))
            if old_conv.bias is not None and new_conv.bias is not None:
                new_conv.bias[:known].copy_(old_conv.bias.to(new_conv.bias))
        carried += 1
    return carried


class TrainingService:
    """Fine-tune a collection's YOLO version on its ground truth and register the result."""

    def __init__(self, wb: Workbench):
        self.wb = wb

    def _params(self, collection: str, base_version: str | None,
                export: ExportOptions | None, params: TrainParams | None) -> dict[str, Any]:
        target = self.wb.collections.get(collection)
        parent = self.wb.registry.get(target.extractor_name,
                                      base_version or target.active_version)
        if parent.kind != "yolo":
            raise ValidationError(f"{parent.key} is not a YOLO model; only YOLO versions can "
                                  "be fine-tuned")
        return {"collection_id": target.id, "parent_version": parent.version,
                "export": asdict(export or ExportOptions()),
                "train": asdict(params or TrainParams())}

    def submit(self, collection: str, base_version: str | None = None,
               export: ExportOptions | None = None, params: TrainParams | None = None):
        """Queue export + fine-tune + registration for the worker."""
        return self.wb.jobs.submit("train", self._params(collection, base_version, export,
                                                         params))

    def run(self, collection: str, base_version: str | None = None,
            export: ExportOptions | None = None, params: TrainParams | None = None,
            listener: ProgressListener | None = None):
        """The same job in this process (the CLI)."""
        job = self.wb.jobs.run_inline("train", self._params(collection, base_version, export,
                                                            params), listener)
        if job.status == "failed":
            raise JobFailed(job)
        return job

    def execute(self, ctx: JobContext) -> dict[str, Any]:
        """Export, train, register; resumable at each commit point.

        The commit points: the export (a folder named after the job), the end of training
        (recorded in the job's result), the version row (keyed by the job id, with the
        ``training.completed`` event in its transaction). A resumed job skips what is done:
        it never trains twice once training has finished, and never registers a second
        version.
        """
        collection = self.wb.collections.get(ctx.params["collection_id"])
        parent = self.wb.registry.get(collection.extractor_name, ctx.params["parent_version"])
        return self.train(ctx, collection, parent)

    def train(self, ctx: JobContext, collection: Collection, parent: ExtractorVersion
              ) -> dict[str, Any]:
        """The training job's work for a collection and parent version already resolved
        (the retrain chain runs it inside its own job)."""
        wb = self.wb
        registered = wb.registry.by_training_job(ctx.job.id)
        if registered is not None:  # killed after registering, before the job was done
            return _result(registered, parent, (ctx.job.result or {}).get("epochs", []))
        params = TrainParams(**ctx.params["train"])
        options = ExportOptions(**ctx.params["export"])
        run_dir = wb.home / "runs" / ctx.job.id
        trained = (ctx.job.result or {}).get("trained")
        if trained and (run_dir / "weights" / trained["weights"]).exists():
            # killed after training: register what it made
            history, export = ctx.job.result["epochs"], trained["export"]
            final, imgsz, device = trained["metrics"], trained["imgsz"], trained["device"]
        else:
            history, final, imgsz, device, export = self._train(ctx, collection, parent,
                                                                params, options, run_dir)
            val_images = export["images"].get("val", 0)
            chosen = "best.pt" if params.keep == "best" or (
                params.keep == "auto" and val_images >= MIN_VAL_FOR_BEST) else "last.pt"
            trained = {"export": export, "metrics": final, "imgsz": imgsz, "device": device,
                       "weights": chosen}
            ctx.update_result({"epochs": history, "trained": trained})
            crash_point("train.trained")
        kept = run_dir / "weights" / trained["weights"]
        number = wb.registry.next_version(parent.name)
        completed = {"job_id": ctx.job.id, "version": f"{parent.name}@{number}",
                     "parent": parent.key, "export_hash": export["content_hash"]}
        version = wb.registry.register_yolo(
            kept, version=number, base_model=parent.base_model, parent_version=parent.version,
            lineage={"parent": parent.key, "collection": collection.name,
                     "export_hash": export["content_hash"], "export_path": export["path"],
                     "export_options": asdict(options),
                     "annotation_count": export["annotation_count"],
                     "images": export["images"], "names": export["names"],
                     "params": {**asdict(params), "imgsz": imgsz, "device": device},
                     "imgsz": imgsz, "epochs_run": len(history), "training_job": ctx.job.id,
                     "weights_kept": trained["weights"]},
            metrics={"val_mAP50": final.get("mAP50(B)"),
                     "val_mAP50_95": final.get("mAP50-95(B)")},
            notes=f"fine-tuned from {parent.key} on {export['annotation_count']} annotations",
            training_job=ctx.job.id, events=(("training.completed", completed),))
        crash_point("train.registered")
        return _result(version, parent, history)

    def _train(self, ctx: JobContext, collection: Collection, parent: ExtractorVersion,
               params: TrainParams,
               options: ExportOptions, run_dir: Path):
        """Export and fine-tune; returns the epochs, the final metrics, the image size, the
        device and what the lineage keeps of the export."""
        from workbench.config import resolve_device

        wb = self.wb
        ctx.progress(0, params.epochs, "exporting reviewed data")
        export = wb.export.into_workspace(collection, ctx.job.id, parent, options)
        if export.images.get("train", 0) == 0:
            raise ValidationError("the export has no training images; review more images")
        crash_point("train.exported")
        prepare_ultralytics(wb.home / "ultralytics")
        from ultralytics import YOLO

        imgsz = params.imgsz or int(parent.lineage.get("imgsz", 640))
        device = resolve_device(params.device or wb.settings.device)
        history: list[dict[str, Any]] = []
        best_metrics: dict[str, float] = {}

        def on_epoch_end(trainer) -> None:
            metrics = {k.split("/")[-1]: round(float(v), 5) for k, v in trainer.metrics.items()}
            if trainer.epoch >= trainer.epochs:
                # ultralytics' final evaluation of best.pt reports as one epoch more
                best_metrics.update(metrics)
                return
            losses = trainer.label_loss_items(trainer.tloss, prefix="train")
            row = {"epoch": trainer.epoch + 1,
                   **{k.split("/")[-1]: round(float(v), 5) for k, v in losses.items()},
                   **metrics}
            history.append(row)
            ctx.update_result({"epochs": history})
            ctx.progress(trainer.epoch + 1, params.epochs,
                         f"epoch {trainer.epoch + 1}/{params.epochs}: mAP50-95 "
                         f"{metrics.get('mAP50-95(B)', 0):.3f}")
            ctx.check_cancelled()  # raising here stops ultralytics between epochs

        model = YOLO(str(wb.registry.weights_file(parent)))
        parent_network = model.model

        def on_pretrain_end(trainer) -> None:
            if len(export.names) > len(parent.classes):
                carry_class_weights(parent_network, getattr(trainer.model, "module",
                                                            trainer.model))

        model.add_callback("on_pretrain_routine_end", on_pretrain_end)
        model.add_callback("on_fit_epoch_end", on_epoch_end)
        ctx.progress(0, params.epochs, f"training from {parent.key} on {export.images} images")
        model.train(
            data=str(export.data_yaml), epochs=params.epochs, imgsz=imgsz, batch=params.batch,
            patience=params.patience, device="cpu" if device == "cpu" else device.split(":")[1],
            seed=params.seed, workers=params.workers, project=str(run_dir.parent),
            name=run_dir.name, exist_ok=True, plots=False, verbose=False,
            amp=device != "cpu", close_mosaic=params.mosaic_off_epochs, freeze=params.freeze,
            optimizer=params.optimizer, lr0=params.lr0, warmup_epochs=params.warmup_epochs,
        )
        if not (run_dir / "weights" / "best.pt").exists():
            raise RuntimeError(f"ultralytics finished without {run_dir / 'weights' / 'best.pt'}")
        final = best_metrics or (history[-1] if history else {})
        kept = {"content_hash": export.content_hash, "path": str(export.path),
                "annotation_count": export.annotation_count, "images": export.images,
                "names": list(export.names)}
        return history, final, imgsz, device, kept


def _result(version, parent, history: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": version.key, "parent": parent.key,
            "export_hash": version.lineage.get("export_hash"), "epochs": history}
