"""Events: a row per thing that happened (``batch.completed``, ``model.registered``, …).

An event is written in the same transaction as the change that caused it, so it exists
exactly when the change does. Webhook delivery reads these rows.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from workbench.store import tables as t
from workbench.store.metadata import as_utc, new_id, utcnow


def record_event(conn: sa.Connection, kind: str, payload: dict[str, Any]) -> str:
    event_id = new_id("evt")
    conn.execute(t.events.insert().values(id=event_id, type=kind, payload=payload,
                                          created_at=utcnow()))
    return event_id


def recent_events(db, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    query = sa.select(t.events).order_by(t.events.c.created_at.desc()).limit(limit)
    if kind:
        query = query.where(t.events.c.type == kind)
    with db.read() as conn:
        return [{"id": r.id, "type": r.type, "payload": r.payload,
                 "created_at": as_utc(r.created_at)} for r in conn.execute(query)]
