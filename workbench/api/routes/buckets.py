"""Buckets, their objects (multipart uploads) and batch runs over them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError as PydanticValidationError

from workbench.api.auth import Principal, admin, reviewer
from workbench.api.errors import ApiError
from workbench.api.payloads import BatchTrigger, BucketCreate, ObjectsCreate
from workbench.api.routes.common import IdempotencyKey, create, job_json, job_url, workspace
from workbench.api.uploads import MAX_FIELD_BYTES, receive

router = APIRouter(tags=["buckets"])


def bucket_json(wb, bucket) -> dict[str, Any]:
    """A bucket in the tutorial's shape, with how many images it holds."""
    return {"bucket_id": bucket.id, "name": bucket.name, "bucket_schema": bucket.to_schema(),
            "description": bucket.description, "created_at": bucket.created_at,
            "objects": wb.buckets.count_objects(bucket)}


@router.post("/buckets", status_code=201)
def create_bucket(body: BucketCreate, request: Request, who: Principal = Depends(admin),
                  key: str | None = IdempotencyKey) -> Any:
    """Create a bucket with a metadata schema (``image`` is always required)."""
    wb = workspace(request)

    def make():
        bucket = wb.buckets.create(body.name, body.bucket_schema, body.description)
        return 201, bucket_json(wb, bucket), {"Location": f"/v1/buckets/{bucket.id}"}

    return create(request, who, key, body.model_dump(), make)


@router.get("/buckets")
def list_buckets(request: Request, who: Principal = Depends(reviewer)) -> list[dict[str, Any]]:
    """Every bucket, oldest first."""
    wb = workspace(request)
    return jsonable_encoder([bucket_json(wb, b) for b in wb.buckets.list()])


@router.get("/buckets/{bucket}")
def get_bucket(bucket: str, request: Request, who: Principal = Depends(reviewer)
               ) -> dict[str, Any]:
    """A bucket by id or name."""
    wb = workspace(request)
    return jsonable_encoder(bucket_json(wb, wb.buckets.get(bucket)))


_UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                     "description": "One or more images (repeat the part)."},
            "metadata": {"type": "string", "description": "A JSON object of the bucket's "
                         "metadata fields, for every image of this upload."}}}},
    "application/json": {"schema": ObjectsCreate.model_json_schema()}}}}


@router.post("/buckets/{bucket}/objects", status_code=201, openapi_extra=_UPLOAD_DOC,
             responses={202: {"description": "JSON with URLs: the ingest job, queued."}})
async def upload_objects(bucket: str, request: Request, who: Principal = Depends(admin),
                         key: str | None = IdempotencyKey) -> Any:
    """Add images with metadata. Multipart: the files are streamed to the workspace's
    staging folder, then ingested like any file (checked, stored once by content, reported
    one by one): 201 when at least one was stored (or was there already), 422 when none was.
    JSON (the tutorial's ``{"metadata", "blobs": [{"data": {"url"}}]}``): the downloads are
    long work, so the ingest is queued and answered at once (202) with its job's URL."""
    wb = workspace(request)
    target = await run_in_threadpool(wb.buckets.get, bucket)  # 404 before reading a byte
    if request.headers.get("content-type", "").startswith("application/json"):
        body = _objects_body(await request.body())
        return await run_in_threadpool(_queue_urls, request, who, key, target, body)
    upload = await receive(request, wb.settings.staging_dir,
                           request.app.state.options.max_upload_bytes)
    try:
        if not upload.files:
            raise ApiError(422, "validation_error", "the upload holds no file part; send the "
                           "images as multipart parts named 'file'")
        metadata = upload.json_field("metadata")

        def make():
            from workbench.ingest import Source

            sources = [Source(str(path), label=name) for path, name in upload.files]
            report = wb.ingest.run(target.name, sources, metadata=metadata)
            items = [{"filename": i.source, "status": i.status, "reason": i.reason,
                      "object_id": i.object_id} for i in report.items]
            body = {"bucket_id": target.id, "job_id": report.job_id,
                    "accepted": report.accepted, "duplicates": report.duplicates,
                    "rejected": report.rejected, "objects": items}
            if not report.accepted and not report.duplicates:
                raise ApiError(422, "validation_error", "no image of the upload was stored: "
                               + "; ".join(f"{i['filename']}: {i['reason']}" for i in items),
                               body)
            return 201, body, {}

        route = f"{request.method} {request.url.path}"
        return await run_in_threadpool(create, request, who, key, None, make,
                                       f"{route}:{upload.digest}")
    finally:
        upload.discard()


def _objects_body(raw: bytes) -> ObjectsCreate:
    """The JSON form of an objects request, checked like any body (one error shape)."""
    if len(raw) > MAX_FIELD_BYTES * 16:
        raise ApiError(413, "payload_too_large", "a JSON objects request names URLs; upload "
                       "the bytes themselves as multipart/form-data")
    try:
        return ObjectsCreate.model_validate_json(raw)
    except PydanticValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _queue_urls(request: Request, who: Principal, key: str | None, target, body: ObjectsCreate):
    urls = [blob.data.url for blob in body.blobs]
    local = [url for url in urls if urlparse(url).scheme.lower() not in ("http", "https")]
    if local:
        raise ApiError(422, "validation_error", f"blobs must be http:// or https:// URLs (the "
                       f"server's own files are not for clients to name); got {local[0]!r}; "
                       "upload local files as multipart/form-data")
    wb = workspace(request)

    def make():
        job = wb.ingest.submit(target.name, urls, metadata=body.metadata)
        return 202, {"bucket_id": target.id, "job_id": job.id, **job_json(job)}, {
            "Location": job_url(job.id)}

    return create(request, who, key, {"bucket": target.id, **body.model_dump()}, make)


@router.post("/buckets/{bucket}/batches/trigger", status_code=202)
def trigger_batches(bucket: str, body: BatchTrigger, request: Request,
                    who: Principal = Depends(admin), key: str | None = IdempotencyKey) -> Any:
    """Queue a batch run of each named collection (which must read this bucket): every image
    not yet processed by the version. Answers at once (202) with each run's job and its URL;
    a worker runs them (``workbench serve`` starts one unless told not to)."""
    wb = workspace(request)
    source = wb.buckets.get(bucket)
    collections = [wb.collections.get(c) for c in body.collection_ids]
    for collection in collections:
        if source.id not in collection.bucket_ids:
            raise ApiError(422, "validation_error", f"collection {collection.name!r} does not "
                           f"read bucket {source.name!r}; trigger it from one of its buckets")

    def make():
        jobs = [wb.detection.submit(c.id, body.version) for c in collections]
        batches = [{"batch_id": job.id, "collection_id": c.id, **job_json(job)}
                   for c, job in zip(collections, jobs, strict=True)]
        location = {"Location": batches[0]["url"]} if len(batches) == 1 else {}
        return 202, {"batches": batches}, location

    return create(request, who, key, {"bucket": source.id, **body.model_dump()}, make)
