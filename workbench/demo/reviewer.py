"""A simulated reviewer: an oracle that answers the review queue from ShapeWorld ground truth.

Tests and the loop benchmark use it in place of a person; the app never does. It pages through
a collection's review queue (or through unreviewed detections in random order) and writes the
verdict a careful annotator would give, with the page's retriever and execution as provenance::

    truth = GroundTruth.for_demo(wb)
    SimulatedReviewer(wb, truth).review("shapeworld", budget=100)

Images are matched to their ground truth by the sha256 of the image file's bytes, which is
how ingested objects are identified (``ImageObject.sha256``).

A detection's verdict comes from a greedy one-to-one matching of *all* the image's
detections (of the reviewed version) to its ground-truth boxes, best IoU first, so that a
verdict does not depend on which page a detection came up on:

- IoU >= ``iou``, same class: ``confirmed``; other class: ``corrected`` with the true class;
- ``0.1 <= IoU < iou``: ``corrected`` with the true class and the ground-truth box;
- no free ground-truth box at IoU >= 0.1: ``false_positive`` (background, or a duplicate of
  an object another box matches better).

The first time it looks at an image it also records a ``missed`` annotation on the image
document for each ground-truth box that no detection of that version overlaps at IoU >=
``iou``, unless a ``missed`` annotation (by anyone) already covers that box.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.annotations import MAX_BULK
from workbench.boxes import XYXY, xyxy_to_center
from workbench.errors import NotFoundError, ValidationError
from workbench.truth import NO_OBJECTS, box_iou, match

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.domain import Collection
    from workbench.retrievers import Execution, Hit, Retriever

GtBox = tuple[str, XYXY]
PARTIAL_IOU = 0.1  # below this overlap a box is not "the same object, drawn badly"
STRATEGIES = ("queue", "random", "plan")
IMAGE_ORDERS = ("ranked", "random")
COUNTS = ("reviewed", "confirmed", "corrected", "false_positive", "missed", "images_checked",
          "skipped_unknown", "actions")
# The review plan: shares of a session's budget for images the model found nothing on and for
# the spot-check of confident detections; the rest goes to the uncertainty queue.
REVIEW_PLAN = {"images": 0.2, "spot_check": 0.2}


def random_stages() -> list[dict[str, Any]]:
    """Unreviewed detections of any confidence, uniformly shuffled by ``INPUT.seed``."""
    return [
        {"stage_name": "unreviewed", "stage_type": "filter", "config": {"filters": {"AND": [
            {"field": "annotation.label", "operator": "exists", "value": False}]}}},
        {"stage_name": "shuffled", "stage_type": "sort",
         "config": {"by": "random", "seed": "{{INPUT.seed|0}}"}},
        {"stage_name": "page", "stage_type": "limit", "config": {"limit": "{{INPUT.limit|20}}"}},
    ]


# -- pure matching ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """What the oracle says about one detection."""

    label: str  # confirmed, corrected or false_positive
    true_class: str | None = None
    box: XYXY | None = None  # the ground-truth box, when the detection's box is redrawn
    iou: float = 0.0  # with the matched ground-truth box (the best overlap, when unmatched)
    truth_index: int | None = None


def judge(detections: Sequence[tuple[str, Sequence[float]]], truth: Sequence[GtBox],
          iou: float = 0.5) -> list[Verdict]:
    """Verdicts for all the detections ``(class, xyxy)`` of one image, in their order.

    Greedy one-to-one matching, best IoU first (a same-class pair wins a tie), so that a
    ground-truth box is claimed by at most one detection.
    """
    overlaps = box_iou([box for _, box in detections], [box for _, box in truth])
    pairs = sorted(
        zip(*np.nonzero(overlaps >= PARTIAL_IOU), strict=True),
        key=lambda p: (-overlaps[p], detections[p[0]][0] != truth[p[1]][0], p[0], p[1]))
    verdicts: dict[int, Verdict] = {}
    claimed: set[int] = set()
    for i, j in pairs:
        if i in verdicts or j in claimed:
            continue
        claimed.add(j)
        value = float(overlaps[i, j])
        true_class, box = truth[j]
        if value >= iou:
            label = "confirmed" if detections[i][0] == true_class else "corrected"
            verdicts[i] = Verdict(label, true_class, None, value, int(j))
        else:
            verdicts[i] = Verdict("corrected", true_class, tuple(box), value, int(j))
    best = overlaps.max(axis=1) if truth else np.zeros(len(detections))
    return [verdicts.get(i) or Verdict("false_positive", iou=float(best[i]))
            for i in range(len(detections))]


def uncovered(detection_boxes: Sequence[Sequence[float]], truth: Sequence[GtBox],
              iou: float = 0.5) -> list[int]:
    """Indexes of the ground-truth boxes that no detection (any class) overlaps at ``iou``."""
    if not truth:
        return []
    if not detection_boxes:
        return list(range(len(truth)))
    best = box_iou(detection_boxes, [box for _, box in truth]).max(axis=0)
    return [j for j in range(len(truth)) if best[j] < iou]


# -- ground truth ----------------------------------------------------------------------------
class GroundTruth:
    """Ground-truth boxes ``(class, xyxy)`` per image, keyed by the sha256 of its bytes."""

    def __init__(self, images: Mapping[str, Iterable[tuple[str, Sequence[float]]]]):
        self._images: dict[str, list[GtBox]] = {
            sha: [(str(cls), tuple(float(v) for v in box)) for cls, box in boxes]
            for sha, boxes in images.items()}

    @classmethod
    def from_datasets(cls, folders: Iterable[Path]) -> GroundTruth:
        """Read the ``annotations.json`` of each ShapeWorld data set folder."""
        images: dict[str, list[GtBox]] = {}
        for folder in folders:
            folder = Path(folder)
            index = folder / "annotations.json"
            if not index.is_file():
                raise NotFoundError(f"{folder} is not a ShapeWorld data set: it has no "
                                    "annotations.json (write one with shapeworld.write_dataset)")
            for record in json.loads(index.read_text()):
                image = folder / record["file"]
                if not image.is_file():
                    raise NotFoundError(f"{index} lists {record['file']}, which is not in "
                                        f"{folder}; regenerate the data set")
                sha = hashlib.sha256(image.read_bytes()).hexdigest()
                images[sha] = [(o["class"], tuple(o["xyxy"])) for o in record["objects"]]
        return cls(images)

    @classmethod
    def for_demo(cls, wb: Workbench) -> GroundTruth:
        """Every demo part under ``<workspace>/demo/shapeworld``."""
        root = wb.home / "demo" / "shapeworld"
        folders = sorted(p for p in root.iterdir() if (p / "annotations.json").is_file()
                         ) if root.is_dir() else []
        if not folders:
            raise NotFoundError(f"no ShapeWorld ground truth under {root}; load the demo "
                                "first (`workbench demo`, or Load demo workspace in the app)")
        return cls.from_datasets(folders)

    def boxes(self, sha256: str) -> list[GtBox] | None:
        """The image's boxes, or None when the image is not in the ground truth."""
        found = self._images.get(sha256)
        return None if found is None else list(found)

    def __len__(self) -> int:
        return len(self._images)

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._images


# -- the reviewer ----------------------------------------------------------------------------
class SimulatedReviewer:
    """Answers review pages from ground truth, writing annotations as ``author``."""

    _count_drawn, _empty_images = False, 0

    def __init__(self, wb: Workbench, truth: GroundTruth, author: str = "oracle",
                 iou: float = 0.5):
        if not PARTIAL_IOU < iou <= 1:
            raise ValidationError(f"iou must be in ({PARTIAL_IOU}, 1], got {iou!r}")
        self.wb = wb
        self.truth = truth
        self.author = author
        self.iou = iou
        self._truth_by_object: dict[str, list[GtBox] | None] = {}

    def review_images(self, collection: str, budget: int, order: str = "ranked",
                      version: str | None = None, seed: int = 0) -> dict[str, Any]:
        """Finish whole images until ``budget`` reviewer actions are spent (each verdict and
        each drawn box is one; an image with nothing on it costs one), as a person does in
        image review: the boxes of the version that the ground truth does not settle yet are
        judged (the minority, right or wrong, one by one; the rest with the done mark), every
        object no box covers is drawn, and the image is marked done.

        ``order``: ``"ranked"`` takes the image-review queue (the same one the Review page
        shows); ``"random"`` takes images that are not complete in an order fixed by
        ``seed`` (the baseline). The image that crosses the budget is finished all the same.
        """
        if order not in IMAGE_ORDERS:
            raise ValidationError(f"order {order!r} is not one of {', '.join(IMAGE_ORDERS)}")
        if not isinstance(budget, int) or budget < 0:
            raise ValidationError(f"budget must be a non-negative integer, got {budget!r}")
        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        counts = dict.fromkeys(COUNTS, 0) | {"images_completed": 0}
        skipped: list[str] = []
        executions: list[str] = []
        shuffled = None
        if order == "random":
            shuffled = sorted(self.wb.image_review.open_images(target.name, chosen.version),
                              key=lambda r: hashlib.sha256(f"{seed}:{r.sha256}".encode()
                                                           ).digest())
        while counts["actions"] < budget:
            if shuffled is None:
                queue = self.wb.image_review.queue(target.name, chosen.version, limit=1,
                                                   exclude=skipped)
                executions.append(queue.execution_id)
                images, execution_id = queue.images, queue.execution_id
            else:
                images, execution_id = shuffled[:1], None
                shuffled = shuffled[1:]
            if not images:
                break
            image = images[0]
            if self._truth_of(image.object_id) is None:
                skipped.append(image.object_id)
                counts["skipped_unknown"] += 1
                continue
            self._finish(target, chosen, image, execution_id, counts)
        return {**counts, "executions": executions}

    def _finish(self, target: Collection, chosen, image, execution_id: str | None,
                counts: dict[str, int]) -> None:
        """One image-review pass over ``image`` (with ``object_id`` and ``document_id``) from
        the oracle's truth."""
        truth = self._truth_of(image.object_id)
        known = self.wb.truth.image(target.name, image.object_id)
        detections = self.wb.detection.detections(target, chosen.key,
                                                  object_ids=[image.object_id])
        settled = set(self.wb.annotations.latest_by_document(
            target.id, [d.id for d in detections]))
        open_dets = [d for d in detections if d.id not in settled]
        # Objects people (or this oracle, earlier) established already are not drawn again.
        claimed = {j for _, j, _ in match([b.xyxy for b in known.objects],
                                          [box for _, box in truth], self.iou)}
        free = [j for j in range(len(truth)) if j not in claimed]
        verdicts = judge([(d.class_name, d.xyxy) for d in open_dets],
                         [truth[j] for j in free], self.iou)
        # The boxes that are right and those that are wrong: the fewer are judged one by
        # one, the others all at once when the image is marked done (accept or reject the
        # rest), as a person with both buttons would.
        right = sum(v.label == "confirmed" for v in verdicts)
        wrong = sum(v.label == "false_positive" for v in verdicts)
        rest = "accept" if right >= wrong else "reject"
        implicit = "confirmed" if rest == "accept" else "false_positive"
        actions = []
        for det, verdict in zip(open_dets, verdicts, strict=True):
            counts[verdict.label] += 1
            if verdict.label == implicit:
                continue
            hit = _AsHit(det.class_name)
            actions.append({"document_id": det.id, **_verdict_fields(hit, verdict)})
            counts["reviewed"] += 1
        used = {free[v.truth_index] for v in verdicts if v.truth_index is not None}
        for j in free:
            if j in used:
                continue
            cls, box = truth[j]
            actions.append({"document_id": image.document_id, "label": "missed",
                            "payload": {"true_class": cls, "bbox": xyxy_to_center(box)},
                            "reasoning": f"simulated reviewer: this {cls} has no box"})
            counts["missed"] += 1
        self.wb.image_review.finish(target.name, image.document_id, actions, execution_id,
                                    "simulated reviewer: every object on the image is boxed",
                                    self.author, rest=rest)
        counts["actions"] += len(actions) or 1
        counts["images_completed"] += 1

    def true_class(self, detection_id: str) -> str | None:
        """What the oracle says a detection is: the class of the ground-truth box it overlaps
        best at IoU ≥ ``iou``, or None (background)."""
        det = self.wb.detection.get(detection_id)
        truth = self._truth_of(det.object_id) or []
        if not truth:
            return None
        overlaps = box_iou([det.xyxy], [box for _, box in truth])[0]
        best = int(overlaps.argmax())
        return truth[best][0] if overlaps[best] >= self.iou else None

    def review(self, collection: str, budget: int, strategy: str = "queue",
               version: str | None = None, seed: int = 0, page_size: int = 20,
               plan: Mapping[str, float] | None = None,
               count_drawn: bool = False) -> dict[str, Any]:
        """Review up to ``budget`` items of ``collection`` and annotate them.

        ``strategy``:

        - ``"queue"`` pages through the collection's uncertainty queue (``<collection>:review``);
        - ``"random"`` through its unreviewed detections in an order shuffled by ``seed``
          (retriever ``<collection>:random``) — the baseline;
        - ``"plan"`` is the review plan the Review page offers: shares of the budget (``plan``,
          default ``REVIEW_PLAN``) go to images the model found nothing on (each image looked
          over costs one), to the spot-check of confident detections, and the rest to the
          uncertainty queue; what one part cannot spend passes to the next.

        Detection verdicts and images looked over count towards the budget; ``missed`` boxes
        are extra, unless ``count_drawn`` (then the budget is in reviewer actions, as in
        :meth:`review_images`: every verdict and every drawn box is one). Detections of images the ground truth does not know are skipped and counted
        in ``skipped_unknown``. Stops early when every queue runs dry.
        """
        if strategy not in STRATEGIES:
            raise ValidationError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
        if not isinstance(budget, int) or budget < 0:
            raise ValidationError(f"budget must be a non-negative integer, got {budget!r}")
        if not isinstance(page_size, int) or page_size < 1:
            raise ValidationError(f"page_size must be a positive integer, got {page_size!r}")
        target = self.wb.collections.get(collection)
        counts = dict.fromkeys(COUNTS, 0)
        executions: list[str] = []
        looked_at: set[str] = set()  # image documents whose missed boxes are settled
        self._count_drawn, self._empty_images = count_drawn, 0
        if strategy != "plan":
            self._detections(target, self._retriever(target, strategy), budget, version, seed,
                             page_size, strategy == "random", looked_at, counts, executions)
            return self._spent(counts, executions)
        shares = dict(REVIEW_PLAN if plan is None else plan)
        if set(shares) - {"images", "spot_check"} or sum(shares.values()) > 1 or any(
                v < 0 for v in shares.values()):
            raise ValidationError(f"plan takes shares 'images' and 'spot_check' that add up to "
                                  f"at most 1, got {shares!r}")
        spent = self._images(target, round(budget * shares.get("images", 0)), version, seed,
                             counts)
        spent += self._detections(
            target, self.wb.retrievers.spot_check(target.name),
            round(budget * shares.get("spot_check", 0)) + round(
                budget * shares.get("images", 0)) - spent, version, seed, page_size, True,
            looked_at, counts, executions)
        self._detections(target, self.wb.retrievers.review_queue(target.name), budget - spent,
                         version, seed, page_size, False, looked_at, counts, executions)
        return self._spent(counts, executions)

    def _spent(self, counts: dict[str, int], executions: list[str]) -> dict[str, Any]:
        """The counts with ``actions``: every verdict, every drawn box, and every image
        marked as having nothing on it."""
        counts["actions"] = counts["reviewed"] + counts["missed"] + self._empty_images
        return {**counts, "executions": executions}

    def _detections(self, target: Collection, retriever: Retriever, budget: int,
                    version: str | None, seed: int, page_size: int, seeded: bool,
                    looked_at: set[str], counts: dict[str, int], executions: list[str]) -> int:
        """Page through one detection retriever for up to ``budget`` verdicts; returns how
        many were given."""
        skipped: set[str] = set()  # detections of unknown images: they stay in the queue
        given = 0
        page_number = 0
        while given < budget:
            wanted = min(page_size, budget - given)
            # Skipped detections stay unreviewed, so ask for that many more each page.
            inputs: dict[str, Any] = {"limit": wanted + len(skipped)}
            if seeded:
                inputs["seed"] = f"{seed}/{page_number}"
            execution = self.wb.retrievers.execute(retriever.name, inputs, version)
            executions.append(execution.id)
            fresh = [h for h in execution.hits if h.detection_id not in skipped]
            if not fresh:
                break
            page = []
            for hit in fresh:
                if self._truth_of(hit.object_id) is None:
                    skipped.add(hit.detection_id)
                else:
                    page.append(hit)
            if page:
                before = counts["reviewed"] + (counts["missed"] if self._count_drawn else 0)
                self._answer(target, execution, page[:wanted], looked_at, counts)
                given += counts["reviewed"] + (counts["missed"] if self._count_drawn
                                               else 0) - before
            page_number += 1
        counts["skipped_unknown"] += len(skipped)
        return given

    def _images(self, target: Collection, budget: int, version: str | None, seed: int,
                counts: dict[str, int]) -> int:
        """Look over up to ``budget`` images on which the model found nothing: a ``missed``
        box for each object, or ``no_objects``. Returns how many images were looked over."""
        if budget <= 0:
            return 0
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        operations = []
        looked = 0
        for image in self.wb.retrievers.images_to_check(target.name, version,
                                                        limit=budget * 2, seed=seed):
            truth = self._truth_of(image.object_id)
            if truth is None:
                counts["skipped_unknown"] += 1
                continue
            common = {"document_id": image.document_id, "collection_id": target.id,
                      "author": self.author}
            for cls, box in truth:
                operations.append({"op": "create", "label": "missed",
                                   "payload": {"true_class": cls, "bbox": xyxy_to_center(box)},
                                   "reasoning": f"simulated reviewer: {chosen.key} found "
                                                f"nothing here; this {cls} has no box",
                                   **common})
                counts["missed"] += 1
            if not truth:
                self._empty_images += 1
                operations.append({"op": "create", "label": NO_OBJECTS, "payload": {},
                                   "reasoning": "simulated reviewer: looked over, no object",
                                   **common})
            looked += max(1, len(truth)) if self._count_drawn else 1
            counts["images_checked"] += 1
            if looked >= budget:
                break
        self._write(operations)
        return looked

    def _retriever(self, target: Collection, strategy: str) -> Retriever:
        if strategy == "queue":
            return self.wb.retrievers.review_queue(target.name)
        return self.wb.retrievers.save(
            f"{target.name}:random", target.name, random_stages(),
            "Unreviewed detections in seeded random order (simulated reviewer baseline)",
            replace=True)

    def _truth_of(self, object_id: str) -> list[GtBox] | None:
        if object_id not in self._truth_by_object:
            sha = self.wb.buckets.get_object(object_id).sha256
            self._truth_by_object[object_id] = self.truth.boxes(sha)
        return self._truth_by_object[object_id]

    def _answer(self, target: Collection, execution: Execution, page: list[Hit],
                looked_at: set[str], counts: dict[str, int]) -> None:
        """Judge one page against each image's detections and write it in bulk."""
        object_ids = sorted({hit.object_id for hit in page})
        image_detections: dict[str, list] = {object_id: [] for object_id in object_ids}
        for det in self.wb.detection.detections(target, execution.extractor_key,
                                                object_ids=object_ids):
            image_detections[det.object_id].append(det)
        verdicts: dict[str, Verdict] = {}
        for object_id, dets in image_detections.items():
            judged = judge([(d.class_name, d.xyxy) for d in dets], self._truth_of(object_id),
                           self.iou)
            verdicts.update(zip((d.id for d in dets), judged, strict=True))
        provenance = {"collection_id": target.id, "retriever_id": execution.retriever_id,
                      "execution_id": execution.id, "author": self.author}
        operations = []
        for hit in page:
            verdict = verdicts[hit.detection_id]
            operations.append({"op": "create", "document_id": hit.detection_id,
                               **_verdict_fields(hit, verdict), **provenance})
            counts["reviewed"] += 1
            counts[verdict.label] += 1
            if hit.document_id not in looked_at:
                looked_at.add(hit.document_id)
                for cls, box in self._missed(target, hit.object_id, hit.document_id,
                                             image_detections[hit.object_id]):
                    operations.append({
                        "op": "create", "document_id": hit.document_id, "label": "missed",
                        "payload": {"true_class": cls, "bbox": xyxy_to_center(box)},
                        "reasoning": f"simulated reviewer: this {cls} has no box", **provenance})
                    counts["missed"] += 1
        self._write(operations)

    def _write(self, operations: list[dict[str, Any]]) -> None:
        for start in range(0, len(operations), MAX_BULK):
            chunk = operations[start:start + MAX_BULK]
            refused = [r for r in self.wb.annotations.bulk(chunk) if not r.ok]
            if refused:
                raise ValidationError(
                    f"the simulated reviewer's annotation for "
                    f"{chunk[refused[0].index]['document_id']} was refused: {refused[0].error}")

    def _missed(self, target: Collection, object_id: str, image_document_id: str,
                dets: list) -> list[GtBox]:
        """Ground-truth boxes no detection covers and no earlier ``missed`` records."""
        truth = self._truth_of(object_id) or []
        # A box already given to a detection as its correction is not missed as well: the
        # export would then hold the object twice.
        claimed = {v.truth_index for v in judge([(d.class_name, d.xyxy) for d in dets], truth,
                                                self.iou) if v.truth_index is not None}
        missing = [truth[j] for j in uncovered([d.xyxy for d in dets], truth, self.iou)
                   if j not in claimed]
        if not missing:
            return []
        recorded = [a.box_xyxy for a in self.wb.annotations.list(
            collection_id=target.id, document_id=image_document_id, label="missed",
            limit=1000).items if a.box_xyxy]
        if not recorded:
            return missing
        seen = box_iou([box for _, box in missing], recorded).max(axis=1)
        return [gt for gt, overlap in zip(missing, seen, strict=True) if overlap < self.iou]


@dataclass(frozen=True)
class _AsHit:
    """What ``_verdict_fields`` reads of a hit: the predicted class."""

    class_name: str


def _verdict_fields(hit: Hit, verdict: Verdict) -> dict[str, Any]:
    """Label, payload and a one-line reason for one detection's annotation."""
    if verdict.label == "false_positive":
        reason = ("no object here" if verdict.iou < PARTIAL_IOU else
                  "duplicate: the object it overlaps is matched by a better box")
        return {"label": "false_positive", "payload": {},
                "reasoning": f"simulated reviewer: {reason} (best IoU {verdict.iou:.2f})"}
    payload: dict[str, Any] = {"true_class": verdict.true_class}
    if verdict.box is not None:
        payload["bbox"] = xyxy_to_center(verdict.box)
    what = f"IoU {verdict.iou:.2f} with a {verdict.true_class}"
    if verdict.label == "corrected" and verdict.box is not None:
        what += ", box redrawn"
    elif verdict.label == "corrected":
        what += f", not a {hit.class_name}"
    return {"label": verdict.label, "payload": payload,
            "reasoning": f"simulated reviewer: {what}"}


__all__ = ["GroundTruth", "SimulatedReviewer", "Verdict", "box_iou", "judge", "random_stages",
           "uncovered"]
