"""Reference sets: curated detections (embedding, true class, optional category, crop) that
taxonomies classify against.

Reviewed detections become references by promotion (``confirmed`` and ``corrected`` verdicts,
newest per detection); a person can add or remove any detection by hand. Every change bumps
the set's version, and membership is kept per version (``added_in`` / ``removed_in``), so a
taxonomy can say which references it was built on and a retroactive apply knows when they
changed. Embeddings are copied into the set (float32, L2-normalised): a set is small, and
classifying against it must not go back to the vector store for every reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from workbench.errors import AlreadyExistsError, NotFoundError, ValidationError
from workbench.extractors.spec import parse_feature_uri
from workbench.store import tables as t
from workbench.store.metadata import as_utc, new_id, utcnow

if TYPE_CHECKING:
    from workbench import Workbench

PROMOTABLE = ("confirmed", "corrected")
THUMBNAIL_PX = 96


@dataclass(frozen=True)
class ReferenceSet:
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
        name, version, _ = parse_feature_uri(self.feature_uri)
        return f"{name}@{version}"


@dataclass(frozen=True)
class ReferenceItem:
    id: str
    set_id: str
    detection_id: str
    object_id: str
    true_class: str
    category: str | None
    xyxy: tuple[float, float, float, float]
    source: str
    added_in: int
    removed_in: int | None


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
        with self.db.write() as conn:
            if conn.execute(sa.select(t.reference_sets.c.id).where(
                    t.reference_sets.c.name == name)).first():
                raise AlreadyExistsError(f"reference set {name!r} exists already")
            set_id = new_id("refs")
            conn.execute(t.reference_sets.insert().values(
                id=set_id, name=name, collection_id=target.id, feature_uri=feature_uri,
                version=0, description=description, created_at=now, updated_at=now))
        return self.get(set_id)

    def get(self, name_or_id: str) -> ReferenceSet:
        row = self.db.find(t.reference_sets, name_or_id)
        if row is None:
            raise NotFoundError(f"no reference set {name_or_id!r}; create one with "
                                "`workbench references create NAME -c COLLECTION`")
        return _set(row)

    def list(self, collection: str | None = None) -> list[ReferenceSet]:
        query = sa.select(t.reference_sets).order_by(t.reference_sets.c.name)
        if collection is not None:
            query = query.where(t.reference_sets.c.collection_id ==
                                self.wb.collections.get(collection).id)
        with self.db.read() as conn:
            return [_set(r) for r in conn.execute(query)]

    # -- membership ----------------------------------------------------------------------
    def promote(self, name: str, labels: Sequence[str] = PROMOTABLE,
                classes: Iterable[str] | None = None, category: str | None = None,
                limit: int | None = None) -> dict[str, Any]:
        """Add every reviewed detection whose newest verdict is one of ``labels`` (with its
        true class), optionally only of ``classes``; returns counts and the new version."""
        unknown = set(labels) - set(PROMOTABLE)
        if unknown:
            raise ValidationError(f"only {', '.join(PROMOTABLE)} detections can become "
                                  f"references, not {', '.join(sorted(unknown))}")
        refs = self.get(name)
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(t.annotations.c.document_id, t.annotations.c.label,
                          t.annotations.c.payload)
                .where(t.annotations.c.collection_id == refs.collection_id,
                       t.annotations.c.extractor_key == refs.extractor_key,
                       t.annotations.c.deleted_at.is_(None),
                       t.annotations.c.label.in_(list(PROMOTABLE)))
                .order_by(t.annotations.c.created_at, t.annotations.c.id)).all()
        newest: dict[str, Any] = {}
        for row in rows:
            newest[row.document_id] = row
        wanted = set(classes) if classes is not None else None
        chosen = {}
        for detection_id, row in newest.items():
            if row.label not in labels:
                continue
            true_class = (row.payload or {}).get("true_class")
            if wanted is not None and true_class not in wanted:
                continue
            chosen[detection_id] = (true_class, row.label)
        if limit is not None:
            chosen = dict(list(chosen.items())[:limit])
        return self._add(refs, chosen, category)

    def add(self, name: str, detection_ids: Sequence[str], true_class: str | None = None,
            category: str | None = None, source: str = "manual") -> dict[str, Any]:
        """Add detections by hand (their predicted class unless ``true_class`` is given)."""
        refs = self.get(name)
        return self._add(refs, {d: (true_class, source) for d in detection_ids}, category)

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

    def _add(self, refs: ReferenceSet, chosen: dict[str, tuple[str | None, str]],
             category: str | None) -> dict[str, Any]:
        if not chosen:
            return {"added": 0, "already": 0, "version": refs.version}
        with self.db.read() as conn:
            members = set(conn.execute(sa.select(t.reference_items.c.detection_id).where(
                t.reference_items.c.set_id == refs.id,
                t.reference_items.c.removed_in.is_(None))).scalars())
            detections = {r.id: r for r in conn.execute(sa.select(t.detections).where(
                t.detections.c.id.in_([d for d in chosen if d not in members])))}
        missing = [d for d in chosen if d not in members and d not in detections]
        if missing:
            raise NotFoundError(f"{len(missing)} detection(s) do not exist, e.g. {missing[0]!r}")
        wrong = [d.id for d in detections.values() if d.extractor_key != refs.extractor_key]
        if wrong:
            raise ValidationError(
                f"{wrong[0]!r} was made by another version than {refs.extractor_key}, whose "
                f"embeddings ({refs.feature_uri}) this set compares")
        new = [d for d in chosen if d in detections]
        if not new:
            return {"added": 0, "already": len(chosen), "version": refs.version}
        vectors = self.wb.vectors.get(refs.feature_uri,
                                      [detections[d].embedding_id for d in new])
        if len(vectors) != len(new):
            raise NotFoundError(f"some of these detections have no vector in {refs.feature_uri};"
                                " re-run the batch run to restore them")
        vectors = normalise(vectors)
        thumbnails = self._thumbnails([detections[d] for d in new])
        now = utcnow()
        with self.db.write() as conn:
            current = conn.execute(sa.select(t.reference_sets.c.version).where(
                t.reference_sets.c.id == refs.id)).scalar_one()
            conn.execute(t.reference_items.insert(), [{
                "id": new_id("ref"), "set_id": refs.id, "detection_id": d,
                "object_id": detections[d].object_id,
                "true_class": chosen[d][0] or detections[d].class_name,
                "category": category, "embedding": vectors[i].tobytes(),
                "thumbnail": thumbnails.get(d),
                "xyxy": [detections[d].x1, detections[d].y1, detections[d].x2,
                         detections[d].y2],
                "source": chosen[d][1], "added_in": current + 1, "removed_in": None,
                "created_at": now} for i, d in enumerate(new)])
            conn.execute(t.reference_sets.update().where(t.reference_sets.c.id == refs.id)
                         .values(version=current + 1, updated_at=now))
        return {"added": len(new), "already": len(chosen) - len(new), "version": current + 1}

    def _thumbnails(self, detections: list) -> dict[str, bytes]:
        """A small JPEG crop of each detection (for galleries), read once per image."""
        from workbench.ingest import crop_jpeg, load_image

        crops: dict[str, bytes] = {}
        by_object: dict[str, list] = {}
        for d in detections:
            by_object.setdefault(d.object_id, []).append(d)
        for object_id, dets in by_object.items():
            try:
                image = load_image(self.wb.image_path(self.wb.buckets.get_object(object_id)))
            except (OSError, NotFoundError):
                continue  # a missing image costs the thumbnail, not the reference
            for d in dets:
                crops[d.id] = crop_jpeg(image, (d.x1, d.y1, d.x2, d.y2), THUMBNAIL_PX)
        return crops

    # -- reading -------------------------------------------------------------------------
    def items(self, name: str, version: int | None = None) -> list[ReferenceItem]:
        """The members at ``version`` (default: now)."""
        return list(self.matrix(name, version).items)

    def matrix(self, name: str, version: int | None = None) -> ReferenceMatrix:
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
        embeddings = (np.stack([np.frombuffer(r.embedding, dtype="float32") for r in rows])
                      if rows else np.zeros((0, 0), dtype="float32"))
        return ReferenceMatrix(refs, at, tuple(_item(r) for r in rows), embeddings)

    def thumbnail(self, item_id: str) -> bytes | None:
        with self.db.read() as conn:
            return conn.execute(sa.select(t.reference_items.c.thumbnail).where(
                t.reference_items.c.id == item_id)).scalar()

    def class_counts(self, name: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.items(name):
            counts[item.true_class] = counts.get(item.true_class, 0) + 1
        return dict(sorted(counts.items()))


def _set(row) -> ReferenceSet:
    return ReferenceSet(row.id, row.name, row.collection_id, row.feature_uri, row.version,
                        row.description, as_utc(row.created_at), as_utc(row.updated_at))


def _item(row) -> ReferenceItem:
    return ReferenceItem(row.id, row.set_id, row.detection_id, row.object_id, row.true_class,
                         row.category, tuple(row.xyxy), row.source, row.added_in,
                         row.removed_in)
