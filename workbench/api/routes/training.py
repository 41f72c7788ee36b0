"""Exports (a job that writes a YOLO dataset and zips it; the zip is downloaded when done) and
training runs (export + fine-tune + registration, a job with per-epoch progress)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from workbench.api.auth import Principal, admin, reviewer
from workbench.api.errors import ApiError
from workbench.api.payloads import ExportCreate, TrainingCreate, params_of
from workbench.api.routes.common import IdempotencyKey, create, job_json, job_url, workspace
from workbench.errors import NotFoundError
from workbench.params import ExportOptions, TrainParams

router = APIRouter()


def _job_of(request: Request, job_id: str, kind: str, what: str):
    job = workspace(request).jobs.get(job_id)
    if job.kind != kind:
        raise NotFoundError(f"{job_id} is a {job.kind} job, not {what}; read it at "
                            f"{job_url(job_id)}")
    return job


# -- exports ---------------------------------------------------------------------------------
def export_json(job) -> dict[str, Any]:
    """An export job, with the URL of its zip once it is done."""
    done = job.status == "done"
    return {"export_id": job.id, **job_json(job),
            "download_url": f"/v1/exports/{job.id}/download" if done else None}


@router.post("/exports", status_code=202, tags=["exports"])
def create_export(body: ExportCreate, request: Request, who: Principal = Depends(admin),
                  key: str | None = IdempotencyKey) -> Any:
    """Queue an export of the collection's ground truth as a YOLO dataset (data.yaml,
    images, one label file per image, COCO JSON, a manifest): 202 with the job; download the
    zip from ``download_url`` when the job is done."""
    wb = workspace(request)
    options = params_of(ExportOptions, body.options, "options")

    def make():
        job = wb.export.submit(body.collection_id, body.version, options)
        return 202, export_json(job), {"Location": f"/v1/exports/{job.id}"}

    return create(request, who, key, body.model_dump(), make)


@router.get("/exports/{export_id}", tags=["exports"])
def get_export(export_id: str, request: Request, who: Principal = Depends(reviewer)) -> dict:
    """An export's state; when done, what it wrote and where to download it."""
    return export_json(_job_of(request, export_id, "export", "an export"))


@router.get("/exports/{export_id}/download", tags=["exports"],
            responses={200: {"content": {"application/zip": {}}}})
def download_export(export_id: str, request: Request, who: Principal = Depends(reviewer)
                    ) -> FileResponse:
    """The export's zip (409 while the job is not done)."""
    from workbench.export import export_zip

    job = _job_of(request, export_id, "export", "an export")
    if job.status != "done":
        raise ApiError(409, "not_ready", f"export {export_id} is {job.status} "
                       f"({job.message}); download it once GET /v1/exports/{export_id} says "
                       "done", {"status": job.status})
    path = export_zip(workspace(request), export_id)
    if not path.exists():
        raise NotFoundError(f"the zip of export {export_id} is gone from the workspace; "
                            "export again")
    return FileResponse(path, media_type="application/zip", filename=f"{export_id}.zip")


# -- training runs ---------------------------------------------------------------------------
def training_json(request: Request, job) -> dict[str, Any]:
    """A training job with its epochs so far and, once registered, the new version."""
    result = job.result or {}
    registered = workspace(request).registry.by_training_job(job.id)
    return {"training_run_id": job.id, **job_json(job), "epochs": result.get("epochs", []),
            "version": registered.key if registered else None}


@router.post("/training-runs", status_code=202, tags=["training runs"])
def create_training_run(body: TrainingCreate, request: Request,
                        who: Principal = Depends(admin), key: str | None = IdempotencyKey
                        ) -> Any:
    """Queue a fine-tune: export the ground truth, train from the base version, register the
    result as the next version with its lineage. 202 with the job; its progress counts
    epochs."""
    wb = workspace(request)
    export = params_of(ExportOptions, body.export, "export")
    train = params_of(TrainParams, body.train, "train")

    def make():
        job = wb.training.submit(body.collection_id, body.base_version, export, train)
        return 202, training_json(request, job), {"Location": f"/v1/training-runs/{job.id}"}

    return create(request, who, key, body.model_dump(), make)


@router.get("/training-runs/{run_id}", tags=["training runs"])
def get_training_run(run_id: str, request: Request, who: Principal = Depends(reviewer)
                     ) -> dict:
    """A training run's status, progress (epochs), metrics per epoch and new version."""
    return training_json(request, _job_of(request, run_id, "train", "a training run"))


@router.post("/training-runs/{run_id}/cancel", tags=["training runs"])
def cancel_training_run(run_id: str, request: Request, who: Principal = Depends(admin)
                        ) -> dict:
    """Cancel a queued run at once, or ask a running one to stop after its epoch."""
    _job_of(request, run_id, "train", "a training run")
    return training_json(request, workspace(request).jobs.cancel(run_id))
