"""Model evaluation: how well a detector's boxes agree with ground truth, and whether a new
model version is good enough to replace the current one.

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

:func:`compare` sets two results on the same truth side by side; :func:`promotion_decision`
applies a :class:`Gate` to that comparison and says, in sentences, why it promotes or not.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from workbench.errors import ValidationError

BACKGROUND = "background"
# Float noise (0.80 - 0.75 = 0.05000000000000004) must not decide a gate check.
_GATE_TOLERANCE = 1e-9


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


@dataclass(frozen=True)
class Gate:
    """The bar a candidate must clear to replace the base model."""

    # The candidate must beat the base by at least this (absolute): the same bar as the CLI,
    # the Models page and the rules (0.0 here let the Python API promote what they refused).
    min_map50_95_gain: float = 0.01
    max_class_drop: float = 0.05  # no class's ap50_95 may drop by more than this

    def __post_init__(self):
        if not math.isfinite(self.min_map50_95_gain):
            raise ValidationError(
                f"min_map50_95_gain must be a finite number, got {self.min_map50_95_gain!r}")
        if not math.isfinite(self.max_class_drop) or self.max_class_drop < 0:
            raise ValidationError(
                f"max_class_drop must be a number ≥ 0, got {self.max_class_drop!r}")


@dataclass(frozen=True)
class Decision:
    """Whether to promote, and one sentence per check saying what passed or failed."""

    promote: bool
    reasons: list[str] = field(default_factory=list)


def promotion_decision(comparison: Comparison, gate: Gate,
                       interval: Interval | None = None) -> Decision:
    """Apply ``gate`` to ``comparison``: promote only when mAP50-95 rose by at least
    ``gate.min_map50_95_gain`` and no class's AP50-95 fell by more than
    ``gate.max_class_drop``. With a bootstrap ``interval``, the rise that counts is the lower
    bound of the gain's interval: a gain that a different sample of images could undo does
    not promote. Classes without truth boxes are not in the comparison."""
    reasons = []
    gain = comparison.map50_95.delta
    if gain is None:
        map_ok = False
        reasons.append("mAP50-95 is undefined for base or candidate (no truth boxes), "
                       "so no gain can be shown — failed")
    else:
        if round(gain, 3) > 0:
            change = f"rose by {gain:.3f}"
        elif round(gain, 3) < 0:
            change = f"fell by {-gain:.3f}"
        else:
            change = f"did not change ({gain:+.3f})"
        if interval is not None and interval.delta is not None:
            low, high = interval.delta
            map_ok = low >= gate.min_map50_95_gain - _GATE_TOLERANCE
            reasons.append(
                f"mAP50-95 {change}; its {interval.level:.0%} interval over images is "
                f"[{low:+.3f}, {high:+.3f}] and its lower bound needs ≥ "
                f"{gate.min_map50_95_gain:.3f} — {'passed' if map_ok else 'failed'}")
        else:
            map_ok = gain >= gate.min_map50_95_gain - _GATE_TOLERANCE
            reasons.append(f"mAP50-95 {change} (needs ≥ {gate.min_map50_95_gain:.3f}) — "
                           f"{'passed' if map_ok else 'failed'}")

    drops = {name: -d.delta for name, d in comparison.per_class.items()
             if d.delta is not None and d.delta < 0}
    too_large = {name: drop for name, drop in drops.items()
                 if drop > gate.max_class_drop + _GATE_TOLERANCE}
    for name, drop in sorted(too_large.items(), key=lambda item: -item[1]):
        reasons.append(f"class {name!r} dropped by {drop:.3f} "
                       f"(allowed ≤ {gate.max_class_drop:.3f}) — failed")
    if not too_large:
        if drops:
            worst = max(drops, key=drops.get)
            detail = f"largest drop: {worst!r} by {drops[worst]:.3f}"
        else:
            detail = "none dropped"
        reasons.append(f"no class dropped by more than {gate.max_class_drop:.3f} "
                       f"({detail}) — passed")
    return Decision(promote=map_ok and not too_large, reasons=reasons)


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


# -- the workspace side: truth from the ground truth, predictions from stored detections -----
def complete_images(wb, collection_id: str, gold: bool | None = True,
                    object_ids: Sequence[str] | None = None) -> list[EvalImage]:
    """Complete images with their ground truth, as evaluation images: the gold set (the
    default), the complete images outside it (``gold=False``) or every one (``None``)."""
    import sqlalchemy as sa

    from workbench.store import tables as t

    truths = wb.truth.images(collection_id, object_ids, states=("complete",), gold=gold)
    with wb.db.read() as conn:
        sizes = {r.id: (r.width, r.height) for r in conn.execute(sa.select(
            t.objects.c.id, t.objects.c.width, t.objects.c.height).where(
                t.objects.c.id.in_(list(truths))))} if truths else {}
    return [EvalImage(o, *sizes[o], tuple(Box(b.cls, b.xyxy) for b in truth.objects))
            for o, truth in sorted(truths.items())]


def held_out_images(wb, collection, candidate=None) -> tuple[list[str], str]:
    """Ids of the images every version is scored on (the gold set), and how they were
    chosen."""
    images = complete_images(wb, collection.id)
    return [i.image_id for i in images], "the gold set (complete images never trained on)"


class EvaluationService:
    """v1 against v2 on the gold set; results and promotions are kept."""

    def __init__(self, wb):
        self.wb = wb

    def _predictions(self, collection, key: str, object_ids: list[str]) -> dict[str, list[Box]]:
        found: dict[str, list[Box]] = {i: [] for i in object_ids}
        for det in self.wb.detection.detections(collection, key, object_ids=object_ids):
            found[det.object_id].append(Box(det.class_name, det.xyxy, det.confidence))
        return found

    def compare_versions(self, collection: str, base: str | None = None,
                         candidate: str | None = None, gate: Gate | None = None,
                         object_ids: list[str] | None = None,
                         resamples: int = 500) -> dict[str, Any]:
        """Evaluate both versions on the gold set (or the complete images given) with
        pycocotools, with a bootstrap interval over images beside every figure; compare,
        apply the gate on the gain's lower bound, store the evaluation and return it."""
        import sqlalchemy as sa

        from workbench.events import record_event
        from workbench.store import tables as t
        from workbench.store.metadata import new_id, utcnow

        wb = self.wb
        gate = gate or Gate()
        target = wb.collections.get(collection)
        versions = wb.registry.list(target.extractor_name)
        cand = wb.registry.get(target.extractor_name, candidate) if candidate else versions[-1]
        base_version = wb.registry.get(target.extractor_name, base or cand.parent_version or
                                       target.active_version)
        if base_version.key == cand.key:
            raise ValidationError(f"compare two different versions (both are {cand.key})")
        if object_ids is None:
            truth = complete_images(wb, target.id)
            chosen_by = "the gold set (complete images never trained on)"
        else:
            truth = complete_images(wb, target.id, None, object_ids)
            chosen_by = "complete images given by the caller"
        if not truth:
            raise ValidationError(
                f"nothing to evaluate on: {chosen_by} is empty; complete images in image "
                "review (a share of them is reserved for the gold set as they are done)")
        ids = [image.image_id for image in truth]
        for version in (base_version, cand):
            with wb.db.read() as conn:
                done = set(conn.execute(sa.select(t.documents.c.object_id).where(
                    t.documents.c.collection_id == target.id,
                    t.documents.c.extractor_key == version.key)).scalars())
            missing = [i for i in ids if i not in done]
            if missing:
                raise ValidationError(
                    f"{version.key} has not processed {len(missing)} of the "
                    f"{len(ids)} evaluation images; run `workbench detect "
                    f"{target.name} --version {version.version}` first")
        classes = list(dict.fromkeys([*base_version.classes, *cand.classes]))
        base_predictions = self._predictions(target, base_version.key, ids)
        cand_predictions = self._predictions(target, cand.key, ids)
        base_result = evaluate(truth, base_predictions, classes)
        cand_result = evaluate(truth, cand_predictions, classes)
        interval = bootstrap(truth, base_predictions, cand_predictions, classes, resamples)
        comparison = compare(base_result, cand_result)
        decision = promotion_decision(comparison, gate, interval)
        target_size = wb.settings.gold_target
        warning = (f"the gold set holds {len(ids)} image(s), under its target of "
                   f"{target_size}: the interval is wide; complete more images"
                   if object_ids is None and len(ids) < target_size else None)
        record = {
            "id": new_id("eval"), "collection_id": target.id, "base_key": base_version.key,
            "candidate_key": cand.key,
            "images": {"ids": ids, "chosen_by": chosen_by, "warning": warning,
                       "gold_target": target_size},
            "base": base_result.to_dict(), "candidate": cand_result.to_dict(),
            "comparison": {**_comparison_dict(comparison), "interval": interval.to_dict()},
            "decision": {"promote": decision.promote, "reasons": decision.reasons,
                         "gate": {"min_map50_95_gain": gate.min_map50_95_gain,
                                  "max_class_drop": gate.max_class_drop}},
            "created_at": utcnow(),
        }
        with wb.db.write() as conn:
            conn.execute(t.evaluations.insert().values(**record))
            record_event(conn, "evaluation.completed", {
                "evaluation_id": record["id"], "base": base_version.key,
                "candidate": cand.key, "promote": decision.promote,
                "map50_95": [base_result.map50_95, cand_result.map50_95],
                "interval": interval.delta})
        wb.registry.update_metrics(cand.name, cand.version, {
            f"gold_mAP50_vs_{base_version.version}": cand_result.map50,
            f"gold_mAP50_95_vs_{base_version.version}": cand_result.map50_95})
        return record

    def latest(self, collection: str) -> dict[str, Any] | None:
        import sqlalchemy as sa

        from workbench.store import tables as t

        target = self.wb.collections.get(collection)
        with self.wb.db.read() as conn:
            row = conn.execute(sa.select(t.evaluations).where(
                t.evaluations.c.collection_id == target.id).order_by(
                    t.evaluations.c.created_at.desc()).limit(1)).first()
        return dict(row._mapping) if row else None

    def promote(self, collection: str, version: str, override_reason: str | None = None,
                author: str | None = None) -> dict[str, Any]:
        """Make ``version`` active if its latest evaluation passed the gate, or when a reason
        for overriding the gate is given (kept with the promotion). Rolling back to an
        earlier version is a promotion too."""
        import sqlalchemy as sa

        from workbench.events import record_event
        from workbench.store import tables as t
        from workbench.store.metadata import new_id, utcnow

        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version)
        with self.wb.db.read() as conn:
            evaluation = conn.execute(sa.select(t.evaluations).where(
                t.evaluations.c.collection_id == target.id,
                t.evaluations.c.candidate_key == chosen.key).order_by(
                    t.evaluations.c.created_at.desc()).limit(1)).first()
        passed = bool(evaluation and evaluation.decision["promote"])
        if not passed and not (override_reason and override_reason.strip()):
            why = "; ".join(evaluation.decision["reasons"]) if evaluation else \
                "it has not been evaluated (workbench evaluate)"
            raise ValidationError(f"{chosen.key} did not pass the promotion gate ({why}); "
                                  "give a reason to override it")
        promotion = {"id": new_id("prm"), "collection_id": target.id,
                     "from_version": target.active_version, "to_version": chosen.version,
                     "evaluation_id": evaluation.id if evaluation else None,
                     "override_reason": None if passed else override_reason.strip(),
                     "author": author or self.wb.annotations.default_author,
                     "created_at": utcnow()}
        with self.wb.db.write() as conn:
            conn.execute(t.promotions.insert().values(**promotion))
            conn.execute(t.collections.update().where(t.collections.c.id == target.id)
                         .values(active_version=chosen.version))
            record_event(conn, "model.promoted", {k: v for k, v in promotion.items()
                                                  if k != "created_at"})
        return promotion


def _comparison_dict(comparison: Comparison) -> dict[str, Any]:
    return {"map50": comparison.map50._asdict(), "map50_95": comparison.map50_95._asdict(),
            "per_class": {k: v._asdict() for k, v in comparison.per_class.items()},
            "regressions": list(comparison.regressions),
            "improvements": list(comparison.improvements)}
