"""Ground truth per image: what people have established, whatever model version showed it.

Annotations are the events; ground truth is their current sum, kept per image in
``truth_boxes`` and ``image_truth`` and rewritten in the same transaction as every human
annotation (so an undo, an update or a delete reverts it, and the history stays in the
annotations):

- **object boxes** — a ``confirmed`` detection (its box, its true class), a ``corrected`` one
  (the redrawn box if any, the true class), a ``missed`` box drawn on the image;
- **negative regions** — a ``false_positive`` detection's box (nothing there: a hard
  negative);
- the image's **state** — ``unreviewed`` (no human annotation), ``partial`` (some), or
  ``complete``: a person looked at the whole image and marked it done (``image_done``, or
  ``no_objects`` for an image with nothing on it): every object on it is one of its object
  boxes, and any box of any version that is not one of them is a false positive (carried as
  such). Only complete images are training data by default: an unlabelled object on an
  exported image teaches the model that it is background.

Only the newest live verdict on a detection counts. Versions see the same objects: a box
from one version's review and a box of the same class from another version's review that
overlap at IoU ≥ ``SAME_OBJECT_IOU`` are one object (the newer statement wins), so an image
reviewed under v1 and again under v2 holds each object once. Within one version's review,
two overlapping boxes are two objects (a person drew both).

**Carried verdicts.** When a version's detections meet an image with ground truth, each is
matched to it (IoU ≥ ``CARRY_IOU``, one to one, best first): a match is carried over as
``confirmed`` (same class) or ``corrected`` (the true class); a detection on a negative region,
or any unmatched detection on a complete image, as ``false_positive``. Carried verdicts are
annotations with ``origin = "carried"`` and their provenance (the annotation they come from,
the IoU) in the payload, so queues skip what is known already and stats count them apart;
they never feed back into the ground truth, and they are redrawn whenever it changes.

**The gold set.** When an image first becomes complete, a fixed share of images (by a hash of
their bytes, so the same images in every copy of a data set) is reserved as gold until the
collection holds ``gold_target`` of them: they are never exported for training, and every
version is scored on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from workbench.boxes import center_to_xyxy
from workbench.errors import ValidationError
from workbench.store import tables as t
from workbench.store.metadata import as_utc, in_lists, new_id, utcnow

if TYPE_CHECKING:
    from workbench import Workbench

STATES = ("unreviewed", "partial", "complete")
IMAGE_DONE = "image_done"  # an image document's mark: every object on it is accounted for
NO_OBJECTS = "no_objects"  # the same, for an image with nothing on it
IMAGE_MARKS = (IMAGE_DONE, NO_OBJECTS)
JUDGED = ("confirmed", "corrected", "false_positive")
SAME_OBJECT_IOU = 0.7
CARRY_IOU = 0.5
HUMAN, CARRIED = "human", "carried"
GOLD_SALT = "workbench-gold"
INSERT_CHUNK = 1000  # rows per multi-row INSERT (16 columns: well under that limit)


@dataclass(frozen=True)
class TruthBox:
    """One object (or negative region) of an image's ground truth, in pixel ``xyxy``."""

    kind: str  # "object" or "negative"
    cls: str | None  # the object's class; for a negative region, what the model took it for
    xyxy: tuple[float, float, float, float]
    annotation_id: str
    detection_id: str | None
    extractor_key: str | None  # the version whose detection or image document was reviewed
    author: str
    created_at: datetime
    label: str  # the annotation's label (confirmed, corrected, missed, false_positive)


@dataclass(frozen=True)
class ImageTruth:
    """One image's ground truth: its state, object boxes, negative regions and gold flag."""

    object_id: str
    state: str
    objects: tuple[TruthBox, ...]
    negatives: tuple[TruthBox, ...]
    done_annotation_id: str | None
    gold: bool = False


def box_iou(boxes_a: Sequence[Sequence[float]], boxes_b: Sequence[Sequence[float]]
            ) -> np.ndarray:
    """Pairwise IoU of two lists of pixel ``xyxy`` boxes, shape ``(len(a), len(b))``."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(boxes_a: Sequence[Sequence[float]], boxes_b: Sequence[Sequence[float]],
          threshold: float) -> list[tuple[int, int, float]]:
    """One-to-one pairs ``(i, j, iou)`` with IoU ≥ ``threshold``, best first (ties: lower
    indexes first, so the result does not depend on anything but the boxes' order)."""
    if not len(boxes_a) or not len(boxes_b):
        return []
    overlaps = box_iou(boxes_a, boxes_b)
    candidates = sorted(zip(*np.nonzero(overlaps >= threshold), strict=True),
                        key=lambda p: (-overlaps[p], p[0], p[1]))
    taken_a, taken_b, pairs = set(), set(), []
    for i, j in candidates:
        if i in taken_a or j in taken_b:
            continue
        taken_a.add(i)
        taken_b.add(j)
        pairs.append((int(i), int(j), float(overlaps[i, j])))
    return pairs


# -- deriving an image's ground truth (pure) -------------------------------------------------
def derive(object_id: str, annotations: Sequence[Any], detections: dict[str, Any]
           ) -> ImageTruth:
    """The ground truth of one image from its live human annotations.

    ``annotations``: rows with ``id, document_id, extractor_key, label, payload, author,
    created_at``; ``detections``: the detections they name, by id (``class_name, x1…y2``).
    """
    newest: dict[str, Any] = {}  # document → its newest verdict or mark
    missed = []
    for a in sorted(annotations, key=lambda a: (a.created_at, a.id)):
        if a.label == "missed":
            missed.append(a)
        elif a.label in JUDGED or a.label in IMAGE_MARKS:
            newest[(a.document_id, a.label in IMAGE_MARKS)] = a
    statements: list[TruthBox] = []
    for (document_id, is_mark), a in newest.items():
        if is_mark or document_id not in detections:
            continue
        det = detections[document_id]
        payload = a.payload or {}
        box = (det.x1, det.y1, det.x2, det.y2)
        if a.label == "corrected" and payload.get("bbox"):
            box = center_to_xyxy(payload["bbox"])
        kind = "negative" if a.label == "false_positive" else "object"
        # A negative region keeps the class the model wrongly saw there (hard-negative mining)
        cls = det.class_name if kind == "negative" else (payload.get("true_class") or
                                                          det.class_name)
        statements.append(TruthBox(kind, cls, _floats(box), a.id, document_id,
                                   a.extractor_key, a.author, a.created_at, a.label))
    for a in missed:
        statements.append(TruthBox("object", a.payload["true_class"],
                                   _floats(center_to_xyxy(a.payload["bbox"])), a.id, None,
                                   a.extractor_key, a.author, a.created_at, "missed"))
    objects = _one_per_object([s for s in statements if s.kind == "object"])
    negatives = tuple(s for s in statements if s.kind == "negative")
    marks = [a for (_, is_mark), a in newest.items() if is_mark]
    done = max(marks, key=lambda a: (a.created_at, a.id)) if marks else None
    state = "complete" if done is not None else ("partial" if annotations else "unreviewed")
    return ImageTruth(object_id, state, objects, negatives, done.id if done else None)


def _floats(box) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in box)  # type: ignore[return-value]


def _one_per_object(boxes: list[TruthBox]) -> tuple[TruthBox, ...]:
    """Newest first, a box is dropped when a kept box from *another* version's review shows
    the same object (same class, IoU ≥ SAME_OBJECT_IOU)."""
    kept: list[TruthBox] = []
    for box in sorted(boxes, key=lambda b: (b.created_at, b.annotation_id), reverse=True):
        same = [k for k in kept if k.cls == box.cls and k.extractor_key != box.extractor_key]
        if same and box_iou([box.xyxy], [k.xyxy for k in same]).max() >= SAME_OBJECT_IOU:
            continue
        kept.append(box)
    return tuple(sorted(kept, key=lambda b: (b.created_at, b.annotation_id)))


def gold_draw(sha256: str) -> float:
    """Where an image falls in [0, 1) for the gold draw: a pure function of its bytes."""
    digest = hashlib.sha256(f"{GOLD_SALT}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# -- keeping it in the store -----------------------------------------------------------------
def refresh(conn: sa.Connection, collection_id: str, object_ids: Iterable[str],
            gold_fraction: float = 0.2, gold_target: int = 50) -> dict[str, ImageTruth]:
    """Rewrite the ground truth of these images from their annotations and redraw every
    version's carried verdicts on them; runs in the caller's transaction."""
    object_ids = sorted(set(object_ids))
    if not object_ids:
        return {}
    a = t.annotations.c
    annotations = conn.execute(sa.select(t.annotations).where(
        a.collection_id == collection_id, a.object_id.in_(object_ids),
        a.deleted_at.is_(None), a.origin == HUMAN)).all()
    d = t.detections.c
    detections = conn.execute(sa.select(
        d.id, d.object_id, d.extractor_key, d.class_name, d.x1, d.y1, d.x2, d.y2)
        .where(d.collection_id == collection_id, d.object_id.in_(object_ids))
        .order_by(d.object_id, d.extractor_key, d.idx)).all()
    by_object: dict[str, list] = {o: [] for o in object_ids}
    for row in annotations:
        by_object[row.object_id].append(row)
    dets_by_object: dict[str, dict[str, Any]] = {o: {} for o in object_ids}
    for det in detections:
        dets_by_object[det.object_id][det.id] = det
    previous = {r.object_id: r for r in conn.execute(sa.select(t.image_truth).where(
        t.image_truth.c.collection_id == collection_id,
        t.image_truth.c.object_id.in_(object_ids)))}
    gold_count = None
    result = {}
    now = utcnow()
    states, boxes, carried = [], [], []
    for object_id in object_ids:
        dets = dets_by_object[object_id]
        truth = derive(object_id, by_object[object_id], dets)
        before = previous.get(object_id)
        gold = bool(before.gold) if before is not None else False
        decided = before is not None and before.gold_decided
        if truth.state == "complete" and not decided:
            if gold_count is None:
                gold_count = conn.execute(sa.select(sa.func.count()).select_from(
                    t.image_truth).where(t.image_truth.c.collection_id == collection_id,
                                         t.image_truth.c.gold.is_(True))).scalar_one()
            sha = conn.execute(sa.select(t.objects.c.sha256).where(
                t.objects.c.id == object_id)).scalar_one()
            gold = gold_count < gold_target and gold_draw(sha) < gold_fraction
            gold_count += gold
            decided = True
        states.append({"collection_id": collection_id, "object_id": object_id,
                       "state": truth.state, "objects": len(truth.objects),
                       "negatives": len(truth.negatives),
                       "done_annotation_id": truth.done_annotation_id, "gold": gold,
                       "gold_decided": decided, "updated_at": now})
        boxes += [{"collection_id": collection_id, "object_id": object_id, "kind": b.kind,
                   "class_name": b.cls, "x1": b.xyxy[0], "y1": b.xyxy[1], "x2": b.xyxy[2],
                   "y2": b.xyxy[3], "annotation_id": b.annotation_id,
                   "detection_id": b.detection_id, "extractor_key": b.extractor_key,
                   "label": b.label, "author": b.author, "created_at": b.created_at}
                  for b in (*truth.objects, *truth.negatives)]
        result[object_id] = ImageTruth(truth.object_id, truth.state, truth.objects,
                                       truth.negatives, truth.done_annotation_id, gold)
        carried += _carried(collection_id, object_id, truth, dets, by_object[object_id], now)
    # Every image's rows are rewritten with a few statements, whatever the number of images:
    # a bulk request refreshes its images once, together.
    conn.execute(t.truth_boxes.delete().where(
        t.truth_boxes.c.collection_id == collection_id,
        t.truth_boxes.c.object_id.in_(object_ids)))
    a = t.annotations.c
    conn.execute(t.annotations.delete().where(
        a.collection_id == collection_id, a.object_id.in_(object_ids), a.origin == CARRIED))
    upsert_image_truth(conn, states)
    for start in range(0, len(boxes), INSERT_CHUNK):
        conn.execute(t.truth_boxes.insert(), boxes[start:start + INSERT_CHUNK])
    for start in range(0, len(carried), INSERT_CHUNK):
        conn.execute(t.annotations.insert(), carried[start:start + INSERT_CHUNK])
    return result


def upsert_image_truth(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert or overwrite images' state rows. One ``INSERT … ON CONFLICT DO UPDATE`` on
    SQLite and Postgres: two transactions refreshing one image at once (two reviewers'
    verdicts on two boxes of it) both write, the later one last, instead of one failing on
    the primary key because neither saw the other's new row."""
    if not rows:
        return
    it = t.image_truth.c
    if conn.dialect.name in ("sqlite", "postgresql"):
        if conn.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        statement = insert(t.image_truth)
        given = statement.excluded
        # Many rows as parameters of one statement: compiled once and cached (a VALUES list
        # of a thousand rows was compiled anew on every call).
        conn.execute(statement.on_conflict_do_update(
            index_elements=[it.collection_id, it.object_id],
            set_={name: given[name] for name in rows[0]
                  if name not in ("collection_id", "object_id")}), rows)
        return
    for row in rows:  # another database: update, and insert what was not there
        keys = (it.collection_id == row["collection_id"], it.object_id == row["object_id"])
        if not conn.execute(t.image_truth.update().where(*keys).values(**row)).rowcount:
            conn.execute(t.image_truth.insert().values(**row))


def _carried(collection_id: str, object_id: str, truth: ImageTruth,
             detections: dict[str, Any], human: Sequence[Any], now: datetime
             ) -> list[dict[str, Any]]:
    """The carried verdicts of every version's detections on one image (the caller has
    deleted the previous ones)."""
    if truth.state == "unreviewed" or not detections:
        return []
    judged = {row.document_id for row in human if row.label in JUDGED}
    rows = []
    by_version: dict[str, list[Any]] = {}
    for det in detections.values():
        if det.id not in judged:
            by_version.setdefault(det.extractor_key, []).append(det)
    negatives = list(truth.negatives)
    for key, dets in by_version.items():
        # An object a person established on one of this version's own boxes is that box's:
        # another box of the version on it is a duplicate, not a match.
        own = {d.id for d in detections.values() if d.extractor_key == key}
        objects = [o for o in truth.objects if o.detection_id not in own]
        boxes = [(d.x1, d.y1, d.x2, d.y2) for d in dets]
        # every box against every negative region at once (not a call per box)
        on_negatives = box_iou(boxes, [n.xyxy for n in negatives]) if negatives else None
        matched = {}
        for i, j, iou in match(boxes, [o.xyxy for o in objects], CARRY_IOU):
            matched[i] = (objects[j], iou)
        for i, det in enumerate(dets):
            if i in matched:
                source, iou = matched[i]
                label = "confirmed" if source.cls == det.class_name else "corrected"
                payload = {"true_class": source.cls, "carried_from": source.annotation_id,
                           "iou": round(iou, 4)}
                reason = f"carried: IoU {iou:.2f} with a {source.cls} of the ground truth"
            else:
                overlap = float(on_negatives[i].max()) if negatives else 0.0
                if overlap >= CARRY_IOU:
                    source = negatives[int(on_negatives[i].argmax())]  # the first best
                    reason = f"carried: IoU {overlap:.2f} with a region marked false positive"
                    iou = float(overlap)
                elif truth.state == "complete":
                    source, iou = None, 0.0
                    reason = "carried: not in the ground truth of a complete image"
                else:
                    continue  # unknown: a person decides
                label = "false_positive"
                payload = {"carried_from": source.annotation_id if source else
                           truth.done_annotation_id, "iou": round(iou, 4)}
            payload["predicted_class"] = det.class_name
            rows.append({"id": new_id("ann"), "document_id": det.id,
                         "collection_id": collection_id, "object_id": object_id,
                         "extractor_key": key, "label": label, "confidence": None,
                         "reasoning": reason, "payload": payload, "retriever_id": None,
                         "execution_id": None, "author": f"carry:{key}", "revision": 1,
                         "origin": CARRIED, "created_at": now, "updated_at": now})
    return rows


# -- reading ---------------------------------------------------------------------------------
class TruthService:
    """Ground truth, image states, carried verdicts and the gold set of a workspace."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db

    def refresh(self, collection: str, object_ids: Iterable[str] | None = None,
                known_only: bool = False) -> int:
        """Recompute ground truth and carried verdicts (every image of the collection that
        has annotations or a ground truth, or these; with ``known_only``, those of these that
        have); returns how many images. A batch run calls it for the images it processed, so
        that a new version's boxes on reviewed images are carried over."""
        target = self.wb.collections.get(collection)
        settings = self.wb.settings
        if object_ids is None or known_only:
            with self.db.read() as conn:
                known = {*conn.execute(sa.select(t.annotations.c.object_id).distinct()
                                       .where(t.annotations.c.collection_id == target.id)
                                       ).scalars(),
                         *conn.execute(sa.select(t.image_truth.c.object_id).where(
                             t.image_truth.c.collection_id == target.id)).scalars()}
            object_ids = known if object_ids is None else known & set(object_ids)
        object_ids = sorted(set(object_ids))
        for start in range(0, len(object_ids), 200):
            with self.db.write() as conn:
                refresh(conn, target.id, object_ids[start:start + 200],
                        settings.gold_fraction, settings.gold_target)
        return len(object_ids)

    def set_gold(self, collection: str, object_ids: Sequence[str], gold: bool = True) -> int:
        """Put images into the gold set (or take them out) by hand; returns how many
        changed. An image put in is never exported for training from then on (one that was
        exported before has been trained on: choose images nobody has exported)."""
        target = self.wb.collections.get(collection)
        it = t.image_truth.c
        with self.db.write() as conn:
            rows = conn.execute(sa.select(it.object_id, it.state).where(
                it.collection_id == target.id, it.object_id.in_(list(object_ids)))).all()
            unknown = sorted(set(object_ids) - {r.object_id for r in rows})
            if unknown:
                raise ValidationError(f"{unknown[0]!r} has no ground truth in {target.name!r} "
                                      "yet: complete it in image review first")
            return conn.execute(t.image_truth.update().where(
                it.collection_id == target.id, it.object_id.in_(list(object_ids)),
                it.gold.is_not(gold)).values(gold=gold, gold_decided=True,
                                             updated_at=utcnow())).rowcount

    def image(self, collection: str, object_id: str) -> ImageTruth:
        """One image's ground truth (``unreviewed`` and empty when it has none)."""
        target = self.wb.collections.get(collection)
        return self.images(target.id, [object_id])[object_id]

    def images(self, collection_id: str, object_ids: Sequence[str] | None = None,
               states: Sequence[str] | None = None, gold: bool | None = None
               ) -> dict[str, ImageTruth]:
        """Ground truth of images (those given, or every image with a state row)."""
        it, tb = t.image_truth.c, t.truth_boxes.c
        query = sa.select(t.image_truth).where(it.collection_id == collection_id)
        if states is not None:
            query = query.where(it.state.in_(list(states)))
        if gold is not None:
            query = query.where(it.gold.is_(gold))
        # Named images go a few hundred to a query, the boxes of all of them through a
        # subquery: one IN list of every complete image failed past SQLite's variable limit.
        if object_ids is None:
            parts = [(query, sa.select(t.truth_boxes).where(
                tb.collection_id == collection_id,
                tb.object_id.in_(query.with_only_columns(it.object_id))))]
        else:
            named = list(object_ids)
            parts = [(query.where(it.object_id.in_(chunk)), sa.select(t.truth_boxes).where(
                tb.collection_id == collection_id, tb.object_id.in_(chunk)))
                for chunk in in_lists(named)]
        rows, boxes = {}, []
        with self.db.read() as conn:
            for images, their_boxes in parts:
                rows.update((r.object_id, r) for r in conn.execute(images.order_by(it.object_id)))
                boxes += conn.execute(their_boxes).all()
        rows = dict(sorted(rows.items()))
        grouped: dict[str, list[TruthBox]] = {o: [] for o in rows}
        for b in boxes:
            grouped[b.object_id].append(TruthBox(
                b.kind, b.class_name, (b.x1, b.y1, b.x2, b.y2), b.annotation_id,
                b.detection_id, b.extractor_key, b.author, as_utc(b.created_at), b.label))
        found = {o: ImageTruth(o, r.state, tuple(b for b in grouped[o] if b.kind == "object"),
                               tuple(b for b in grouped[o] if b.kind == "negative"),
                               r.done_annotation_id, bool(r.gold)) for o, r in rows.items()}
        for object_id in object_ids or ():
            found.setdefault(object_id, ImageTruth(object_id, "unreviewed", (), (), None))
        return found

    def counts(self, collection: str) -> dict[str, int]:
        """Images per state, and the gold set's size."""
        target = self.wb.collections.get(collection)
        it = t.image_truth.c
        with self.db.read() as conn:
            rows = conn.execute(sa.select(it.state, sa.func.count()).where(
                it.collection_id == target.id).group_by(it.state)).all()
            gold = conn.execute(sa.select(sa.func.count()).select_from(t.image_truth).where(
                it.collection_id == target.id, it.gold.is_(True),
                it.state == "complete")).scalar_one()
        counts = dict.fromkeys(STATES[1:], 0) | {state: n for state, n in rows}
        return {**counts, "gold": gold}
