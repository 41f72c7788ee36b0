"""``Idempotency-Key`` on POSTs that create things: a retried request never makes two.

The first request with a key claims it (a row with the route and a hash of the request)
before it does anything; its answer is stored when it is done. The same key again with the
same request gets that answer again; with another request, or while the first is still being
served, a 409. A first request that fails with an error releases its key, so that the
client may retry it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from workbench.api.auth import Principal
from workbench.api.errors import ApiError
from workbench.store import tables as t
from workbench.store.metadata import MetadataStore, utcnow

HEADER = "Idempotency-Key"
MAX_KEY = 200
# A first request unanswered after this long died with its server: its key is free again.
ABANDONED_AFTER = timedelta(minutes=10)


def request_hash(route: str, body: Any) -> str:
    """A hash of what a request asks for: its route and its body (canonical JSON, or the
    sha256 of uploaded bytes)."""
    text = json.dumps([route, jsonable_encoder(body)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def respond(db: MetadataStore, who: Principal, key: str | None, route: str, digest: str,
            make: Callable[[], tuple[int, Any, dict[str, str]]]) -> JSONResponse:
    """``make()``'s answer (status, body, headers) as JSON, or, for a key seen before, the
    answer that key got the first time."""
    if key is None:
        return _json(*make())
    if not key or len(key) > MAX_KEY:
        raise ApiError(400, "bad_request", f"{HEADER} must be 1-{MAX_KEY} characters")
    c = t.api_idempotency.c
    for first_try in (True, False):
        try:
            with db.write() as conn:
                conn.execute(t.api_idempotency.insert().values(
                    principal=who.key_id, key=key, route=route, request_hash=digest,
                    created_at=utcnow()))
            break
        except IntegrityError:
            if not (first_try and _release_abandoned(db, who, key)):
                return _replay(db, who, key, route, digest)
    try:
        status, body, headers = make()
    except BaseException:
        with db.write() as conn:
            conn.execute(t.api_idempotency.delete().where(c.principal == who.key_id,
                                                          c.key == key))
        raise
    encoded = jsonable_encoder(body)
    with db.write() as conn:
        conn.execute(t.api_idempotency.update().where(c.principal == who.key_id, c.key == key)
                     .values(status_code=status, response={"body": encoded, "headers": headers},
                             completed_at=utcnow()))
    return _json(status, encoded, headers)


def _release_abandoned(db: MetadataStore, who: Principal, key: str) -> bool:
    """Free a key whose first request never got an answer (its server was killed)."""
    c = t.api_idempotency.c
    with db.write() as conn:
        gone = conn.execute(t.api_idempotency.delete().where(
            c.principal == who.key_id, c.key == key, c.status_code.is_(None),
            c.created_at < utcnow() - ABANDONED_AFTER))
    return gone.rowcount > 0


def _replay(db: MetadataStore, who: Principal, key: str, route: str, digest: str
            ) -> JSONResponse:
    c = t.api_idempotency.c
    with db.read() as conn:
        row = conn.execute(sa.select(t.api_idempotency).where(
            c.principal == who.key_id, c.key == key)).first()
    if row is None:  # the first request failed and let go of it meanwhile
        raise ApiError(409, "idempotency_conflict", f"{HEADER} {key!r} was just released by a "
                       "failed request; retry")
    if row.route != route or row.request_hash != digest:
        raise ApiError(409, "idempotency_conflict",
                       f"{HEADER} {key!r} was used for another request ({row.route}, with "
                       "another body); use a new key for a new request",
                       {"route": row.route})
    if row.status_code is None:
        raise ApiError(409, "idempotency_conflict", f"the first request with {HEADER} {key!r} "
                       "is still being served; retry in a moment", headers={"Retry-After": "1"})
    headers = {**(row.response.get("headers") or {}), "Idempotent-Replayed": "true"}
    return _json(row.status_code, row.response["body"], headers)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers or None)
