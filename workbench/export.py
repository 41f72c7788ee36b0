"""Export reviewed detections as a YOLO dataset (and COCO JSON) that ultralytics and
FiftyOne read unchanged.

What the seed's export script gets wrong, and what this one does instead:

1. One label file per *image*, named after the image, holding every object of the image.
2. Images are linked (or copied) beside the labels; ``data.yaml`` names them; the split is
   by image, deterministic (a hash of the image's bytes and a seed), so no image is ever in
   two splits, and an optional holdout split is fixed the same way and never trained on.
3. Class ids follow the base model's ``names``; classes it does not know are appended.
4. An image whose detections are not all reviewed is left out (``unreviewed="skip"``) or
   completed with its unreviewed detections above a threshold (``unreviewed="fill"``).
5. ``false_positive`` boxes are dropped (hard negatives): an image left with no object is a
   background image with an empty label file. ``missed`` boxes are added. The manifest's
   ``hard_negatives`` lists the boxes the ``hard_negative`` rule collected (see
   ``workbench.rules``), with the split of their image, for hard-negative mining.
6. Normalisation uses each image's real size (after EXIF orientation); boxes are clipped to
   the image and degenerate ones are refused with a message in the manifest.

Only images that somebody reviewed (at least one annotation — a ``no_objects`` mark on an
image document makes it a checked background image) are exported, unless ``pseudo_label``
adds the others on which the model is sure of every box it found. A manifest lists
the annotations, image hashes, class map, options and a content hash of the export.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from workbench.boxes import center_to_xyxy, clip_xyxy, xyxy_to_yolo
from workbench.errors import ValidationError
from workbench.outdir import check_output_folder, replace_folder
from workbench.store import tables as t

if TYPE_CHECKING:
    from workbench import Workbench

SPLITS = ("train", "val", "holdout")
NO_OBJECTS = "no_objects"  # an image document's mark: looked over, nothing (more) to add
MIN_BOX_PX = 1.0  # a box thinner than a pixel after clipping is no object


@dataclass(frozen=True)
class ExportOptions:
    """How to turn annotations into a training set."""

    unreviewed: str = "skip"  # "skip": leave such images out; "fill": complete them
    fill_threshold: float = 0.5  # with "fill": unreviewed detections at or above this
    val_fraction: float = 0.2
    holdout_fraction: float = 0.0  # a fixed split that is never trained on
    # with "fill": also images nobody reviewed, when the model is sure of every box on them
    # (self-training keeps what it knew; an unsure or empty image is left out, not background)
    pseudo_label: bool = False
    seed: str = "workbench"  # salt of the split hash: change it to draw another split
    link: bool = True  # hard-link images when possible (else copy)
    coco: bool = True  # also write coco/<split>.json

    def __post_init__(self):
        if self.unreviewed not in ("skip", "fill"):
            raise ValidationError(f"unreviewed must be 'skip' or 'fill', got {self.unreviewed!r}")
        for name in ("fill_threshold", "val_fraction", "holdout_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValidationError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.pseudo_label and self.unreviewed != "fill":
            raise ValidationError("pseudo_label needs unreviewed='fill' (its boxes come from "
                                  "the model above fill_threshold)")
        if self.val_fraction + self.holdout_fraction >= 1:
            raise ValidationError("val_fraction + holdout_fraction must leave images to train on")


@dataclass(frozen=True)
class LabelledBox:
    cls: str
    xyxy: tuple[float, float, float, float]
    source: str  # "confirmed", "corrected", "missed" or "filled"
    annotation_id: str | None = None


@dataclass
class ImageLabels:
    object_id: str
    sha256: str
    path: Path
    width: int
    height: int
    source: str
    boxes: list[LabelledBox] = field(default_factory=list)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    content_hash: str
    images: dict[str, int]
    objects: dict[str, int]
    class_counts: dict[str, int]
    names: tuple[str, ...]
    background_images: int
    skipped_images: int
    rejected_boxes: list[dict[str, Any]]
    annotation_count: int

    @property
    def data_yaml(self) -> Path:
        return self.path / "data.yaml"


def split_of(sha256: str, options: ExportOptions) -> str:
    """The split an image belongs to: a pure function of its bytes' hash and the seed."""
    digest = hashlib.sha256(f"{options.seed}:{sha256}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < options.holdout_fraction:
        return "holdout"
    if position < options.holdout_fraction + options.val_fraction:
        return "val"
    return "train"


def labelled_images(wb: Workbench, collection_id: str, extractor_key: str | None,
                    options: ExportOptions) -> tuple[list[ImageLabels], dict[str, Any]]:
    """Ground truth per reviewed image, from its annotations (and, with "fill", detections).

    ``extractor_key`` is the version whose detections were reviewed; ``None`` takes, per
    image, the version its newest annotation was made on (ground truth for evaluating a
    version that nobody reviewed). Returns the images and a report: skipped images, rejected
    boxes, annotations used.
    """
    with wb.db.read() as conn:
        annotations = conn.execute(
            sa.select(t.annotations).where(t.annotations.c.collection_id == collection_id,
                                           t.annotations.c.deleted_at.is_(None))
            .order_by(t.annotations.c.created_at, t.annotations.c.id)).all()
        reviewed_on = {a.object_id: a.extractor_key for a in annotations}
        if extractor_key is not None:
            reviewed_on = dict.fromkeys(reviewed_on, extractor_key)
            if options.pseudo_label:  # every image this version processed, reviewed or not
                processed = conn.execute(sa.select(t.documents.c.object_id).where(
                    t.documents.c.collection_id == collection_id,
                    t.documents.c.extractor_key == extractor_key)).scalars()
                reviewed_on.update(dict.fromkeys(processed, extractor_key))
        object_ids = sorted(reviewed_on)
        keys = sorted(set(reviewed_on.values()))
        detections = [d for d in conn.execute(sa.select(t.detections).where(
            t.detections.c.collection_id == collection_id,
            t.detections.c.extractor_key.in_(keys),
            t.detections.c.object_id.in_(object_ids)).order_by(
                t.detections.c.object_id, t.detections.c.idx)).all()
            if d.extractor_key == reviewed_on[d.object_id]] if object_ids else []
        objects = {r.id: r for r in conn.execute(sa.select(t.objects).where(
            t.objects.c.id.in_(object_ids)))} if object_ids else {}
    latest: dict[str, Any] = {}  # newest annotation per detection
    missed: dict[str, list] = {}
    checked: dict[str, list[str]] = {}  # "no_objects" marks: looked over, nothing to add
    for a in annotations:
        if a.label == "missed":
            missed.setdefault(a.object_id, []).append(a)
        elif a.label == NO_OBJECTS:
            checked.setdefault(a.object_id, []).append(a.id)
        else:
            latest[a.document_id] = a
    annotated = {a.object_id for a in annotations}
    by_object: dict[str, list] = {}
    for d in detections:
        by_object.setdefault(d.object_id, []).append(d)
    from workbench.ingest import FORMAT_EXTENSIONS

    images, skipped, rejected, used = [], [], [], []
    for object_id in object_ids:
        obj = objects[object_id]
        item = ImageLabels(object_id, obj.sha256, wb.blobs.path_for(
            obj.sha256, FORMAT_EXTENSIONS[obj.format]), obj.width, obj.height, obj.source)
        unreviewed, image_used = [], []
        for det in by_object.get(object_id, []):
            verdict = latest.get(det.id)
            if verdict is None or verdict.label not in ("confirmed", "corrected",
                                                        "false_positive"):
                unreviewed.append(det)
                continue
            image_used.append(verdict.id)
            if verdict.label == "false_positive":
                continue
            payload = verdict.payload
            box = center_to_xyxy(payload["bbox"]) if verdict.label == "corrected" and \
                payload.get("bbox") else (det.x1, det.y1, det.x2, det.y2)
            cls = payload.get("true_class") or det.class_name
            _add(item, LabelledBox(cls, box, verdict.label, verdict.id), rejected)
        image_used.extend(checked.get(object_id, []))
        for a in missed.get(object_id, []):
            image_used.append(a.id)
            _add(item, LabelledBox(a.payload["true_class"], center_to_xyxy(a.payload["bbox"]),
                                   "missed", a.id), rejected)
        if object_id not in annotated and not _sure_of(unreviewed, options.fill_threshold):
            # A pseudo-labelled image the model was unsure about, or found nothing on, is
            # no evidence of anything: as an empty label file it would teach the model that
            # every object it missed there (a whole night scene) is background.
            skipped.append({"object_id": object_id, "source": obj.source,
                            "reason": "not reviewed and the model is unsure of it (a "
                                      "detection under fill_threshold, or none)"})
            continue
        if unreviewed and options.unreviewed == "skip":
            skipped.append({"object_id": object_id, "source": obj.source,
                            "reason": f"{len(unreviewed)} detection(s) not reviewed"})
            continue
        used.extend(image_used)
        for det in unreviewed:
            if det.confidence >= options.fill_threshold:
                _add(item, LabelledBox(det.class_name, (det.x1, det.y1, det.x2, det.y2),
                                       "filled"), rejected)
        images.append(item)
    return images, {"skipped": skipped, "rejected_boxes": rejected,
                    "annotation_ids": sorted(set(used))}


def _sure_of(detections: list, threshold: float) -> bool:
    """Whether the model's boxes alone can label an image: it found something, and nothing
    it found is under ``threshold``."""
    return bool(detections) and all(d.confidence >= threshold for d in detections)


def _add(item: ImageLabels, box: LabelledBox, rejected: list[dict[str, Any]]) -> None:
    """Clip a box to its image; refuse it with a reason if nothing is left of it."""
    x1, y1, x2, y2 = clip_xyxy(box.xyxy, item.width, item.height)
    if x2 - x1 < MIN_BOX_PX or y2 - y1 < MIN_BOX_PX:
        rejected.append({"object_id": item.object_id, "annotation_id": box.annotation_id,
                         "class": box.cls, "xyxy": list(box.xyxy),
                         "reason": f"degenerate after clipping to the {item.width}×"
                                   f"{item.height} image ({x2 - x1:.1f}×{y2 - y1:.1f} px)"})
        return
    item.boxes.append(LabelledBox(box.cls, (x1, y1, x2, y2), box.source, box.annotation_id))


def hard_negatives(wb: Workbench, collection_id: str, extractor_key: str
                   ) -> list[dict[str, Any]]:
    """The collection's hard-negative list for one version (the ``hard_negative`` rule fills
    it): detections whose newest live verdict is still ``false_positive``."""
    with wb.db.read() as conn:
        rows = conn.execute(sa.select(t.hard_negatives).where(
            t.hard_negatives.c.collection_id == collection_id,
            t.hard_negatives.c.extractor_key == extractor_key)
            .order_by(t.hard_negatives.c.detection_id)).all()
        ids = [r.detection_id for r in rows]
        verdicts = conn.execute(sa.select(t.annotations.c.document_id, t.annotations.c.label)
                                .where(t.annotations.c.document_id.in_(ids),
                                       t.annotations.c.deleted_at.is_(None))
                                .order_by(t.annotations.c.created_at, t.annotations.c.id)
                                ).all() if ids else []
    newest = {v.document_id: v.label for v in verdicts}
    return [{"detection_id": r.detection_id, "object_id": r.object_id, "class": r.class_name,
             "xyxy": list(r.xyxy), "annotation_id": r.annotation_id}
            for r in rows if newest.get(r.detection_id) == "false_positive"]


def class_names(base: tuple[str, ...], images: list[ImageLabels]) -> tuple[str, ...]:
    """The base model's names in their order, then new classes (sorted, so stable)."""
    new = sorted({b.cls for image in images for b in image.boxes} - set(base))
    return tuple(base) + tuple(new)


MANIFEST_GENERATOR = "flywheel-workbench export"


def is_previous_export(folder: Path) -> bool:
    """Whether a folder is an export this project wrote (so it may be replaced)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    # Exports written before the generator key existed carry these keys.
    return manifest.get("generator") == MANIFEST_GENERATOR or {
        "collection", "extractor", "content_hash", "annotation_ids"} <= set(manifest)


def export_yolo(wb: Workbench, collection: str, out: Path | str, version: str | None = None,
                options: ExportOptions | None = None) -> ExportResult:
    """Write the dataset to ``out`` and return what was written.

    ``out`` must be a new folder, an empty one or an earlier export (which is replaced once
    the new one is complete); never the workspace, a folder inside it or one that holds it.
    """
    return _export(wb, collection, out, version, options, allow_under=None)


def export_into_workspace(wb: Workbench, collection: str, name: str,
                          version: str | None = None, options: ExportOptions | None = None
                          ) -> ExportResult:
    """An export kept in the workspace's own ``exports/`` folder (training runs, the app's
    preview)."""
    return _export(wb, collection, wb.home / "exports" / name, version, options,
                   allow_under=wb.home / "exports")


def _export(wb: Workbench, collection: str, out: Path | str, version: str | None,
            options: ExportOptions | None, allow_under: Path | None) -> ExportResult:
    options = options or ExportOptions()
    final = check_output_folder(out, wb.home, is_previous_export, "an export",
                                allow_under=allow_under)
    target = wb.collections.get(collection)
    chosen = wb.registry.get(target.extractor_name, version or target.active_version)
    images, report = labelled_images(wb, target.id, chosen.key, options)
    if not images:
        raise ValidationError(
            f"nothing to export from {target.name!r}: no reviewed image qualifies "
            f"({len(report['skipped'])} skipped because not every detection was reviewed — "
            "review them, or export with unreviewed='fill')")
    with replace_folder(final, is_previous_export) as staging:
        return _write(wb, staging, final, target, chosen, images, report, options)


def _write(wb: Workbench, out: Path, final: Path, target, chosen, images: list[ImageLabels],
           report: dict[str, Any], options: ExportOptions) -> ExportResult:
    """Write the dataset into ``out``, a staging folder that will be renamed to ``final``."""
    names = class_names(chosen.classes, images)
    ids = {name: i for i, name in enumerate(names)}
    counts: Counter = Counter()
    objects: Counter = Counter()
    classes: Counter = Counter()
    background = 0
    coco: dict[str, dict] = {s: {"images": [], "annotations": [], "categories": [
        {"id": i + 1, "name": n} for i, n in enumerate(names)]} for s in SPLITS}
    manifest_images = []
    for image in sorted(images, key=lambda i: i.object_id):
        split = split_of(image.sha256, options)
        stem = _stem(image)
        image_file = out / "images" / split / f"{stem}{image.path.suffix}"
        label_file = out / "labels" / split / f"{stem}.txt"
        image_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.parent.mkdir(parents=True, exist_ok=True)
        _place_image(image.path, image_file, options.link)
        lines = []
        for box in image.boxes:
            cx, cy, w, h = xyxy_to_yolo(box.xyxy, image.width, image.height)
            lines.append(f"{ids[box.cls]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            classes[box.cls] += 1
        label_file.write_text("".join(line + "\n" for line in lines))
        counts[split] += 1
        objects[split] += len(lines)
        background += not lines
        image_id = len(coco[split]["images"]) + 1
        coco[split]["images"].append({"id": image_id, "file_name": str(image_file.relative_to(
            out)), "width": image.width, "height": image.height})
        for box in image.boxes:
            x1, y1, x2, y2 = box.xyxy
            coco[split]["annotations"].append({
                "id": len(coco[split]["annotations"]) + 1, "image_id": image_id,
                "category_id": ids[box.cls] + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        manifest_images.append({"object_id": image.object_id, "sha256": image.sha256,
                                "split": split, "file": str(image_file.relative_to(out)),
                                "objects": len(lines)})
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in names))
    yaml_names = "\n".join(f"  {i}: {json.dumps(n)}" for i, n in enumerate(names))
    splits = [f"{s}: images/{s}" for s in ("train", "val") if counts[s]]
    if not counts["val"]:
        splits.append("val: images/train")  # ultralytics needs a val split to train
    if counts["holdout"]:
        splits.append("test: images/holdout")
    (out / "data.yaml").write_text(
        f"# Exported by Flywheel Workbench from {target.name} ({chosen.key})\n"
        f"path: {json.dumps(str(final))}\n" + "\n".join(splits) + "\n"
        f"nc: {len(names)}\nnames:\n{yaml_names}\n")
    if options.coco:
        (out / "coco").mkdir()
        for split in SPLITS:
            if counts[split]:
                (out / "coco" / f"{split}.json").write_text(json.dumps(coco[split]))
    content_hash = _content_hash(out, {m["file"]: m["sha256"] for m in manifest_images})
    splits_of = {m["object_id"]: m["split"] for m in manifest_images}
    negatives = [{**n, "split": splits_of.get(n["object_id"])}  # None: image not exported
                 for n in hard_negatives(wb, target.id, chosen.key)]
    manifest = {
        "generator": MANIFEST_GENERATOR, "collection": target.name,
        "extractor": chosen.key, "names": list(names),
        "options": asdict(options), "images": manifest_images,
        "annotation_ids": report["annotation_ids"], "skipped_images": report["skipped"],
        "rejected_boxes": report["rejected_boxes"], "hard_negatives": negatives,
        "content_hash": content_hash,
        "counts": {"images": dict(counts), "objects": dict(objects),
                   "classes": dict(classes), "background_images": background},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return ExportResult(final, content_hash, dict(counts), dict(objects), dict(classes), names,
                        background, len(report["skipped"]), report["rejected_boxes"],
                        len(report["annotation_ids"]))


def _stem(image: ImageLabels) -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(image.source).stem)
    return f"{name[:80]}_{image.object_id[-8:]}"


def _place_image(source: Path, target: Path, link: bool) -> None:
    """Link the blob (no copy), or copy it; an EXIF-rotated image is written upright, since
    the labels are in upright pixels and not every reader applies the orientation."""
    from PIL import Image

    with Image.open(source) as probe:
        orientation = probe.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        from workbench.ingest import load_image

        load_image(source).save(target, quality=95)
        return
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not allowed
            pass
    shutil.copyfile(source, target)


def _content_hash(root: Path, image_hashes: dict[str, str]) -> str:
    """A hash of every label file, every image (by the sha256 of its blob, already known —
    images are not read again) and the class list: equal exports of equal inputs hash
    equal, wherever they are written."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative in ("data.yaml", "manifest.json") or relative.startswith("coco/"):
            continue  # data.yaml holds the absolute path; the others are derived
        digest.update(relative.encode())
        if relative in image_hashes:
            digest.update(bytes.fromhex(image_hashes[relative]))
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
