"""Evaluation: AP equals pycocotools' own numbers; matching, confusion, comparison and gate
are checked on small hand-built cases."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from workbench.errors import ValidationError
from workbench.evaluation import Gate, promotion_decision
from workbench.metrics import (
    Box,
    Comparison,
    Delta,
    EvalImage,
    compare,
    evaluate,
)

CLASSES = ["circle", "square", "triangle"]


def mixed_case():
    """Three images with hits, a miss, a false positive and a class swap."""
    images = [
        EvalImage("a", 100, 100, (Box("circle", (10, 10, 50, 50)),
                                  Box("square", (60, 60, 90, 90)))),
        EvalImage("b", 120, 80, (Box("triangle", (20, 20, 60, 70)),
                                 Box("circle", (5, 5, 25, 25)))),
        EvalImage("c", 100, 100, (Box("square", (30, 30, 70, 70)),)),
    ]
    predictions = {
        "a": [Box("circle", (12, 12, 50, 50), 0.9), Box("square", (60, 60, 88, 92), 0.8),
              Box("triangle", (0, 0, 20, 20), 0.3)],
        "b": [Box("triangle", (22, 20, 60, 68), 0.7), Box("circle", (50, 50, 80, 80), 0.6)],
        "c": [Box("square", (30, 30, 70, 60), 0.4), Box("circle", (31, 31, 70, 70), 0.95)],
    }
    return images, predictions


def cocoeval_stats(ground_truth: dict, detections: list[dict]):
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = ground_truth
        truth.createIndex()
        coco_eval = COCOeval(truth, truth.loadRes(detections), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


def test_map_equals_pycocotools_on_the_same_case_written_as_coco_dicts():
    # mixed_case() by hand in COCO's terms: ids from 1, bbox = [x, y, w, h] top-left.
    ground_truth = {
        "images": [{"id": 1, "width": 100, "height": 100},
                   {"id": 2, "width": 120, "height": 80},
                   {"id": 3, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"},
                       {"id": 3, "name": "triangle"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40],
             "area": 1600, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 60, 30, 30],
             "area": 900, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [20, 20, 40, 50],
             "area": 2000, "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20],
             "area": 400, "iscrowd": 0},
            {"id": 5, "image_id": 3, "category_id": 2, "bbox": [30, 30, 40, 40],
             "area": 1600, "iscrowd": 0},
        ],
    }
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [12, 12, 38, 38], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [60, 60, 28, 32], "score": 0.8},
        {"image_id": 1, "category_id": 3, "bbox": [0, 0, 20, 20], "score": 0.3},
        {"image_id": 2, "category_id": 3, "bbox": [22, 20, 38, 48], "score": 0.7},
        {"image_id": 2, "category_id": 1, "bbox": [50, 50, 30, 30], "score": 0.6},
        {"image_id": 3, "category_id": 2, "bbox": [30, 30, 40, 30], "score": 0.4},
        {"image_id": 3, "category_id": 1, "bbox": [31, 31, 39, 39], "score": 0.95},
    ]
    stats = cocoeval_stats(ground_truth, detections)

    result = evaluate(*mixed_case(), CLASSES)

    assert 0 < stats[0] < stats[1] < 1  # the case is neither trivial nor perfect
    assert result.map50_95 == pytest.approx(stats[0])
    assert result.map50 == pytest.approx(stats[1])


def test_per_class_counts_and_best_f1_point():
    result = evaluate(*mixed_case(), CLASSES)
    by_class = {m.cls: m for m in result.per_class}

    assert {c: (m.support, m.predictions) for c, m in by_class.items()} == {
        "circle": (2, 3), "square": (2, 2), "triangle": (1, 2)}
    # circle, by confidence: 0.95 FP (swap on c), 0.9 TP, 0.6 FP; support 2.
    # F1 is 0 at 0.95, 0.5 at 0.9 and 0.4 at 0.6, so the best point is 0.9.
    circle = by_class["circle"]
    assert (circle.precision, circle.recall, circle.threshold) == (0.5, 0.5, 0.9)
    assert all(m.ap50 is not None and m.ap50_95 <= m.ap50 for m in result.per_class)


def test_perfect_predictions_score_one():
    images, _ = mixed_case()
    perfect = {image.image_id: [Box(b.cls, b.xyxy, 0.9) for b in image.truth]
               for image in images}

    result = evaluate(images, perfect, CLASSES)

    # COCOeval divides by tp + fp + eps, so "1" is 1 within a few ulps.
    assert result.map50 == pytest.approx(1.0)
    assert result.map50_95 == pytest.approx(1.0)
    assert all(m.precision == m.recall == 1.0 for m in result.per_class)
    assert all(outcome.matched for outcome in result.per_image)


def test_no_predictions_score_zero():
    images, _ = mixed_case()

    result = evaluate(images, {}, CLASSES)

    assert result.map50 == 0.0 and result.map50_95 == 0.0
    assert all(m.ap50_95 == 0.0 and m.recall == 0.0 and m.precision is None
               for m in result.per_class)


def test_no_truth_at_all_leaves_map_undefined():
    result = evaluate([EvalImage("empty", 64, 64)],
                      {"empty": [Box("circle", (0, 0, 10, 10), 0.9)]}, CLASSES)

    assert result.map50 is None and result.map50_95 is None
    circle = result.per_class[0]
    assert (circle.support, circle.ap50, circle.precision, circle.recall) == (0, None, 0.0, None)


def test_a_class_only_the_model_predicts_is_appended():
    images = [EvalImage("a", 100, 100, (Box("circle", (10, 10, 50, 50)),))]
    predictions = {"a": [Box("circle", (10, 10, 50, 50), 0.9),
                         Box("star", (60, 60, 90, 90), 0.8)]}

    result = evaluate(images, predictions, ["circle"])

    assert [m.cls for m in result.per_class] == ["circle", "star"]
    assert result.per_class[1].ap50_95 is None  # no truth: excluded from mAP, not a zero
    assert result.map50_95 == pytest.approx(1.0)
    assert result.confusion.count("background", "star") == 1


def test_confusion_matrix_counts():
    image = EvalImage("a", 100, 100, (Box("circle", (0, 0, 20, 20)),
                                      Box("square", (40, 40, 60, 60)),
                                      Box("triangle", (70, 70, 90, 90))))
    predictions = {"a": [
        Box("circle", (1, 1, 20, 20), 0.9),  # right
        Box("triangle", (40, 40, 60, 61), 0.8),  # square called triangle
        Box("circle", (0, 60, 15, 75), 0.7),  # nothing there
        Box("triangle", (70, 70, 90, 90), 0.1),  # would hit, but is below conf
    ]}

    result = evaluate([image], predictions, CLASSES, conf=0.25)

    assert result.confusion.labels == ("circle", "square", "triangle", "background")
    assert result.confusion.counts == (
        (1, 0, 0, 0),  # circle
        (0, 0, 1, 0),  # square -> triangle
        (0, 0, 0, 1),  # triangle missed
        (1, 0, 0, 0),  # an extra circle
    )
    # Per image, the swap is both a false positive and a miss.
    outcome = result.per_image[0]
    assert (outcome.tp, outcome.fp, outcome.fn, outcome.matched) == (1, 2, 2, False)


def test_per_image_matched_flags():
    circle, square = (0, 0, 40, 40), (50, 50, 90, 90)
    images = [
        EvalImage("perfect", 100, 100, (Box("circle", circle),)),
        EvalImage("missed", 100, 100, (Box("circle", circle), Box("square", square))),
        EvalImage("extra", 100, 100, (Box("circle", circle),)),
        EvalImage("faint_extra", 100, 100, (Box("circle", circle),)),
        EvalImage("wrong_class", 100, 100, (Box("circle", circle),)),
        EvalImage("half_overlap", 100, 100, (Box("circle", circle),)),
        EvalImage("empty", 100, 100),
    ]
    predictions = {
        "perfect": [Box("circle", circle, 0.9)],
        "missed": [Box("circle", circle, 0.9)],
        "extra": [Box("circle", circle, 0.9), Box("square", square, 0.5)],
        "faint_extra": [Box("circle", circle, 0.9), Box("square", square, 0.1)],
        "wrong_class": [Box("square", circle, 0.9)],
        "half_overlap": [Box("circle", (0, 0, 40, 20), 0.9)],  # IoU exactly 0.5
    }

    loose = evaluate(images, predictions, CLASSES, iou_match=0.5)
    strict = evaluate(images, predictions, CLASSES, iou_match=0.6)

    assert {o.image_id: o.matched for o in loose.per_image} == {
        "perfect": True, "missed": False, "extra": False, "faint_extra": True,
        "wrong_class": False, "half_overlap": True, "empty": True}
    assert {o.image_id: (o.tp, o.fp, o.fn) for o in strict.per_image}["half_overlap"] == (0, 1, 1)


def test_max_dets_limits_boxes_per_image_and_class():
    boxes = (Box("circle", (0, 0, 10, 10)), Box("circle", (50, 50, 60, 60)))
    images = [EvalImage("a", 100, 100, boxes)]
    predictions = {"a": [Box(b.cls, b.xyxy, 0.9) for b in boxes]}

    assert evaluate(images, predictions, CLASSES).map50 == pytest.approx(1.0)
    capped = evaluate(images, predictions, CLASSES, max_dets=1)
    assert capped.map50 == pytest.approx(0.5, abs=0.01)  # recall stops at one box of two
    assert capped.per_class[0].recall == 0.5


def test_result_is_json_and_pycocotools_prints_nothing(capsys):
    result = evaluate(*mixed_case(), CLASSES)

    data = json.loads(json.dumps(result.to_dict()))
    assert data["per_class"][0]["class"] == "circle"
    assert data["confusion"]["labels"][-1] == "background"
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("xyxy", "confidence", "message"),
    [
        ((0, 0, 10, 10), 0.5, None),
        ([0, 0, 10.5, 10], 1, None),
        ((10, 0, 10, 10), 0.5, "no area"),
        ((0, 10, 10, 5), 0.5, "no area"),
        ((0, 0, float("nan"), 10), 0.5, "non-finite"),
        ((0, 0, 10), 0.5, "four numbers"),
        ((0, 0, 10, 10), float("inf"), "confidence must be finite"),
    ],
)
def test_box_validation(xyxy, confidence, message):
    if message is None:
        box = Box("circle", xyxy, confidence)
        assert all(isinstance(v, float) for v in box.xyxy)
    else:
        with pytest.raises(ValidationError, match=message):
            Box("circle", xyxy, confidence)


@pytest.mark.parametrize(
    ("images", "predictions", "classes", "kwargs", "message"),
    [
        ([], {}, CLASSES, {}, "images is empty"),
        ([EvalImage("a", 10, 10), EvalImage("a", 10, 10)], {}, CLASSES, {}, "unique"),
        ([EvalImage("a", 10, 10)], {"b": []}, CLASSES, {}, "not in images"),
        ([EvalImage("a", 10, 10)], {}, ["circle", "circle"], {}, "classes must be unique"),
        ([EvalImage("a", 10, 10)], {}, "circle", {}, "sequence of names"),
        ([EvalImage("a", 10, 10)], {}, ["background"], {}, "cannot be a class name"),
        ([EvalImage("a", 10, 10)], {}, CLASSES, {"iou_match": 0}, "iou_match"),
        ([EvalImage("a", 10, 10)], {}, CLASSES, {"conf": 1.5}, "conf"),
        ([EvalImage("a", 10, 10)], {}, CLASSES, {"max_dets": 0}, "max_dets"),
    ],
)
def test_evaluate_rejects_bad_input(images, predictions, classes, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        evaluate(images, predictions, classes, **kwargs)


def test_image_size_must_be_positive():
    with pytest.raises(ValidationError, match="width must be a positive integer"):
        EvalImage("a", 0, 10)


def test_compare_finds_regressions_and_improvements():
    images = [EvalImage("x", 100, 100, (Box("circle", (0, 0, 40, 40)),)),
              EvalImage("y", 100, 100, (Box("circle", (50, 50, 90, 90)),)),
              EvalImage("z", 100, 100, (Box("square", (10, 10, 30, 30)),))]
    hit_x = Box("circle", (0, 0, 40, 40), 0.9)
    hit_y = Box("circle", (50, 50, 90, 90), 0.9)
    hit_z = Box("square", (10, 10, 30, 30), 0.9)
    base = evaluate(images, {"x": [hit_x], "z": [hit_z]}, CLASSES)
    candidate = evaluate(images, {"y": [hit_y], "z": [hit_z]}, CLASSES)

    comparison = compare(base, candidate)

    assert comparison.regressions == ("x",)
    assert comparison.improvements == ("y",)
    assert comparison.map50_95.delta == pytest.approx(0.0)
    assert set(comparison.per_class) == {"circle", "square"}  # triangle has no truth
    base_ap, candidate_ap, delta = comparison.per_class["circle"]
    assert (base_ap, candidate_ap) == (base.per_class[0].ap50_95, candidate.per_class[0].ap50_95)
    assert delta == pytest.approx(candidate_ap - base_ap)


def test_compare_refuses_different_truth():
    first = evaluate([EvalImage("x", 100, 100, (Box("circle", (0, 0, 40, 40)),))], {}, CLASSES)
    other_images = evaluate([EvalImage("y", 100, 100)], {}, CLASSES)
    other_truth = evaluate([EvalImage("x", 100, 100)], {}, CLASSES)

    with pytest.raises(ValidationError, match="different images"):
        compare(first, other_images)
    with pytest.raises(ValidationError, match="same ground truth"):
        compare(first, other_truth)


def comparison(base_map, candidate_map, classes=None):
    """A Comparison built from AP50-95 values: classes maps name -> (base, candidate)."""
    delta = None if base_map is None or candidate_map is None else candidate_map - base_map
    return Comparison(
        map50=Delta(None, None, None),
        map50_95=Delta(base_map, candidate_map, delta),
        per_class={name: Delta(b, c, c - b) for name, (b, c) in (classes or {}).items()},
        regressions=(), improvements=())


@pytest.mark.parametrize(
    ("case", "gate", "promote", "reason"),
    [
        (comparison(0.600, 0.631), Gate(0.010, 0.05), True,
         "mAP50-95 rose by 0.031 (needs ≥ 0.010) — passed"),
        (comparison(0.600, 0.605), Gate(0.010, 0.05), False,
         "mAP50-95 rose by 0.005 (needs ≥ 0.010) — failed"),
        (comparison(0.600, 0.580), Gate(0.0), False, "mAP50-95 fell by 0.020 (needs ≥ 0.000)"),
        (comparison(0.600, 0.600), Gate(0.0), True, "mAP50-95 did not change"),
        (comparison(0.600, 0.640, {"square": (0.700, 0.618), "circle": (0.5, 0.6)}),
         Gate(0.010, 0.05), False,
         "class 'square' dropped by 0.082 (allowed ≤ 0.050) — failed"),
        # A drop of exactly the limit is allowed, float noise notwithstanding.
        (comparison(0.600, 0.640, {"square": (0.80, 0.75)}), Gate(0.010, 0.05), True,
         "no class dropped by more than 0.050 (largest drop: 'square' by 0.050) — passed"),
        (comparison(0.600, 0.640, {"square": (0.5, 0.6)}), Gate(0.0), True,
         "no class dropped by more than 0.050 (none dropped) — passed"),
        (comparison(None, None), Gate(0.0), False, "mAP50-95 is undefined"),
    ],
)
def test_promotion_decision(case, gate, promote, reason):
    decision = promotion_decision(case, gate)

    assert decision.promote is promote
    assert any(reason in sentence for sentence in decision.reasons), decision.reasons


def test_promotion_on_real_evaluations():
    images, predictions = mixed_case()
    base = evaluate(images, {}, CLASSES)
    candidate = evaluate(images, predictions, CLASSES)

    assert promotion_decision(compare(base, candidate), Gate(0.1)).promote
    refused = promotion_decision(compare(candidate, base), Gate(0.0))
    assert not refused.promote
    assert sum("dropped by" in r and "failed" in r for r in refused.reasons) == 3


@pytest.mark.parametrize("gate", [{"max_class_drop": -0.1}, {"min_map50_95_gain": float("nan")}])
def test_gate_rejects_impossible_values(gate):
    with pytest.raises(ValidationError):
        Gate(**gate)
