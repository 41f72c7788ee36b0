"""Webhooks: signed, retried, logged deliveries of events from a durable outbox.

When something happens, its event row and one outbox row per subscribed webhook are written
in the same transaction as the change itself (``workbench.events.record_event``), so an event
exists — and will be delivered — exactly when the change does. A dispatcher (a thread of the
worker, or ``deliver_due`` called by hand) claims due deliveries under a lease, POSTs them and
records every attempt. Failures of any kind (an HTTP error status, a refused connection, a
URL the client cannot use) are recorded on that delivery alone and retried with exponential
backoff and jitter for a retry window (``WORKBENCH_WEBHOOK_RETRY_WINDOW_S``, default 24 h,
waits capped at ``WORKBENCH_WEBHOOK_BACKOFF_MAX_S``, default 1 h); the log shows when the next
attempt is due. A delivery still failing when the window closes is marked failed (and can be
redelivered by hand). When a webhook's receiver answers again, its other waiting deliveries
are sent at once rather than each at the end of its own backoff. A disabled webhook gets no
new deliveries and its waiting ones wait until it is enabled again. A dispatcher killed
mid-delivery leaves a ``delivering`` row whose lease runs out; the next one sends it again
with the same delivery id: delivery is at least once, and receivers de-duplicate on
``X-Workbench-Delivery``.

Each request carries::

    Content-Type: application/json
    X-Workbench-Event: annotation.created
    X-Workbench-Delivery: dlv_…          (the same on every retry of this delivery)
    X-Workbench-Timestamp: 1764068400    (Unix seconds, when this attempt was signed)
    X-Workbench-Signature: sha256=<hex>  (HMAC-SHA256 of "<timestamp>.<raw body>")

and a body ``{"id": event id, "type": …, "created_at": ISO time, "data": {…}}``. To verify
(see ``verify_signature``): recompute the HMAC over the timestamp, a dot and the raw body bytes
with the webhook's secret, compare in constant time, and reject timestamps older than a few
minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import sqlalchemy as sa

from workbench.errors import NotFoundError, ValidationError
from workbench.events import new_event, outbox
from workbench.paging import Keyset, Page
from workbench.store import tables as t
from workbench.store.metadata import as_utc, new_id, utcnow

if TYPE_CHECKING:
    from workbench import Workbench

EVENT_TYPES = ("annotation.created", "annotation.updated", "annotation.deleted",
               "batch.completed", "model.registered", "training.completed",
               "evaluation.completed", "taxonomy.applied", "cluster.completed", "ping")
TIMEOUT_S = 10.0
BACKOFF_INITIAL_S = 1.0
MAX_URL_LENGTH = 2000
SENDERS = 8  # requests in flight at once
LEASE_S = TIMEOUT_S + 20.0  # a claimed delivery not settled by then is sent again


_DELIVERY_ORDER = Keyset("webhook deliveries", ((t.webhook_deliveries.c.created_at, True),
                                                 (t.webhook_deliveries.c.id, True)))


@dataclass(frozen=True)
class Webhook:
    """A webhook subscription (its secret only as a hint: the last four characters)."""

    id: str
    name: str
    url: str
    events: tuple[str, ...]
    secret_hint: str  # the secret is shown once, at creation; afterwards only its end
    active: bool
    created_at: datetime


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Workbench-Signature`` value for a body sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str,
                     tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff_s(attempt: int, cap_s: float = 3600.0) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential with
    jitter, from tenacity's own policy, at most ``cap_s`` (plus up to a second of jitter)."""
    from tenacity import RetryCallState, wait_exponential_jitter

    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return wait_exponential_jitter(initial=BACKOFF_INITIAL_S, max=cap_s)(state)


class WebhookService:
    """Webhook subscriptions, and the signed deliveries of events to them, with retries."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db

    # -- subscriptions -------------------------------------------------------------------
    def create(self, name: str, url: str, events: list[str] | tuple[str, ...] = ("*",),
               secret: str | None = None, active: bool = True) -> tuple[Webhook, str]:
        """Register a webhook; returns it and its secret (shown this once)."""
        if not name or len(name) > 200:
            raise ValidationError("a webhook needs a name of 1-200 characters")
        _check_url(url)
        events = list(events)
        unknown = [e for e in events if e != "*" and e not in EVENT_TYPES]
        if unknown or not events:
            raise ValidationError(f"unknown event type(s) {unknown}; choose from "
                                  f"{', '.join(EVENT_TYPES)} or '*'")
        secret = secret or "whsec_" + secrets.token_urlsafe(24)
        webhook_id = new_id("whk")
        with self.db.write() as conn:
            self.db.insert_named(conn, t.webhooks, "webhook", id=webhook_id, name=name, url=url,
                                 events=events, secret=secret, active=active,
                                 created_at=utcnow())
        return self.get(webhook_id), secret

    def get(self, name_or_id: str) -> Webhook:
        """A webhook by name or id; NotFoundError if there is none."""
        row = self.db.find(t.webhooks, name_or_id)
        if row is None:
            raise NotFoundError(f"no webhook {name_or_id!r}")
        return webhook_from_row(row)

    def list(self) -> list[Webhook]:
        """Every webhook, by name."""
        with self.db.read() as conn:
            return [webhook_from_row(r) for r in conn.execute(
                sa.select(t.webhooks).order_by(t.webhooks.c.name))]

    def set_active(self, name: str, active: bool) -> Webhook:
        """Enable or disable a webhook; a disabled one's waiting deliveries wait for it."""
        hook = self.get(name)
        with self.db.write() as conn:
            conn.execute(t.webhooks.update().where(t.webhooks.c.id == hook.id)
                         .values(active=active))
            if active:  # what waited while it was off goes out now
                conn.execute(t.webhook_deliveries.update().where(
                    t.webhook_deliveries.c.webhook_id == hook.id,
                    t.webhook_deliveries.c.status == "pending").values(
                    next_attempt_at=utcnow()))
        return self.get(hook.id)

    def delete(self, name: str) -> dict[str, int]:
        """Remove a webhook with its deliveries and their attempts (the events stay)."""
        hook = self.get(name)
        d = t.webhook_deliveries.c
        with self.db.write() as conn:
            ids = sa.select(d.id).where(d.webhook_id == hook.id)
            attempts = conn.execute(t.webhook_attempts.delete().where(
                t.webhook_attempts.c.delivery_id.in_(ids))).rowcount
            deliveries = conn.execute(t.webhook_deliveries.delete().where(
                d.webhook_id == hook.id)).rowcount
            conn.execute(t.webhooks.delete().where(t.webhooks.c.id == hook.id))
        return {"deliveries": deliveries, "attempts": attempts}

    def ping(self, name: str) -> str:
        """Queue a ``ping`` event to this webhook only; returns the delivery id."""
        hook = self.get(name)
        with self.db.write() as conn:
            event_id, created_at = new_event(conn, "ping", {"webhook": hook.name})
            (delivery_id,) = outbox(conn, event_id, created_at, [hook.id])
        return delivery_id

    def redeliver(self, delivery_id: str) -> None:
        """Send a delivery again now (same delivery id), whatever its state, with a fresh
        retry window."""
        now = utcnow()
        with self.db.write() as conn:
            done = conn.execute(t.webhook_deliveries.update().where(
                t.webhook_deliveries.c.id == delivery_id).values(
                status="pending", attempts=0, next_attempt_at=now, lease_until=None,
                retry_until=now + timedelta(seconds=self.wb.settings.webhook_retry_window_s)))
        if not done.rowcount:
            raise NotFoundError(f"no delivery {delivery_id!r}")

    def deliveries(self, webhook: str | None = None, status: str | None = None,
                   limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` deliveries (of ``webhook``, with ``status``), each with its
        event type: the first :meth:`deliveries_page`, which also says how many there are."""
        return self.deliveries_page(webhook, status, limit=limit).items

    def deliveries_page(self, webhook: str | None = None, status: str | None = None,
                        cursor: str | None = None, limit: int = 100
                        ) -> Page[dict[str, Any]]:
        """A page of deliveries (of ``webhook``, with ``status``), newest first, each with its
        event type, with how many there are and the cursor of the next page."""
        d = t.webhook_deliveries.c
        query = (sa.select(t.webhook_deliveries, t.events.c.type.label("event_type"))
                 .select_from(t.webhook_deliveries.join(t.events, t.events.c.id == d.event_id)))
        hook_id = None if webhook is None else self.get(webhook).id
        if hook_id is not None:
            query = query.where(d.webhook_id == hook_id)
        if status is not None:
            query = query.where(d.status == status)
        with self.db.read() as conn:
            return _DELIVERY_ORDER.page(conn, query, cursor, limit,
                                        scope={"webhook": hook_id, "status": status})

    def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        """A delivery's attempts, in order."""
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(t.webhook_attempts).where(
                    t.webhook_attempts.c.delivery_id == delivery_id)
                .order_by(t.webhook_attempts.c.attempt))]

    # -- delivering ----------------------------------------------------------------------
    def claim(self, limit: int = 50, due_by: datetime | None = None) -> list[dict[str, Any]]:
        """Take due deliveries (pending and due by ``due_by``, default now; or delivering
        with an expired lease). On Postgres the rows are locked as they are read (``FOR
        UPDATE SKIP LOCKED``), so that dispatchers on several machines never take one
        delivery twice; SQLite's writers take turns."""
        now = utcnow()
        due_by = min(now, due_by) if due_by is not None else now
        d = t.webhook_deliveries.c
        with self.db.write() as conn:
            rows = conn.execute(
                sa.select(t.webhook_deliveries, t.events.c.type, t.events.c.payload,
                          t.events.c.created_at.label("event_created_at"), t.webhooks.c.url,
                          t.webhooks.c.secret, t.webhooks.c.active)
                .select_from(t.webhook_deliveries
                             .join(t.events, t.events.c.id == d.event_id)
                             .join(t.webhooks, t.webhooks.c.id == d.webhook_id))
                .where(t.webhooks.c.active.is_(True),
                       sa.or_(sa.and_(d.status == "pending", d.next_attempt_at <= due_by),
                              sa.and_(d.status == "delivering", d.lease_until < now)))
                .order_by(d.next_attempt_at, d.id).limit(limit)
                .with_for_update(of=t.webhook_deliveries, skip_locked=True)).all()
            ids = [r.id for r in rows]
            if ids:
                conn.execute(t.webhook_deliveries.update().where(d.id.in_(ids)).values(
                    status="delivering", lease_until=now + timedelta(seconds=LEASE_S)))
        return [dict(r._mapping) for r in rows]

    def deliver_due(self, limit: int = 50, client=None, due_by: datetime | None = None) -> int:
        """Claim and send what is due (up to ``SENDERS`` requests at once), then settle the
        whole batch in one transaction; returns how many were attempted."""
        import httpx

        claimed = self.claim(limit, due_by)
        if not claimed:
            return 0
        own = client is None
        client = client or httpx.Client(timeout=TIMEOUT_S)
        try:
            with ThreadPoolExecutor(min(SENDERS, len(claimed))) as pool:
                outcomes = list(pool.map(lambda d: self._send(client, d), claimed))
        finally:
            if own:
                client.close()
        answered = {d["webhook_id"] for d, (_, v) in zip(claimed, outcomes, strict=True)
                    if v["status"] == "delivered"}
        d = t.webhook_deliveries.c
        with self.db.write() as conn:
            for delivery, (attempt, values) in zip(claimed, outcomes, strict=True):
                conn.execute(t.webhook_attempts.insert().values(**attempt))
                conn.execute(t.webhook_deliveries.update().where(
                    d.id == delivery["id"]).values(**values))
            if answered:  # a receiver that answers again gets its backlog now
                conn.execute(t.webhook_deliveries.update().where(
                    d.webhook_id.in_(answered), d.status == "pending",
                    d.next_attempt_at > utcnow()).values(next_attempt_at=utcnow()))
        return len(claimed)

    def _send(self, client, delivery: dict[str, Any]) -> tuple[dict, dict]:
        """POST one delivery; returns its attempt row and the delivery's new values. Whatever
        goes wrong (a bad URL, a body that cannot be signed, a refused connection) is this
        delivery's failed attempt, never the batch's."""
        attempt = delivery["attempts"] + 1
        started, begun = utcnow(), time.perf_counter()
        status_code, error = None, None
        try:
            body = json.dumps({"id": delivery["event_id"], "type": delivery["type"],
                               "created_at": as_utc(delivery["event_created_at"]).isoformat(),
                               "data": delivery["payload"]}, separators=(",", ":")).encode()
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "flywheel-workbench",
                       "X-Workbench-Event": delivery["type"],
                       "X-Workbench-Delivery": delivery["id"],
                       "X-Workbench-Timestamp": timestamp,
                       "X-Workbench-Signature": sign(delivery["secret"], timestamp, body)}
            response = client.post(delivery["url"], content=body, headers=headers,
                                   timeout=TIMEOUT_S)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}: {response.text[:200]}"
        except Exception as exc:  # noqa: BLE001 — whatever fails, fails this delivery alone
            error = f"{type(exc).__name__}: {exc}"[:500]
        duration_ms = (time.perf_counter() - begun) * 1000
        now = utcnow()
        values: dict[str, Any] = {"attempts": attempt, "last_status_code": status_code,
                                  "last_error": error, "lease_until": None}
        settings = self.wb.settings
        retry_at = now + timedelta(seconds=backoff_s(attempt, settings.webhook_backoff_max_s))
        closes = delivery["retry_until"] or delivery["created_at"] + timedelta(
            seconds=settings.webhook_retry_window_s)
        if error is None:
            values.update(status="delivered", delivered_at=now)
        elif retry_at > closes:
            values.update(status="failed", last_error=f"{error} (gave up after {attempt} "
                          "attempts: the retry window closed; redeliver it by hand)"[:1000])
        else:
            values.update(status="pending", next_attempt_at=retry_at)
        return ({"delivery_id": delivery["id"], "attempt": attempt, "started_at": started,
                 "duration_ms": duration_ms, "status_code": status_code, "error": error},
                values)

    def deliver_all_due(self) -> int:
        """Send everything due now (not the retries that fall due meanwhile); returns how
        many were attempted. ``worker --exit-when-idle`` calls this before it exits."""
        now, sent = utcnow(), 0
        while attempted := self.deliver_due(due_by=now):
            sent += attempted
        return sent

    def run_dispatcher(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Deliver until ``stop`` is set (the worker runs this on a thread of its own)."""
        import httpx

        limits = httpx.Limits(max_connections=SENDERS, max_keepalive_connections=SENDERS)
        with httpx.Client(timeout=TIMEOUT_S, limits=limits) as client:
            while not stop.is_set():
                try:
                    sent = self.deliver_due(client=client)
                except Exception:  # noqa: BLE001 — a dispatcher must outlive a bad row
                    import logging

                    logging.getLogger(__name__).exception("webhook dispatch failed")
                    sent = 0
                if not sent:
                    stop.wait(poll_s)


def _check_url(url: str) -> None:
    """A URL the dispatcher can POST to: http(s), a host, no whitespace or control
    characters (a newline would end the request line), parsed the same way httpx will."""
    import httpx

    if not isinstance(url, str) or not url:
        raise ValidationError("a webhook needs a URL, e.g. https://example.com/hooks")
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"a webhook URL has at most {MAX_URL_LENGTH} characters, got "
                              f"{len(url)}")
    bad = next((c for c in url if ord(c) < 33 or ord(c) == 127), None)
    if bad is not None:
        raise ValidationError(f"a webhook URL must not hold whitespace or control characters "
                              f"(found {bad!r} in {url!r}); percent-encode them")
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 — raises on a port that is not a number in range
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValidationError(f"a webhook URL that cannot be used: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValidationError(f"a webhook URL must be http:// or https:// with a host, got "
                              f"{url!r}")


def webhook_from_row(row) -> Webhook:
    """The Webhook a row of the webhooks table describes."""
    return Webhook(row.id, row.name, row.url, tuple(row.events),
                   "…" + row.secret[-4:], bool(row.active), as_utc(row.created_at))
