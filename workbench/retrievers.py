"""Retrievers: named, stored pipelines of stages that pick detections to look at.

A retriever belongs to a collection and runs over the detections of one extractor version
(the collection's active version unless pinned). Stages, seed-style::

    {"stage_name": "low_confidence", "stage_type": "filter",
     "config": {"filters": {"AND": [{"field": "confidence", "operator": "lt", "value": 0.7}]}}}
    {"stage_type": "feature_search", "config": {"feature_uri": "workbench://…/detection_embedding",
                                                 "query": "{{INPUT.query}}", "top_k": 50}}
    {"stage_type": "sort", "config": {"by": "uncertainty"}}        # confidence|newest|random
    {"stage_type": "diversity", "config": {"max_similarity": 0.95}}
    {"stage_type": "sample", "config": {"n": 100, "seed": 0}}
    {"stage_type": "taxonomy", "config": {"taxonomy": "shapes", "keep": ["unknown"]}}
    {"stage_type": "limit", "config": {"limit": 20, "offset": 0}}

Filters are AND/OR/NOT trees of ``{field, operator, value}`` and compile to SQL: they apply to
the whole candidate set, so a feature search returns its ``top_k`` nearest *among the items
that pass the filters* (it asks the vector index for more until it has enough). Chroma's own
``where`` filter is slow at scale, so it is never used. Fields: ``confidence``, ``class``,
``object_id``, ``document_id``, ``bbox.w|h|x|y``, ``image.width|height``, ``metadata.<name>``
(or just ``<name>`` for a bucket field), ``detections.<n>.<field>`` (the image's n-th most
confident detection), ``annotation.label`` (the newest verdict; ``exists`` false means
"not reviewed yet") and ``taxonomy.<name>`` (the stored label of a taxonomy, ``unknown``
included). A ``taxonomy`` stage is a taxonomy's ``on_demand`` mode: it classifies the hits at
query time, puts the result on each hit and keeps only the ``keep`` labels. Every execution
gets an ``execution_id`` and is logged with its inputs, result ids and time per stage.

Stages are checked and templated in :mod:`workbench.retriever_stages`; filters compile to SQL in
:mod:`workbench.retriever_filters`. This module stores retrievers and runs them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from workbench.domain import Collection, ExtractorVersion
from workbench.errors import AlreadyExistsError, NotFoundError, ValidationError
from workbench.extractors.spec import parse_feature_uri
from workbench.leases import LeaseService, leased_to_others
from workbench.retriever_filters import DETECTIONS as _D
from workbench.retriever_filters import OBJECTS as _O
from workbench.retriever_filters import compile_condition
from workbench.retriever_stages import (
    check_condition,
    default_review_stages,
    image_review_stages,
    render,
    spot_check_stages,
    validate_stages,
)
from workbench.store import tables as t
from workbench.store.metadata import as_utc, new_id, utcnow

if TYPE_CHECKING:
    from workbench import Workbench

# Rows one page of a pipeline materialises: the page size of a retriever with no limit stage,
# and the window the Python stages (random order, diversity, sample, taxonomy) work in. Never a
# silent cap: past it an execution says how many matched and hands a cursor to the next page,
# and a Python stage that saw only the window says so in ``limits``.
MAX_FETCH = 5000
# Runs of a queue page that lost items to another reviewer between its read and its lease.
LEASE_ATTEMPTS = 3


@dataclass(frozen=True)
class Retriever:
    """A stored retriever: a named, checked stage list that belongs to one collection."""

    id: str
    name: str
    collection_id: str
    description: str
    stages: tuple[dict[str, Any], ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Hit:
    """One detection a retriever picked, with the score and labels its stages gave it."""

    detection_id: str
    document_id: str
    object_id: str
    class_name: str
    confidence: float
    xyxy: tuple[float, float, float, float]
    score: float | None = None  # similarity of a feature search
    taxonomy: dict[str, Any] | None = None  # fields an on-demand taxonomy stage wrote


@dataclass(frozen=True)
class Execution:
    """One logged run of a retriever: its hits and the milliseconds each stage took."""

    id: str
    retriever_id: str
    extractor_key: str
    hits: list[Hit]
    # Candidates that passed the filters: exact when counted (``count=True``) or when the
    # last page was reached; otherwise a lower bound ("at least"), with ``matched_exact``
    # false. None after a feature search (its top_k is the answer).
    matched: int | None
    stage_ms: dict[str, float]
    matched_exact: bool = True
    next_cursor: str | None = None  # pass as ``cursor`` for the next page; None: last page
    limits: tuple[str, ...] = ()  # stages that saw only part of the candidates, and why


@dataclass
class _Run:
    """What a pipeline's fetch and stages made, before it is logged as an Execution."""

    rows: list
    matched: int | None
    exact: bool = True
    next_cursor: str | None = None
    limits: list[str] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    conditions: list = field(default_factory=list)  # what every hit passed (SQL)


@dataclass(frozen=True)
class ImageHit:
    """An image document to look over as a whole (the model found nothing on it)."""

    document_id: str
    object_id: str


# -- the service ------------------------------------------------------------------------------
class RetrieverService:
    """Save, list and run a workspace's retrievers; every run is logged as an execution."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db

    def save(self, name: str, collection: str, stages: list[dict[str, Any]],
             description: str = "", replace: bool = False) -> Retriever:
        """Validate and store a retriever (``replace`` overwrites one of the same name)."""
        if not name or len(name) > 200:
            raise ValidationError("a retriever needs a name of 1-200 characters")
        target = self.wb.collections.get(collection)
        checked = validate_stages(copy.deepcopy(stages), self._metadata_fields(target))
        now = utcnow()
        with self.db.write() as conn:
            existing = conn.execute(sa.select(t.retrievers.c.id).where(
                t.retrievers.c.name == name)).scalar()
            if existing and not replace:
                raise AlreadyExistsError(f"retriever {name!r} exists already")
            if existing:
                conn.execute(t.retrievers.update().where(t.retrievers.c.id == existing).values(
                    collection_id=target.id, stages=checked, description=description,
                    updated_at=now))
            else:
                conn.execute(t.retrievers.insert().values(
                    id=new_id("ret"), name=name, collection_id=target.id, stages=checked,
                    description=description, created_at=now, updated_at=now))
        return self.get(name)

    def validate(self, collection: str, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The checked stage list ``save`` would store for ``collection`` (the same errors),
        without storing anything."""
        target = self.wb.collections.get(collection)
        return validate_stages(copy.deepcopy(stages), self._metadata_fields(target))

    def _metadata_fields(self, target: Collection) -> frozenset[str]:
        """The metadata fields of a collection's buckets: what a filter may name."""
        return frozenset(f.name for bucket_id in target.bucket_ids
                         for f in self.wb.buckets.get(bucket_id).metadata_fields)

    def get(self, name_or_id: str) -> Retriever:
        """The retriever of that name or id."""
        row = self.db.find(t.retrievers, name_or_id)
        if row is None:
            raise NotFoundError(f"no retriever {name_or_id!r}; list them with "
                                "`workbench retrievers`")
        return retriever_from_row(row)

    def list(self, collection: str | None = None) -> list[Retriever]:
        """Retrievers, oldest first: all of them, or one collection's."""
        query = sa.select(t.retrievers).order_by(t.retrievers.c.created_at)
        if collection:
            query = query.where(t.retrievers.c.collection_id == self.wb.collections.get(
                collection).id)
        with self.db.read() as conn:
            return [retriever_from_row(r) for r in conn.execute(query)]

    def review_queue(self, collection: str, limit: int = 20) -> Retriever:
        """The collection's default review retriever (created on first use)."""
        return self._built_in(collection, "review", default_review_stages(limit),
                              "Unreviewed detections under 0.7, most uncertain first, diverse")

    def spot_check(self, collection: str, limit: int = 20) -> Retriever:
        """The collection's spot-check retriever: random confident detections (created on
        first use)."""
        return self._built_in(collection, "spot-check", spot_check_stages(limit),
                              "Unreviewed detections at 0.7 or more, in random order")

    def image_review(self, collection: str) -> Retriever:
        """The collection's image-review retriever: the detections of images that are not
        complete yet, most uncertain first. Image review ranks the images themselves (see
        ``workbench.image_review``); its runs are logged as this retriever's executions."""
        return self._built_in(collection, "image-review", image_review_stages(),
                              "Images not complete yet, ranked by what the model stands to "
                              "learn (uncertainty, disagreement, novelty, diversity)")

    def _built_in(self, collection: str, suffix: str, stages: list[dict[str, Any]],
                  description: str) -> Retriever:
        """A collection's built-in retriever ``<collection>:<suffix>``, saved on first use."""
        target = self.wb.collections.get(collection)
        name = f"{target.name}:{suffix}"
        try:
            return self.get(name)
        except NotFoundError:
            return self.save(name, target.name, stages, description)

    def images_to_check(self, collection: str, version: str | None = None, limit: int = 20,
                        seed: int | str = 0) -> list[ImageHit]:
        """Images on which ``version`` found nothing and that nobody has looked over yet.

        A detection queue can never show an object the model missed on an image where it
        found nothing at all (a night scene, a new camera); this is where a reviewer draws
        those ``missed`` boxes or marks the image ``no_objects``. The order is random but
        fixed by ``seed``, so pages do not repeat.
        """
        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        # Looked at under any version: an image is offered once, not once per version.
        looked_at = sa.select(t.image_truth.c.object_id).where(
            t.image_truth.c.collection_id == target.id,
            t.image_truth.c.object_id == t.documents.c.object_id,
            t.image_truth.c.state != "unreviewed").exists()
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(t.documents.c.id, t.documents.c.object_id, t.objects.c.sha256)
                .join(t.objects, t.objects.c.id == t.documents.c.object_id)
                .where(t.documents.c.collection_id == target.id,
                       t.documents.c.extractor_key == chosen.key,
                       t.documents.c.n_detections == 0, ~looked_at)).all()
        ranked = sorted(rows, key=lambda r: hashlib.sha256(f"{seed}:{r.sha256}".encode()
                                                           ).digest())
        return [ImageHit(r.id, r.object_id) for r in ranked[:limit]]

    def select(self, collection: str, filters: dict[str, Any] | None = None,
               version: str | None = None, limit: int | None = None) -> list:
        """Rows of every detection of a collection's version that passes ``filters`` (the
        filter-stage syntax), in id order: id, object_id, class_name, confidence, box,
        embedding_id. For bulk work (clustering) that needs all matches, not a page."""
        query = (sa.select(_D.c.id, _D.c.object_id, _D.c.class_name, _D.c.confidence, _D.c.x1,
                           _D.c.y1, _D.c.x2, _D.c.y2, _D.c.embedding_id)
                 .select_from(_D.join(_O, _O.c.id == _D.c.object_id))
                 .where(*self._conditions(collection, filters, version)).order_by(_D.c.id))
        if limit is not None:
            query = query.limit(limit)
        with self.db.read() as conn:
            return conn.execute(query).all()

    def count(self, collection: str, filters: dict[str, Any] | None = None,
              version: str | None = None) -> int:
        """How many detections :meth:`select` would return."""
        query = (sa.select(sa.func.count()).select_from(_D.join(_O, _O.c.id == _D.c.object_id))
                 .where(*self._conditions(collection, filters, version)))
        with self.db.read() as conn:
            return conn.execute(query).scalar_one()

    def _conditions(self, collection: str, filters: dict[str, Any] | None,
                    version: str | None) -> list:
        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        conditions = _scope(target, chosen, indexed=True)
        if filters:
            check_condition(filters, "filters", self._metadata_fields(target))
            conditions.append(compile_condition(filters))
        return conditions

    def execution(self, execution_id: str) -> dict[str, Any]:
        """A logged execution: its inputs, result ids and time per stage."""
        row = self.db.find(t.retriever_executions, execution_id)
        if row is None:
            raise NotFoundError(f"no retriever execution {execution_id!r}")
        return {"id": row.id, "retriever_id": row.retriever_id, "inputs": row.inputs,
                "result_ids": row.result_ids, "stage_ms": row.stage_ms,
                "created_at": as_utc(row.created_at)}

    def executions(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """A retriever's latest executions, newest first (as :meth:`execution` gives one)."""
        retriever = self.get(name)
        e = t.retriever_executions.c
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.retriever_executions).where(
                e.retriever_id == retriever.id).order_by(e.created_at.desc(), e.id.desc())
                .limit(limit)).all()
        return [{"id": r.id, "retriever_id": r.retriever_id, "inputs": r.inputs,
                 "result_ids": r.result_ids, "stage_ms": r.stage_ms,
                 "created_at": as_utc(r.created_at)} for r in rows]

    # -- running -----------------------------------------------------------------------
    def execute(self, name: str, inputs: dict[str, Any] | None = None,
                version: str | None = None, count: bool | int = False,
                cursor: str | None = None, reviewer: str | None = None) -> Execution:
        """Run a retriever by name with its ``{{INPUT.*}}`` values; the run is logged.

        ``count=True`` counts every candidate that passes the filters (``matched``, exact),
        which costs a scan of them all (177 ms for 58k candidates, ten times that at ten
        times the data); ``count=N`` counts up to N and stops there (``matched`` is then N
        with ``matched_exact`` false when more pass: "N+"), a cost that does not grow with
        the workspace; without it ``matched`` is a lower bound until the last page. A result
        with more after it carries ``next_cursor``: run again with ``cursor`` for the next
        page (the page is the retriever's limit, or ``MAX_FETCH`` rows without one).

        With a ``reviewer`` the run is a queue: items leased to someone else are skipped (in
        SQL, so the page stays full) and the page is leased to the reviewer
        (:mod:`workbench.leases`); their own leases come back, renewed. Without one nothing
        is leased or skipped.
        """
        inputs = dict(inputs or {})
        retriever = self.get(name)
        collection = self.wb.collections.get(retriever.collection_id)
        chosen = self.wb.registry.get(collection.extractor_name,
                                      version or inputs.get("version") or
                                      collection.active_version)
        stages = [{**s, "config": render(s["config"], inputs)} for s in retriever.stages]
        timings: dict[str, float] = {}
        run = self._run(collection, chosen, stages, timings, count, _decode_cursor(cursor),
                        reviewer)
        if reviewer is not None:
            run = self._leased(collection, chosen, stages, timings, count,
                               _decode_cursor(cursor), reviewer, run)
        execution_id = new_id("exec")
        with self.db.write() as conn:
            conn.execute(t.retriever_executions.insert().values(
                id=execution_id, retriever_id=retriever.id,
                inputs={k: v for k, v in inputs.items() if _jsonable(v)},
                result_ids=[h.detection_id for h in run.hits], stage_ms=timings,
                created_at=utcnow()))
        return Execution(execution_id, retriever.id, chosen.key, run.hits, run.matched,
                         timings, run.exact, run.next_cursor, tuple(run.limits))

    def _run(self, collection: Collection, version: ExtractorVersion,
             stages: list[dict[str, Any]], timings: dict[str, float], count: bool | int,
             cursor: dict[str, Any] | None = None, reviewer: str | None = None) -> _Run:
        started = time.perf_counter()
        filters = [compile_condition(stage["config"]["filters"]) for stage in stages
                   if stage["stage_type"] == "filter"]
        if reviewer is not None:
            filters.append(~leased_to_others(_D.c.collection_id, _D.c.id, reviewer))
        conditions = _scope(collection, version, indexed=True) + filters
        # Queries that start from a list of neighbour ids must not use the (collection,
        # version, confidence) index: SQLite would scan half the table through it instead of
        # looking a hundred ids up by key. The same scope, written so it cannot use it:
        by_ids = _scope(collection, version, indexed=False) + filters
        timings["compile"] = _ms(started)
        scores: dict[str, float] | None = None
        for stage in stages:
            if stage["stage_type"] == "feature_search":
                begun = time.perf_counter()
                scores = self._search(collection, version, stage["config"], by_ids, scores)
                timings[stage["stage_name"]] = _ms(begun)
        post = [s for s in stages
                if s["stage_type"] in ("sort", "diversity", "sample", "taxonomy", "limit")]
        begun = time.perf_counter()
        run = self._fetch(by_ids if scores is not None else conditions, post, scores, count,
                          cursor)
        timings["fetch"] = _ms(begun)
        run.conditions = by_ids if scores is not None else conditions
        run.hits = [Hit(r.id, r.document_id, r.object_id, r.class_name, r.confidence,
                        (r.x1, r.y1, r.x2, r.y2), scores.get(r.id) if scores else None)
                    for r in run.rows]
        for stage in post:
            begun = time.perf_counter()
            run.hits = self._post(stage, run.hits, version, scores)
            timings[stage["stage_name"]] = _ms(begun)
        timings["total"] = _ms(started)
        return run

    def _leased(self, collection, version, stages, timings, count, cursor, reviewer: str,
                run: _Run) -> _Run:
        """Lease a queue's page to ``reviewer``. Between the read and the lease another
        reviewer may have taken an item (or judged it): the lease goes to whoever wrote first,
        and each item is checked against the filters again in the leasing transaction. A page
        that lost items is run again (the lost ones are skipped now) — up to
        ``LEASE_ATTEMPTS`` runs; what an earlier run leased and the last one does not show is
        given back."""
        leases = LeaseService(self.db, self.wb.settings.lease_ttl_s)
        begun = time.perf_counter()
        taken: set[str] = set()
        for attempt in range(LEASE_ATTEMPTS):
            if attempt:
                run = self._run(collection, version, copy.deepcopy(stages), {}, count, cursor,
                                reviewer)
            ids = [h.detection_id for h in run.hits]
            with self.db.write() as conn:
                held = leases.acquire(collection.id, ids, reviewer, conn=conn)
                passing = set(conn.execute(_only(
                    sa.select(_D.c.id).select_from(_D.join(_O, _O.c.id == _D.c.object_id))
                    .where(*run.conditions), _D.c.id, held)).scalars()) if held else set()
                stale = [d for d in held if d not in passing]
                if stale:
                    leases.release(collection.id, reviewer, stale, conn)
            taken.update(passing)
            complete = len(passing) == len(ids)
            run.hits = [h for h in run.hits if h.detection_id in passing]
            if complete:
                break
        shown = {h.detection_id for h in run.hits}
        if taken - shown:
            leases.release(collection.id, reviewer, sorted(taken - shown))
        timings["lease"] = _ms(begun)
        return run

    def _fetch(self, conditions, post, scores, count, cursor) -> _Run:
        """Rows for the Python stages: SQL does the first sort and, when it can, the limit
        and the paging (a cursor is offered only where every stage after the fetch is a
        limit: a Python stage over a window would make pages that overlap)."""
        columns = (_D.c.id, _D.c.document_id, _D.c.object_id, _D.c.class_name, _D.c.confidence,
                   _D.c.x1, _D.c.y1, _D.c.x2, _D.c.y2, _O.c.sha256, _D.c.idx)
        base = sa.select(*columns).select_from(_D.join(_O, _O.c.id == _D.c.object_id)).where(
            *conditions)
        # Counted from the detections alone unless a condition reads the image: the join
        # looked up each match's image (384 ms for 111k matches at 1M, from the index alone
        # a tenth of that).
        reads_image = any(_O in sa.sql.util.find_tables(c, include_aliases=True,
                                                        check_columns=True)
                          for c in conditions)
        counted = sa.select(sa.func.count()).select_from(
            _D.join(_O, _O.c.id == _D.c.object_id) if reads_image else _D).where(*conditions)
        if scores is not None:
            base = _only(base, _D.c.id, list(scores))
        # How many rows the Python stages can need: up to the first limit, with headroom for
        # a diversity step that drops near-duplicates.
        need = MAX_FETCH
        for stage in post:
            if stage["stage_type"] == "limit":
                wanted = int(stage["config"]["limit"]) + int(stage["config"].get("offset", 0))
                spare = any(s["stage_type"] in ("diversity", "sample", "taxonomy") for s in post[
                    :post.index(stage)])
                need = min(MAX_FETCH, wanted * 5 if spare else wanted)
                break
        first = post[0] if post else None
        order = first["config"] if first is not None and first["stage_type"] == "sort" and (
            first["config"]["by"] != "random") else None
        if order is not None:
            post.remove(first)
        pageable = all(stage["stage_type"] == "limit" for stage in post)
        window = need if order is not None or not post or post[0]["stage_type"] == "limit" \
            else MAX_FETCH
        with self.db.read() as conn:
            if scores is not None:  # a feature search: its top_k is the answer
                rows = sorted(conn.execute(base).all(), key=lambda r: -scores[r.id])[:need]
                return _Run(rows, None)
            seen = int(cursor.get("seen", 0)) if cursor and pageable else 0
            rows = self._sorted(conn, base, order, window + 1, cursor if pageable else None,
                                lambda *first: sa.select(*columns).select_from(
                                    _D.join(_O, _O.c.id == _D.c.object_id)).where(
                                        *first, *conditions))
            more = len(rows) > window
            rows = rows[:window]
            run = _Run(rows, seen + len(rows) + (1 if more else 0), exact=not more)
            if more and pageable:
                run.next_cursor = _encode_cursor(order, rows[-1], seen + len(rows))
            if count is True:
                run.matched, run.exact = conn.execute(counted).scalar_one(), True
            elif count and run.exact is False:  # bounded: count at most ``count`` of them
                at_most = max(int(count), run.matched)
                found = conn.execute(sa.select(sa.func.count()).select_from(
                    counted.with_only_columns(sa.literal(1)).limit(at_most + 1).subquery())
                ).scalar_one()
                run.matched, run.exact = min(found, at_most), found <= at_most
            if more and not pageable:
                of = f"{run.matched:,}" if run.exact else f"at least {run.matched:,}"
                run.limits.append(
                    f"{', '.join(s['stage_type'] for s in post if s['stage_type'] != 'limit')}"
                    f" saw the first {window:,} of {of} candidates ({_order_text(order)})")
        return run

    def _sorted(self, conn, base, config, n, cursor, narrowed):
        """``n`` rows in the first sort's order (content order without one), after
        ``cursor``. Ties go to the image's content hash and the box's place on it, so the
        same data gives the same queue in any workspace (ids are random). ``narrowed(*c)``
        is ``base`` with the conditions ``c`` put before the stages' own."""
        stable = [(_O.c.sha256, False), (_D.c.idx, False)]
        by = config["by"] if config else None
        if by in (None, "confidence"):  # keyset: the page starts after the cursor's row
            keys = stable if by is None else [
                (_D.c.confidence, config.get("order", "asc") == "desc"), *stable]
            if cursor is not None:
                base = base.where(_after(keys, cursor["after"]))
            ordering = [column.desc() if desc else column.asc() for column, desc in keys]
            return conn.execute(base.order_by(*ordering).limit(n)).all()
        offset = int(cursor.get("offset", 0)) if cursor is not None else 0
        if by == "newest":
            column = _D.c.document_id  # ids carry no time: newest by image ingestion time
            return conn.execute(base.order_by(_O.c.created_at.desc(), column, _D.c.idx)
                                .offset(offset).limit(n)).all()
        # Uncertainty: closest to 0.5 first. Two index-ordered scans (up from 0.5, down from
        # 0.5) merged, instead of sorting every candidate by |confidence - 0.5|.
        # Each half's bound comes first: SQLite bounds the index range by the first of two
        # conditions on a column, and a filter's "confidence < 0.7" taken before "< 0.5"
        # made the lower scan walk every box between them (31 ms at 1M detections, 0.4 ms).
        need = offset + n
        ties = [column.asc() for column, _ in stable]
        upper = conn.execute(narrowed(_D.c.confidence >= 0.5).order_by(
            _D.c.confidence.asc(), *ties).limit(need)).all()
        lower = conn.execute(narrowed(_D.c.confidence < 0.5).order_by(
            _D.c.confidence.desc(), *ties).limit(need)).all()
        merged = sorted(upper + lower, key=lambda r: (abs(r.confidence - 0.5), r.sha256, r.idx))
        if config.get("order", "asc") == "desc":
            merged.reverse()
        return merged[offset:need]

    def _search(self, collection, version, config, conditions, previous):
        """Nearest neighbours among the items that pass the filters, over-fetching as needed."""
        import numpy as np

        uri = config["feature_uri"]
        name, number, feature_name = parse_feature_uri(uri)
        searched = self.wb.registry.get(name, number)
        feature = searched.spec.feature(feature_name)
        vector = self._query_vector(config, searched, feature_name)
        top_k = int(config.get("top_k", 50))
        k = max(top_k * 4, 100)
        found: dict[str, float] = {}
        while True:
            neighbours = self.wb.vectors.query(uri, np.asarray(vector, dtype="float32"), k)
            similarity = {i: _similarity(d, feature.distance_metric) for i, d in neighbours}
            ids = self._passing(conditions, similarity, feature.granularity)
            found = {i: s for i, s in ids.items() if previous is None or i in previous}
            if len(found) >= top_k or len(neighbours) < k:  # enough, or the index is exhausted
                break
            k *= 4
        best = sorted(found.items(), key=lambda item: -item[1])[:top_k]
        return dict(best)

    def _passing(self, conditions, similarity, granularity):
        """Map neighbour ids to detections that pass the filters (image hits → their boxes)."""
        if not similarity:
            return {}
        with self.db.read() as conn:
            joined = _D.join(_O, _O.c.id == _D.c.object_id)
            if granularity == "detection":
                query = sa.select(_D.c.id).select_from(joined).where(*conditions)
                rows = conn.execute(_only(query, _D.c.id, list(similarity))).scalars().all()
                return {i: similarity[i] for i in rows}
            # An image hit may be a document of another extractor (CLIP's image embeddings
            # beside a detector's boxes): it stands for its image, whose boxes of the searched
            # version are the hits.
            documents = conn.execute(_only(sa.select(t.documents.c.id,
                                                     t.documents.c.object_id),
                                           t.documents.c.id, list(similarity))).all()
            by_image: dict[str, float] = {}
            for doc in documents:
                by_image[doc.object_id] = max(by_image.get(doc.object_id, -float("inf")),
                                              similarity[doc.id])
            query = sa.select(_D.c.id, _D.c.object_id).select_from(joined).where(*conditions)
            rows = conn.execute(_only(query, _D.c.object_id, list(by_image))).all()
            return {r.id: by_image[r.object_id] for r in rows}

    def _query_vector(self, config, searched: ExtractorVersion, feature_name: str):
        query = config["query"]
        kind = config.get("query_type", "detection")
        uri = searched.feature_uri(feature_name)
        if kind == "vector":
            return query
        if kind == "text":
            if searched.kind != "clip":
                raise ValidationError(f"text queries need a CLIP feature URI; {uri} is not one "
                                      "(register clip_embedder with WORKBENCH_CLIP_WEIGHTS)")
            return self.wb.registry.load_extractor(searched).embed_text([str(query)])[0]
        if isinstance(query, dict):  # {"detection_id": …} or {"object_id": …}
            key = str(query.get("detection_id") or query.get("object_id"))
        else:
            key = str(query)
        if kind == "image":
            with self.db.read() as conn:
                doc = conn.execute(sa.select(t.documents.c.id).where(
                    t.documents.c.object_id == key,
                    t.documents.c.extractor_key == searched.key)).scalar()
            key = doc or key
            if "image_embedding" in {f.feature_name for f in searched.spec.features}:
                uri = searched.feature_uri("image_embedding")
        vectors = self.wb.vectors.get(uri, [key])
        if len(vectors) == 0:
            raise NotFoundError(f"no {kind} embedding {key!r} under {uri}")
        return vectors[0]

    def _post(self, stage, hits: list[Hit], version: ExtractorVersion, scores) -> list[Hit]:
        config = stage["config"]
        kind = stage["stage_type"]
        if kind == "limit":
            offset = int(config.get("offset", 0))
            return hits[offset: offset + int(config["limit"])]
        if kind == "sample":
            if len(hits) <= config["n"]:
                return hits
            picked = random.Random(config.get("seed", 0)).sample(range(len(hits)), config["n"])
            return [hits[i] for i in sorted(picked)]
        if kind == "taxonomy":
            return self._classified(hits, config)
        if kind == "sort":
            by, reverse = config["by"], config.get("order", "asc") == "desc"
            if by == "random":  # hits come in content order: the same shuffle in any copy
                shuffled = list(hits)
                random.Random(config.get("seed", 0)).shuffle(shuffled)
                return shuffled
            if by == "uncertainty":
                return sorted(hits, key=lambda h: abs(h.confidence - 0.5), reverse=reverse)
            if by == "confidence":
                return sorted(hits, key=lambda h: h.confidence, reverse=reverse)
            return hits
        return self._diverse(hits, version, config)

    def _classified(self, hits: list[Hit], config) -> list[Hit]:
        """The ``on_demand`` mode: classify the hits now, keep those with a wanted label."""
        import dataclasses

        taxonomy = self.wb.taxonomies.get(config["taxonomy"])
        outcome = self.wb.taxonomies.classify_detections(taxonomy.name,
                                                         [h.detection_id for h in hits])
        keep = set(config.get("keep") or [])
        classified = []
        for hit in hits:
            got = outcome.get(hit.detection_id)
            if got is None or (keep and got.label not in keep):
                continue
            classified.append(dataclasses.replace(hit, taxonomy={
                "taxonomy": taxonomy.name, "taxonomy_version": taxonomy.version,
                "label": got.label, "path": list(got.path), **got.fields(taxonomy.mapping)}))
        return classified

    def _diverse(self, hits: list[Hit], version: ExtractorVersion, config) -> list[Hit]:
        """Greedy: keep an item unless it is nearly identical to one already kept."""
        import numpy as np

        if not hits:
            return hits
        uri = config.get("feature_uri") or version.feature_uri("detection_embedding")
        limit = config.get("max_similarity", 0.95)
        per_image = config.get("max_per_image")
        vectors = self.wb.vectors.get(uri, [h.detection_id for h in hits])
        if len(vectors) != len(hits):
            return hits  # some boxes have no vector (a custom extractor): nothing to compare
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        kept: list[int] = []
        per_object: dict[str, int] = {}
        for i, hit in enumerate(hits):
            if per_image and per_object.get(hit.object_id, 0) >= per_image:
                continue
            if kept and float(np.max(vectors[kept] @ vectors[i])) > limit:
                continue
            kept.append(i)
            per_object[hit.object_id] = per_object.get(hit.object_id, 0) + 1
        return [hits[i] for i in kept]


def _encode_cursor(order: dict[str, Any] | None, last, seen: int) -> str:
    """An opaque cursor: the last row's sort key (keyset) or, for the orders SQL cannot
    resume by key, the number of rows served; either way the rows served so far."""
    by = order["by"] if order else None
    if by is None:
        state: dict[str, Any] = {"after": [last.sha256, last.idx], "seen": seen}
    elif by == "confidence":
        state = {"after": [last.confidence, last.sha256, last.idx], "seen": seen}
    else:
        state = {"offset": seen, "seen": seen}
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    try:
        state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(state, dict) and count(state.get("seen")) and (
                ("after" in state) != ("offset" in state)) and (
                count(state["offset"]) if "offset" in state else
                isinstance(state["after"], list) and all(
                    isinstance(v, str | int | float) and not isinstance(v, bool)
                    for v in state["after"]))):
            raise ValueError(cursor)
    except ValueError:
        raise ValidationError(f"cursor {cursor!r} is not one this workbench handed out; "
                              "pass the next_cursor of the previous page") from None
    return state


def _after(keys: list[tuple[Any, bool]], values: list[Any]) -> sa.ColumnElement:
    """Rows after ``values`` in the order of ``keys`` (column, descending): the keyset
    condition, spelled out so that each key may run its own way."""
    if len(values) != len(keys):
        raise ValidationError("the cursor is for a retriever with another order; start from "
                              "the first page")
    branches = []
    for i, ((column, desc), value) in enumerate(zip(keys, values, strict=True)):
        equal = [keys[j][0] == values[j] for j in range(i)]
        branches.append(sa.and_(*equal, column < value if desc else column > value))
    return sa.or_(*branches)


def _order_text(order: dict[str, Any] | None) -> str:
    if order is None:
        return "in content order"
    return f"by {order['by']}, {order.get('order', 'asc')}"


def _scope(collection: Collection, version: ExtractorVersion, indexed: bool) -> list:
    """Detections of one collection and version; ``indexed=False`` hides the columns from
    the query planner (the same test, through coalesce) so that an id list drives the plan."""
    columns = (_D.c.collection_id, _D.c.extractor_key)
    if not indexed:
        columns = tuple(sa.func.coalesce(column, "") for column in columns)
    return [columns[0] == collection.id, columns[1] == version.key]


def _only(query: sa.Select, column, values: list[str]) -> sa.Select:
    return query.where(column.in_(values))


def _similarity(distance: float, metric: str) -> float:
    """Chroma distances → a similarity where larger is nearer."""
    if metric == "cosine":
        return 1.0 - float(distance)
    if metric == "dot":
        return 1.0 - float(distance)  # chroma's "ip" distance is 1 - dot
    return -float(distance)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None) | list | dict)


def retriever_from_row(row) -> Retriever:
    """The Retriever a row of the retrievers table describes."""
    return Retriever(id=row.id, name=row.name, collection_id=row.collection_id,
                     description=row.description, stages=tuple(row.stages),
                     created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))
