"""Annotations: a reviewer's verdict on a detection (or an image), with provenance and history.

Fields follow the seed: ``document_id`` (a detection id, or an image document id for a
missed object), ``collection_id``, ``label`` (``confirmed``, ``corrected``,
``false_positive``, ``missed``, the image marks ``image_done`` and ``no_objects``, or any
other string up to 100 characters where the collection allows custom labels), ``confidence``,
``reasoning``, ``payload`` (``predicted_class``, ``true_class``, ``bbox`` as a pixel centre box
``{x, y, w, h}``, ``image_width``, ``image_height`` and free extra keys), ``retriever_id``,
``execution_id`` and ``author``. Updates keep the previous revision in
``annotation_history``; deletes are soft. Every accepted write — with its
``annotation.*`` event — is committed before the call returns.
"""

from __future__ import annotations

import difflib
import getpass
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from workbench.boxes import center_to_xyxy
from workbench.errors import NotFoundError, ValidationError
from workbench.events import record_event, record_events
from workbench.leases import LeaseConflict, LeaseService
from workbench.paging import Keyset
from workbench.paging import Page as KeysetPage
from workbench.store import tables as t
from workbench.store.metadata import MetadataStore, as_utc, new_id, utcnow

VERDICTS = ("confirmed", "corrected", "false_positive", "missed")
# Who is judging now, where the caller knows better than the service: the app's signed-in
# reviewer. Streamlit serves every session from one shared workspace, so the author cannot
# be the service's own; the app registers where the session's reviewer is read from.
_AUTHOR_SOURCE: Callable[[], str | None] | None = None
# The vocabulary every collection takes: the verdicts and the marks of image review (an
# image done, an image with nothing on it). Stats group by exact label, so "Confirmed" would
# be counted apart: other labels are refused unless the collection allows custom labels.
STANDARD_LABELS = (*VERDICTS, "image_done", "no_objects")
MAX_BULK = 1000
BOX_TOLERANCE_PX = 1.0  # rounding in a browser canvas may put an edge a pixel outside


@dataclass(frozen=True)
class Annotation:
    """One stored annotation: a verdict on a detection or an image document, with provenance."""

    id: str
    document_id: str
    collection_id: str
    object_id: str
    extractor_key: str | None
    label: str
    confidence: float | None
    reasoning: str
    payload: dict[str, Any]
    retriever_id: str | None
    execution_id: str | None
    author: str
    revision: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    origin: str = "human"  # or "carried": from the ground truth to another version's box

    @property
    def box_xyxy(self) -> tuple[float, float, float, float] | None:
        """The payload's ``bbox`` as pixel ``xyxy``, or None when it has none."""
        bbox = self.payload.get("bbox")
        return center_to_xyxy(bbox) if bbox else None


@dataclass(frozen=True)
class Page:
    """One page of annotations, how many match in all, and where the next page starts."""

    items: list[Annotation]
    total: int
    next_offset: int | None


@dataclass(frozen=True)
class Vocabulary:
    """The labels a collection's annotations may take."""

    collection_id: str
    collection: str  # its name
    standard: tuple[str, ...]
    allow_custom_labels: bool  # any other label of 1-100 characters as well

    def check(self, label: str) -> None:
        """Refuse a label outside the vocabulary, naming the likely one and the way to allow
        custom labels."""
        if label in self.standard or self.allow_custom_labels:
            return
        close = difflib.get_close_matches(label.strip().lower().replace(" ", "_"),
                                          self.standard, n=1, cutoff=0.6)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        raise ValidationError(
            f"label {label!r} is not a standard label{hint} (standard: "
            f"{', '.join(self.standard)}); to record other labels in collection "
            f"{self.collection!r}, allow them: `workbench labels {self.collection} "
            f"--allow-custom` or PATCH /v1/collections/{self.collection} "
            '{"allow_custom_labels": true}')


@dataclass(frozen=True)
class BulkResult:
    """The outcome of one operation of a bulk request, by its position in the request."""

    index: int
    ok: bool
    annotation_id: str | None = None
    error: str | None = None


class Touched:
    """What a transaction's annotation writes leave for its end: the images they touched
    (whose ground truth is refreshed once), the new annotations and their events (written
    with a statement each, however many), and the collections resolved by name or id."""

    def __init__(self):
        self._images: dict[str, dict[str, None]] = {}  # collection → its images, in order
        self._collections: dict[str, Vocabulary | None] = {}
        self.created: list[dict[str, Any]] = []  # annotation rows to insert
        # Documents with a lease when a bulk request began (None: look each one up). In a
        # write transaction: SQLite lets no other writer in, and on Postgres a lease taken
        # meanwhile is as late as one taken after this request's own lookup.
        self.leased: set[str] | None = None
        self.events: list[tuple[str, dict[str, Any], datetime]] = []

    def add(self, row: dict[str, Any]) -> None:
        """An annotation of ``row["object_id"]`` was written."""
        self._images.setdefault(row["collection_id"], {})[row["object_id"]] = None

    def images(self) -> dict[str, list[str]]:
        """Collection id → the images touched in it."""
        return {c: list(objects) for c, objects in self._images.items()}

    def vocabulary(self, conn, db: MetadataStore, given: str) -> Vocabulary | None:
        """The vocabulary of a collection given by id or name (None for an unknown one: the
        document's check refuses it), looked up once per transaction."""
        if given not in self._collections:
            named = db.find(t.collections, given, conn)
            self._collections[given] = None if named is None else _vocabulary(named)
        return self._collections[given]


class _Input(BaseModel):
    """The shape of a write; the domain rules (boxes, verdicts) are checked after it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    document_id: str = Field(min_length=1)
    collection_id: str = Field(min_length=1)
    label: str = Field(min_length=1, max_length=100)
    confidence: float | None = Field(None, ge=0, le=1)
    reasoning: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)
    retriever_id: str | None = None
    execution_id: str | None = None
    author: str | None = None


def _explain(exc: PydanticValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {field!r} (allowed: {', '.join(_Input.model_fields)})")
        elif err["type"] == "missing":
            parts.append(f"{field} is required")
        else:
            parts.append(f"{field}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)


class AnnotationService:
    """Write and read annotations; every write also refreshes the image's ground truth."""

    def __init__(self, db: MetadataStore, default_author: str | None = None,
                 gold_fraction: float = 0.2, gold_target: int = 50):
        self.db = db
        self._owner = default_author or getpass.getuser()
        self.gold = (gold_fraction, gold_target)
        # A verdict on an item leased to another reviewer is refused; the holder's releases it.
        self.leases = LeaseService(db)

    @property
    def default_author(self) -> str:
        """The author of annotations that name none (and the reviewer of leases): the app
        session's signed-in reviewer (see :func:`set_author_source`), else the workspace's
        owner (``WORKBENCH_AUTHOR`` or the login name)."""
        return (_AUTHOR_SOURCE() if _AUTHOR_SOURCE is not None else None) or self._owner

    # -- writes --------------------------------------------------------------------------
    def create(self, **fields: Any) -> Annotation:
        """Validate and store one annotation; returns it once committed."""
        with self.db.write() as conn:
            touched = Touched()
            annotation_id = self._create(conn, fields, touched)
            self._finish(conn, touched)
        return self.get(annotation_id)

    def update(self, annotation_id: str, author: str | None = None, **changes: Any
               ) -> Annotation:
        """Change an annotation; the previous revision is kept in its history."""
        with self.db.write() as conn:
            touched = Touched()
            self._update(conn, annotation_id, author, changes, touched)
            self._finish(conn, touched)
        return self.get(annotation_id)

    def delete(self, annotation_id: str, author: str | None = None) -> Annotation:
        """Soft-delete (the row and its history stay; lists leave it out)."""
        with self.db.write() as conn:
            touched = Touched()
            self._delete(conn, annotation_id, author, touched)
            self._finish(conn, touched)
        return self.get(annotation_id, include_deleted=True)

    def bulk(self, operations: list[Any]) -> list[BulkResult]:
        """Up to 1,000 ``{"op": "create"|"update"|"delete", ...}``; each stands on its own: one
        that is malformed (not a mapping, a wrong type, an unknown id) fails alone."""
        if len(operations) > MAX_BULK:
            raise ValidationError(f"a bulk request holds at most {MAX_BULK} operations, got "
                                  f"{len(operations)}; split it")
        results = []
        touched = Touched()
        with self.db.write() as conn:
            touched.leased = _leased(conn, [op.get("document_id") for op in operations
                                            if isinstance(op, dict)])
            for index, operation in enumerate(operations):
                # A create writes only once all its checks have passed (its rows wait for
                # the end); an update or a delete writes as it goes, within a savepoint.
                creates = isinstance(operation, dict) and operation.get("op",
                                                                         "create") == "create"
                savepoint = None if creates else conn.begin_nested()
                try:
                    annotation_id = self._apply(conn, operation, touched)
                    if savepoint is not None:
                        savepoint.commit()
                    results.append(BulkResult(index, True, annotation_id))
                except (ValidationError, NotFoundError, LeaseConflict) as exc:
                    # Its image may stay listed: refreshing an image whose annotations
                    # did not change rewrites the same ground truth.
                    if savepoint is not None:
                        savepoint.rollback()
                    results.append(BulkResult(index, False, error=str(exc)))
            # Once per image, whatever the number of its verdicts, in the same transaction.
            self._finish(conn, touched)
        self.db.ensure_statistics()  # many verdicts change the queue's best plan
        return results

    def apply_all(self, operations: list[Any]) -> list[str]:
        """Operations as in :meth:`bulk`, all in one transaction: every one is written, or
        (the first error raised) none is. Returns the annotation ids."""
        if len(operations) > MAX_BULK:
            raise ValidationError(f"at most {MAX_BULK} operations at once, got "
                                  f"{len(operations)}")
        touched = Touched()
        with self.db.write() as conn:
            written = [self._apply(conn, operation, touched) for operation in operations]
            self._finish(conn, touched)
            return written

    def _apply(self, conn, operation: Any, touched: Touched) -> str:
        """One bulk operation; returns the annotation id it wrote."""
        if not isinstance(operation, dict):
            raise ValidationError(f"an operation must be a JSON object like {{\"op\": "
                                  f"\"create\", \"document_id\": …}}, got {operation!r:.80}")
        op = dict(operation)
        kind = op.pop("op", "create")
        if kind == "create":
            return self._create(conn, op, touched)
        if kind not in ("update", "delete"):
            raise ValidationError(f"unknown op {kind!r}; use create, update or delete")
        annotation_id = op.pop("id", None) or op.pop("annotation_id", None)
        author = op.pop("author", None)
        if not isinstance(annotation_id, str) or not annotation_id:
            raise ValidationError(f"{kind} needs 'id', the annotation's id (a string)")
        if author is not None and not isinstance(author, str):
            raise ValidationError(f"author must be a string, got {author!r}")
        if kind == "update":
            self._update(conn, annotation_id, author, op, touched)
        elif op:
            raise ValidationError(f"delete takes only 'id' and 'author', got {sorted(op)}")
        else:
            self._delete(conn, annotation_id, author, touched)
        return annotation_id

    def _create(self, conn, fields: dict[str, Any], touched: Touched) -> str:
        try:
            data = _Input(**fields)
        except PydanticValidationError as exc:
            raise ValidationError(_explain(exc)) from None
        target = _resolve(conn, data.document_id)
        vocabulary = touched.vocabulary(conn, self.db, data.collection_id)
        collection_id = data.collection_id if vocabulary is None else vocabulary.collection_id
        if target["collection_id"] != collection_id or vocabulary is None:
            raise ValidationError(
                f"document {data.document_id} belongs to collection {target['collection_id']}, "
                f"not {data.collection_id}")
        vocabulary.check(data.label)
        data.collection_id = collection_id
        payload = _check_payload(data.label, data.payload, target)
        if touched.leased is None or data.document_id in touched.leased:
            self.leases.settle(conn, collection_id, data.document_id,
                               data.author or self.default_author)
        now = utcnow()
        annotation_id = new_id("ann")
        row = {
            "id": annotation_id, "document_id": data.document_id,
            "collection_id": data.collection_id, "object_id": target["object_id"],
            "extractor_key": target["extractor_key"], "label": data.label,
            "confidence": data.confidence, "reasoning": data.reasoning, "payload": payload,
            "retriever_id": data.retriever_id, "execution_id": data.execution_id,
            "author": data.author or self.default_author, "revision": 1, "created_at": now,
            "updated_at": now,
        }
        # Written at the transaction's end with the others: nothing after the checks above
        # can fail, so a create needs no savepoint of its own in a bulk request.
        touched.created.append(row)
        touched.events.append(("annotation.created", _event_payload(row), now))
        touched.add(row)
        return annotation_id

    def _finish(self, conn, touched: Touched) -> None:
        """Write the new annotations and their events, then refresh the ground truth (and
        carried verdicts) of the images written to, in this transaction: once per image
        however many of its annotations were written."""
        from workbench.truth import INSERT_CHUNK, refresh

        for start in range(0, len(touched.created), INSERT_CHUNK):
            conn.execute(t.annotations.insert(), touched.created[start:start + INSERT_CHUNK])
        record_events(conn, touched.events)
        for collection_id, object_ids in touched.images().items():
            refresh(conn, collection_id, object_ids, *self.gold)

    def _update(self, conn, annotation_id: str, author: str | None, changes: dict[str, Any],
                touched: Touched):
        current = self._row(conn, annotation_id)
        allowed = {"label", "confidence", "reasoning", "payload", "retriever_id",
                   "execution_id"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValidationError(f"cannot update {sorted(unknown)}; updatable: "
                                  f"{', '.join(sorted(allowed))}")
        merged = {key: current[key] for key in ("document_id", "collection_id", "label",
                                                "confidence", "reasoning", "payload",
                                                "retriever_id", "execution_id")}
        merged.update(changes)
        try:
            data = _Input(**merged)
        except PydanticValidationError as exc:
            raise ValidationError(_explain(exc)) from None
        target = _resolve(conn, current["document_id"])
        if data.label != current["label"]:  # a label written before its rule stays
            touched.vocabulary(conn, self.db, current["collection_id"]).check(data.label)
        payload = _check_payload(data.label, data.payload, target)
        who = author or self.default_author
        self.leases.settle(conn, current["collection_id"], current["document_id"], who)
        conn.execute(t.annotation_history.insert().values(
            id=new_id("anh"), annotation_id=annotation_id, revision=current["revision"],
            snapshot=_snapshot(current), changed_at=utcnow(), changed_by=who))
        values = {"label": data.label, "confidence": data.confidence,
                  "reasoning": data.reasoning, "payload": payload,
                  "retriever_id": data.retriever_id, "execution_id": data.execution_id,
                  "revision": current["revision"] + 1, "updated_at": utcnow(), "author": who}
        conn.execute(t.annotations.update().where(t.annotations.c.id == annotation_id)
                     .values(**values))
        touched.add(current)
        record_event(conn, "annotation.updated", _event_payload({**current, **values}))

    def _delete(self, conn, annotation_id: str, author: str | None, touched: Touched
                ) -> None:
        current = self._row(conn, annotation_id)
        who = author or self.default_author
        conn.execute(t.annotation_history.insert().values(
            id=new_id("anh"), annotation_id=annotation_id, revision=current["revision"],
            snapshot=_snapshot(current), changed_at=utcnow(), changed_by=who))
        conn.execute(t.annotations.update().where(t.annotations.c.id == annotation_id).values(
            deleted_at=utcnow(), revision=current["revision"] + 1, author=who))
        touched.add(current)
        record_event(conn, "annotation.deleted", _event_payload(current))

    def _row(self, conn, annotation_id: str) -> dict[str, Any]:
        row = conn.execute(sa.select(t.annotations).where(
            t.annotations.c.id == annotation_id, t.annotations.c.deleted_at.is_(None))).first()
        if row is None:
            raise NotFoundError(f"no annotation {annotation_id!r} (or it was deleted)")
        if row.origin != "human":
            raise ValidationError(f"{annotation_id} was carried over from the ground truth; "
                                  "change the annotation it came from "
                                  f"({(row.payload or {}).get('carried_from')})")
        return dict(row._mapping)

    # -- the label vocabulary ------------------------------------------------------------
    def vocabulary(self, collection: str) -> Vocabulary:
        """The labels a collection (by name or id) takes."""
        row = self.db.find(t.collections, collection)
        if row is None:
            raise NotFoundError(f"no collection {collection!r}; `workbench collections` lists "
                                "them")
        return _vocabulary(row)

    def allow_custom_labels(self, collection: str, allow: bool = True) -> Vocabulary:
        """Let a collection's annotations take labels beyond the standard ones (or, with
        ``allow=False``, only those again; annotations already written keep theirs)."""
        target = self.vocabulary(collection)
        with self.db.write() as conn:
            conn.execute(t.collections.update().where(
                t.collections.c.id == target.collection_id).values(allow_custom_labels=allow))
        return self.vocabulary(target.collection_id)

    # -- reads ---------------------------------------------------------------------------
    def get(self, annotation_id: str, include_deleted: bool = False) -> Annotation:
        """An annotation by id; NotFoundError if none, or if deleted and not ``include_deleted``."""
        query = sa.select(t.annotations).where(t.annotations.c.id == annotation_id)
        if not include_deleted:
            query = query.where(t.annotations.c.deleted_at.is_(None))
        with self.db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no annotation {annotation_id!r}")
        return annotation_from_row(row)

    def history(self, annotation_id: str) -> list[dict[str, Any]]:
        """Earlier revisions, oldest first, each with who changed it and when."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.annotation_history).where(
                t.annotation_history.c.annotation_id == annotation_id).order_by(
                    t.annotation_history.c.revision)).all()
        return [{"revision": r.revision, "changed_at": as_utc(r.changed_at),
                 "changed_by": r.changed_by, **r.snapshot} for r in rows]

    def list(self, collection_id: str | None = None, document_id: str | None = None,
             label: str | None = None, retriever_id: str | None = None,
             execution_id: str | None = None, author: str | None = None,
             since: datetime | None = None, until: datetime | None = None,
             include_deleted: bool = False, offset: int = 0, limit: int = 100,
             origin: str | None = "human") -> Page:
        """Annotations matching every given filter, newest first, one page at a time: people's
        (the default), those carried over from the ground truth (``origin="carried"``), or
        both (``origin=None``)."""
        if not 1 <= limit <= 1000:
            raise ValidationError("limit must be between 1 and 1000")
        c = t.annotations.c
        conditions = [column == value for column, value in (
            (c.collection_id, collection_id), (c.document_id, document_id), (c.label, label),
            (c.retriever_id, retriever_id), (c.execution_id, execution_id),
            (c.author, author), (c.origin, origin)) if value is not None]
        if since is not None:
            conditions.append(c.created_at >= since.replace(tzinfo=None))
        if until is not None:
            conditions.append(c.created_at < until.replace(tzinfo=None))
        if not include_deleted:
            conditions.append(c.deleted_at.is_(None))
        with self.db.read() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(t.annotations)
                                 .where(*conditions)).scalar_one()
            rows = conn.execute(sa.select(t.annotations).where(*conditions)
                                .order_by(c.created_at.desc(), c.id).offset(offset)
                                .limit(limit)).all()
        items = [annotation_from_row(r) for r in rows]
        next_offset = offset + len(items) if offset + len(items) < total else None
        return Page(items, total, next_offset)

    def latest_by_document(self, collection_id: str, document_ids: list[str]
                           ) -> dict[str, Annotation]:
        """The newest live annotation of each given document (the review page's state)."""
        if not document_ids:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.annotations).where(
                t.annotations.c.collection_id == collection_id,
                t.annotations.c.document_id.in_(document_ids),
                t.annotations.c.deleted_at.is_(None)).order_by(t.annotations.c.created_at)).all()
        return {r.document_id: annotation_from_row(r) for r in rows}

    def page(self, collection_id: str | None = None, label: str | None = None,
             class_name: str | None = None, author: str | None = None,
             extractor_key: str | None = None, retriever_id: str | None = None,
             origin: str | None = None, since: datetime | None = None,
             until: datetime | None = None, cursor: str | None = None, limit: int = 50
             ) -> KeysetPage[Annotation]:
        """A page of live annotations matching every given filter, newest first, with how
        many match (counted up to ``paging.COUNT_LIMIT``) and the cursor of the next page.
        Unlike :meth:`list` it pages by cursor, so a deep page costs what the first does,
        and it takes people's and carried annotations alike unless ``origin`` is given.
        ``class_name`` is the true class where the reviewer gave one, else the predicted."""
        c = t.annotations.c
        conditions = [column == value for column, value in (
            (c.collection_id, collection_id), (c.label, label), (c.author, author),
            (c.extractor_key, extractor_key), (c.retriever_id, retriever_id),
            (c.origin, origin)) if value is not None]
        if class_name is not None:
            conditions.append(_class_of_annotation() == class_name)
        if since is not None:
            conditions.append(c.created_at >= since.replace(tzinfo=None))
        if until is not None:
            conditions.append(c.created_at < until.replace(tzinfo=None))
        conditions.append(c.deleted_at.is_(None))
        scope = {"collection_id": collection_id, "label": label, "class_name": class_name,
                 "author": author, "extractor_key": extractor_key,
                 "retriever_id": retriever_id, "origin": origin, "since": since,
                 "until": until}
        with self.db.read() as conn:
            return _ANNOTATION_ORDER.page(conn, sa.select(t.annotations).where(*conditions),
                                          cursor, limit, annotation_from_row, scope)

    def values(self, column: str, collection_id: str | None = None, limit: int = 500
               ) -> list[str]:
        """The distinct values of ``column`` (``label``, ``class_name``, ``author``,
        ``extractor_key`` or ``retriever_id``) among live annotations, sorted, at most
        ``limit`` of them: the choices of a filter."""
        c = t.annotations.c
        columns = {"label": c.label, "class_name": _class_of_annotation(),
                   "author": c.author, "extractor_key": c.extractor_key,
                   "retriever_id": c.retriever_id}
        if column not in columns:
            raise ValidationError(f"no annotation filter {column!r}; use one of "
                                  f"{', '.join(columns)}")
        value = columns[column].label("value")
        query = sa.select(value).distinct().where(c.deleted_at.is_(None), value.is_not(None))
        if collection_id is not None:
            query = query.where(c.collection_id == collection_id)
        with self.db.read() as conn:
            return list(conn.execute(query.order_by(value).limit(limit)).scalars())



def set_author_source(source: Callable[[], str | None] | None) -> None:
    """Where the default author is read from before the owner: a function that answers the
    current caller's reviewer, or None where it has none (the app's sign-in registers the
    session's; None unregisters)."""
    global _AUTHOR_SOURCE
    _AUTHOR_SOURCE = source


_ANNOTATION_ORDER = Keyset("annotations", ((t.annotations.c.created_at, True),
                                           (t.annotations.c.id, True)))


def _class_of_annotation() -> sa.ColumnElement:
    """An annotation's class: the true class a reviewer gave, else the predicted one."""
    payload = t.annotations.c.payload
    return sa.func.coalesce(payload["true_class"].as_string(),
                            payload["predicted_class"].as_string())

def _leased(conn, document_ids: list[Any]) -> set[str]:
    """Which of these documents have a lease row (in any collection, expired or not): the
    only ones whose verdict has a lease to settle. A lookup for all at once, not one each."""
    wanted = sorted({d for d in document_ids if isinstance(d, str)})
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(conn.execute(sa.select(t.leases.c.document_id).where(
            t.leases.c.document_id.in_(wanted[start:start + 500]))).scalars())
    return found


def _vocabulary(row) -> Vocabulary:
    return Vocabulary(row.id, row.name, STANDARD_LABELS, bool(row.allow_custom_labels))


# Built once: a bulk request resolves a thousand documents, and building and keying a new
# statement cost more than running it.
_DETECTION = (sa.select(t.detections.c.collection_id, t.detections.c.object_id,
                        t.detections.c.extractor_key, t.detections.c.class_name,
                        t.detections.c.x1, t.detections.c.y1, t.detections.c.x2,
                        t.detections.c.y2, t.objects.c.width, t.objects.c.height)
              .join(t.objects, t.objects.c.id == t.detections.c.object_id)
              .where(t.detections.c.id == sa.bindparam("document_id")))
_IMAGE_DOCUMENT = (sa.select(t.documents.c.collection_id, t.documents.c.object_id,
                             t.documents.c.extractor_key, t.objects.c.width,
                             t.objects.c.height)
                   .join(t.objects, t.objects.c.id == t.documents.c.object_id)
                   .where(t.documents.c.id == sa.bindparam("document_id")))


def _resolve(conn, document_id: str) -> dict[str, Any]:
    """A detection or an image document: its collection, image and size."""
    det = conn.execute(_DETECTION, {"document_id": document_id}).first()
    if det is not None:
        return {"kind": "detection", **det._mapping}
    doc = conn.execute(_IMAGE_DOCUMENT, {"document_id": document_id}).first()
    if doc is not None:
        return {"kind": "image", "class_name": None, **doc._mapping}
    raise NotFoundError(f"no detection or image document {document_id!r}")


def _check_payload(label: str, payload: dict[str, Any], target: dict[str, Any]
                   ) -> dict[str, Any]:
    payload = dict(payload)
    _refuse_non_finite(payload, "payload")
    width, height = target["width"], target["height"]
    for key, real in (("image_width", width), ("image_height", height)):
        if key in payload and payload[key] != real:
            raise ValidationError(f"payload {key} is {payload[key]} but the image is "
                                  f"{width}×{height}; leave it out and it is filled in")
        payload[key] = real
    if target["kind"] == "detection":
        payload.setdefault("predicted_class", target["class_name"])
    if "bbox" in payload:
        payload["bbox"] = _check_box(payload["bbox"], width, height)
    if label in ("image_done", "no_objects", "missed") and target["kind"] != "image":
        raise ValidationError(f"a {label!r} annotation belongs to an image document (the "
                              "image of a detection), not to a detection")
    if label == "corrected" and not (payload.get("true_class") or "bbox" in payload):
        raise ValidationError("a 'corrected' annotation needs payload.true_class or a new "
                              "payload.bbox")
    if label == "missed" and not ("bbox" in payload and payload.get("true_class")):
        raise ValidationError("a 'missed' annotation needs payload.bbox and "
                              "payload.true_class (the object that was not detected)")
    if "true_class" in payload and not (isinstance(payload["true_class"], str)
                                        and payload["true_class"].strip()):
        raise ValidationError("payload.true_class must be a non-empty class name")
    return payload


def _refuse_non_finite(value: Any, where: str) -> None:
    """NaN and infinities are not numbers a box, a score or a size can have (JSON parsers
    accept them; the store must not)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{where} is {value}; give a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse_non_finite(item, f"{where}[{index}]")


def _check_box(bbox: Any, width: int, height: int) -> dict[str, float]:
    if not isinstance(bbox, dict) or not {"x", "y", "w", "h"} <= set(bbox):
        raise ValidationError("payload.bbox must be a centre box {x, y, w, h} in pixels, got "
                              f"{bbox!r}")
    try:
        box = {k: float(bbox[k]) for k in ("x", "y", "w", "h")}
    except (TypeError, ValueError):
        raise ValidationError(f"payload.bbox values must be numbers, got {bbox!r}") from None
    if not all(math.isfinite(v) for v in box.values()):
        raise ValidationError(f"payload.bbox values must be finite numbers, got {bbox!r}")
    if box["w"] <= 0 or box["h"] <= 0:
        raise ValidationError(f"payload.bbox must have a positive size, got w={box['w']}, "
                              f"h={box['h']}")
    x1, y1, x2, y2 = center_to_xyxy(box)
    tol = BOX_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise ValidationError(f"payload.bbox ({x1:.0f}, {y1:.0f})–({x2:.0f}, {y2:.0f}) lies "
                              f"outside the {width}×{height} image")
    return box


def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("label", "confidence", "reasoning", "payload",
                                       "retriever_id", "execution_id", "author")}


def _event_payload(row: dict[str, Any]) -> dict[str, Any]:
    return {"annotation_id": row["id"], "document_id": row["document_id"],
            "collection_id": row["collection_id"], "label": row["label"],
            "author": row["author"], "retriever_id": row.get("retriever_id"),
            "execution_id": row.get("execution_id")}


def annotation_from_row(row) -> Annotation:
    """The Annotation a row of the annotations table describes."""
    return Annotation(
        id=row.id, document_id=row.document_id, collection_id=row.collection_id,
        object_id=row.object_id, extractor_key=row.extractor_key, label=row.label,
        confidence=row.confidence, reasoning=row.reasoning, payload=row.payload,
        retriever_id=row.retriever_id, execution_id=row.execution_id, author=row.author,
        revision=row.revision, created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at), deleted_at=as_utc(row.deleted_at),
        origin=row.origin,
    )
