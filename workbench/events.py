"""Events: a row per thing that happened (``batch.completed``, ``model.registered``, …).

An event is written in the same transaction as the change that caused it, so it exists
exactly when the change does; so are the webhook outbox rows that will deliver it. The
outbox is written here and read by ``workbench.webhooks`` (which imports this module, never
the other way round).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from workbench.paging import Keyset, Page
from workbench.store import tables as t
from workbench.store.metadata import MetadataStore, as_utc, new_id, utcnow


def new_event(conn: sa.Connection, kind: str, payload: dict[str, Any]):
    """Write an event row only; returns its id and time."""
    event_id, created_at = new_id("evt"), utcnow()
    conn.execute(t.events.insert().values(id=event_id, type=kind, payload=payload,
                                          created_at=created_at))
    return event_id, created_at


def record_event(conn: sa.Connection, kind: str, payload: dict[str, Any]) -> str:
    """Write an event and its webhook outbox rows, in the caller's transaction."""
    event_id, created_at = new_event(conn, kind, payload)
    enqueue(conn, event_id, kind, created_at)
    return event_id


def record_events(conn: sa.Connection, events: list[tuple[str, dict[str, Any], datetime]]
                  ) -> list[str]:
    """Many events ``(kind, payload, created_at)`` and their outbox rows, in the caller's
    transaction: what :func:`record_event` writes for each, in a statement per table (a
    bulk request's 1,000 events). Returns the event ids, in order."""
    if not events:
        return []
    rows = [{"id": new_id("evt"), "type": kind, "payload": payload, "created_at": created_at}
            for kind, payload, created_at in events]
    conn.execute(t.events.insert(), rows)
    hooks = conn.execute(sa.select(t.webhooks.c.id, t.webhooks.c.events).where(
        t.webhooks.c.active.is_(True))).all()
    deliveries = [delivery for row in rows for delivery in _deliveries(
        row["id"], row["created_at"], [h.id for h in hooks
                                       if row["type"] in h.events or "*" in h.events])]
    if deliveries:
        conn.execute(t.webhook_deliveries.insert(), deliveries)
    return [r["id"] for r in rows]


def enqueue(conn: sa.Connection, event_id: str, kind: str, created_at: datetime
            ) -> list[str]:
    """Outbox rows for every active webhook subscribed to ``kind``, in the caller's
    transaction (``record_event`` calls this; the webhook dispatcher reads them)."""
    rows = conn.execute(sa.select(t.webhooks.c.id, t.webhooks.c.events).where(
        t.webhooks.c.active.is_(True))).all()
    targets = [r.id for r in rows if kind in r.events or "*" in r.events]
    return outbox(conn, event_id, created_at, targets)


def outbox(conn: sa.Connection, event_id: str, created_at: datetime,
            webhook_ids: list[str]) -> list[str]:
    """Pending deliveries of one event to these webhooks; returns their ids."""
    rows = _deliveries(event_id, created_at, webhook_ids)
    if rows:
        conn.execute(t.webhook_deliveries.insert(), rows)
    return [r["id"] for r in rows]


def _deliveries(event_id: str, created_at: datetime, webhook_ids: list[str]
                ) -> list[dict[str, Any]]:
    return [{"id": new_id("dlv"), "webhook_id": webhook_id, "event_id": event_id,
             "status": "pending", "attempts": 0, "next_attempt_at": created_at,
             "created_at": created_at} for webhook_id in webhook_ids]


class EventService:
    """The workspace's event log, newest first (``wb.events``)."""

    def __init__(self, db: MetadataStore):
        self.db = db

    def recent(self, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest ``limit`` events, of one ``kind`` if given: the first :meth:`page`, which
        also says how many there are and pages on."""
        return self.page(kind, limit=limit).items

    def page(self, kind: str | None = None, cursor: str | None = None, limit: int = 50
             ) -> Page[dict[str, Any]]:
        """A page of events (of one ``kind``, if given), newest first, with how many there
        are and the cursor of the next page."""
        query = sa.select(t.events)
        if kind:
            query = query.where(t.events.c.type == kind)
        with self.db.read() as conn:
            return _EVENT_ORDER.page(conn, query, cursor, limit, _event_from_row,
                                     {"type": kind or None})


_EVENT_ORDER = Keyset("events", ((t.events.c.created_at, True), (t.events.c.id, True)))


def _event_from_row(row) -> dict[str, Any]:
    return {"id": row.id, "type": row.type, "payload": row.payload,
            "created_at": as_utc(row.created_at)}
