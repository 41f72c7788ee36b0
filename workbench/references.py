"""Reference sets: curated examples (embedding, true class, optional category, crop) that
taxonomies classify against.

A reference is a box with a class: a ground-truth box (``promote``: the confirmed, corrected
and drawn objects people established, whatever version they reviewed), or any detection a
person picks (``add``, cluster promotion). Every change bumps the set's version, and
membership is kept per version (``added_in`` / ``removed_in``), so a taxonomy can say which
references it was built on and a retroactive apply knows when they changed.

A set has a home feature space (``feature_uri``); each reference's embedding there is
copied into the set (float32, L2-normalised). A taxonomy that classifies another version's
detections needs the references in *that* version's space: the box is embedded by that
version's model (the same pooling as its own detections) the first time it is needed, and
kept (``reference_embeddings``). So references outlive the version they were made on: a
taxonomy built over v1 classifies v2's detections, and a v2 cluster can be promoted into it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from workbench.errors import NotFoundError, ValidationError
from workbench.extractors.spec import parse_feature_uri
from workbench.images import crop_jpeg, load_image
from workbench.store import tables as t
from workbench.store.metadata import as_utc, new_id, utcnow

if TYPE_CHECKING:
    from workbench import Workbench

PROMOTABLE = ("confirmed", "corrected", "missed")
THUMBNAIL_PX = 96


@dataclass(frozen=True)
class ReferenceSet:
    """A versioned set of labelled boxes over one per-detection embedding feature."""

    id: str
    name: str
    collection_id: str
    feature_uri: str
    version: int
    description: str
    created_at: datetime
    updated_at: datetime

    @property
    def extractor_key(self) -> str:
        """``name@version`` of the extractor whose feature the set compares in."""
        name, version, _ = parse_feature_uri(self.feature_uri)
        return f"{name}@{version}"


@dataclass(frozen=True)
class ReferenceItem:
    """One member of a reference set: a box with its true class, and the set versions it is in."""

    id: str
    set_id: str
    detection_id: str | None  # None: a box a person drew (a ground-truth box)
    object_id: str
    true_class: str
    category: str | None
    xyxy: tuple[float, float, float, float]
    source: str
    added_in: int
    removed_in: int | None
    truth_annotation_id: str | None = None


@dataclass(frozen=True)
class ReferenceMatrix:
    """The members of a set at one version, ready to compare with: row i of ``embeddings``
    belongs to ``items[i]``."""

    set: ReferenceSet
    version: int
    items: tuple[ReferenceItem, ...]
    embeddings: np.ndarray  # (n, dim) float32, L2-normalised


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype="float32")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class ReferenceService:
    """Reference sets: their members, versions, embeddings and thumbnails."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db

    # -- sets ----------------------------------------------------------------------------
    def create(self, name: str, collection: str, feature_uri: str | None = None,
               description: str = "") -> ReferenceSet:
        """A new, empty reference set over one embedding feature of a collection (default:
        the active version's ``detection_embedding``)."""
        if not name or len(name) > 200:
            raise ValidationError("a reference set needs a name of 1-200 characters")
        target = self.wb.collections.get(collection)
        if feature_uri is None:
            version = self.wb.registry.get(target.extractor_name, target.active_version)
            feature_uri = version.feature_uri("detection_embedding")
        extractor, version, feature = parse_feature_uri(feature_uri)
        chosen = self.wb.registry.get(extractor, version)
        spec = chosen.spec.feature(feature)
        if spec.feature_type != "embedding" or spec.granularity != "detection":
            raise ValidationError(f"{feature_uri} is not a per-detection embedding; reference "
                                  "sets compare detections")
        now = utcnow()
        set_id = new_id("refs")
        with self.db.write() as conn:
            self.db.insert_named(conn, t.reference_sets, "reference set", id=set_id, name=name,
                                 collection_id=target.id, feature_uri=feature_uri, version=0,
                                 description=description, created_at=now, updated_at=now)
        return self.get(set_id)

    def get(self, name_or_id: str) -> ReferenceSet:
        """A reference set by name or id; NotFoundError if there is none."""
        row = self.db.find(t.reference_sets, name_or_id)
        if row is None:
            raise NotFoundError(f"no reference set {name_or_id!r}; create one with "
                                "`workbench references create NAME -c COLLECTION`")
        return reference_set_from_row(row)

    def list(self, collection: str | None = None) -> list[ReferenceSet]:
        """The reference sets (of ``collection``, or all), by name."""
        query = sa.select(t.reference_sets).order_by(t.reference_sets.c.name)
        if collection is not None:
            query = query.where(t.reference_sets.c.collection_id ==
                                self.wb.collections.get(collection).id)
        with self.db.read() as conn:
            return [reference_set_from_row(r) for r in conn.execute(query)]

    # -- membership ----------------------------------------------------------------------
    def promote(self, name: str, labels: Sequence[str] = PROMOTABLE,
                classes: Iterable[str] | None = None, category: str | None = None,
                limit: int | None = None) -> dict[str, Any]:
        """Add the ground-truth objects of the set's collection that people established
        with one of ``labels`` (``confirmed``, ``corrected``, ``missed``), of any version's
        review, optionally only of ``classes``; returns counts and the new version."""
        unknown = set(labels) - set(PROMOTABLE)
        if unknown:
            raise ValidationError(f"only {', '.join(PROMOTABLE)} ground-truth boxes can become "
                                  f"references, not {', '.join(sorted(unknown))}")
        refs = self.get(name)
        wanted = set(classes) if classes is not None else None
        boxes = []
        for truth in self.wb.truth.images(refs.collection_id).values():
            for box in truth.objects:
                if box.label in labels and (wanted is None or box.cls in wanted):
                    boxes.append((truth.object_id, box))
        boxes.sort(key=lambda item: (item[1].created_at, item[1].annotation_id))
        if limit is not None:
            boxes = boxes[:limit]
        chosen = [_Candidate(object_id, box.xyxy, box.cls, box.label, box.detection_id,
                             box.annotation_id) for object_id, box in boxes]
        return self._add(refs, chosen, category)

    def add(self, name: str, detection_ids: Sequence[str], true_class: str | None = None,
            category: str | None = None, source: str = "manual") -> dict[str, Any]:
        """Add detections of any version by hand (their predicted class unless
        ``true_class`` is given)."""
        refs = self.get(name)
        with self.db.read() as conn:
            found = {r.id: r for r in conn.execute(sa.select(t.detections).where(
                t.detections.c.id.in_(list(detection_ids))))}
        missing = [d for d in detection_ids if d not in found]
        if missing:
            raise NotFoundError(f"{len(missing)} detection(s) do not exist, e.g. {missing[0]!r}")
        wrong = [d for d in found.values() if d.collection_id != refs.collection_id]
        if wrong:
            raise ValidationError(f"{wrong[0].id!r} belongs to another collection than the "
                                  f"set {refs.name!r}")
        chosen = [_Candidate(found[d].object_id, (found[d].x1, found[d].y1, found[d].x2,
                                                  found[d].y2),
                             true_class or found[d].class_name, source, d, None)
                  for d in dict.fromkeys(detection_ids)]
        return self._add(refs, chosen, category)

    def remove(self, name: str, detection_ids: Sequence[str]) -> dict[str, Any]:
        """Take detections out of the set (they stay in the history of earlier versions)."""
        refs = self.get(name)
        with self.db.write() as conn:
            current = conn.execute(sa.select(t.reference_sets.c.version).where(
                t.reference_sets.c.id == refs.id)).scalar_one()
            result = conn.execute(t.reference_items.update().where(
                t.reference_items.c.set_id == refs.id,
                t.reference_items.c.detection_id.in_(list(detection_ids)),
                t.reference_items.c.removed_in.is_(None)).values(removed_in=current + 1))
            if result.rowcount:
                conn.execute(t.reference_sets.update().where(t.reference_sets.c.id == refs.id)
                             .values(version=current + 1, updated_at=utcnow()))
        return {"removed": result.rowcount,
                "version": current + 1 if result.rowcount else current}

    def _add(self, refs: ReferenceSet, chosen: list[_Candidate],
             category: str | None) -> dict[str, Any]:
        if not chosen:
            return {"added": 0, "already": 0, "version": refs.version}
        with self.db.read() as conn:
            members = conn.execute(sa.select(t.reference_items.c.detection_id,
                                             t.reference_items.c.truth_annotation_id).where(
                t.reference_items.c.set_id == refs.id,
                t.reference_items.c.removed_in.is_(None))).all()
        known = {m.detection_id for m in members if m.detection_id} | {
            m.truth_annotation_id for m in members if m.truth_annotation_id}
        new = [c for c in chosen if not ({c.detection_id, c.truth_annotation_id} & known)]
        if not new:
            return {"added": 0, "already": len(chosen), "version": refs.version}
        vectors = self._embed(refs.feature_uri, new)
        thumbnails = self._thumbnails(new)
        now = utcnow()
        with self.db.write() as conn:
            current = conn.execute(sa.select(t.reference_sets.c.version).where(
                t.reference_sets.c.id == refs.id)).scalar_one()
            conn.execute(t.reference_items.insert(), [{
                "id": new_id("ref"), "set_id": refs.id, "detection_id": c.detection_id,
                "truth_annotation_id": c.truth_annotation_id, "object_id": c.object_id,
                "true_class": c.cls, "category": category, "embedding": vectors[i].tobytes(),
                "thumbnail": thumbnails.get(i), "xyxy": list(c.xyxy), "source": c.source,
                "added_in": current + 1, "removed_in": None, "created_at": now}
                for i, c in enumerate(new)])
            conn.execute(t.reference_sets.update().where(t.reference_sets.c.id == refs.id)
                         .values(version=current + 1, updated_at=now))
        return {"added": len(new), "already": len(chosen) - len(new), "version": current + 1}

    def _embed(self, feature_uri: str, boxes: Sequence[_Candidate]) -> np.ndarray:
        """The boxes' embeddings in ``feature_uri``'s space: a detection of that version
        has its own vector; any other box is embedded by that version's model."""
        extractor, version, _ = parse_feature_uri(feature_uri)
        chosen = self.wb.registry.get(extractor, version)
        with self.db.read() as conn:
            own = {r.id: r.embedding_id for r in conn.execute(
                sa.select(t.detections.c.id, t.detections.c.embedding_id).where(
                    t.detections.c.id.in_([b.detection_id for b in boxes if b.detection_id]),
                    t.detections.c.extractor_key == chosen.key))}
        stored = self.wb.vectors.get_by_id(feature_uri, [own[b.detection_id] for b in boxes
                                                         if b.detection_id in own])
        missing = [i for i, b in enumerate(boxes) if own.get(b.detection_id) not in stored]
        computed = self.wb.detection.embed_boxes(
            chosen, [(boxes[i].object_id, boxes[i].xyxy) for i in missing]) if missing else []
        dim = chosen.spec.feature("detection_embedding").embedding_dim
        out = np.zeros((len(boxes), dim), dtype="float32")
        for i, b in enumerate(boxes):
            if i not in missing:
                out[i] = stored[own[b.detection_id]]
        for row, i in enumerate(missing):
            out[i] = computed[row]
        return normalise(out)

    def _thumbnails(self, boxes: Sequence[_Candidate]) -> dict[int, bytes]:
        """A small JPEG crop of each box (for galleries), by position; one read per image."""
        crops: dict[int, bytes] = {}
        by_object: dict[str, list[int]] = {}
        for i, b in enumerate(boxes):
            by_object.setdefault(b.object_id, []).append(i)
        for object_id, indexes in by_object.items():
            try:
                image = load_image(self.wb.image_path(self.wb.buckets.get_object(object_id)))
            except (OSError, NotFoundError):
                continue  # a missing image costs the thumbnail, not the reference
            for i in indexes:
                crops[i] = crop_jpeg(image, boxes[i].xyxy, THUMBNAIL_PX)
        return crops

    # -- reading -------------------------------------------------------------------------
    def items(self, name: str, version: int | None = None) -> list[ReferenceItem]:
        """The members at ``version`` (default: now)."""
        return list(self.matrix(name, version).items)

    def matrix(self, name: str, version: int | None = None,
               feature_uri: str | None = None) -> ReferenceMatrix:
        """The members at ``version`` (default: now) with their embeddings in
        ``feature_uri``'s space (default: the set's own); embeddings in another space are
        computed the first time and kept."""
        refs = self.get(name)
        at = refs.version if version is None else version
        if not 0 <= at <= refs.version:
            raise ValidationError(f"{refs.name} has versions 0..{refs.version}, not {at}")
        items = t.reference_items.c
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.reference_items).where(
                items.set_id == refs.id, items.added_in <= at,
                sa.or_(items.removed_in.is_(None), items.removed_in > at))
                .order_by(items.created_at, items.id)).all()
        if feature_uri is None or feature_uri == refs.feature_uri:
            vectors = [np.frombuffer(r.embedding, dtype="float32") for r in rows]
        else:
            vectors = self._elsewhere(feature_uri, rows)
        embeddings = np.stack(vectors) if rows else np.zeros((0, 0), dtype="float32")
        return ReferenceMatrix(refs, at, tuple(reference_item_from_row(r) for r in rows), embeddings)

    def _elsewhere(self, feature_uri: str, rows) -> list[np.ndarray]:
        """The references' embeddings in another version's space (cached)."""
        e = t.reference_embeddings.c
        with self.db.read() as conn:
            cached = {r.item_id: np.frombuffer(r.embedding, dtype="float32")
                      for r in conn.execute(sa.select(e.item_id, e.embedding).where(
                          e.feature_uri == feature_uri,
                          e.item_id.in_([r.id for r in rows])))}
        missing = [r for r in rows if r.id not in cached]
        if missing:
            computed = self._embed(feature_uri, [_Candidate(
                r.object_id, tuple(r.xyxy), r.true_class, r.source, r.detection_id,
                r.truth_annotation_id) for r in missing])
            now = utcnow()
            with self.db.write() as conn:
                conn.execute(t.reference_embeddings.insert(), [
                    {"item_id": r.id, "feature_uri": feature_uri,
                     "embedding": computed[i].tobytes(), "created_at": now}
                    for i, r in enumerate(missing)])
            cached.update({r.id: computed[i] for i, r in enumerate(missing)})
        return [cached[r.id] for r in rows]

    def thumbnail(self, item_id: str) -> bytes | None:
        """A member's JPEG thumbnail, or None (no such member, or its image was missing)."""
        with self.db.read() as conn:
            return conn.execute(sa.select(t.reference_items.c.thumbnail).where(
                t.reference_items.c.id == item_id)).scalar()

    def class_counts(self, name: str) -> dict[str, int]:
        """The set's current members per true class."""
        counts: dict[str, int] = {}
        for item in self.items(name):
            counts[item.true_class] = counts.get(item.true_class, 0) + 1
        return dict(sorted(counts.items()))


def reference_set_from_row(row) -> ReferenceSet:
    """The ReferenceSet a row of the reference_sets table describes."""
    return ReferenceSet(row.id, row.name, row.collection_id, row.feature_uri, row.version,
                        row.description, as_utc(row.created_at), as_utc(row.updated_at))


def reference_item_from_row(row) -> ReferenceItem:
    """The ReferenceItem a row of the reference_items table describes."""
    return ReferenceItem(row.id, row.set_id, row.detection_id, row.object_id, row.true_class,
                         row.category, tuple(row.xyxy), row.source, row.added_in,
                         row.removed_in, row.truth_annotation_id)


@dataclass(frozen=True)
class _Candidate:
    """A box about to become a reference."""

    object_id: str
    xyxy: tuple[float, float, float, float]
    cls: str
    source: str
    detection_id: str | None
    truth_annotation_id: str | None
