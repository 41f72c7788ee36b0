"""Image review: whole images, ranked by how much the model stands to learn from them, each
finished in one pass (every pre-drawn box judged, every missed object drawn, the image
marked done) so that it becomes complete ground truth.

**The queue** holds the images a version processed that are not complete yet. Each gets a
score from what the model did on it:

- *uncertainty* — the sum over its detections of ``1 - |2c - 1|`` (a box at 0.5 counts 1, one
  at 0.95 counts 0.1), scaled by the largest in the queue;
- *disagreement* — where another version processed the image too, the share of either
  version's boxes that the other does not match (IoU ≥ 0.5, same class);
- *strangeness* — how unlike every box people confirmed or corrected its most unusual box is
  (one minus the largest cosine similarity of detection embeddings), scaled by the largest
  in the queue: an object of a class nobody has labelled yet (a star the model calls a
  triangle) stands out;

and the queue is drawn greedily, adding *novelty and diversity*: each pick maximises its
score plus how far its image embedding is from every complete image and every image picked
before it (one minus the largest cosine similarity, scaled by the largest such distance left
in the queue). An image the model found nothing on
scores no uncertainty, but a night scene unlike anything reviewed is far from everything:
it comes up. Ties go to the image's content hash, so the same data gives the same queue.

Past :data:`POOL` open images the queue ranks a pool rather than all of them — the most
uncertain ones (``documents.uncertainty``, stored with each document and indexed) and a
sample of the others — and compares against the most recently completed images and
confirmed boxes only, so that it reads the same few thousand rows and vectors at a thousand
images and at a million detections. It says so: ``ranked_from`` beside the exact
``remaining``, in the result and in the logged execution.

**A pass** is what the Review page, the CLI's ``annotate --bulk`` and the simulated reviewer
all write: one annotation per action (``confirmed``, ``corrected``, ``false_positive`` on the
version's boxes, ``missed`` for each drawn box), with the queue's execution as provenance,
then ``image_done`` (or ``no_objects`` for an image with nothing on it). Boxes the ground
truth already settles (carried verdicts) are shown as known and need no action.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from workbench.errors import ValidationError
from workbench.leases import LeaseService
from workbench.references import normalise
from workbench.store import tables as t
from workbench.store.metadata import in_lists, new_id, utcnow
from workbench.truth import IMAGE_DONE, NO_OBJECTS, match

if TYPE_CHECKING:
    from workbench import Workbench

IMAGE_EMBEDDING = "image_embedding"
QUEUE_NAME = "image-review"
# Past POOL open images the queue ranks a bounded pool, so that it costs the same at a
# thousand images and at a million detections: the POOL most uncertain and SAMPLE others.
# Novelty is measured against the COVERED most recently completed images, strangeness
# against the KNOWN most recently confirmed or corrected boxes. The ranking's cost is two
# products of 1,024-d vectors, the pool's boxes by KNOWN and its images by COVERED: with
# 2,000 + 500 images and 5,000 of each (the first sizes tried) a queue took 2-3 s on two
# cores at 100k detections; these sizes take 0.4-0.7 s at 1M.
POOL = 1_000
SAMPLE = 250
SAMPLE_WINDOWS = 4  # id windows of SAMPLE documents read at most to find the sample
COVERED = 2_000
KNOWN = 500
NEAREST_ROWS = 2_048  # query rows per similarity block (2,048 x 2,000 floats = 16 MB)


@dataclass(frozen=True)
class RankedImage:
    """One image of the queue, with the parts of its score."""

    object_id: str
    document_id: str
    score: float
    uncertainty: float
    disagreement: float
    novelty: float
    detections: int
    state: str


@dataclass(frozen=True)
class ImageQueue:
    """The next images to review, the execution logged for them, and how many open ones remain."""

    execution_id: str
    extractor_key: str
    images: list[RankedImage]
    remaining: int  # images of this version that are not complete (exact)
    # how many of them were ranked: all, or (past POOL) the most uncertain and a sample
    ranked_from: int = 0
    sampled: int = 0  # of ranked_from, how many are the sample (0: not cut)

    @property
    def cut(self) -> bool:
        """Whether a pool was ranked rather than every open image."""
        return self.ranked_from < self.remaining


class ImageReviewService:
    """The image review queue, disagreements with the ground truth, and whole-image passes."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db

    def queue(self, collection: str, version: str | None = None, limit: int = 20,
              exclude: Sequence[str] = (), reviewer: str | None = None) -> ImageQueue:
        """The next ``limit`` images to finish, best first; ``exclude`` takes out images
        (object ids) skipped in this session. The run is logged as a retriever execution.
        With a ``reviewer``, images leased to someone else are left out (and out of
        ``remaining``) and the returned images' documents are leased to the reviewer
        (:mod:`workbench.leases`); an image another reviewer leased between the read and
        the lease is dropped from the page.

        Up to :data:`POOL` open images are all ranked. Beyond that a bounded pool is ranked —
        the :data:`POOL` most uncertain (from the stored ``documents.uncertainty``, indexed)
        and a sample of :data:`SAMPLE` others (:meth:`_sample`) — so that the queue reads
        what it ranks, not the workspace: every open image's detections and embeddings at a
        million detections took a minute. The uncertainty term, the largest one included, is
        the same either way (the most uncertain images are all in the pool); what the cut
        can miss is an image that is only novel or only disagreed on, outside the sample.
        A document whose uncertainty was never stored (NULL: rows written directly, not by
        a detection run or migration 0011) can only come in through the sample.
        ``remaining`` stays exact and ``ranked_from`` says how many were ranked."""
        import time

        if not isinstance(limit, int) or limit < 1:
            raise ValidationError(f"limit must be a positive integer, got {limit!r}")
        started = time.perf_counter()
        wb = self.wb
        target = wb.collections.get(collection)
        chosen = wb.registry.get(target.extractor_name, version or target.active_version)
        skipped = set(exclude)
        if reviewer is not None:
            skipped |= self._leased_elsewhere(target, reviewer)
        d = t.documents.c
        with self.db.read() as conn:
            total, completed = self._counts(conn, target, chosen)
            skipped_open = len(self._open_documents(conn, target, chosen, skipped))
            remaining = total - completed - skipped_open
            sampled = 0
            if remaining <= POOL:
                candidates = [r for r in self._open_documents(conn, target, chosen)
                              if r.object_id not in skipped]
            else:
                top = conn.execute(self._open_query(target, chosen)
                                   .where(d.uncertainty.is_not(None))
                                   .order_by(d.uncertainty.desc())
                                   .limit(POOL + len(skipped))).all()
                candidates = [r for r in top if r.object_id not in skipped][:POOL]
                sample = self._sample(conn, target, chosen, completed,
                                      skipped | {r.object_id for r in candidates})
                sampled = len(sample)
                candidates += sample
            ids = [r.object_id for r in candidates]
            dets = [row for chunk in in_lists(ids) for row in conn.execute(sa.select(
                t.detections.c.id, t.detections.c.embedding_id, t.detections.c.object_id,
                t.detections.c.extractor_key, t.detections.c.class_name,
                t.detections.c.confidence, t.detections.c.x1, t.detections.c.y1,
                t.detections.c.x2, t.detections.c.y2).where(
                    t.detections.c.collection_id == target.id,
                    t.detections.c.object_id.in_(chunk)))]
            it = t.image_truth.c
            states = {o: s for chunk in in_lists(ids) for o, s in conn.execute(
                sa.select(it.object_id, it.state).where(it.collection_id == target.id,
                                                        it.object_id.in_(chunk)))}
            covered = self._covered(conn, target, chosen)
            known = self._known(conn, target, chosen)
        ranked = self._rank(chosen, candidates, dets, covered, states, limit, known)
        if reviewer is not None:
            held = set(LeaseService(self.db, wb.settings.lease_ttl_s).acquire(
                target.id, [r.document_id for r in ranked], reviewer))
            ranked = [r for r in ranked if r.document_id in held]
        execution_id = self._log(target, chosen, ranked, remaining, len(candidates), sampled,
                                 (time.perf_counter() - started) * 1000)
        return ImageQueue(execution_id, chosen.key, ranked, remaining, len(candidates),
                          sampled)

    def _leased_elsewhere(self, target, reviewer: str) -> set[str]:
        """Images (object ids) whose document someone other than ``reviewer`` holds."""
        d, lease = t.documents.c, t.leases.c
        with self.db.read() as conn:  # from the leases: a handful, not every document
            return set(conn.execute(sa.select(d.object_id).select_from(t.leases.join(
                t.documents, d.id == lease.document_id)).where(
                    lease.collection_id == target.id, lease.holder != reviewer,
                    lease.expires_at > utcnow())).scalars())

    def _counts(self, conn, target, chosen) -> tuple[int, int]:
        """The version's images, and how many of them are complete: two index counts (the
        complete ones are what people finished, not the workspace)."""
        d, it = t.documents.c, t.image_truth.c
        total = conn.execute(sa.select(sa.func.count()).select_from(t.documents).where(
            d.collection_id == target.id, d.extractor_key == chosen.key)).scalar_one()
        completed = conn.execute(sa.select(sa.func.count()).select_from(t.image_truth).join(
            t.documents, sa.and_(d.collection_id == it.collection_id,
                                 d.object_id == it.object_id, d.extractor_key == chosen.key))
            .where(it.collection_id == target.id, it.state == "complete")).scalar_one()
        return total, completed

    def _open_query(self, target, chosen):
        """The version's documents whose image is not complete, with the image's hash."""
        d, it = t.documents.c, t.image_truth.c
        complete = sa.select(it.object_id).where(
            it.collection_id == d.collection_id, it.object_id == d.object_id,
            it.state == "complete").exists()
        return (sa.select(d.id, d.object_id, t.objects.c.sha256)
                .join(t.objects, t.objects.c.id == d.object_id)
                .where(d.collection_id == target.id, d.extractor_key == chosen.key, ~complete))

    def _open_documents(self, conn, target, chosen, object_ids=None) -> list:
        """Open documents of the version (of ``object_ids`` only, when given)."""
        if object_ids is None:
            return conn.execute(self._open_query(target, chosen)).all()
        return [row for chunk in in_lists(sorted(object_ids)) for row in conn.execute(
            self._open_query(target, chosen).where(t.documents.c.object_id.in_(chunk)))]

    def _sample(self, conn, target, chosen, completed: int, taken: set[str]) -> list:
        """Up to :data:`SAMPLE` open images not ``taken`` (by the uncertainty cut), so that
        one the model found nothing on — unlike anything reviewed — can still come up: the
        documents from a point in id order on, wrapping around. Document ids are hashes
        (:func:`workbench.detection.document_id`), so consecutive ids are a uniform sample;
        the point is a hash of how many images are complete, so the sample is the same for
        the same data and moves on as images are finished.

        The window is read from the id index alone and filtered after (a few windows at
        most, whatever the workspace holds): asked in one query, SQLite took the version's
        index and sorted all of its documents by id (1.3 s at a million detections)."""
        if SAMPLE <= 0:
            return []
        d = t.documents.c
        digest = hashlib.sha256(f"sample:{target.id}:{chosen.key}:{completed}".encode())
        pivot = f"doc_{digest.hexdigest()[:20]}"
        found: list = []
        after, wrapped = d.id >= pivot, False
        for _ in range(SAMPLE_WINDOWS):
            query = sa.select(d.id).where(after).order_by(d.id).limit(SAMPLE)
            window = list(conn.execute(query.where(d.id < pivot) if wrapped else query)
                          .scalars())
            found += [row for chunk in in_lists(window) for row in conn.execute(
                self._open_query(target, chosen).where(d.id.in_(chunk)))
                if row.object_id not in taken]
            if len(found) >= SAMPLE:
                break
            if len(window) < SAMPLE:  # the end of the ids: on from the start, up to the pivot
                if wrapped:
                    break
                after, wrapped = sa.true(), True
            else:
                after = d.id > window[-1]
        return found[:SAMPLE]

    def _covered(self, conn, target, chosen) -> list[str]:
        """Documents of the :data:`COVERED` most recently completed images: novelty is
        distance from what people reviewed lately (the reviewed set grows with the
        reviewing; a queue that read all of it would again grow with the workspace)."""
        d, it = t.documents.c, t.image_truth.c
        return list(conn.execute(sa.select(d.id).select_from(t.image_truth).join(
            t.documents, sa.and_(d.collection_id == it.collection_id,
                                 d.object_id == it.object_id, d.extractor_key == chosen.key))
            .where(it.collection_id == target.id, it.state == "complete")
            .order_by(it.updated_at.desc()).limit(COVERED)).scalars())

    def _known(self, conn, target, chosen) -> list[str]:
        """Embedding ids of the :data:`KNOWN` most recently confirmed or corrected boxes of
        the version: strangeness is distance from these. The newest verdicts per label come
        from the annotations' (collection, label, time) index and only then their boxes: in
        one join SQLite walks the version's detections instead."""
        a, det = t.annotations.c, t.detections.c
        newest = sorted((row for label in ("confirmed", "corrected") for row in conn.execute(
            sa.select(a.document_id, a.created_at).where(
                a.collection_id == target.id, a.label == label, a.extractor_key == chosen.key,
                a.deleted_at.is_(None)).order_by(a.created_at.desc()).limit(KNOWN))),
            key=lambda row: row.created_at, reverse=True)[:KNOWN]
        boxes = list(dict.fromkeys(row.document_id for row in newest))
        # By id alone: with the collection named as well, SQLite walked the collection's
        # detections for 500 ids (4.7 s at a million detections).
        return [i for chunk in in_lists(boxes) for i in conn.execute(
            sa.select(det.embedding_id).where(det.id.in_(chunk),
                                              det.embedding_id.is_not(None))).scalars()]

    def disagreements(self, collection: str, version: str | None = None, limit: int = 20
                      ) -> list[dict[str, Any]]:
        """Complete images on which ``version`` disagrees with the ground truth, most
        disagreements first: its boxes carried over as false positives or with another
        class, and the objects none of its boxes found (IoU ≥ 0.5)."""
        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        truths = self.wb.truth.images(target.id, states=("complete",))
        if not truths:
            return []
        a, d, doc = t.annotations.c, t.detections.c, t.documents.c
        # In chunks: one IN list of every complete image fails past SQLite's variable limit.
        verdicts: dict[str, list] = {}
        found: dict[str, list] = {}
        documents: dict[str, str] = {}
        with self.db.read() as conn:
            for chunk in in_lists(sorted(truths)):
                for v in conn.execute(sa.select(a.object_id, a.label).where(
                        a.collection_id == target.id, a.extractor_key == chosen.key,
                        a.deleted_at.is_(None), a.object_id.in_(chunk),
                        a.label.in_(("corrected", "false_positive")))):
                    verdicts.setdefault(v.object_id, []).append(v.label)
                for box in conn.execute(sa.select(d.object_id, d.x1, d.y1, d.x2, d.y2).where(
                        d.collection_id == target.id, d.extractor_key == chosen.key,
                        d.object_id.in_(chunk))):
                    found.setdefault(box.object_id, []).append((box.x1, box.y1, box.x2, box.y2))
                documents.update(conn.execute(sa.select(doc.object_id, doc.id).where(
                    doc.collection_id == target.id, doc.extractor_key == chosen.key,
                    doc.object_id.in_(chunk))).all())
        rows = []
        for object_id, truth in truths.items():
            if object_id not in documents:
                continue  # this version has not run on it
            wrong = verdicts.get(object_id, [])
            matched = match(found.get(object_id, []), [o.xyxy for o in truth.objects], 0.5)
            row = {"object_id": object_id, "document_id": documents[object_id],
                   "false_positives": wrong.count("false_positive"),
                   "wrong_class": wrong.count("corrected"),
                   "missed": len(truth.objects) - len(matched)}
            row["total"] = row["false_positives"] + row["wrong_class"] + row["missed"]
            if row["total"]:
                rows.append(row)
        rows.sort(key=lambda r: (-r["total"], r["object_id"]))
        return rows[:limit]

    def open_images(self, collection: str, version: str | None = None) -> list[Any]:
        """Every image ``version`` processed that is not complete: rows with ``object_id``,
        ``document_id`` and ``sha256``, in no particular order."""
        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        d, it = t.documents.c, t.image_truth.c
        complete = sa.select(it.object_id).where(it.collection_id == target.id,
                                                 it.state == "complete")
        with self.db.read() as conn:
            return conn.execute(
                sa.select(d.object_id, d.id.label("document_id"), t.objects.c.sha256)
                .join(t.objects, t.objects.c.id == d.object_id)
                .where(d.collection_id == target.id, d.extractor_key == chosen.key,
                       d.object_id.not_in(complete))).all()

    def _rank(self, chosen, candidates, dets, covered: list[str], states, limit: int,
              known: list[str]) -> list[RankedImage]:
        if not candidates:
            return []
        strangeness = self._strangeness(chosen, [d for d in dets
                                                 if d.extractor_key == chosen.key], known)
        by_image: dict[str, dict[str, list]] = {}
        for det in dets:
            by_image.setdefault(det.object_id, {}).setdefault(det.extractor_key, []).append(det)
        uncertainty, disagreement, counts = [], [], []
        for row in candidates:
            versions = by_image.get(row.object_id, {})
            own = versions.get(chosen.key, [])
            counts.append(len(own))
            uncertainty.append(sum(1 - abs(2 * det.confidence - 1) for det in own))
            others = [boxes for key, boxes in versions.items() if key != chosen.key]
            disagreement.append(max((_disagreement(own, other) for other in others),
                                    default=0.0))
        uncertainty = _scaled(uncertainty)
        unlike = _scaled([max((strangeness.get(d.id, 0.0) for d in
                               by_image.get(row.object_id, {}).get(chosen.key, [])), default=0.0)
                          for row in candidates])
        base = uncertainty + np.asarray(disagreement) + unlike
        embeddings = self._embeddings(chosen, [r.id for r in candidates] + covered)
        near = np.zeros(len(candidates))  # the largest similarity to what is covered
        vectors = None
        if embeddings:
            dim = len(next(iter(embeddings.values())))
            vectors = normalise(np.stack([embeddings.get(r.id, np.zeros(dim, "float32"))
                                          for r in candidates]))
            reviewed = [embeddings[i] for i in covered if i in embeddings]
            if reviewed:
                near = np.clip(_nearest(vectors, normalise(np.stack(reviewed))), 0, 1)
        # each image's place in the order of its hashed content hash
        tiebreak = np.argsort(np.argsort([hashlib.sha256(f"queue:{r.sha256}".encode())
                                          .hexdigest() for r in candidates]))
        picked: list[int] = []
        chosen_rows: list[RankedImage] = []
        available = np.ones(len(candidates), dtype=bool)
        while available.any() and len(picked) < limit:
            # Image embeddings sit close together (cosines of 0.9 and more), so distance is
            # scaled by the largest one left: the most novel image scores 1, like the most
            # uncertain one.
            distance = 1 - near
            novelty = distance / max(float(distance[available].max()), 1e-9)
            # the best score left; among equal ones, the largest tiebreak
            score = np.where(available, base + novelty, -np.inf)
            ties = np.flatnonzero(score == score.max())
            best = int(ties[np.argmax(tiebreak[ties])])
            available[best] = False
            picked.append(best)
            row = candidates[best]
            chosen_rows.append(RankedImage(
                row.object_id, row.id, round(float(base[best] + novelty[best]), 4),
                round(float(uncertainty[best]), 4), round(float(disagreement[best]), 4),
                round(float(novelty[best]), 4), counts[best],
                states.get(row.object_id, "unreviewed")))
            if vectors is not None:
                # einsum, not BLAS: a threaded matrix-vector product on a busy machine costs
                # more in thread hand-offs than in arithmetic (15 ms here against 0.3 ms)
                near = np.maximum(near, np.clip(np.einsum("ij,j->i", vectors, vectors[best]),
                                                0, 1))
        return chosen_rows

    def _strangeness(self, chosen, dets, known: list[str]) -> dict[str, float]:
        """Per detection, how unlike every box people confirmed or corrected it is (one minus
        the largest cosine similarity of the detection embeddings): an object of a class
        nobody has labelled yet — a star the model calls a triangle — stands out."""
        if not known or not dets or not any(
                f.feature_name == "detection_embedding" for f in chosen.spec.embeddings):
            return {}
        uri = chosen.feature_uri("detection_embedding")
        vectors = self.wb.vectors.get_by_id(uri, [d.embedding_id for d in dets
                                                  if d.embedding_id] + list(known))
        labelled = [vectors[k] for k in known if k in vectors]
        if not labelled:
            return {}
        reference = normalise(np.stack(labelled))
        found = [d for d in dets if d.embedding_id in vectors]
        if not found:
            return {}
        queries = normalise(np.stack([vectors[d.embedding_id] for d in found]))
        nearest = _nearest(queries, reference)
        return {d.id: float(1 - s) for d, s in zip(found, nearest, strict=True)}

    def _embeddings(self, chosen, document_ids: list[str]) -> dict[str, np.ndarray]:
        if not any(f.feature_name == IMAGE_EMBEDDING for f in chosen.spec.embeddings):
            return {}
        return self.wb.vectors.get_by_id(chosen.feature_uri(IMAGE_EMBEDDING), document_ids)

    def _log(self, target, chosen, ranked: list[RankedImage], matched: int,
             ranked_from: int, sampled: int, ms: float) -> str:
        """The queue's run, logged like any retriever execution (provenance of the pass)."""
        retriever = self.wb.retrievers.image_review(target.name)
        execution_id = new_id("exe")
        with self.db.write() as conn:
            conn.execute(t.retriever_executions.insert().values(
                id=execution_id, retriever_id=retriever.id,
                inputs={"limit": len(ranked), "version": chosen.key, "matched": matched,
                        "ranked_from": ranked_from, "sampled": sampled},
                result_ids=[r.document_id for r in ranked],
                stage_ms={"rank": round(ms, 2), "total": round(ms, 2)}, created_at=utcnow()))
        return execution_id

    def finish(self, collection: str, document_id: str, actions: Sequence[dict[str, Any]],
               execution_id: str | None = None, reasoning: str = "",
               author: str | None = None, rest: str = "reject") -> list[str]:
        """One pass over an image, in one transaction: ``actions`` are annotations (with
        ``document_id`` and ``label``, and ``payload``), then the image is marked done
        (``no_objects`` when nothing is on it). The version's boxes that no action and no
        carried verdict judged are the ``rest``: ``"reject"``ed (false positives: the image's
        objects are what was accepted and drawn) or ``"accept"``ed (a ``confirmed`` verdict
        each, written with the mark). Returns the annotation ids."""
        if rest not in ("accept", "reject"):
            raise ValidationError(f"rest must be 'accept' or 'reject', got {rest!r}")
        target = self.wb.collections.get(collection)
        retriever = self.wb.retrievers.image_review(target.name)
        provenance = {"collection_id": target.id, "retriever_id": retriever.id,
                      "execution_id": execution_id, "author": author}
        actions = list(actions)
        if rest == "accept":
            judged = {a["document_id"] for a in actions}
            actions += [{"document_id": d, "label": "confirmed", "payload": {},
                         "reasoning": "accepted with the image"}
                        for d in self.open_boxes(target.id, document_id) if d not in judged]
        operations = [{"op": "create", "reasoning": reasoning, **provenance, **a}
                      for a in actions]
        objects = [a for a in actions if a["label"] in ("confirmed", "corrected", "missed")]
        mark = IMAGE_DONE if objects or self._known_objects(target.id, document_id) \
            else NO_OBJECTS
        operations.append({"op": "create", "document_id": document_id, "label": mark,
                           "payload": {}, "reasoning": reasoning, **provenance})
        return self.wb.annotations.apply_all(operations)

    def open_boxes(self, collection_id: str, document_id: str) -> list[str]:
        """The detections of an image document's version that nobody (and no carried
        verdict) has judged yet: what an image-review pass still has to settle."""
        a, d = t.annotations.c, t.detections.c
        settled = sa.select(a.document_id).where(a.document_id == d.id,
                                                 a.deleted_at.is_(None)).exists()
        with self.db.read() as conn:
            return list(conn.execute(sa.select(d.id).where(
                d.collection_id == collection_id, d.document_id == document_id, ~settled)
                .order_by(d.idx)).scalars())

    def _known_objects(self, collection_id: str, document_id: str) -> bool:
        with self.db.read() as conn:
            object_id = conn.execute(sa.select(t.documents.c.object_id).where(
                t.documents.c.id == document_id)).scalar()
            return bool(conn.execute(sa.select(sa.func.count()).select_from(t.truth_boxes)
                                     .where(t.truth_boxes.c.collection_id == collection_id,
                                            t.truth_boxes.c.object_id == object_id,
                                            t.truth_boxes.c.kind == "object")).scalar_one())


def _nearest(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per query row, its largest dot product with a reference row, a block of rows at a
    time: the whole product for a pool's boxes against the known ones is gigabytes."""
    return np.concatenate([(queries[i:i + NEAREST_ROWS] @ reference.T).max(axis=1)
                           for i in range(0, len(queries), NEAREST_ROWS)]
                          or [np.zeros(0)])


def _scaled(values) -> np.ndarray:
    """Values divided by the largest (all zero stays zero)."""
    values = np.asarray(values, dtype=np.float64)
    top = values.max() if values.size else 0.0
    return values / top if top > 0 else values


def _disagreement(boxes: list, other: list) -> float:
    """The share of the two versions' boxes that the other version does not match."""
    if not boxes and not other:
        return 0.0
    pairs = match([(b.x1, b.y1, b.x2, b.y2) for b in boxes],
                  [(b.x1, b.y1, b.x2, b.y2) for b in other], 0.5)
    agreed = sum(1 for i, j, _ in pairs if boxes[i].class_name == other[j].class_name)
    return 1 - 2 * agreed / (len(boxes) + len(other))
