"""Leases: several reviewers, one queue.

Opening a page of a review queue leases its items (detections, or image documents in image
review) to the reviewer for :attr:`Settings.lease_ttl_s`; the queue skips items leased to
someone else, a renewal pushes the expiry on while the reviewer works, and the reviewer's
verdict releases the item. A verdict on an item leased to someone else is refused with
:class:`LeaseConflict`. An expired lease is as good as none: nobody has to clean up after a
reviewer who closed the tab.

Every write is one transaction of the caller's (or its own): on SQLite writers take turns
(``BEGIN IMMEDIATE``), on Postgres the insert is ``INSERT … ON CONFLICT DO UPDATE … WHERE``
the row is expired or already the reviewer's, so two reviewers racing for one item never both
get it. The primary key (collection, document) is what makes it so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from workbench.errors import WorkbenchError
from workbench.store import tables as t
from workbench.store.metadata import MetadataStore, as_utc, in_lists, utcnow

DEFAULT_TTL_S = 300.0


class LeaseConflict(WorkbenchError):
    """An item is leased to another reviewer until its lease expires."""


@dataclass(frozen=True)
class Lease:
    """Who holds an item of a collection, and until when."""

    collection_id: str
    document_id: str
    holder: str
    expires_at: datetime


class LeaseService:
    """Acquire, renew, release and read the leases of review-queue items."""

    def __init__(self, db: MetadataStore, ttl_s: float = DEFAULT_TTL_S):
        self.db = db
        self.ttl_s = ttl_s

    # -- writes --------------------------------------------------------------------------
    def acquire(self, collection_id: str, document_ids: Sequence[str], holder: str,
                ttl_s: float | None = None, conn=None) -> list[str]:
        """Lease ``document_ids`` to ``holder``: the ones free, expired or already the
        holder's (renewed). Returns those the holder now holds, in the order given; the rest
        are someone else's. Runs in ``conn``'s write transaction when one is given."""
        if not document_ids:
            return []
        if conn is None:
            with self.db.write() as own:
                return self.acquire(collection_id, document_ids, holder, ttl_s, own)
        now = utcnow()
        expires = now + timedelta(seconds=self.ttl_s if ttl_s is None else ttl_s)
        wanted = list(dict.fromkeys(document_ids))
        # In id order: two transactions lock the rows they share in the same order, so that
        # on Postgres they wait for each other instead of deadlocking.
        rows = [{"collection_id": collection_id, "document_id": d, "holder": holder,
                 "expires_at": expires, "created_at": now} for d in sorted(wanted)]
        c = t.leases.c
        if conn.dialect.name in ("sqlite", "postgresql"):
            if conn.dialect.name == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            for chunk in in_lists(rows):
                statement = insert(t.leases).values(chunk)
                taken = statement.excluded
                conn.execute(statement.on_conflict_do_update(
                    index_elements=[c.collection_id, c.document_id],
                    set_={"holder": taken.holder, "expires_at": taken.expires_at,
                          "created_at": sa.case((c.holder == taken.holder, c.created_at),
                                                else_=taken.created_at)},
                    where=sa.or_(c.holder == taken.holder, c.expires_at <= now)))
        else:  # another database: take over expired rows, then insert what is missing
            for chunk in in_lists(wanted):
                conn.execute(t.leases.delete().where(
                    c.collection_id == collection_id, c.document_id.in_(chunk),
                    c.expires_at <= now))
                conn.execute(t.leases.update().where(
                    c.collection_id == collection_id, c.document_id.in_(chunk),
                    c.holder == holder).values(expires_at=expires))
                present = set(conn.execute(sa.select(c.document_id).where(
                    c.collection_id == collection_id, c.document_id.in_(chunk))).scalars())
                missing = [r for r in rows if r["document_id"] in chunk and
                           r["document_id"] not in present]
                if missing:
                    conn.execute(t.leases.insert(), missing)
        held = {lease.document_id for lease in self._read(conn, collection_id, wanted)
                if lease.holder == holder}
        return [d for d in wanted if d in held]

    def renew(self, collection_id: str, holder: str, document_ids: Iterable[str] | None = None,
              ttl_s: float | None = None) -> int:
        """Push on the expiry of the holder's unexpired leases (all of them in the collection,
        or those of ``document_ids``). Returns how many were renewed; an expired lease is not
        renewed (someone else may have it by now: open the queue again)."""
        now = utcnow()
        c = t.leases.c
        where = [c.collection_id == collection_id, c.holder == holder, c.expires_at > now]
        expires = now + timedelta(seconds=self.ttl_s if ttl_s is None else ttl_s)
        with self.db.write() as conn:
            if document_ids is None:
                return conn.execute(t.leases.update().where(*where).values(
                    expires_at=expires)).rowcount
            return sum(conn.execute(t.leases.update().where(
                *where, c.document_id.in_(chunk)).values(expires_at=expires)).rowcount
                for chunk in in_lists(list(document_ids)))

    def release(self, collection_id: str, holder: str,
                document_ids: Iterable[str] | None = None, conn=None) -> int:
        """Give back the holder's leases (all of them in the collection, or those of
        ``document_ids``). Returns how many were released."""
        if conn is None:
            with self.db.write() as own:
                return self.release(collection_id, holder, document_ids, own)
        c = t.leases.c
        where = [c.collection_id == collection_id, c.holder == holder]
        if document_ids is None:
            return conn.execute(t.leases.delete().where(*where)).rowcount
        return sum(conn.execute(t.leases.delete().where(*where, c.document_id.in_(chunk)))
                   .rowcount for chunk in in_lists(list(document_ids)))

    def settle(self, conn, collection_id: str, document_id: str, author: str) -> None:
        """A verdict on ``document_id`` by ``author``, in the verdict's transaction: refused
        while someone else holds the item; the author's own lease is released."""
        c = t.leases.c
        row = conn.execute(sa.select(t.leases).where(
            c.collection_id == collection_id, c.document_id == document_id)).first()
        if row is None:
            return
        if row.holder != author and row.expires_at > utcnow():
            raise LeaseConflict(
                f"{document_id} is leased to {row.holder!r} until "
                f"{as_utc(row.expires_at):%Y-%m-%d %H:%M:%S} UTC: they opened it in their "
                "review queue; take the next item of yours, or wait until the lease expires")
        conn.execute(t.leases.delete().where(c.collection_id == collection_id,
                                             c.document_id == document_id))

    # -- reads ---------------------------------------------------------------------------
    def holder_of(self, collection_id: str, document_id: str) -> Lease | None:
        """The unexpired lease on an item, or None when it is free."""
        with self.db.read() as conn:
            found = self._read(conn, collection_id, [document_id])
        return found[0] if found else None

    def held_by(self, collection_id: str, holder: str) -> list[Lease]:
        """The holder's unexpired leases in a collection, soonest to expire first."""
        c = t.leases.c
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.leases).where(
                c.collection_id == collection_id, c.holder == holder,
                c.expires_at > utcnow()).order_by(c.expires_at, c.document_id)).all()
        return [_lease(r) for r in rows]

    def _read(self, conn, collection_id: str, document_ids: Sequence[str]) -> list[Lease]:
        c = t.leases.c
        now = utcnow()
        return [_lease(r) for chunk in in_lists(list(document_ids)) for r in conn.execute(
            sa.select(t.leases).where(c.collection_id == collection_id,
                                      c.document_id.in_(chunk), c.expires_at > now))]


def leased_to_others(collection_id, document_id, holder: str) -> sa.ColumnElement:
    """A SQL condition: the item ``document_id`` (a column) is leased to someone other than
    ``holder`` and the lease has not expired. A queue puts ``~`` it among its filters, so that
    a page skips those items and stays full."""
    c = t.leases.c
    return sa.exists().where(c.collection_id == collection_id, c.document_id == document_id,
                             c.holder != holder, c.expires_at > utcnow())


def _lease(row) -> Lease:
    return Lease(row.collection_id, row.document_id, row.holder, as_utc(row.expires_at))
