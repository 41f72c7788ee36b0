"""Taxonomies: classify every detection by its nearest references.

A taxonomy is built on a reference set. ``flat``: one node per class. ``tree``: nodes with
parents; a node's references are those of its classes (``classes``, default ``[name]``, matched
against a reference's true class or category) and of every node under it. Classification walks
down from the roots: at each level every child scores the mean cosine similarity of its own
``top_k`` nearest references (so a class with few references is not outvoted by one with
many); the best child is accepted when that score reaches its threshold (the node's own, else
the taxonomy's) and the walk goes on below it. A detection that no root accepts is
``unknown`` — a label that retrievers and the cluster step filter on (``taxonomy.<name>``).

Results are written as assignments (label, path, score, matched reference, the taxonomy
version) with enrichment fields named by the taxonomy's ``mapping``. Modes, per attached
collection: ``materialize`` (applied after each batch run), ``retroactive`` (applied now to
every existing detection, as a job that reports what changed) and ``on_demand`` (a retriever
stage classifies its hits at query time; nothing is stored).

Versions are monotonic: a changed definition, or references that changed since the last
apply, make the next version, and every assignment records the version that wrote it. A
re-apply rewrites only the assignments whose outcome changed.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from workbench.errors import JobFailed, NotFoundError, ValidationError
from workbench.events import record_event
from workbench.paging import Keyset, Page
from workbench.params import KINDS, MODES, TaxonomyParams
from workbench.references import ReferenceMatrix, normalise
from workbench.store import tables as t
from workbench.store.metadata import as_utc, in_lists, new_id, utcnow

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.jobs import JobContext, ProgressListener

UNKNOWN = "unknown"
DEFAULT_MAPPING = {"label": "verified_class", "root": "object_category",
                   "score": "taxonomy_score"}
NODE_KEYS = {"name", "parent", "threshold", "classes"}
CHUNK = 8192  # detections classified per matrix product (bounds memory)


@dataclass(frozen=True)
class Node:
    """One node of a taxonomy: its parent, own threshold, and the classes of its references."""

    name: str
    parent: str | None = None
    threshold: float | None = None
    classes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The stored JSON form."""
        return {"name": self.name, "parent": self.parent, "threshold": self.threshold,
                "classes": list(self.classes)}


@dataclass(frozen=True)
class Taxonomy:
    """A stored taxonomy: its reference set, nodes, settings, field mapping and versions."""

    id: str
    name: str
    reference_set_id: str
    kind: str
    nodes: tuple[Node, ...]
    threshold: float
    top_k: int
    mapping: dict[str, str]
    version: int
    reference_version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Assignment:
    """The outcome for one detection."""

    label: str  # the deepest accepted node, or "unknown"
    path: tuple[str, ...]
    score: float  # the deciding node score (mean similarity of its top_k references)
    reference_id: str | None

    def fields(self, mapping: dict[str, str]) -> dict[str, Any]:
        """The enrichment fields: label, root and score under the names ``mapping`` gives them."""
        values = {"label": self.label, "root": self.path[0] if self.path else UNKNOWN,
                  "score": round(self.score, 6)}
        return {field: values[key] for key, field in mapping.items()}


# -- definition ----------------------------------------------------------------------------
def parse_nodes(kind: str, nodes: Sequence[Any]) -> tuple[Node, ...]:
    """Validate a node list; names unique, parents known, no cycles; flat means no parents."""
    if kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(nodes, list | tuple):
        raise ValidationError(f"nodes must be a list of names or mappings, got {nodes!r:.80}")
    if not nodes:
        raise ValidationError("a taxonomy needs at least one node")
    parsed = []
    for i, raw in enumerate(nodes):
        raw = {"name": raw} if isinstance(raw, str) else raw
        if not isinstance(raw, dict):
            raise ValidationError(f"nodes[{i}] must be a name or a mapping, got {raw!r}")
        unknown = set(raw) - NODE_KEYS
        if unknown:
            raise ValidationError(f"nodes[{i}]: unknown key(s) {', '.join(sorted(unknown))}; "
                                  f"a node takes {', '.join(sorted(NODE_KEYS))}")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip() or name == UNKNOWN:
            raise ValidationError(f"nodes[{i}]: name must be a non-empty string other than "
                                  f"{UNKNOWN!r}, got {name!r}")
        threshold = raw.get("threshold")
        if threshold is not None and not (_is_number(threshold) and -1 <= threshold <= 1):
            raise ValidationError(f"nodes[{i}] ({name}): threshold is a cosine similarity in "
                                  f"[-1, 1], got {threshold!r}")
        classes = raw.get("classes") or [name]
        parent = raw.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise ValidationError(f"nodes[{i}] ({name}): parent must be a node's name, got "
                                  f"{parent!r}")
        if not isinstance(classes, list | tuple) or not all(isinstance(c, str) for c in classes):
            raise ValidationError(f"nodes[{i}] ({name}): classes must be a list of names")
        parsed.append(Node(name, raw.get("parent"),
                           None if threshold is None else float(threshold), tuple(classes)))
    names = [n.name for n in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValidationError(f"node names must be unique; repeated: {', '.join(duplicates)}")
    for node in parsed:
        if kind == "flat" and node.parent is not None:
            raise ValidationError(f"node {node.name!r} has a parent, but the taxonomy is flat "
                                  "(use kind='tree')")
        if node.parent is not None and node.parent not in names:
            raise ValidationError(f"node {node.name!r}: parent {node.parent!r} is not a node "
                                  f"(nodes: {', '.join(names)})")
    parents = {n.name: n.parent for n in parsed}
    for name in names:
        seen, current = set(), name
        while current is not None:
            if current in seen:
                raise ValidationError(f"nodes form a cycle through {name!r}")
            seen.add(current)
            current = parents[current]
    return tuple(parsed)


# -- classification (pure) -----------------------------------------------------------------
def classify(vectors: np.ndarray, references: ReferenceMatrix, nodes: Sequence[Node],
             threshold: float, top_k: int) -> list[Assignment]:
    """Assignments for each row of ``vectors`` (any scale; compared by cosine similarity)."""
    n = len(vectors)
    if n == 0:
        return []
    items = references.items
    if not items:
        return [Assignment(UNKNOWN, (), 0.0, None)] * n
    index = {node.name: i for i, node in enumerate(nodes)}
    children: dict[int | None, list[int]] = {}
    for i, node in enumerate(nodes):
        children.setdefault(None if node.parent is None else index[node.parent], []).append(i)
    # Each node's references: those of its classes (or category) and of every node below.
    members: list[set[int]] = [set() for _ in nodes]
    for r, item in enumerate(items):
        for i, node in enumerate(nodes):
            if item.true_class in node.classes or item.category == node.name:
                j: int | None = i
                while j is not None:
                    members[j].add(r)
                    j = None if nodes[j].parent is None else index[nodes[j].parent]
    state = _Walk(
        members=[np.array(sorted(m), dtype=np.intp) for m in members],
        limits=np.array([node.threshold if node.threshold is not None else threshold
                         for node in nodes]),
        children=children, top_k=top_k, depth_node=np.full((n, _depth(nodes)), -1, np.intp),
        scores=np.zeros(n), matched=np.full(n, -1, np.intp))
    refs = references.embeddings
    for start in range(0, n, CHUNK):
        similarity = normalise(vectors[start:start + CHUNK]) @ refs.T
        _descend(state, similarity, np.arange(len(similarity)), None, 0, start)
    # Rows share few distinct paths: build each path's tuple once.
    paths, inverse = np.unique(state.depth_node, axis=0, return_inverse=True)
    named = [tuple(nodes[j].name for j in path if j >= 0) for path in paths]
    ids = [item.id for item in items]
    return [Assignment(named[p][-1] if named[p] else UNKNOWN, named[p], float(score),
                       ids[m] if m >= 0 else None)
            for p, score, m in zip(inverse.ravel().tolist(), state.scores, state.matched,
                                   strict=True)]


@dataclass
class _Walk:
    members: list[np.ndarray]
    limits: np.ndarray
    children: dict[int | None, list[int]]
    top_k: int
    depth_node: np.ndarray  # (rows, depth): the node accepted at each level, or -1
    scores: np.ndarray
    matched: np.ndarray  # index of the matched reference, or -1


def _depth(nodes: Sequence[Node]) -> int:
    parents = {node.name: node.parent for node in nodes}

    def depth(name: str | None) -> int:
        return 0 if name is None else 1 + depth(parents[name])

    return max(depth(node.name) for node in nodes)


def _descend(walk: _Walk, similarity: np.ndarray, rows: np.ndarray, parent: int | None,
             level: int, offset: int) -> None:
    """Classify ``rows`` among the children of ``parent``, then recurse into each winner."""
    candidates = [c for c in walk.children.get(parent, []) if len(walk.members[c])]
    if not candidates or not len(rows):
        return
    block = similarity if len(rows) == len(similarity) else similarity[rows]
    # Each child scores the mean similarity of its own k nearest references: a child with
    # few references is not outvoted by one with many (as in a plain k-nearest vote).
    node_scores = np.empty((len(rows), len(candidates)))
    nearest = np.empty((len(rows), len(candidates)), dtype=np.intp)
    for c, node in enumerate(candidates):
        refs = walk.members[node]
        own = np.ascontiguousarray(block[:, refs])  # row-major: partition runs 6x faster
        k = min(walk.top_k, len(refs))
        best = own.argmax(axis=1)
        nearest[:, c] = refs[best]
        if k == 1:
            node_scores[:, c] = own[np.arange(len(rows)), best]
        else:
            node_scores[:, c] = np.partition(own, len(refs) - k, axis=1)[:, -k:].mean(axis=1)
    winner = node_scores.argmax(axis=1)
    picked = np.arange(len(rows))
    best_sim = node_scores[picked, winner]
    best_ref = nearest[picked, winner]
    chosen = np.asarray(candidates)[winner]
    accepted = best_sim >= walk.limits[chosen]
    at = offset + rows
    walk.scores[at] = best_sim
    walk.depth_node[at[accepted], level] = chosen[accepted]
    if parent is None:
        walk.matched[at] = best_ref  # the nearest, even when unknown, for the record
    else:
        walk.matched[at[accepted]] = best_ref[accepted]
    for node in candidates:
        _descend(walk, similarity, rows[accepted & (chosen == node)], node, level + 1, offset)


# -- the service ---------------------------------------------------------------------------
class TaxonomyService:
    """Define taxonomies, attach them to collections, and classify detections with them."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db

    def create(self, name: str, reference_set: str, kind: str = TaxonomyParams.kind,
               nodes: Sequence[Any] | None = None,
               threshold: float = TaxonomyParams.threshold, top_k: int = TaxonomyParams.top_k,
               mapping: dict[str, str] | None = None, attach: str | None = None,
               mode: str = TaxonomyParams.mode) -> Taxonomy:
        """A taxonomy over a reference set. A flat one without ``nodes`` takes the set's
        classes. With ``attach``, it is attached to that collection in ``mode`` in the same
        transaction: everything is checked first, and nothing is created if anything is
        wrong."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValidationError("a taxonomy needs a name of 1-200 characters")
        refs = self.wb.references.get(reference_set)
        attach_to = self._attachable(refs, attach, mode) if attach is not None else None
        if nodes is None:
            if kind != "flat":
                raise ValidationError("a tree taxonomy needs its nodes")
            nodes = list(self.wb.references.class_counts(refs.name))
            if not nodes:
                raise ValidationError(f"reference set {refs.name!r} is empty: promote reviewed "
                                      "detections into it first, or give the nodes")
        parsed = parse_nodes(kind, nodes)
        _check_settings(threshold, top_k, mapping)
        now = utcnow()
        with self.db.write() as conn:
            taxonomy_id = new_id("tax")
            self.db.insert_named(
                conn, t.taxonomies, "taxonomy", id=taxonomy_id, name=name,
                reference_set_id=refs.id, kind=kind, nodes=[n.to_dict() for n in parsed],
                threshold=float(threshold), top_k=int(top_k),
                mapping=dict(mapping or DEFAULT_MAPPING), version=1,
                reference_version=refs.version, created_at=now, updated_at=now)
            if attach_to is not None:
                conn.execute(t.taxonomy_attachments.insert().values(
                    taxonomy_id=taxonomy_id, collection_id=attach_to.id, mode=mode,
                    created_at=now))
        return self.get(taxonomy_id)

    def update(self, name: str, nodes: Sequence[Any] | None = None,
               threshold: float | None = None, top_k: int | None = None,
               mapping: dict[str, str] | None = None) -> Taxonomy:
        """Change the definition; the version goes up by one."""
        current = self.get(name)
        parsed = parse_nodes(current.kind, nodes) if nodes is not None else current.nodes
        threshold = current.threshold if threshold is None else threshold
        top_k = current.top_k if top_k is None else top_k
        mapping = current.mapping if mapping is None else mapping
        _check_settings(threshold, top_k, mapping)
        with self.db.write() as conn:
            conn.execute(t.taxonomies.update().where(t.taxonomies.c.id == current.id).values(
                nodes=[n.to_dict() for n in parsed], threshold=float(threshold),
                top_k=int(top_k), mapping=dict(mapping), version=t.taxonomies.c.version + 1,
                updated_at=utcnow()))
        return self.get(current.id)

    def get(self, name_or_id: str) -> Taxonomy:
        """A taxonomy by name or id; NotFoundError if there is none."""
        row = self.db.find(t.taxonomies, name_or_id)
        if row is None:
            raise NotFoundError(f"no taxonomy {name_or_id!r}; create one with "
                                "`workbench taxonomy create`")
        return taxonomy_from_row(row)

    def list(self) -> list[Taxonomy]:
        """Every taxonomy, by name."""
        with self.db.read() as conn:
            return [taxonomy_from_row(r) for r in conn.execute(
                sa.select(t.taxonomies).order_by(t.taxonomies.c.name))]

    # -- attachment ----------------------------------------------------------------------
    def _attachable(self, refs, collection: str, mode: str):
        """The collection a taxonomy over ``refs`` can be attached to in ``mode``, or why not."""
        if mode not in MODES:
            raise ValidationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        target = self.wb.collections.get(collection)
        if refs.collection_id != target.id:
            raise ValidationError(f"the taxonomy compares embeddings of {refs.feature_uri} "
                                  f"in another collection than {target.name!r}")
        return target

    def execute(self, ctx: JobContext) -> dict[str, Any]:
        """The taxonomy job: :meth:`apply` with progress and cancellation."""

        def step(done: int, total: int) -> None:
            ctx.check_cancelled()
            ctx.progress(done, total, f"classified {done}/{total}")

        return self.apply(ctx.params["taxonomy_id"], progress=step,
                          version=ctx.params.get("version"))

    def attach(self, name: str, collection: str, mode: str = TaxonomyParams.mode) -> None:
        """Attach to a collection with a mode (attaching again changes the mode)."""
        taxonomy = self.get(name)
        refs = self.wb.references.get(taxonomy.reference_set_id)
        target = self._attachable(refs, collection, mode)
        with self.db.write() as conn:
            conn.execute(t.taxonomy_attachments.delete().where(
                t.taxonomy_attachments.c.taxonomy_id == taxonomy.id,
                t.taxonomy_attachments.c.collection_id == target.id))
            conn.execute(t.taxonomy_attachments.insert().values(
                taxonomy_id=taxonomy.id, collection_id=target.id, mode=mode,
                created_at=utcnow()))

    def attachments(self, collection: str) -> list[tuple[Taxonomy, str]]:
        """The taxonomies attached to a collection, each with its mode."""
        target = self.wb.collections.get(collection)
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.taxonomy_attachments).where(
                t.taxonomy_attachments.c.collection_id == target.id)).all()
        return [(self.get(r.taxonomy_id), r.mode) for r in rows]

    # -- applying ------------------------------------------------------------------------
    def classify_detections(self, name: str, detection_ids: Sequence[str]
                            ) -> dict[str, Assignment]:
        """Classify detections of any version now without storing anything (the
        ``on_demand`` mode): each against the references in its own version's space."""
        taxonomy = self.get(name)
        ids = list(detection_ids)
        with self.db.read() as conn:
            rows = [row for chunk in in_lists(ids) for row in conn.execute(
                sa.select(t.detections.c.id, t.detections.c.embedding_id,
                          t.detections.c.extractor_key)
                .where(t.detections.c.id.in_(chunk))).all()]
        found: dict[str, Assignment] = {}
        by_version: dict[str, list] = {}
        for row in rows:
            if row.embedding_id:
                by_version.setdefault(row.extractor_key, []).append(row)
        for key, group in by_version.items():
            uri = self._feature_uri(key)
            refs = self.wb.references.matrix(taxonomy.reference_set_id, feature_uri=uri)
            vectors = self.wb.vectors.get(uri, [r.embedding_id for r in group])
            if len(vectors) != len(group):
                raise NotFoundError(f"some detections have no vector in {uri}")
            outcome = classify(vectors, refs, taxonomy.nodes, taxonomy.threshold,
                               taxonomy.top_k)
            found.update(zip((r.id for r in group), outcome, strict=True))
        return found

    def _feature_uri(self, extractor_key: str) -> str:
        return self.wb.registry.get(extractor_key).feature_uri("detection_embedding")

    def apply(self, name: str, only_new: bool = False,
              progress: Callable[[int, int], None] | None = None,
              version: str | None = None) -> dict[str, Any]:
        """Classify every detection of one version (default: the collection's active one)
        against the references in that version's feature space and store what changed;
        ``only_new`` classifies only detections with no assignment yet (what
        ``materialize`` does after a batch run). Returns a report with a before/after sample.
        """
        started = time.perf_counter()
        taxonomy = self._current_version(self.get(name))
        refs_set = self.wb.references.get(taxonomy.reference_set_id)
        collection = self.wb.collections.get(refs_set.collection_id)
        chosen = self.wb.registry.get(collection.extractor_name,
                                      version or collection.active_version)
        extractor_key = chosen.key
        feature_uri = chosen.feature_uri("detection_embedding")
        refs = self.wb.references.matrix(taxonomy.reference_set_id, feature_uri=feature_uri)
        d, a = t.detections.c, t.taxonomy_assignments.c
        with self.db.read() as conn:
            query = sa.select(d.id, d.embedding_id).where(
                d.collection_id == refs.set.collection_id, d.extractor_key == extractor_key,
                d.embedding_id.is_not(None)).order_by(d.id)
            if only_new:
                query = query.where(~sa.select(a.detection_id).where(
                    a.taxonomy_id == taxonomy.id, a.detection_id == d.id).exists())
            detections = conn.execute(query).all()
            # Only detections without an assignment are classified with only_new: nothing
            # stored to compare with (this runs after every batch run).
            previous = {} if only_new else {r.detection_id: r for r in conn.execute(
                sa.select(a.detection_id, a.label, a.reference_id).where(
                    a.taxonomy_id == taxonomy.id, a.collection_id == refs.set.collection_id))}
        total = len(detections)
        labels: Counter = Counter()
        changed: list[dict[str, Any]] = []
        sample: list[dict[str, Any]] = []
        now = utcnow()
        phases = {"read_s": 0.0, "classify_s": 0.0}
        for begin in range(0, total, CHUNK):
            batch = detections[begin:begin + CHUNK]
            begun = time.perf_counter()
            vectors = self.wb.vectors.get(feature_uri, [r.embedding_id for r in batch])
            if len(vectors) != len(batch):
                raise NotFoundError(f"some detections have no vector in {feature_uri}; "
                                    "re-run their batch run")
            phases["read_s"] += time.perf_counter() - begun
            begun = time.perf_counter()
            outcomes = classify(vectors, refs, taxonomy.nodes, taxonomy.threshold,
                                taxonomy.top_k)
            phases["classify_s"] += time.perf_counter() - begun
            for row, outcome in zip(batch, outcomes, strict=True):
                labels[outcome.label] += 1
                before = previous.get(row.id)
                if before is not None and before.label == outcome.label and \
                        before.reference_id == outcome.reference_id:
                    continue  # unchanged: its row, version and time stay as they were
                changed.append({
                    "taxonomy_id": taxonomy.id, "detection_id": row.id,
                    "collection_id": refs.set.collection_id, "extractor_key": extractor_key,
                    "label": outcome.label, "path": list(outcome.path),
                    "score": outcome.score, "reference_id": outcome.reference_id,
                    "fields": outcome.fields(taxonomy.mapping),
                    "taxonomy_version": taxonomy.version, "assigned_at": now})
                if before is not None and before.label != outcome.label and len(sample) < 20:
                    sample.append({"detection_id": row.id, "before": before.label,
                                   "after": outcome.label, "score": round(outcome.score, 4)})
            if progress:
                progress(min(begin + CHUNK, total), total)
        relabelled = sum(1 for c in changed if c["detection_id"] in previous and
                         previous[c["detection_id"]].label != c["label"])
        begun = time.perf_counter()
        with self.db.write() as conn:
            if changed:
                stale = [c["detection_id"] for c in changed if c["detection_id"] in previous]
                for chunk in in_lists(stale):
                    conn.execute(t.taxonomy_assignments.delete().where(
                        t.taxonomy_assignments.c.taxonomy_id == taxonomy.id,
                        t.taxonomy_assignments.c.detection_id.in_(chunk)))
                conn.execute(t.taxonomy_assignments.insert(), changed)
            report = {"taxonomy": taxonomy.name, "taxonomy_version": taxonomy.version,
                      "reference_version": refs.version, "extractor": extractor_key,
                      "classified": total,
                      "new": sum(1 for c in changed if c["detection_id"] not in previous),
                      "changed": relabelled, "rewritten": len(changed),
                      "unchanged": total - len(changed), "labels": dict(labels),
                      "sample": sample,
                      **{k: round(v, 3) for k, v in phases.items()},
                      "write_s": round(time.perf_counter() - begun, 3),
                      "seconds": round(time.perf_counter() - started, 3)}
            record_event(conn, "taxonomy.applied", {k: v for k, v in report.items()
                                                    if k != "sample"})
        self.db.ensure_statistics()
        return report

    def after_batch(self, collection_id: str, extractor_key: str) -> list[dict[str, Any]]:
        """Apply every ``materialize`` taxonomy of the collection to the detections that a
        batch run of ``extractor_key`` added (called when the run completes)."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.taxonomy_attachments.c.taxonomy_id).where(
                t.taxonomy_attachments.c.collection_id == collection_id,
                t.taxonomy_attachments.c.mode == "materialize")).scalars().all()
        version = extractor_key.split("@", 1)[1]
        return [self.apply(taxonomy_id, only_new=True, version=version) for taxonomy_id in rows
                if self.wb.references.matrix(self.get(taxonomy_id).reference_set_id).items]

    def submit_apply(self, name: str, version: str | None = None):
        """Queue a retroactive apply for the worker."""
        return self.wb.jobs.submit("taxonomy", {"taxonomy_id": self.get(name).id,
                                                "version": version})

    def run_apply(self, name: str, listener: ProgressListener | None = None,
                  version: str | None = None):
        """The retroactive apply as a job in this process (the CLI)."""
        job = self.wb.jobs.run_inline("taxonomy", {"taxonomy_id": self.get(name).id,
                                                   "version": version}, listener)
        if job.status == "failed":
            raise JobFailed(job)
        return job

    def assignments(self, name: str, label: str | None = None, limit: int = 100
                    ) -> list[dict[str, Any]]:
        """The first ``limit`` of a taxonomy's stored assignments (with ``label`` only, if
        given), by detection id: the first :meth:`assignments_page`, which also says how
        many there are."""
        return self.assignments_page(name, label, limit=limit).items

    def assignments_page(self, name: str, label: str | None = None, cursor: str | None = None,
                         limit: int = 100, min_score: float | None = None,
                         max_score: float | None = None, extractor_key: str | None = None,
                         count: bool = True) -> Page[dict[str, Any]]:
        """A page of a taxonomy's stored assignments (with ``label`` only, a score within
        ``min_score``-``max_score`` and of one version's detections, each if given), by
        detection id, with how many there are (unless ``count`` is false: a caller that
        knows) and the cursor of the next page."""
        taxonomy = self.get(name)
        a = t.taxonomy_assignments.c
        query = sa.select(t.taxonomy_assignments).where(a.taxonomy_id == taxonomy.id)
        if label is not None:
            query = query.where(a.label == label)
        if min_score is not None:
            query = query.where(a.score >= min_score)
        if max_score is not None:
            query = query.where(a.score <= max_score)
        if extractor_key is not None:
            query = query.where(a.extractor_key == extractor_key)
        with self.db.read() as conn:
            return _ASSIGNMENT_ORDER.page(conn, query, cursor, limit, scope={
                "taxonomy": taxonomy.id, "label": label, "min_score": min_score,
                "max_score": max_score, "extractor_key": extractor_key}, count=count)

    def label_counts(self, name: str, version: str | None = None) -> dict[str, int]:
        """A taxonomy's stored assignments per label, on one version's detections (default:
        the active version of its reference set's collection): applied to two versions, a
        detection's box is counted once, not once per version."""
        taxonomy = self.get(name)
        collection = self.wb.collections.get(
            self.wb.references.get(taxonomy.reference_set_id).collection_id)
        key = f"{collection.extractor_name}@{version or collection.active_version}"
        a = t.taxonomy_assignments.c
        with self.db.read() as conn:
            return dict(conn.execute(sa.select(a.label, sa.func.count()).where(
                a.taxonomy_id == taxonomy.id, a.extractor_key == key).group_by(a.label)).all())

    def _current_version(self, taxonomy: Taxonomy) -> Taxonomy:
        """References changed since the last apply make a new taxonomy version."""
        refs = self.wb.references.get(taxonomy.reference_set_id)
        if refs.version == taxonomy.reference_version:
            return taxonomy
        with self.db.write() as conn:
            conn.execute(t.taxonomies.update().where(t.taxonomies.c.id == taxonomy.id).values(
                version=t.taxonomies.c.version + 1, reference_version=refs.version,
                updated_at=utcnow()))
        return self.get(taxonomy.id)


# a taxonomy labels a detection once, so its id alone orders the assignments
_ASSIGNMENT_ORDER = Keyset("taxonomy assignments",
                           ((t.taxonomy_assignments.c.detection_id, False),))


def _is_number(value: Any) -> bool:
    """A real, finite number (not a string, a bool or NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_settings(threshold: float, top_k: int, mapping: dict[str, str] | None) -> None:
    TaxonomyParams(threshold=threshold, top_k=top_k)
    if mapping is not None:
        unknown = set(mapping) - set(DEFAULT_MAPPING)
        if unknown or not all(isinstance(v, str) and v for v in mapping.values()):
            raise ValidationError(
                f"mapping maps {', '.join(DEFAULT_MAPPING)} to field names, e.g. "
                f"{DEFAULT_MAPPING}; got {mapping!r}")


def taxonomy_from_row(row) -> Taxonomy:
    """The Taxonomy a row of the taxonomies table describes."""
    nodes = tuple(Node(n["name"], n.get("parent"), n.get("threshold"),
                       tuple(n.get("classes") or [n["name"]])) for n in row.nodes)
    return Taxonomy(row.id, row.name, row.reference_set_id, row.kind, nodes, row.threshold,
                    row.top_k, dict(row.mapping), row.version, row.reference_version,
                    as_utc(row.created_at), as_utc(row.updated_at))
