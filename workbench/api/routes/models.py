"""Extractors and the model registry (weights uploaded as a new version), evaluations of one
version against another on the gold set, and promotion."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder

from workbench.api.auth import Principal, admin, reviewer
from workbench.api.errors import ApiError
from workbench.api.payloads import EvaluationCreate, Promotion, params_of
from workbench.api.routes.common import IdempotencyKey, create, reviewer_name, workspace
from workbench.api.uploads import Upload, receive
from workbench.params import Gate

router = APIRouter()


def version_json(version) -> dict[str, Any]:
    """A registered extractor version, with its feature URIs (weights are not served)."""
    return jsonable_encoder({
        "extractor": version.key, "feature_extractor_name": version.name,
        "version": version.version, "kind": version.kind, "classes": list(version.classes),
        "features": [{**f.to_dict(), "feature_uri": version.feature_uri(f.feature_name)}
                     for f in version.spec.features],
        "base_model": version.base_model, "parent_version": version.parent_version,
        "lineage": version.lineage, "metrics": version.metrics, "notes": version.notes,
        "weights_sha256": version.weights_sha256, "training_job": version.training_job,
        "created_at": version.created_at})


def _upload_doc(what: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": what}, **extra}}}}}}


def _one_file(upload: Upload, suffixes: tuple[str, ...], what: str):
    """The single file part of an upload, with one of ``suffixes``."""
    if len(upload.files) != 1:
        raise ApiError(422, "validation_error", f"send exactly one file part named 'file' "
                       f"({what}), got {len(upload.files)}")
    path, name = upload.files[0]
    if not name.lower().endswith(suffixes):
        raise ApiError(422, "validation_error", f"{name!r} is not {what} (a "
                       f"{' or '.join(suffixes)} file)")
    return path


async def _registered(request: Request, who: Principal, key: str | None,
                      suffixes: tuple[str, ...], what: str, register) -> Any:
    """Stream an upload to the staging folder, register it with ``register(path, fields)``
    once per ``Idempotency-Key``, and discard the upload."""
    wb = workspace(request)
    upload = await receive(request, wb.settings.staging_dir,
                           request.app.state.options.max_upload_bytes)
    try:
        path = _one_file(upload, suffixes, what)

        def make():
            made = register(path, upload.fields)
            return 201, version_json(made), {
                "Location": f"/v1/models/{made.name}/{made.version}"}

        route = f"{request.method} {request.url.path}"
        return await run_in_threadpool(create, request, who, key, None, make,
                                       f"{route}:{upload.digest}")
    finally:
        upload.discard()


# -- extractors ------------------------------------------------------------------------------
@router.get("/extractors", tags=["extractors"])
def list_extractors(request: Request, who: Principal = Depends(reviewer)) -> list[dict]:
    """Every registered extractor version with its features and their stable URIs
    (``workbench://yolo_detector@1.0.0/detection_embedding``)."""
    return [version_json(v) for v in workspace(request).registry.list()]


@router.post("/extractors", status_code=201, tags=["extractors"],
             openapi_extra=_upload_doc("A zip holding extractor.json (spec and entrypoint) and "
                                       "the extractor's Python code.", {}))
async def upload_extractor(request: Request, who: Principal = Depends(admin),
                           key: str | None = IdempotencyKey) -> Any:
    """Register a custom extractor from a zip (``extractor.json`` + code). Its weights files
    are checked, then it is imported and run on a test image: its code runs with the
    server's permissions, which is why only an admin key may upload one."""
    wb = workspace(request)
    return await _registered(request, who, key, (".zip",), "a zip archive",
                             lambda path, fields: wb.registry.register_custom(path))


# -- models ----------------------------------------------------------------------------------
@router.get("/models", tags=["models"])
def list_models(request: Request, name: str | None = Query(None, description="One extractor's "
                                                            "versions, e.g. yolo_detector."),
                who: Principal = Depends(reviewer)) -> list[dict]:
    """Registered versions with lineage and metrics, by name and semantic version."""
    return [version_json(v) for v in workspace(request).registry.list(name)]


@router.get("/models/{name}/{version}", tags=["models"])
def get_model(name: str, version: str, request: Request, who: Principal = Depends(reviewer)
              ) -> dict:
    """One version (``latest`` for the newest)."""
    registry = workspace(request).registry
    return version_json(registry.get(name, None if version == "latest" else version))


@router.post("/models", status_code=201, tags=["models"], openapi_extra=_upload_doc(
    "A YOLO .pt checkpoint (checked before it is loaded: no pickle that runs code).",
    {"version": {"type": "string", "description": "Semantic version; default: the next "
                 "major one."},
     "notes": {"type": "string"}}))
async def upload_model(request: Request, who: Principal = Depends(admin),
                       key: str | None = IdempotencyKey) -> Any:
    """Upload YOLO weights as the next ``yolo_detector`` version (a new feature URI beside
    the old one: both versions coexist until one is promoted)."""
    wb = workspace(request)

    def register(path, fields):
        unknown = sorted(set(fields) - {"version", "notes"})
        if unknown:
            raise ApiError(422, "validation_error", f"unknown form field {unknown[0]!r} "
                           "(fields: file, version, notes)")
        return wb.registry.register_yolo(path, version=fields.get("version") or None,
                                         notes=fields.get("notes", ""))

    return await _registered(request, who, key, (".pt",), "YOLO weights", register)


# -- evaluations and promotion ---------------------------------------------------------------
@router.post("/evaluations", status_code=201, tags=["evaluations"])
def create_evaluation(body: EvaluationCreate, request: Request,
                      who: Principal = Depends(admin), key: str | None = IdempotencyKey
                      ) -> Any:
    """Score two versions on the gold set (or the complete images given) with pycocotools,
    a bootstrap interval beside every figure, and the promotion gate's decision; stored."""
    wb = workspace(request)
    gate = params_of(Gate, body.gate, "gate")

    def make():
        record = wb.evaluation.compare_versions(body.collection_id, body.base_version,
                                                body.candidate_version, gate, body.image_ids)
        return 201, jsonable_encoder(record), {}

    return create(request, who, key, body.model_dump(), make)


@router.get("/evaluations/latest", tags=["evaluations"])
def latest_evaluation(request: Request, collection_id: str = Query(...),
                      who: Principal = Depends(reviewer)) -> dict:
    """The collection's newest evaluation (404 before the first)."""
    record = workspace(request).evaluation.latest(collection_id)
    if record is None:
        raise ApiError(404, "not_found", f"collection {collection_id!r} has no evaluation yet; "
                       "POST /v1/evaluations makes one")
    return jsonable_encoder(record)


@router.post("/collections/{collection}/promote", tags=["evaluations"])
def promote(collection: str, body: Promotion, request: Request,
            who: Principal = Depends(admin)) -> dict:
    """Make a version the collection's active one: it must have passed the gate in its
    latest evaluation, or ``reason`` says why it is promoted anyway (rollbacks included)."""
    wb = workspace(request)
    return jsonable_encoder(wb.evaluation.promote(collection, body.version, body.reason,
                                                  reviewer_name(wb, who)))
