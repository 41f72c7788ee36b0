"""Retrievers: save, read, execute (results with an ``execution_id``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder

from workbench.api.auth import Principal, admin, reviewer
from workbench.api.payloads import RetrieverExecute, RetrieverSave, seed_stages
from workbench.api.routes.common import IdempotencyKey, create, reviewer_name, workspace

router = APIRouter(tags=["retrievers"])


def retriever_json(retriever) -> dict[str, Any]:
    """A stored retriever."""
    return jsonable_encoder({"retriever_id": retriever.id, "name": retriever.name,
                             "collection_id": retriever.collection_id,
                             "description": retriever.description,
                             "stages": list(retriever.stages),
                             "created_at": retriever.created_at,
                             "updated_at": retriever.updated_at})


@router.post("/retrievers", status_code=201)
def save_retriever(body: RetrieverSave, request: Request, who: Principal = Depends(admin),
                   key: str | None = IdempotencyKey) -> Any:
    """Check and store a retriever's stages (``replace`` overwrites one of that name). The
    tutorial's search stage (``config.stage_id: feature_search`` with ``parameters.searches``
    and ``parameters.filters``) is taken too, as a filter and a feature_search stage."""
    wb = workspace(request)

    def make():
        saved = wb.retrievers.save(body.name, body.collection_id, seed_stages(body.stages),
                                   body.description, body.replace)
        return 201, retriever_json(saved), {"Location": f"/v1/retrievers/{saved.id}"}

    return create(request, who, key, body.model_dump(), make)


@router.get("/retrievers")
def list_retrievers(request: Request, collection_id: str | None = Query(None),
                    who: Principal = Depends(reviewer)) -> list[dict]:
    """Retrievers, oldest first (of one collection, if given)."""
    return [retriever_json(r) for r in workspace(request).retrievers.list(collection_id)]


@router.get("/retrievers/{retriever}")
def get_retriever(retriever: str, request: Request, who: Principal = Depends(reviewer)) -> dict:
    """A retriever by id or name."""
    return retriever_json(workspace(request).retrievers.get(retriever))


@router.post("/retrievers/{retriever}/execute")
def execute_retriever(retriever: str, body: RetrieverExecute, request: Request,
                      who: Principal = Depends(reviewer)) -> dict:
    """Run a retriever with its inputs; the run is logged under ``execution_id`` (annotate
    its results with it). ``next_cursor``: run again with it for the next page. ``lease``:
    skip items leased to other reviewers and lease the page to this key's name."""
    wb = workspace(request)
    run = wb.retrievers.execute(retriever, body.inputs, body.version, body.count, body.cursor,
                                reviewer_name(wb, who) if body.lease else None)
    return execution_json(run)


def execution_json(run) -> dict[str, Any]:
    """A retriever's run: its hits, the execution id, the cursor of the next page."""
    results = [{"detection_id": h.detection_id, "document_id": h.detection_id,
                "image_document_id": h.document_id, "object_id": h.object_id,
                "class": h.class_name, "confidence": h.confidence, "bbox_xyxy": list(h.xyxy),
                "score": h.score, "taxonomy": h.taxonomy} for h in run.hits]
    return jsonable_encoder({"execution_id": run.id, "retriever_id": run.retriever_id,
                             "extractor_key": run.extractor_key, "results": results,
                             "matched": run.matched, "matched_exact": run.matched_exact,
                             "next_cursor": run.next_cursor, "stage_ms": run.stage_ms,
                             "limits": list(run.limits)})


@router.get("/retrievers/executions/{execution_id}")
def get_execution(execution_id: str, request: Request, who: Principal = Depends(reviewer)
                  ) -> dict:
    """A logged execution: its inputs, result ids and time per stage."""
    return jsonable_encoder(workspace(request).retrievers.execution(execution_id))
