"""Detection metrics: how well a detector's boxes agree with ground truth, and how two
detectors compare on the same truth.

Everything here is a pure function on plain data; the caller reads images, truth and
predictions from the workspace and builds :class:`EvalImage` and :class:`Box` values
(absolute pixel ``xyxy``, like the rest of the library).

What is computed, and by what:

* **AP** — ``map50``, ``map50_95`` and each class's ``ap50`` / ``ap50_95`` — by
  **pycocotools** (``COCOeval``, bbox, area range "all"). The COCO dictionaries are built in
  memory: images get ids 1..N in the order given, categories ids 1..K in the order of
  ``classes`` followed, sorted, by any class that only the truth or the predictions name.
  ``map50_95`` and ``map50`` are the same reductions of ``COCOeval.eval["precision"]`` that
  ``COCOeval.summarize`` reports as ``stats[0]`` and ``stats[1]`` (read from the array
  because ``stats[0]`` is hard-wired to 100 detections per image and would be -1 for any
  other ``max_dets``). COCO's "undefined" (-1, no truth boxes) becomes ``None``.
* **Per-class precision and recall** at IoU 0.5 and the confidence threshold that maximises
  F1, from greedy matching done here with COCOeval's own rule (same class, highest
  confidence first, each truth box taken once, the untaken one with the highest IoU ≥ the
  threshold wins, IoU by ``pycocotools.mask.iou``, at most ``max_dets`` boxes per image and
  class), so the counts are the ones COCOeval's precision-recall curve is built from.
* **Confusion matrix** (rows: truth class, columns: predicted class, plus "background") and
  **per-image outcomes** from the same matching at ``iou_match``, using only predictions
  with confidence ≥ ``conf``. The confusion matrix matches regardless of class, so a box
  given the wrong class lands off the diagonal; the per-image outcome matches within a
  class, so a wrong class counts as a false positive and a miss.

:func:`compare` sets two results on the same truth side by side; :func:`bootstrap` gives a
paired interval over images. Whether a comparison promotes a model is decided in
:mod:`workbench.evaluation`.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from workbench.errors import ValidationError

BACKGROUND = "background"


@dataclass(frozen=True)
class Box:
    """One box in absolute pixel ``xyxy``; ``confidence`` is ignored for ground truth."""

    cls: str
    xyxy: tuple[float, float, float, float]
    confidence: float = 1.0

    def __post_init__(self):
        if not isinstance(self.cls, str) or not self.cls:
            raise ValidationError(f"box class must be a non-empty string, got {self.cls!r}")
        try:
            x1, y1, x2, y2 = (float(v) for v in self.xyxy)
        except (TypeError, ValueError):
            raise ValidationError(
                f"box {self.cls!r}: xyxy must be four numbers (x1, y1, x2, y2), "
                f"got {self.xyxy!r}") from None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise ValidationError(f"box {self.cls!r}: xyxy has a non-finite value: {self.xyxy!r}")
        if x2 <= x1 or y2 <= y1:
            raise ValidationError(
                f"box {self.cls!r}: xyxy {self.xyxy!r} has no area; expected x1 < x2 and "
                "y1 < y2 in absolute pixels (is it centre x, y, w, h instead?)")
        confidence = float(self.confidence)
        if not math.isfinite(confidence):
            raise ValidationError(f"box {self.cls!r}: confidence must be finite, got "
                                  f"{self.confidence!r}")
        object.__setattr__(self, "xyxy", (x1, y1, x2, y2))
        object.__setattr__(self, "confidence", confidence)


@dataclass(frozen=True)
class EvalImage:
    """One evaluated image: its size in pixels and its ground-truth boxes."""

    image_id: str
    width: int
    height: int
    truth: tuple[Box, ...] = ()

    def __post_init__(self):
        if not isinstance(self.image_id, str) or not self.image_id:
            raise ValidationError(f"image_id must be a non-empty string, got {self.image_id!r}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValidationError(
                    f"image {self.image_id!r}: {name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "truth", tuple(self.truth))


@dataclass(frozen=True)
class ClassMetrics:
    """One class: COCO AP, precision and recall at the best-F1 threshold, and counts.

    ``threshold`` is the confidence at which ``precision`` and ``recall`` were read; values
    are ``None`` where undefined (no truth boxes: no AP or recall; no predictions: no
    precision). ``predictions`` counts every prediction of the class that was given.
    """

    cls: str
    ap50: float | None
    ap50_95: float | None
    precision: float | None
    recall: float | None
    threshold: float | None
    support: int
    predictions: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {"class": self.cls, "ap50": self.ap50, "ap50_95": self.ap50_95,
                "precision": self.precision, "recall": self.recall,
                "threshold": self.threshold, "support": self.support,
                "predictions": self.predictions}


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of truth class (row) against predicted class (column); the last label is
    "background": its row holds unmatched predictions, its column unmatched truth boxes."""

    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]

    def count(self, truth: str, predicted: str) -> int:
        """How many truth boxes of class ``truth`` were predicted as ``predicted``."""
        return self.counts[self.labels.index(truth)][self.labels.index(predicted)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {"labels": list(self.labels), "matrix": [list(row) for row in self.counts]}


@dataclass(frozen=True)
class ImageOutcome:
    """One image at ``iou_match`` and ``conf``: ``matched`` when every truth box was found by
    a prediction of its class and no other prediction was made."""

    image_id: str
    tp: int
    fp: int
    fn: int
    matched: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {"image_id": self.image_id, "tp": self.tp, "fp": self.fp, "fn": self.fn,
                "matched": self.matched}


@dataclass(frozen=True)
class EvalResult:
    """What :func:`evaluate` returns; ``to_dict`` gives a JSON-able copy."""

    map50: float | None
    map50_95: float | None
    per_class: tuple[ClassMetrics, ...]
    confusion: ConfusionMatrix
    per_image: tuple[ImageOutcome, ...]
    iou_match: float
    conf: float
    max_dets: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {"map50": self.map50, "map50_95": self.map50_95,
                "per_class": [m.to_dict() for m in self.per_class],
                "confusion": self.confusion.to_dict(),
                "per_image": [o.to_dict() for o in self.per_image],
                "iou_match": self.iou_match, "conf": self.conf, "max_dets": self.max_dets}


def evaluate(images: Sequence[EvalImage], predictions: Mapping[str, Sequence[Box]],
             classes: Sequence[str], iou_match: float = 0.5, *, conf: float = 0.25,
             max_dets: int = 100) -> EvalResult:
    """Evaluate ``predictions`` (image id → boxes) against the truth in ``images``.

    ``classes`` fixes the category order; classes that only the truth or the predictions
    name are appended (sorted), so nothing is dropped silently. ``iou_match`` and ``conf``
    apply to the confusion matrix and per-image outcomes only; AP comes from COCOeval at its
    usual IoU thresholds 0.50:0.95, with at most ``max_dets`` boxes per image and class.
    Raises :class:`ValidationError` for inconsistent input.
    """
    _check_arguments(images, predictions, classes, iou_match, conf, max_dets)
    categories = _categories(images, predictions, classes)
    ranked = {image.image_id: _ranked(predictions.get(image.image_id, ()), max_dets)
              for image in images}

    coco_eval = _run_cocoeval(images, predictions, categories, max_dets)
    # eval["precision"] is [iou threshold, recall threshold, category, area range, max dets];
    # area range 0 is "all", the last max-dets entry is max_dets, iouThrs[0] is exactly 0.5.
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    category_index = {name: coco_eval.params.catIds.index(cat_id)
                      for cat_id, name in enumerate(categories, start=1)}

    per_class = _class_metrics(images, predictions, ranked, categories, precision,
                               category_index)
    return EvalResult(
        map50=_mean_defined(precision[0]),
        map50_95=_mean_defined(precision),
        per_class=per_class,
        confusion=_confusion(images, ranked, categories, iou_match, conf),
        per_image=tuple(_image_outcome(image, ranked[image.image_id], iou_match, conf)
                        for image in images),
        iou_match=float(iou_match), conf=float(conf), max_dets=max_dets,
    )


class Delta(NamedTuple):
    """A metric for the base model, the candidate, and candidate minus base (``None`` when
    either side is undefined)."""

    base: float | None
    candidate: float | None
    delta: float | None


@dataclass(frozen=True)
class Comparison:
    """Two evaluations on the same truth side by side; ``per_class`` holds every class with
    truth boxes; ``regressions`` are images the base matched and the candidate does not,
    ``improvements`` the reverse (image ids in evaluation order)."""

    map50: Delta
    map50_95: Delta
    per_class: Mapping[str, Delta]
    regressions: tuple[str, ...]
    improvements: tuple[str, ...]


def compare(base: EvalResult, candidate: EvalResult) -> Comparison:
    """Compare a candidate model's evaluation with the base model's on the same truth.

    Raises :class:`ValidationError` when the two were evaluated on different images or
    different truth boxes, since their numbers would then not be comparable.
    """
    base_images = [o.image_id for o in base.per_image]
    candidate_images = [o.image_id for o in candidate.per_image]
    if set(base_images) != set(candidate_images):
        only_base = sorted(set(base_images) - set(candidate_images))[:5]
        only_candidate = sorted(set(candidate_images) - set(base_images))[:5]
        raise ValidationError(
            "base and candidate were evaluated on different images (only in base: "
            f"{only_base}, only in candidate: {only_candidate}); evaluate both on the same set")
    base_classes = {m.cls: m for m in base.per_class}
    candidate_classes = {m.cls: m for m in candidate.per_class}
    per_class = {}
    for name in [*base_classes, *(c for c in candidate_classes if c not in base_classes)]:
        before, after = base_classes.get(name), candidate_classes.get(name)
        support = (before.support if before else 0, after.support if after else 0)
        if support[0] != support[1]:
            raise ValidationError(
                f"class {name!r} has {support[0]} truth boxes in base but {support[1]} in "
                "candidate; evaluate both against the same ground truth")
        if support[0]:
            per_class[name] = _delta(before.ap50_95, after.ap50_95)

    base_matched = {o.image_id: o.matched for o in base.per_image}
    candidate_matched = {o.image_id: o.matched for o in candidate.per_image}
    return Comparison(
        map50=_delta(base.map50, candidate.map50),
        map50_95=_delta(base.map50_95, candidate.map50_95),
        per_class=per_class,
        regressions=tuple(i for i in base_images
                          if base_matched[i] and not candidate_matched[i]),
        improvements=tuple(i for i in base_images
                           if candidate_matched[i] and not base_matched[i]),
    )


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval over images: mAP50-95 of base and candidate, and of their
    difference on the same resampled images (paired), at ``level`` (0.95: the 2.5th and
    97.5th percentiles)."""

    base: tuple[float, float] | None
    candidate: tuple[float, float] | None
    delta: tuple[float, float] | None
    resamples: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {"base": self.base, "candidate": self.candidate, "delta": self.delta,
                "resamples": self.resamples, "level": self.level}


def bootstrap(images: Sequence[EvalImage], base: Mapping[str, Sequence[Box]],
              candidate: Mapping[str, Sequence[Box]], classes: Sequence[str],
              resamples: int = 500, level: float = 0.95, seed: int = 0,
              max_dets: int = 100) -> Interval:
    """Resample the images with replacement ``resamples`` times and read mAP50-95 of both
    predictions on each resample (the same images for both: a paired interval of the gain).

    COCOeval matches each image once; each resample only re-accumulates those per-image
    matches (pycocotools' ``accumulate``), so an interval costs little more than one
    evaluation.
    """
    if not 0 < level < 1:
        raise ValidationError(f"level must be in (0, 1), got {level!r}")
    if resamples < 1:
        raise ValidationError(f"resamples must be at least 1, got {resamples!r}")
    categories = list(dict.fromkeys([*_categories(images, base, classes),
                                     *_categories(images, candidate, classes)]))
    evals = [_run_cocoeval(images, predictions, categories, max_dets)
             for predictions in (base, candidate)]
    rng = np.random.default_rng(seed)
    n = len(images)
    values = np.full((resamples, 2), np.nan)
    for r in range(resamples):
        picks = rng.integers(0, n, size=n)
        for side, coco_eval in enumerate(evals):
            mean = _mean_defined(_reaccumulate(coco_eval, picks)[:, :, :, 0, -1])
            values[r, side] = np.nan if mean is None else mean
    tail = (1 - level) / 2 * 100

    def interval(column: np.ndarray) -> tuple[float, float] | None:
        column = column[~np.isnan(column)]
        if not column.size:
            return None
        low, high = np.percentile(column, [tail, 100 - tail])
        return float(low), float(high)

    return Interval(interval(values[:, 0]), interval(values[:, 1]),
                    interval(values[:, 1] - values[:, 0]), resamples, level)


def _reaccumulate(coco_eval: COCOeval, picks: np.ndarray) -> np.ndarray:
    """The precision array of ``coco_eval`` over the images ``picks`` (indexes into its
    images, repeats allowed), from its per-image matches."""
    import copy

    params = coco_eval.params
    n_images = len(params.imgIds)
    n_areas = len(params.areaRng)
    n_cats = len(params.catIds)
    resampled = copy.copy(coco_eval)
    resampled.params = copy.copy(params)
    resampled.params.imgIds = list(range(len(picks)))
    resampled._paramsEval = copy.copy(resampled.params)
    resampled.evalImgs = [coco_eval.evalImgs[k * n_areas * n_images + a * n_images + int(i)]
                          for k in range(n_cats) for a in range(n_areas) for i in picks]
    with contextlib.redirect_stdout(io.StringIO()):
        resampled.accumulate()
    return resampled.eval["precision"]


def _check_arguments(images, predictions, classes, iou_match, conf, max_dets) -> None:
    if not images:
        raise ValidationError("nothing to evaluate: images is empty; pass at least one "
                              "EvalImage")
    ids = [image.image_id for image in images]
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        raise ValidationError(f"image ids must be unique; repeated: {repeated[:5]}")
    unknown = sorted(set(predictions) - set(ids))
    if unknown:
        raise ValidationError(
            f"predictions name images that are not in images: {unknown[:5]}; every key "
            "must be the image_id of one EvalImage")
    if isinstance(classes, str):
        raise ValidationError(f"classes must be a sequence of names, got the string {classes!r}")
    repeated = sorted(c for c, n in Counter(classes).items() if n > 1)
    if repeated:
        raise ValidationError(f"classes must be unique; repeated: {repeated}")
    if not 0 < iou_match <= 1:
        raise ValidationError(f"iou_match must be in (0, 1], got {iou_match!r}")
    if not 0 <= conf <= 1:
        raise ValidationError(f"conf must be in [0, 1], got {conf!r}")
    if not isinstance(max_dets, int) or isinstance(max_dets, bool) or max_dets < 1:
        raise ValidationError(f"max_dets must be a positive integer, got {max_dets!r}")


def _categories(images, predictions, classes) -> list[str]:
    named = {box.cls for image in images for box in image.truth}
    named |= {box.cls for boxes in predictions.values() for box in boxes}
    categories = [*classes, *sorted(named - set(classes))]
    if BACKGROUND in categories:
        raise ValidationError(
            f"{BACKGROUND!r} cannot be a class name: the confusion matrix uses it for "
            "unmatched boxes; rename that class")
    return categories


def _ranked(boxes: Sequence[Box], max_dets: int) -> list[Box]:
    """Highest confidence first (stable, as COCOeval's mergesort), at most ``max_dets`` per
    class, so that every count here is over the boxes COCOeval saw."""
    kept, per_class = [], Counter()
    for box in sorted(boxes, key=lambda b: -b.confidence):
        if per_class[box.cls] < max_dets:
            kept.append(box)
            per_class[box.cls] += 1
    return kept


def _coco_bbox(box: Box) -> list[float]:
    """COCO's absolute top-left ``[x, y, w, h]``."""
    x1, y1, x2, y2 = box.xyxy
    return [x1, y1, x2 - x1, y2 - y1]


def _run_cocoeval(images, predictions, categories, max_dets) -> COCOeval:
    category_id = {name: i for i, name in enumerate(categories, start=1)}
    coco_images = [{"id": i, "width": image.width, "height": image.height}
                   for i, image in enumerate(images, start=1)]
    coco_categories = [{"id": i, "name": name} for name, i in category_id.items()]
    # Annotation ids start at 1: COCOeval stores matched ids and reads 0 as "unmatched".
    annotations = []
    detections = []
    for image_number, image in enumerate(images, start=1):
        for box in image.truth:
            bbox = _coco_bbox(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_number,
                                "category_id": category_id[box.cls], "bbox": bbox,
                                "area": bbox[2] * bbox[3], "iscrowd": 0})
        for box in predictions.get(image.image_id, ()):
            detections.append({"image_id": image_number, "category_id": category_id[box.cls],
                               "bbox": _coco_bbox(box), "score": box.confidence})

    # pycocotools reports progress on stdout; a library call must not print.
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": coco_images, "annotations": annotations,
                         "categories": coco_categories}
        truth.createIndex()
        if detections:
            results = truth.loadRes(detections)
        else:
            # loadRes cannot take an empty list (it reads the first entry's keys).
            results = COCO()
            results.dataset = {"images": coco_images, "annotations": [],
                               "categories": coco_categories}
            results.createIndex()
        coco_eval = COCOeval(truth, results, iouType="bbox")
        # COCOeval sorts maxDets and caps at the largest, so max_dets must be the largest:
        # [1, 10, 100] by default, [1, 5] for max_dets=5.
        coco_eval.params.maxDets = [*(d for d in (1, 10) if d < max_dets), max_dets]
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval


def _mean_defined(precision: np.ndarray) -> float | None:
    """COCOeval.summarize's reduction: the mean over entries that are not -1 (undefined)."""
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else None


def _match(truth: Sequence[Box], ranked: Sequence[Box], iou_threshold: float,
           same_class: bool) -> list[int | None]:
    """For each prediction (already highest confidence first), the index of the truth box it
    matched, or None. The rule is COCOeval.evaluateImg's, including its tie-break (a later
    box with equal IoU wins) and its cap just below 1 so that iou 1.0 still matches."""
    ious = _ious(ranked, truth)
    taken: set[int] = set()
    matches: list[int | None] = []
    for p, prediction in enumerate(ranked):
        best, chosen = min(iou_threshold, 1 - 1e-10), None
        for t, truth_box in enumerate(truth):
            if t in taken or (same_class and truth_box.cls != prediction.cls):
                continue
            if ious[p, t] < best:
                continue
            best, chosen = ious[p, t], t
        if chosen is not None:
            taken.add(chosen)
        matches.append(chosen)
    return matches


def _ious(ranked: Sequence[Box], truth: Sequence[Box]) -> np.ndarray:
    if not ranked or not truth:
        return np.zeros((len(ranked), len(truth)))
    # pycocotools' own IoU, so that matching here and in COCOeval agree to the last bit.
    return coco_mask.iou(np.array([_coco_bbox(b) for b in ranked]),
                         np.array([_coco_bbox(b) for b in truth]), [0] * len(truth))


def _class_metrics(images, predictions, ranked, categories, precision,
                   category_index) -> tuple[ClassMetrics, ...]:
    support = Counter(box.cls for image in images for box in image.truth)
    given = Counter(box.cls for boxes in predictions.values() for box in boxes)
    scored: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for image in images:
        boxes = ranked[image.image_id]
        for box, match in zip(boxes, _match(image.truth, boxes, 0.5, same_class=True)):
            scored[box.cls].append((box.confidence, match is not None))

    metrics = []
    for name in categories:
        k = category_index[name]
        best_precision, best_recall, threshold = _best_f1(scored[name], support[name])
        metrics.append(ClassMetrics(
            cls=name, ap50=_mean_defined(precision[0, :, k]),
            ap50_95=_mean_defined(precision[:, :, k]), precision=best_precision,
            recall=best_recall, threshold=threshold, support=support[name],
            predictions=given[name]))
    return tuple(metrics)


def _best_f1(scored: list[tuple[float, bool]], support: int
             ) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and the confidence threshold where F1 is highest.

    Only thresholds a user could set are tried: the cut falls after the last box of equal
    confidence. Ties in F1 go to the highest threshold.
    """
    if not scored:
        return None, (0.0 if support else None), None
    if not support:
        return 0.0, None, None
    scored = sorted(scored, key=lambda item: -item[0])
    best = (-1.0, 0.0, 0.0, None)
    true_positives = 0
    for i, (confidence, is_match) in enumerate(scored):
        true_positives += is_match
        if i + 1 < len(scored) and scored[i + 1][0] == confidence:
            continue
        precision = true_positives / (i + 1)
        recall = true_positives / support
        f1 = 2 * precision * recall / (precision + recall) if true_positives else 0.0
        if f1 > best[0]:
            best = (f1, precision, recall, confidence)
    return best[1], best[2], best[3]


def _confusion(images, ranked, categories, iou_match, conf) -> ConfusionMatrix:
    labels = (*categories, BACKGROUND)
    index = {name: i for i, name in enumerate(labels)}
    background = index[BACKGROUND]
    counts = np.zeros((len(labels), len(labels)), dtype=int)
    for image in images:
        kept = [box for box in ranked[image.image_id] if box.confidence >= conf]
        matches = _match(image.truth, kept, iou_match, same_class=False)
        for box, match in zip(kept, matches):
            row = background if match is None else index[image.truth[match].cls]
            counts[row, index[box.cls]] += 1
        for t in set(range(len(image.truth))) - set(matches):
            counts[index[image.truth[t].cls], background] += 1
    return ConfusionMatrix(labels=labels,
                           counts=tuple(tuple(int(v) for v in row) for row in counts))


def _image_outcome(image: EvalImage, ranked: list[Box], iou_match: float,
                   conf: float) -> ImageOutcome:
    kept = [box for box in ranked if box.confidence >= conf]
    tp = sum(m is not None for m in _match(image.truth, kept, iou_match, same_class=True))
    fp, fn = len(kept) - tp, len(image.truth) - tp
    return ImageOutcome(image_id=image.image_id, tp=tp, fp=fp, fn=fn,
                        matched=fp == 0 and fn == 0)


def _delta(base: float | None, candidate: float | None) -> Delta:
    if base is None or candidate is None:
        return Delta(base, candidate, None)
    return Delta(base, candidate, candidate - base)
