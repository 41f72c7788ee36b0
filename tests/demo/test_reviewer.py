"""The simulated reviewer: verdicts from ground truth, budget, provenance, missed, strategies."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from workbench import Workbench
from workbench.boxes import center_to_xyxy
from workbench.demo.reviewer import (
    GroundTruth,
    SimulatedReviewer,
    box_iou,
    judge,
    uncovered,
)
from workbench.demo.shapeworld import SceneConfig, write_dataset
from workbench.detection import DetectParams
from workbench.errors import NotFoundError, ValidationError

KEY = "yolo_detector@1.0.0"
# (part, lighting, clutter, seed): two scenes each, in the ground truth.
PARTS = [("day", "day", 0, 21), ("night", "night", 0, 22), ("clutter", "day", 4, 23)]


# -- pure helpers ----------------------------------------------------------------------------
@pytest.mark.parametrize(("a", "b", "expected"), [
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),  # identical
    ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),  # half overlap
    ([0, 0, 10, 10], [0, 0, 5, 5], 25 / 100),  # contained
    ([0, 0, 10, 10], [2, 2, 12, 12], 64 / 136),  # diagonal shift
    ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
    ([0, 0, 10, 10], [30, 30, 40, 40], 0.0),  # disjoint
    ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # no area at all
])
def test_box_iou_matches_hand_computed_values(a, b, expected):
    assert box_iou([a], [b]) == pytest.approx(np.array([[expected]]))
    assert box_iou([b], [a]) == pytest.approx(np.array([[expected]]))


def test_box_iou_is_pairwise():
    out = box_iou([[0, 0, 10, 10], [5, 0, 15, 10]],
                  [[0, 0, 10, 10], [0, 0, 5, 5], [50, 50, 60, 60]])
    assert out.shape == (2, 3)
    assert out == pytest.approx(np.array([[1, 0.25, 0], [1 / 3, 0, 0]]))
    assert box_iou([], [[0, 0, 1, 1]]).shape == (0, 1)


BOX = (0.0, 0.0, 10.0, 10.0)
FAR = (50.0, 50.0, 60.0, 60.0)
HALF = (5.0, 0.0, 15.0, 10.0)  # IoU 1/3 with BOX and with RIGHT
RIGHT = (10.0, 0.0, 20.0, 10.0)


@pytest.mark.parametrize(("detections", "truth", "expected"), [
    ([("circle", BOX)], [("circle", BOX)], [("confirmed", "circle", None)]),
    ([("square", BOX)], [("circle", BOX)], [("corrected", "circle", None)]),
    ([("circle", HALF)], [("circle", BOX)], [("corrected", "circle", BOX)]),
    ([("circle", FAR)], [("circle", BOX)], [("false_positive", None, None)]),
    ([("circle", BOX)], [], [("false_positive", None, None)]),
    # IoU 0.09: too little overlap to call it a badly drawn box.
    ([("circle", (0.0, 0.0, 10.0, 10.0))], [("circle", (0.0, 9.1, 10.0, 19.1))],
     [("false_positive", None, None)]),
    # One object, two boxes: the better one claims it, the other is a duplicate.
    ([("circle", HALF), ("circle", BOX)], [("circle", BOX)],
     [("false_positive", None, None), ("confirmed", "circle", None)]),
    # Equal IoU: the same-class pair wins, so both boxes are confirmed.
    ([("square", BOX), ("circle", BOX)], [("circle", BOX), ("square", BOX)],
     [("confirmed", "square", None), ("confirmed", "circle", None)]),
    # Greedy by IoU: the box at IoU 1 is matched first, the other takes what is left.
    ([("circle", HALF), ("circle", BOX)], [("circle", BOX), ("circle", RIGHT)],
     [("corrected", "circle", RIGHT), ("confirmed", "circle", None)]),
])
def test_judge_gives_each_ground_truth_box_to_at_most_one_detection(detections, truth,
                                                                     expected):
    verdicts = judge(detections, truth, iou=0.5)
    assert [(v.label, v.true_class, v.box) for v in verdicts] == expected


def test_judge_matches_by_iou_not_by_order():
    verdicts = judge([("circle", BOX), ("circle", HALF)], [("circle", HALF), ("circle", BOX)])
    assert [(v.label, v.truth_index) for v in verdicts] == [("confirmed", 1), ("confirmed", 0)]


def test_uncovered_ignores_class_and_needs_the_iou():
    truth = [("circle", BOX), ("square", FAR), ("star", HALF)]
    assert uncovered([BOX], truth, 0.5) == [1, 2]  # HALF overlaps BOX at 1/3 only
    assert uncovered([BOX], truth, 0.3) == [1]
    assert uncovered([], truth) == [0, 1, 2]
    assert uncovered([BOX], []) == []


# -- ground truth ----------------------------------------------------------------------------
def test_ground_truth_is_keyed_by_the_sha256_of_the_image_bytes(wb):
    import hashlib

    assert not GroundTruth({})
    with pytest.raises(NotFoundError, match="load the demo first"):
        GroundTruth.for_demo(wb)
    folder = write_dataset(wb.home / "demo" / "shapeworld" / "day",
                           SceneConfig(width=64, height=48), 2, seed=5, split="day")
    truth = GroundTruth.for_demo(wb)
    assert len(truth) == 2
    first = sorted((folder / "images").iterdir())[0]
    boxes = truth.boxes(hashlib.sha256(first.read_bytes()).hexdigest())
    record = GroundTruth.from_datasets([folder])
    assert boxes is not None and boxes == record.boxes(hashlib.sha256(
        first.read_bytes()).hexdigest())
    assert all(isinstance(cls, str) and len(box) == 4 for cls, box in boxes)
    assert truth.boxes("0" * 64) is None
    with pytest.raises(NotFoundError, match="no annotations.json"):
        GroundTruth.from_datasets([folder / "images"])


# -- a tiny detected workspace, built once and copied per test --------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory, starter_weights) -> dict:
    root = tmp_path_factory.mktemp("reviewer")
    folders = [write_dataset(root / "truth" / name, SceneConfig(
        width=320, height=240, lighting=lighting, clutter=clutter), 2, seed=seed, split=name)
        for name, lighting, clutter, seed in PARTS]
    unknown = write_dataset(root / "unknown", SceneConfig(width=320, height=240), 1, seed=24,
                            split="unknown")
    wb = Workbench.open(root / "ws")
    try:
        wb.buckets.create("scenes")
        wb.ingest.run("scenes", [f / "images" for f in [*folders, unknown]])
        wb.registry.register_yolo(starter_weights, lineage={"imgsz": 320})
        wb.collections.create("scenes", ["scenes"])
        wb.detection.run("scenes", params=DetectParams(imgsz=320, conf=0.1))
    finally:
        wb.close()
    return {"home": root / "ws", "folders": folders, "unknown": unknown}


def _open_copy(template: dict, dest: Path) -> Workbench:
    shutil.copytree(template["home"], dest)
    return Workbench.open(dest)


@pytest.fixture
def ws(template, tmp_path):
    wb = _open_copy(template, tmp_path / "ws")
    yield wb
    wb.close()


def _detections(wb) -> dict[str, list]:
    """Detections per image (object id), in index order."""
    by_image: dict[str, list] = {}
    for det in wb.detection.detections(wb.collections.get("scenes"), KEY):
        by_image.setdefault(det.object_id, []).append(det)
    return by_image


def _oracle_annotations(wb) -> list:
    return wb.annotations.list(collection_id=wb.collections.get("scenes").id, author="oracle",
                               limit=1000).items


def _sha(wb, object_id: str) -> str:
    return wb.buckets.get_object(object_id).sha256


def _reviewed_order(wb, result: dict) -> list[str]:
    verdicts = {a.document_id for a in _oracle_annotations(wb) if a.label != "missed"}
    return [i for e in result["executions"] for i in wb.retrievers.execution(e)["result_ids"]
            if i in verdicts]


def test_verdicts_follow_a_constructed_truth(ws, template):
    """Truth made from the detections themselves, with known edits on one image."""
    wb = ws
    by_image = _detections(wb)
    real = GroundTruth.from_datasets(template["folders"])
    (unknown_object,) = [oid for oid in by_image if real.boxes(_sha(wb, oid)) is None]
    known = {oid: dets for oid, dets in by_image.items() if oid != unknown_object}

    def isolated(dets):  # boxes that touch no other box of the image
        overlaps = box_iou([d.xyxy for d in dets], [d.xyxy for d in dets])
        return [d for i, d in enumerate(dets) if overlaps[i].sum() == pytest.approx(1.0)]

    edited = max(known, key=lambda oid: len(isolated(known[oid])))
    relabelled, removed, shrunk = isolated(known[edited])[:3]
    images = {_sha(wb, oid): [(d.class_name, d.xyxy) for d in dets]
              for oid, dets in known.items()}
    x1, y1, x2, y2 = shrunk.xyxy
    w, h = (x2 - x1) / 4, (y2 - y1) / 4
    small = (x1 + w, y1 + h, x2 - w, y2 - h)  # IoU 0.25 with the detection
    # A box nothing overlaps, somewhere in the 320×240 image: an object the model missed.
    extra = next(box for box in ((x, y, x + 12.0, y + 12.0) for y in range(0, 228, 6)
                                 for x in range(0, 308, 6))
                 if box_iou([box], [d.xyxy for d in known[edited]]).max() == 0)
    truth = [(("star" if d.class_name != "star" else "circle"), d.xyxy) if d is relabelled
             else (d.class_name, small) if d is shrunk else (d.class_name, d.xyxy)
             for d in known[edited] if d is not removed] + [("hexagon", extra)]
    images[_sha(wb, edited)] = truth

    result = SimulatedReviewer(wb, GroundTruth(images)).review(
        "scenes", budget=1000, strategy="random", page_size=7)

    n_known = sum(len(d) for d in known.values())
    assert result["reviewed"] == n_known  # everything known, then the queue ran dry
    assert result["skipped_unknown"] == len(by_image[unknown_object]) > 0
    assert (result["confirmed"], result["corrected"], result["false_positive"],
            result["missed"]) == (n_known - 3, 2, 1, 1)
    annotations = _oracle_annotations(wb)
    by_document = {a.document_id: a for a in annotations if a.label != "missed"}
    for oid, dets in known.items():
        for det in dets:
            got = by_document[det.id]
            if det is relabelled:
                assert got.label == "corrected" and got.payload["true_class"] == truth[0][0]
                assert "bbox" not in got.payload
            elif det is removed:
                assert got.label == "false_positive"
            elif det is shrunk:
                assert got.label == "corrected" and got.payload["true_class"] == det.class_name
                assert center_to_xyxy(got.payload["bbox"]) == pytest.approx(small)
            else:
                assert (got.label, got.payload["true_class"]) == ("confirmed", det.class_name)
    assert not any(a.object_id == unknown_object for a in annotations)
    missed = [a for a in annotations if a.label == "missed"]
    # Only the extra box: the shrunk one was given to its detection as a corrected box, and
    # recording it as missed too would put the object twice in the export.
    assert [a.payload["true_class"] for a in missed] == ["hexagon"]
    assert {a.document_id for a in missed} == {known[edited][0].document_id}
    assert [center_to_xyxy(a.payload["bbox"]) for a in missed
            if a.payload["true_class"] == "hexagon"] == [pytest.approx(extra)]
    # Provenance: the random retriever, one of this call's executions, the oracle.
    retriever = wb.retrievers.get("scenes:random")
    assert {a.retriever_id for a in annotations} == {retriever.id}
    assert {a.execution_id for a in annotations} <= set(result["executions"])
    assert len(result["executions"]) > 1


def _check_against_truth(wb, truth: GroundTruth) -> dict[str, int]:
    """Every oracle annotation agrees with the real ground truth; returns label counts."""
    by_image = _detections(wb)
    detections = {d.id: d for dets in by_image.values() for d in dets}
    annotations = _oracle_annotations(wb)
    for a in annotations:
        gt = truth.boxes(_sha(wb, a.object_id))
        assert gt is not None
        if a.label == "missed":
            box = center_to_xyxy(a.payload["bbox"])
            (j,) = [j for j, (_, g) in enumerate(gt) if np.allclose(g, box)]
            assert gt[j][0] == a.payload["true_class"]
            dets = [d.xyxy for d in by_image.get(a.object_id, [])]
            assert not dets or box_iou(dets, [gt[j][1]]).max() < 0.5
            continue
        det = detections[a.document_id]
        overlaps = box_iou([det.xyxy], [g for _, g in gt])[0] if gt else np.zeros(0)
        if a.label == "confirmed":
            assert any(o >= 0.5 and c == det.class_name for o, (c, _) in zip(overlaps, gt))
        elif a.label == "corrected" and "bbox" in a.payload:
            box = center_to_xyxy(a.payload["bbox"])
            (j,) = [j for j, (_, g) in enumerate(gt) if np.allclose(g, box)]
            assert 0.1 <= overlaps[j] < 0.5 and gt[j][0] == a.payload["true_class"]
        elif a.label == "corrected":
            assert any(o >= 0.5 and c == a.payload["true_class"] != det.class_name
                       for o, (c, _) in zip(overlaps, gt))
        else:
            assert a.label == "false_positive"
            # Nothing here, or a duplicate: a better box of the image has the object.
            others = [d.xyxy for d in by_image[a.object_id] if d.id != det.id]
            for j in np.nonzero(overlaps >= 0.1)[0]:
                assert others and box_iou(others, [gt[j][1]]).max() >= overlaps[j]
    # Each ground-truth box is recorded as missed at most once.
    missed = Counter((a.document_id, tuple(np.round(center_to_xyxy(a.payload["bbox"]), 3)))
                     for a in annotations if a.label == "missed")
    assert all(n == 1 for n in missed.values())
    # ...and every image looked at has all its uncovered boxes recorded.
    for oid in {a.object_id for a in annotations}:
        gt = truth.boxes(_sha(wb, oid))
        expected = uncovered([d.xyxy for d in by_image[oid]], gt)
        assert sum(1 for a in annotations
                   if a.label == "missed" and a.object_id == oid) == len(expected)
    return Counter(a.label for a in annotations)


def test_the_queue_is_answered_from_ground_truth_within_the_budget(ws, template):
    wb = ws
    truth = GroundTruth.from_datasets(template["folders"])
    reviewer = SimulatedReviewer(wb, truth)
    first = reviewer.review("scenes", budget=5, page_size=2)
    assert first["reviewed"] == 5 and len(first["executions"]) == 3
    labels = _check_against_truth(wb, truth)
    assert sum(labels[k] for k in ("confirmed", "corrected", "false_positive")) == 5
    assert {k: first[k] for k in ("confirmed", "corrected", "false_positive", "missed")} == {
        k: labels[k] for k in ("confirmed", "corrected", "false_positive", "missed")}
    queue = wb.retrievers.review_queue("scenes")
    annotations = _oracle_annotations(wb)
    assert {a.retriever_id for a in annotations} == {queue.id}
    assert {a.execution_id for a in annotations} <= set(first["executions"])
    assert all(a.author == "oracle" for a in annotations)

    # Later calls go on where the first stopped and never record a missed box twice.
    second = reviewer.review("scenes", budget=1000)
    third = SimulatedReviewer(wb, truth).review("scenes", budget=1000, strategy="random")
    labels = _check_against_truth(wb, truth)
    assert labels["missed"] == first["missed"] + second["missed"] + third["missed"]
    assert sum(r["reviewed"] for r in (first, second, third)) == sum(
        labels[k] for k in ("confirmed", "corrected", "false_positive"))
    n_known = sum(len(d) for oid, d in _detections(wb).items()
                  if truth.boxes(_sha(wb, oid)) is not None)
    # What the ground truth settled already (a box on a region marked false positive) was
    # carried over, not asked again.
    carried = wb.annotations.list(collection_id=wb.collections.get("scenes").id,
                                  origin="carried", limit=1000).total
    assert first["reviewed"] + second["reviewed"] + third["reviewed"] + carried == n_known
    assert third["skipped_unknown"] > 0
    again = SimulatedReviewer(wb, truth).review("scenes", budget=10, strategy="random")
    assert (again["reviewed"], again["missed"]) == (0, 0)


def test_random_order_is_reproducible_and_not_the_queue_order(template, tmp_path):
    truth = GroundTruth.from_datasets(template["folders"])
    orders = {}
    for name, strategy, seed in (("a", "random", 0), ("b", "random", 0), ("c", "random", 1),
                                 ("q", "queue", 0)):
        wb = _open_copy(template, tmp_path / name)
        try:
            result = SimulatedReviewer(wb, truth).review("scenes", budget=10,
                                                         strategy=strategy, seed=seed,
                                                         page_size=4)
            assert result["reviewed"] == 10
            orders[name] = _reviewed_order(wb, result)
        finally:
            wb.close()
    assert orders["a"] == orders["b"]
    assert orders["a"] != orders["c"]
    assert orders["a"] != orders["q"]


def test_bad_arguments_are_explained(ws, template):
    reviewer = SimulatedReviewer(ws, GroundTruth({}))
    assert reviewer.review("scenes", budget=0) == {
        "reviewed": 0, "confirmed": 0, "corrected": 0, "false_positive": 0, "missed": 0,
        "images_checked": 0, "skipped_unknown": 0, "actions": 0, "executions": []}
    with pytest.raises(ValidationError, match="strategy 'best'"):
        reviewer.review("scenes", budget=5, strategy="best")
    with pytest.raises(ValidationError, match="budget"):
        reviewer.review("scenes", budget=-1)
    with pytest.raises(NotFoundError, match="no collection"):
        reviewer.review("nope", budget=5)
    with pytest.raises(ValidationError, match="iou"):
        SimulatedReviewer(ws, GroundTruth({}), iou=0.05)
    # Nothing is known: every detection is skipped, and the loop still ends.
    result = reviewer.review("scenes", budget=5, strategy="random", page_size=3)
    assert result["reviewed"] == 0 and result["skipped_unknown"] == sum(
        len(d) for d in _detections(ws).values())


def _blank_out(wb, object_id: str) -> str:
    """Make the model have found nothing on an image; returns its document id."""
    from workbench.store import tables as t

    with wb.db.write() as conn:
        (document_id,) = conn.execute(sa.select(t.documents.c.id).where(
            t.documents.c.object_id == object_id)).scalars()
        conn.execute(t.detections.delete().where(t.detections.c.document_id == document_id))
        conn.execute(t.documents.update().where(t.documents.c.id == document_id)
                     .values(n_detections=0))
    return document_id


def test_the_review_plan_splits_the_budget_between_images_spot_checks_and_the_queue(
        ws, template):
    wb = ws
    real = GroundTruth.from_datasets(template["folders"])
    known = [oid for oid in _detections(wb) if real.boxes(_sha(wb, oid)) is not None]
    full, empty = known[0], known[1]
    full_doc, empty_doc = _blank_out(wb, full), _blank_out(wb, empty)
    images = {_sha(wb, oid): real.boxes(_sha(wb, oid)) for oid in known}
    images[_sha(wb, empty)] = []  # nothing there: the reviewer marks it no_objects
    truth = GroundTruth(images)
    listed = {h.document_id for h in wb.retrievers.images_to_check("scenes", limit=100)}
    assert {full_doc, empty_doc} <= listed

    result = SimulatedReviewer(wb, truth).review(
        "scenes", budget=8, strategy="plan", plan={"images": 0.25, "spot_check": 0.25},
        page_size=3)
    assert result["images_checked"] == 2
    assert result["reviewed"] + result["images_checked"] == 8
    annotations = _oracle_annotations(wb)
    missed_full = [a for a in annotations if a.document_id == full_doc]
    assert sorted(a.payload["true_class"] for a in missed_full) == sorted(
        c for c, _ in real.boxes(_sha(wb, full)))
    assert all(a.label == "missed" for a in missed_full)
    assert [a.label for a in annotations if a.document_id == empty_doc] == ["no_objects"]
    # Looked-over images leave the image queue.
    assert not {full_doc, empty_doc} & {
        h.document_id for h in wb.retrievers.images_to_check("scenes", limit=100)}
    # Two verdicts from the spot-check (confident detections), the rest from the queue.
    spot, queue = wb.retrievers.get("scenes:spot-check"), wb.retrievers.review_queue("scenes")
    detections = {d.id: d for dets in _detections(wb).values() for d in dets}
    verdicts = [a for a in annotations if a.document_id in detections]
    from_spot = [a for a in verdicts if a.retriever_id == spot.id]
    assert len(from_spot) == 2 and all(detections[a.document_id].confidence >= 0.7
                                      for a in from_spot)
    assert len([a for a in verdicts if a.retriever_id == queue.id]) == 4
    with pytest.raises(ValidationError, match="plan takes shares"):
        SimulatedReviewer(wb, truth).review("scenes", budget=4, strategy="plan",
                                            plan={"images": 0.8, "spot_check": 0.5})
