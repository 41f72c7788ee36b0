"""Annotations (create, bulk, list with filters and a cursor, get, update, delete) and the
review stats. The annotation service validates every body with its own model; the author of
an annotation made with a key is the key's name."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.encoders import jsonable_encoder

from workbench.annotations import MAX_BULK, _Input
from workbench.api.auth import Principal, reviewer
from workbench.api.errors import ApiError
from workbench.api.payloads import BulkAnnotations
from workbench.api.routes.common import IdempotencyKey, create, workspace
from workbench.errors import ValidationError

router = APIRouter(tags=["annotations"])
_ANNOTATION_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": _Input.model_json_schema()}}}}


def _authored(who: Principal, fields: Any) -> Any:
    """``fields`` with the key's name as author: a key may not write under another name."""
    if not isinstance(fields, dict) or who.name is None:
        return fields
    given = fields.get("author")
    if given is not None and given != who.name:
        raise ApiError(422, "validation_error", f"author is the API key's name ({who.name!r}) "
                       f"for every annotation made with it, not {given!r}; leave it out")
    return {**fields, "author": who.name}


@router.post("/annotations", status_code=201, openapi_extra=_ANNOTATION_DOC)
def create_annotation(request: Request, body: dict[str, Any] = Body(...),
                      who: Principal = Depends(reviewer), key: str | None = IdempotencyKey
                      ) -> Any:
    """Record a verdict on a detection (or on an image document, for ``missed``)."""
    wb = workspace(request)
    fields = _authored(who, body)

    def make():
        made = wb.annotations.create(**fields)
        return 201, jsonable_encoder(made), {"Location": f"/v1/annotations/{made.id}"}

    return create(request, who, key, body, make)


@router.post("/annotations/bulk")
def bulk_annotations(body: BulkAnnotations, request: Request, who: Principal = Depends(reviewer),
                     key: str | None = IdempotencyKey) -> Any:
    """Up to 1,000 ``{"op": "create"|"update"|"delete", …}``; each stands or fails on its own
    and the answer says which, by position."""
    if len(body.operations) > MAX_BULK:
        raise ValidationError(f"a bulk request holds at most {MAX_BULK} operations, got "
                              f"{len(body.operations)}; split it")
    wb = workspace(request)
    operations = [_authored(who, op) for op in body.operations]

    def make():
        results = wb.annotations.bulk(operations)
        return 200, {"results": jsonable_encoder(results),
                     "succeeded": sum(r.ok for r in results),
                     "failed": sum(not r.ok for r in results)}, {}

    return create(request, who, key, body.model_dump(), make)


def _cursor(filters: dict[str, Any], offset: int) -> str:
    text = json.dumps({"of": _scope(filters), "offset": offset}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _scope(filters: dict[str, Any]) -> str:
    text = json.dumps(jsonable_encoder(filters), sort_keys=True)
    return "annotations:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _offset(cursor: str | None, filters: dict[str, Any]) -> int:
    """The offset an annotations cursor stands for (the service pages by offset)."""
    if not cursor:
        return 0
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = state["offset"]
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError(offset)
    except (ValueError, TypeError, KeyError):
        raise ValidationError(f"cursor {cursor!r} is not one this workbench handed out; pass "
                              "the next_cursor of the previous page, or leave it out for the "
                              "first page") from None
    if state.get("of") != _scope(filters):
        raise ValidationError("this cursor pages annotations under other filters; pass the "
                              "filters of the request that gave it, or leave it out to start "
                              "from the first page")
    return offset


@router.get("/annotations")
def list_annotations(request: Request, collection_id: str | None = None,
                     document_id: str | None = None, label: str | None = None,
                     retriever_id: str | None = None, execution_id: str | None = None,
                     author: str | None = None, since: datetime | None = None,
                     until: datetime | None = None, cursor: str | None = None,
                     limit: int = Query(100, ge=1, le=MAX_BULK),
                     who: Principal = Depends(reviewer)) -> dict:
    """Annotations matching every given filter, newest first, a page at a time: pass
    ``next_cursor`` back as ``cursor`` (with the same filters) for the next page."""
    wb = workspace(request)
    if collection_id is not None:
        collection_id = wb.collections.get(collection_id).id
    filters = {"collection_id": collection_id, "document_id": document_id, "label": label,
               "retriever_id": retriever_id, "execution_id": execution_id, "author": author,
               "since": since, "until": until}
    page = wb.annotations.list(**filters, offset=_offset(cursor, filters), limit=limit)
    return {"items": jsonable_encoder(page.items), "total": page.total, "total_exact": True,
            "next_cursor": None if page.next_offset is None else
            _cursor(filters, page.next_offset)}


@router.get("/annotations/stats")
def annotation_stats(request: Request, collection_id: str | None = None,
                     version: str | None = Query(None, description="e.g. yolo_detector@1.0.0"),
                     window: str = "1d", who: Principal = Depends(reviewer)) -> dict:
    """Counts and rates per label, the health table, estimated precision and recall."""
    wb = workspace(request)
    if collection_id is not None:
        collection_id = wb.collections.get(collection_id).id
    return _plain(jsonable_encoder(wb.stats.report(collection_id, version, window),
                                   custom_encoder={_frame_type(): _rows}))


def _frame_type() -> type:
    import polars as pl  # the stats service has loaded it already

    return pl.DataFrame


def _rows(frame) -> list[dict[str, Any]]:
    return jsonable_encoder(frame.to_dicts())


def _plain(value: Any) -> Any:
    """JSON has no NaN or infinity: a rate over nothing is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@router.get("/annotations/{annotation_id}")
def get_annotation(annotation_id: str, request: Request, who: Principal = Depends(reviewer)
                   ) -> dict:
    """An annotation and its earlier revisions."""
    wb = workspace(request)
    return jsonable_encoder({**jsonable_encoder(wb.annotations.get(annotation_id)),
                             "history": wb.annotations.history(annotation_id)})


@router.patch("/annotations/{annotation_id}")
def update_annotation(annotation_id: str, request: Request,
                      body: dict[str, Any] = Body(..., examples=[{"label": "confirmed"}]),
                      who: Principal = Depends(reviewer)) -> dict:
    """Change an annotation (label, confidence, reasoning, payload, retriever_id,
    execution_id); the previous revision is kept and ``annotation.updated`` is emitted."""
    changes = dict(body)
    author = _authored(who, {"author": changes.pop("author", None)})["author"]
    return jsonable_encoder(workspace(request).annotations.update(annotation_id, author,
                                                                  **changes))


@router.delete("/annotations/{annotation_id}", status_code=204)
def delete_annotation(annotation_id: str, request: Request, who: Principal = Depends(reviewer)
                      ) -> Response:
    """Delete an annotation (softly: its history stays); ``annotation.deleted`` is emitted."""
    workspace(request).annotations.delete(annotation_id, who.name)
    return Response(status_code=204)
