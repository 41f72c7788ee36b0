"""Webhooks: subscriptions (the signing secret shown once), their deliveries from the durable
outbox, and redelivery."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder

from workbench.api.auth import Principal, admin
from workbench.api.payloads import WebhookCreate
from workbench.api.routes.common import MAX_PAGE, IdempotencyKey, create, page_json, workspace

router = APIRouter(tags=["webhooks"])


def webhook_json(hook) -> dict[str, Any]:
    """A webhook in the tutorial's names (its secret only as a hint)."""
    data = asdict(hook)
    return jsonable_encoder({"webhook_id": data.pop("id"), "webhook_name": data.pop("name"),
                             **data})


@router.post("/webhooks", status_code=201)
def create_webhook(body: WebhookCreate, request: Request, who: Principal = Depends(admin),
                   key: str | None = IdempotencyKey) -> Any:
    """Subscribe a URL to events (``*`` for all): signed (``X-Workbench-Signature``), retried
    and logged deliveries. The answer holds the signing ``secret``, this once."""
    wb = workspace(request)

    def make():
        hook, secret = wb.webhooks.create(body.webhook_name, body.url, body.events)
        return 201, {**webhook_json(hook), "secret": secret}, {
            "Location": f"/v1/webhooks/{hook.id}"}

    return create(request, who, key, body.model_dump(), make)


@router.get("/webhooks")
def list_webhooks(request: Request, who: Principal = Depends(admin)) -> list[dict]:
    """Every webhook, by name."""
    return [webhook_json(h) for h in workspace(request).webhooks.list()]


@router.get("/webhooks/{webhook}")
def get_webhook(webhook: str, request: Request, who: Principal = Depends(admin)) -> dict:
    """A webhook by name or id."""
    return webhook_json(workspace(request).webhooks.get(webhook))


@router.get("/webhooks/{webhook}/deliveries")
def list_deliveries(webhook: str, request: Request, status: str | None = None,
                    cursor: str | None = None, limit: int = Query(50, ge=1, le=MAX_PAGE),
                    who: Principal = Depends(admin)) -> dict:
    """A webhook's deliveries, newest first (of one ``status``: pending, delivering,
    delivered, failed), with their attempts and last error, a page at a time."""
    return page_json(workspace(request).webhooks.deliveries_page(webhook, status, cursor,
                                                                 limit))


@router.post("/webhooks/deliveries/{delivery_id}/redeliver", status_code=202)
def redeliver(delivery_id: str, request: Request, who: Principal = Depends(admin)) -> dict:
    """Send a delivery again (same delivery id, a fresh retry window); the dispatcher sends
    it."""
    workspace(request).webhooks.redeliver(delivery_id)
    return {"delivery_id": delivery_id, "status": "pending"}


@router.post("/webhooks/{webhook}/ping", status_code=202)
def ping(webhook: str, request: Request, who: Principal = Depends(admin)) -> dict:
    """Queue a ``ping`` event to this webhook only (to check the receiving end)."""
    return {"delivery_id": workspace(request).webhooks.ping(webhook), "status": "pending"}
