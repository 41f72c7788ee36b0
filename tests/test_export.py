"""YOLO export: every pitfall of the seed's script, checked; read back by ultralytics and
FiftyOne."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from workbench.errors import ValidationError
from workbench.export import ExportOptions, split_of
from workbench.store import tables as t
from workbench.store.metadata import utcnow

KEY = "yolo_detector@1.0.0"
# object name → (size, detections as (class, confidence, xyxy))
SCENE = {
    "many": ((320, 240), [("circle", 0.9, (10, 10, 60, 60)), ("square", 0.6, (100, 50, 160, 110)),
                          ("triangle", 0.4, (200, 100, 260, 170))]),
    "fp_only": ((320, 240), [("circle", 0.3, (5, 5, 40, 40))]),
    "small": ((300, 200), [("square", 0.8, (30, 20, 90, 80))]),
    "unreviewed": ((320, 240), [("circle", 0.9, (10, 10, 60, 60)),
                                ("square", 0.3, (100, 100, 150, 150))]),
    "edge": ((320, 240), [("circle", 0.5, (0, 0, 30, 30))]),
}


@pytest.fixture
def ewb(wb, tmp_path, starter_weights):
    """Real images (so files can be linked), hand-made detections, real annotations."""
    wb.buckets.create("b")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (name, ((w, h), _)) in enumerate(SCENE.items()):
        Image.new("RGB", (w, h), (40 * i, 90, 200 - 30 * i)).save(folder / f"{name}.png")
    wb.ingest.run("b", [folder])
    wb.registry.register_yolo(starter_weights)
    collection = wb.collections.create("c", ["b"])
    objects = {Path(o.source).stem: o for o in wb.buckets.objects(wb.buckets.get("b"))}
    with wb.db.write() as conn:
        for name, (_, dets) in SCENE.items():
            obj = objects[name]
            doc = f"doc_{name}"
            conn.execute(t.documents.insert().values(
                id=doc, collection_id=collection.id, object_id=obj.id, extractor_key=KEY,
                features={}, n_detections=len(dets), created_at=utcnow()))
            for i, (cls, conf, (x1, y1, x2, y2)) in enumerate(dets):
                conn.execute(t.detections.insert().values(
                    id=f"{doc}_{i}", document_id=doc, collection_id=collection.id,
                    object_id=obj.id, extractor_key=KEY, idx=i, class_name=cls,
                    confidence=conf, x1=x1, y1=y1, x2=x2, y2=y2))

    def verdict(document_id, label, **payload):
        return wb.annotations.create(document_id=document_id, collection_id=collection.id,
                                     label=label, payload=payload)

    verdict("doc_many_0", "confirmed")
    verdict("doc_many_1", "corrected", true_class="star")  # a class the model lacks
    verdict("doc_many_2", "corrected", bbox={"x": 235, "y": 140, "w": 50, "h": 60})
    verdict("doc_many", "missed", true_class="hexagon", bbox={"x": 280, "y": 30, "w": 30, "h": 30})
    verdict("doc_fp_only_0", "false_positive")
    verdict("doc_small_0", "confirmed")
    verdict("doc_unreviewed_0", "confirmed")  # its second detection has no verdict
    # Inside the 1-px tolerance the annotation API allows, but only 0.5 px wide once clipped.
    verdict("doc_edge_0", "corrected", bbox={"x": -0.25, "y": 15, "w": 1.5, "h": 30})
    for name in ("many", "fp_only", "small", "edge"):  # looked over as a whole: complete
        verdict(f"doc_{name}", "image_done")
    wb._objects = objects
    return wb


def _labels(result, name):
    (file,) = list(result.path.glob(f"labels/*/{name}_*.txt"))
    return [line.split() for line in file.read_text().splitlines()]


def test_export_fixes_every_pitfall(ewb, tmp_path):
    result = ewb.export.yolo("c", tmp_path / "out", options=ExportOptions(val_fraction=0.3))
    # 3. names follow the model; new classes appended (sorted).
    assert result.names == ("circle", "square", "triangle", "hexagon", "star")
    assert (result.path / "classes.txt").read_text().split() == list(result.names)
    # 1. one file per image with all of its objects (confirmed, corrected ×2, missed).
    many = _labels(result, "many")
    assert [row[0] for row in many] == ["0", "4", "2", "3"]
    # 6. normalised by the real size: corrected box centre 235,140 in a 320×240 image.
    assert [float(v) for v in many[2][1:]] == pytest.approx([235 / 320, 140 / 240, 50 / 320,
                                                             60 / 240], abs=1e-6)
    small = _labels(result, "small")
    assert [float(v) for v in small[0][1:]] == pytest.approx([60 / 300, 50 / 200, 60 / 300,
                                                              60 / 200], abs=1e-6)
    # 5. a false-positive-only image is a background image with an empty label file.
    assert _labels(result, "fp_only") == []
    assert result.background_images == 2  # fp_only, and edge once its box is refused
    # 4. the image with an unreviewed detection is left out by default.
    assert result.skipped_images == 1
    assert not list(result.path.glob("labels/*/unreviewed_*.txt"))
    # 6. the degenerate box is refused with a message.
    (rejected,) = result.rejected_boxes
    assert "degenerate after clipping" in rejected["reason"]
    # 2. images sit beside their labels; data.yaml names the splits.
    for label in result.path.glob("labels/*/*.txt"):
        split = label.parent.name
        assert list((result.path / "images" / split).glob(label.stem + ".*"))
    data = (result.path / "data.yaml").read_text()
    assert "train: images/train" in data and "names:" in data and str(result.path) in data
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["content_hash"] == result.content_hash
    assert len(manifest["annotation_ids"]) == result.annotation_count == 11  # 7 + 4 done marks
    assert manifest["counts"]["boxes_by_origin"] == {f"review {KEY}": 5}
    assert (result.path / "dataset.yaml").read_text() == data  # FiftyOne's default name
    coco = json.loads((result.path / "coco" / "train.json").read_text()) if (
        result.path / "coco" / "train.json").exists() else {"images": []}
    assert all(img["file_name"].startswith("images/") for img in coco["images"])


def test_fill_completes_unreviewed_images_above_a_threshold(ewb, tmp_path):
    result = ewb.export.yolo("c", tmp_path / "out",
                         options=ExportOptions(unreviewed="fill", fill_threshold=0.5))
    assert result.skipped_images == 0
    # The confirmed circle stays; the unreviewed 0.3 square is under the threshold.
    assert [row[0] for row in _labels(result, "unreviewed")] == ["0"]
    low = ewb.export.yolo("c", tmp_path / "low",
                      options=ExportOptions(unreviewed="fill", fill_threshold=0.2))
    assert [row[0] for row in _labels(low, "unreviewed")] == ["0", "1"]


def test_split_is_by_image_deterministic_and_the_holdout_is_fixed(ewb, tmp_path):
    options = ExportOptions(val_fraction=0.3, holdout_fraction=0.3, seed="s1")
    first = ewb.export.yolo("c", tmp_path / "a", options=options)
    second = ewb.export.yolo("c", tmp_path / "b", options=options)
    assert first.content_hash == second.content_hash  # reproducible, wherever written
    files = [p.stem for p in first.path.glob("images/*/*")]
    assert len(files) == len(set(files))  # no image in two splits
    for obj in ewb._objects.values():
        expected = split_of(obj.sha256, options)
        found = [p.parent.name for p in first.path.glob(f"images/*/*_{obj.id[-8:]}.*")]
        assert found in ([], [expected])
    other_seed = ExportOptions(val_fraction=0.3, holdout_fraction=0.3, seed="s2")
    assert ewb.export.yolo("c", tmp_path / "c", options=other_seed).content_hash != \
        first.content_hash or len(files) < 2


def test_nothing_reviewed_is_a_clear_error(wb, tmp_path, starter_weights):
    wb.buckets.create("b")
    wb.registry.register_yolo(starter_weights)
    wb.collections.create("c", ["b"])
    with pytest.raises(ValidationError, match="nothing to export"):
        wb.export.yolo("c", tmp_path / "out")
    with pytest.raises(ValidationError, match="unreviewed must be"):
        ExportOptions(unreviewed="maybe")


def test_ultralytics_reads_the_export(ewb, tmp_path):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    result = ewb.export.yolo("c", tmp_path / "out", options=ExportOptions(val_fraction=0.0))
    data = check_det_dataset(str(result.data_yaml))
    assert data["nc"] == len(result.names)
    dataset = YOLODataset(img_path=data["train"], data=data, task="detect", augment=False)
    labels = {Path(label["im_file"]).stem.rsplit("_", 1)[0]: label for label in dataset.labels}
    assert len(labels) == result.images["train"]
    assert labels["many"]["cls"].ravel().tolist() == [0, 4, 2, 3]
    assert labels["fp_only"]["cls"].size == 0
    assert labels["small"]["bboxes"][0].tolist() == pytest.approx([0.2, 0.25, 0.2, 0.3],
                                                                  abs=1e-5)


@pytest.mark.slow
def test_fiftyone_reads_the_export(ewb, tmp_path):
    import fiftyone as fo

    result = ewb.export.yolo("c", tmp_path / "out", options=ExportOptions(val_fraction=0.0))
    # No yaml_path: FiftyOne's importer looks for dataset.yaml by default.
    dataset = fo.Dataset.from_dir(dataset_dir=str(result.path),
                                  dataset_type=fo.types.YOLOv5Dataset, split="train")
    try:
        assert len(dataset) == result.images["train"]
        by_name = {Path(s.filepath).stem.rsplit("_", 1)[0]: s for s in dataset}
        boxes = by_name["small"].ground_truth.detections
        assert [d.label for d in boxes] == ["square"]
        assert boxes[0].bounding_box == pytest.approx([30 / 300, 20 / 200, 60 / 300, 60 / 200],
                                                      abs=1e-5)
        labels = [d.label for d in by_name["many"].ground_truth.detections]
        assert labels == ["circle", "star", "triangle", "hexagon"]
        assert by_name["fp_only"].ground_truth is None or not \
            by_name["fp_only"].ground_truth.detections
    finally:
        dataset.delete()


def test_pseudo_labels_add_only_images_the_model_is_sure_of(ewb, tmp_path):
    with pytest.raises(ValidationError, match="pseudo_label needs"):
        ExportOptions(pseudo_label=True)
    from workbench.store import tables as t2

    collection = ewb.collections.get("c")
    with ewb.db.write() as conn:  # nobody reviewed "unreviewed" (a 0.9 circle, a 0.3 square)
        conn.execute(t2.annotations.delete().where(
            t2.annotations.c.object_id == ewb._objects["unreviewed"].id))
        # "small": every box confident; "many" loses its verdicts but keeps its 0.4 triangle;
        # "edge" has no detection at all (a night scene the model sees nothing in).
        conn.execute(t2.annotations.delete().where(t2.annotations.c.object_id.in_(
            [ewb._objects[n].id for n in ("small", "many", "edge")])))
        conn.execute(t2.detections.delete().where(t2.detections.c.document_id == "doc_edge"))
        conn.execute(t2.documents.update().where(t2.documents.c.id == "doc_edge")
                     .values(n_detections=0))
    ewb.truth.refresh("c")  # the ground truth follows annotations removed behind its back
    plain = ewb.export.yolo("c", tmp_path / "plain", options=ExportOptions(unreviewed="fill"))
    assert not list(plain.path.glob("labels/*/small_*.txt"))
    pseudo = ewb.export.yolo("c", tmp_path / "pseudo",
                         options=ExportOptions(unreviewed="fill", pseudo_label=True))
    assert [row[0] for row in _labels(pseudo, "small")] == ["1"]  # the 0.8 square
    # An unsure image, or one with nothing found, is left out — never an empty label file.
    for name in ("unreviewed", "many", "edge"):
        assert not list(pseudo.path.glob(f"labels/*/{name}_*.txt")), name
    reasons = {s["source"]: s["reason"] for s in json.loads(
        (pseudo.path / "manifest.json").read_text())["skipped_images"]}
    assert any("unsure" in r for r in reasons.values())
    # Once somebody looks "edge" over and finds nothing, it is a checked background image.
    mark = ewb.annotations.create(document_id="doc_edge", collection_id=collection.id,
                                  label="no_objects", payload={})
    checked = ewb.export.yolo("c", tmp_path / "checked",
                          options=ExportOptions(unreviewed="fill", pseudo_label=True))
    assert _labels(checked, "edge") == []
    assert mark.id in json.loads((checked.path / "manifest.json").read_text())["annotation_ids"]
