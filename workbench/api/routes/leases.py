"""Several reviewers, one queue: the review queue's next page, leased to the key's name, and
the renewal and release of those leases (:mod:`workbench.leases` does the work)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder

from workbench.api.auth import Principal, reviewer
from workbench.api.payloads import LeaseRenewal, ReviewQueue
from workbench.api.routes.common import reviewer_name, workspace
from workbench.api.routes.retrievers import execution_json
from workbench.leases import LeaseService

router = APIRouter(tags=["review queue"])


def _leases(request: Request) -> LeaseService:
    wb = workspace(request)
    return LeaseService(wb.db, wb.settings.lease_ttl_s)


@router.post("/collections/{collection}/review-queue")
def review_queue(collection: str, body: ReviewQueue, request: Request,
                 who: Principal = Depends(reviewer)) -> dict[str, Any]:
    """The next page of a review queue, leased to this key's name for ``lease_ttl_s``
    (items leased to other reviewers are skipped). Asking again renews the page; a verdict
    releases its item."""
    wb = workspace(request)
    name = reviewer_name(wb, who)
    ttl = wb.settings.lease_ttl_s
    if body.kind == "image-review":
        queue = wb.image_review.queue(collection, body.version, body.limit, reviewer=name)
        return jsonable_encoder({"kind": body.kind, "reviewer": name, "lease_ttl_s": ttl,
                                 "execution_id": queue.execution_id,
                                 "extractor_key": queue.extractor_key,
                                 "images": queue.images, "remaining": queue.remaining,
                                 "ranked_from": queue.ranked_from})
    if body.kind == "spot-check":
        queue, inputs = wb.retrievers.spot_check(collection, body.limit), {
            "limit": body.limit, "seed": body.seed}
    else:
        queue, inputs = wb.retrievers.review_queue(collection, body.limit), {"limit": body.limit}
    run = wb.retrievers.execute(queue.name, inputs, body.version, body.count, reviewer=name)
    return {"kind": body.kind, "reviewer": name, "lease_ttl_s": ttl, **execution_json(run)}


@router.get("/leases")
def list_leases(request: Request, collection_id: str = Query(...),
                who: Principal = Depends(reviewer)) -> dict[str, Any]:
    """The items of a collection leased to this key's name, soonest to expire first."""
    wb = workspace(request)
    target = wb.collections.get(collection_id)
    return jsonable_encoder({"items": _leases(request).held_by(target.id,
                                                               reviewer_name(wb, who))})


@router.post("/leases/renew")
def renew_leases(body: LeaseRenewal, request: Request, who: Principal = Depends(reviewer)
                 ) -> dict[str, Any]:
    """Push on the expiry of this key's leases (all in the collection, or the given items).
    An expired lease is not renewed: open the queue again."""
    wb = workspace(request)
    target = wb.collections.get(body.collection_id)
    renewed = _leases(request).renew(target.id, reviewer_name(wb, who), body.document_ids)
    return {"renewed": renewed, "lease_ttl_s": wb.settings.lease_ttl_s}


@router.post("/leases/release")
def release_leases(body: LeaseRenewal, request: Request, who: Principal = Depends(reviewer)
                   ) -> dict[str, Any]:
    """Give back this key's leases (all in the collection, or the given items) for other
    reviewers to take."""
    wb = workspace(request)
    target = wb.collections.get(body.collection_id)
    return {"released": _leases(request).release(target.id, reviewer_name(wb, who),
                                                 body.document_ids)}
