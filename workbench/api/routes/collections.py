"""Collections, batch runs (status, cancel), jobs and events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder

from workbench.api.auth import Principal, admin, reviewer
from workbench.api.payloads import CollectionCreate, CollectionUpdate
from workbench.api.routes.common import (
    MAX_PAGE,
    IdempotencyKey,
    create,
    job_json,
    page_json,
    workspace,
)
from workbench.errors import NotFoundError

router = APIRouter()


def collection_json(wb, collection) -> dict[str, Any]:
    """A collection in the tutorial's shape, with its label vocabulary."""
    vocabulary = wb.annotations.vocabulary(collection.id)
    return {"collection_id": collection.id, "name": collection.name,
            "feature_extractors": [{"feature_extractor_name": collection.extractor_name,
                                    "version": collection.active_version}],
            "source": {"type": "bucket", "bucket_ids": list(collection.bucket_ids)},
            "labels": list(vocabulary.standard),
            "allow_custom_labels": vocabulary.allow_custom_labels,
            "created_at": collection.created_at}


@router.post("/collections", status_code=201, tags=["collections"])
def create_collection(body: CollectionCreate, request: Request,
                      who: Principal = Depends(admin), key: str | None = IdempotencyKey) -> Any:
    """Bind buckets to an extractor version (default: the newest registered)."""
    wb = workspace(request)
    extractor = body.feature_extractors[0]

    def make():
        collection = wb.collections.create(body.name, body.source.bucket_ids,
                                           extractor.feature_extractor_name, extractor.version)
        return 201, collection_json(wb, collection), {
            "Location": f"/v1/collections/{collection.id}"}

    return create(request, who, key, body.model_dump(), make)


@router.get("/collections", tags=["collections"])
def list_collections(request: Request, who: Principal = Depends(reviewer)) -> list[dict]:
    """Every collection, oldest first."""
    wb = workspace(request)
    return jsonable_encoder([collection_json(wb, c) for c in wb.collections.list()])


@router.get("/collections/{collection}", tags=["collections"])
def get_collection(collection: str, request: Request, who: Principal = Depends(reviewer)) -> dict:
    """A collection by id or name."""
    wb = workspace(request)
    return jsonable_encoder(collection_json(wb, wb.collections.get(collection)))


@router.patch("/collections/{collection}", tags=["collections"])
def update_collection(collection: str, body: CollectionUpdate, request: Request,
                      who: Principal = Depends(admin)) -> dict:
    """Change a collection's settings: ``allow_custom_labels`` (annotations already written
    keep their labels either way)."""
    wb = workspace(request)
    wb.annotations.allow_custom_labels(collection, body.allow_custom_labels)
    return jsonable_encoder(collection_json(wb, wb.collections.get(collection)))


def _batch(request: Request, batch_id: str):
    job = workspace(request).jobs.get(batch_id)
    if job.kind != "detect":
        raise NotFoundError(f"{batch_id} is a {job.kind} job, not a batch run; read it at "
                            f"/v1/jobs/{batch_id}")
    return job


@router.get("/batches/{batch_id}", tags=["batches"])
def get_batch(batch_id: str, request: Request, who: Principal = Depends(reviewer)) -> dict:
    """A batch run's status and progress (it is a job of kind ``detect``)."""
    return {"batch_id": batch_id, **job_json(_batch(request, batch_id))}


@router.post("/batches/{batch_id}/cancel", tags=["batches"])
def cancel_batch(batch_id: str, request: Request, who: Principal = Depends(admin)) -> dict:
    """Cancel a queued batch run at once, or ask a running one to stop at its next batch."""
    _batch(request, batch_id)
    return {"batch_id": batch_id, **job_json(workspace(request).jobs.cancel(batch_id))}


@router.get("/jobs", tags=["jobs"])
def list_jobs(request: Request, status: list[str] | None = Query(None),
              cursor: str | None = None, limit: int = Query(50, ge=1, le=MAX_PAGE),
              who: Principal = Depends(reviewer)) -> dict:
    """Jobs, newest first (of the given statuses), a page at a time: pass ``next_cursor``
    back as ``cursor`` for the next page."""
    page = workspace(request).jobs.page(tuple(status) if status else None, cursor, limit)
    return page_json(page, job_json)


@router.get("/jobs/{job_id}", tags=["jobs"])
def get_job(job_id: str, request: Request, who: Principal = Depends(reviewer)) -> dict:
    """A job's status, progress, result or error."""
    return job_json(workspace(request).jobs.get(job_id))


@router.post("/jobs/{job_id}/cancel", tags=["jobs"])
def cancel_job(job_id: str, request: Request, who: Principal = Depends(admin)) -> dict:
    """Cancel a queued job at once, or ask a running one to stop."""
    return job_json(workspace(request).jobs.cancel(job_id))


@router.get("/events", tags=["events"])
def list_events(request: Request, type: str | None = None, cursor: str | None = None,
                limit: int = Query(50, ge=1, le=MAX_PAGE), who: Principal = Depends(reviewer)
                ) -> dict:
    """The event log, newest first (of one ``type``, such as ``annotation.updated``), a page
    at a time."""
    return page_json(workspace(request).events.page(type, cursor, limit))
