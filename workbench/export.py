"""Export ground truth as a YOLO dataset (and COCO JSON) that ultralytics and FiftyOne read
unchanged.

What the seed's export script gets wrong, and what this one does instead:

1. One label file per *image*, named after the image, holding every object of the image.
2. Images are linked (or copied) beside the labels; ``data.yaml`` (and the same file as
   ``dataset.yaml``, the name FiftyOne's YOLOv5 importer looks for) names them; the split is by
   image, deterministic (a hash of the image's bytes and a seed), so no image is ever in two
   splits, and an optional holdout split is fixed the same way and never trained on.
3. Class ids follow the base model's ``names``; classes it does not know are appended.
4. Only **complete** images are exported by default (``unreviewed="skip"``): a person marked
   every object on them (see ``workbench.truth``). A partly reviewed image is left out, or,
   with ``unreviewed="fill"``, completed with the model's detections at or above a threshold
   that no known object or negative region covers — marked as pseudo-labels in the manifest.
5. Boxes come from the ground truth, whatever version people reviewed: confirmed, corrected
   and missed objects of every review, each object once. Regions marked false positive are
   hard negatives, listed in the manifest; a complete image with no object is a background
   image with an empty label file. Gold-set images are never exported.
6. Normalisation uses each image's real size (after EXIF orientation); boxes are clipped to
   the image and degenerate ones are refused with a message in the manifest.

``pseudo_label`` (with ``fill``) also adds images nobody reviewed on which the model is sure of
every box it found. The manifest lists the annotations, image hashes, class map, options,
boxes by origin and a content hash of the export.
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

from workbench.boxes import clip_xyxy, xyxy_to_yolo
from workbench.errors import ValidationError
from workbench.images import FORMAT_EXTENSIONS, load_image
from workbench.outdir import check_output_folder, replace_folder
from workbench.params import ExportOptions
from workbench.store import tables as t
from workbench.truth import NO_OBJECTS  # noqa: F401 — importable from here too

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.domain import Collection, ExtractorVersion
    from workbench.jobs import JobContext

SPLITS = ("train", "val", "holdout")
MIN_BOX_PX = 1.0  # a box thinner than a pixel after clipping is no object


@dataclass(frozen=True)
class LabelledBox:
    """One object of a training image, in pixel ``xyxy``, and where its label came from."""

    cls: str
    xyxy: tuple[float, float, float, float]
    source: str  # "confirmed", "corrected", "missed" or "filled"
    annotation_id: str | None = None
    origin: str = ""  # "review <version>" (people's, on that version) or "pseudo-label"


@dataclass
class ImageLabels:
    """One image to export: its blob, size, source name and labelled boxes."""

    object_id: str
    sha256: str
    path: Path
    width: int
    height: int
    source: str
    boxes: list[LabelledBox] = field(default_factory=list)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: where, its content hash, and counts by split, class and origin."""

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
    boxes_by_origin: dict[str, int] = field(default_factory=dict)

    @property
    def data_yaml(self) -> Path:
        """The dataset's ``data.yaml``, what ultralytics trains from."""
        return self.path / "data.yaml"


def export_zip(wb: Workbench, job_id: str) -> Path:
    """Where an export job's zip is kept: ``exports/<job id>.zip`` in the workspace."""
    return wb.home / "exports" / f"{job_id}.zip"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def split_of(sha256: str, options: ExportOptions) -> str:
    """The split an image belongs to: a pure function of its bytes' hash and the seed."""
    digest = hashlib.sha256(f"{options.seed}:{sha256}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < options.holdout_fraction:
        return "holdout"
    if position < options.holdout_fraction + options.val_fraction:
        return "val"
    return "train"


def labelled_images(wb: Workbench, collection_id: str, extractor_key: str,
                    options: ExportOptions) -> tuple[list[ImageLabels], dict[str, Any]]:
    """Training images from the ground truth; ``extractor_key`` is the version whose
    detections complete partly reviewed images (``fill``) and add pseudo-labelled ones.

    Returns the images and a report: skipped images, rejected boxes, annotations used, hard
    negatives (the negative regions of every exported image) and gold images left out.
    """
    from workbench.truth import box_iou

    truths = wb.truth.images(collection_id)
    gold = sorted(o for o, truth in truths.items() if truth.gold and truth.state == "complete")
    wanted = {o: tr for o, tr in truths.items() if not tr.gold and tr.state != "unreviewed"}
    if options.pseudo_label:
        with wb.db.read() as conn:
            processed = conn.execute(sa.select(t.documents.c.object_id).where(
                t.documents.c.collection_id == collection_id,
                t.documents.c.extractor_key == extractor_key)).scalars().all()
        for object_id in processed:
            wanted.setdefault(object_id, None)
    ids = sorted(wanted)
    with wb.db.read() as conn:
        objects = {r.id: r for r in conn.execute(sa.select(t.objects).where(
            t.objects.c.id.in_(ids)))} if ids else {}
        detections: dict[str, list] = {}
        if options.unreviewed == "fill" and ids:
            for d in conn.execute(sa.select(t.detections).where(
                    t.detections.c.collection_id == collection_id,
                    t.detections.c.extractor_key == extractor_key,
                    t.detections.c.object_id.in_(ids)).order_by(
                        t.detections.c.object_id, t.detections.c.idx)):
                detections.setdefault(d.object_id, []).append(d)
    images, skipped, rejected, used, negatives = [], [], [], [], []
    for object_id in ids:
        truth, obj = wanted[object_id], objects[object_id]
        item = ImageLabels(object_id, obj.sha256, wb.blobs.path_for(
            obj.sha256, FORMAT_EXTENSIONS[obj.format]), obj.width, obj.height, obj.source)
        if truth is None or truth.state == "unreviewed":
            if options.unreviewed != "fill" or not _sure_of(detections.get(object_id, []),
                                                            options.fill_threshold):
                # An image the model was unsure about, or found nothing on, is no evidence of
                # anything: as an empty label file it would teach the model that every object
                # it missed there (a whole night scene) is background.
                skipped.append({"object_id": object_id, "source": obj.source,
                                "reason": "not reviewed and the model is unsure of it (a "
                                          "detection under fill_threshold, or none)"})
                continue
            known = []
        else:
            if truth.state == "partial" and options.unreviewed != "fill":
                skipped.append({"object_id": object_id, "source": obj.source,
                                "reason": f"partly reviewed ({len(truth.objects)} object(s) "
                                          "known, image not marked done): complete it in image "
                                          "review, or export with unreviewed='fill'"})
                continue
            known = [*truth.objects, *truth.negatives]
            for box in truth.objects:
                _add(item, LabelledBox(box.cls, box.xyxy, box.label, box.annotation_id,
                                       f"review {box.extractor_key}"), rejected)
            used.extend(b.annotation_id for b in known)
            if truth.done_annotation_id:
                used.append(truth.done_annotation_id)
            negatives.extend({"object_id": object_id, "detection_id": n.detection_id,
                              "class": n.cls, "xyxy": list(n.xyxy),
                              "annotation_id": n.annotation_id} for n in truth.negatives)
        if truth is None or truth.state != "complete":
            # Complete what people said with the model's confident boxes that no known
            # object or negative region covers: pseudo-labels, counted apart.
            fill = [d for d in detections.get(object_id, [])
                    if d.confidence >= options.fill_threshold]
            if fill and known:
                overlap = box_iou([(d.x1, d.y1, d.x2, d.y2) for d in fill],
                                  [k.xyxy for k in known]).max(axis=1)
                fill = [d for d, o in zip(fill, overlap, strict=True) if o < 0.5]
            for d in fill:
                _add(item, LabelledBox(d.class_name, (d.x1, d.y1, d.x2, d.y2), "filled", None,
                                       "pseudo-label"), rejected)
        images.append(item)
    return images, {"skipped": skipped, "rejected_boxes": rejected,
                    "annotation_ids": sorted(set(used)), "hard_negatives": negatives,
                    "gold_images": gold}


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
    item.boxes.append(LabelledBox(box.cls, (x1, y1, x2, y2), box.source, box.annotation_id,
                                  box.origin))


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


class ExportService:
    """Training sets from the ground truth people established: YOLO folders with COCO files
    and a manifest, written whole or not at all."""

    def __init__(self, wb: Workbench):
        self.wb = wb

    def yolo(self, collection: str, out: Path | str, version: str | None = None,
             options: ExportOptions | None = None) -> ExportResult:
        """Write the dataset to ``out`` and return what was written.

        ``out`` must be a new folder, an empty one or an earlier export (which is replaced
        once the new one is complete); never the workspace, a folder inside it or one that
        holds it.
        """
        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        return self._export(target, chosen, out, options, allow_under=None)

    def into_workspace(self, collection: Collection, name: str,
                       version: ExtractorVersion | None = None,
                       options: ExportOptions | None = None) -> ExportResult:
        """An export kept in the workspace's own ``exports/`` folder (training runs, the
        app's preview); ``version`` (default: the active one) completes partly reviewed
        images with ``fill``."""
        chosen = version or self.wb.registry.get(collection.extractor_name,
                                                 collection.active_version)
        exports = self.wb.home / "exports"
        return self._export(collection, chosen, exports / name, options, allow_under=exports)

    def submit(self, collection: str, version: str | None = None,
               options: ExportOptions | None = None):
        """Queue an export into the workspace, zipped for download (the API's exports)."""
        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        return self.wb.jobs.submit("export", {"collection_id": target.id,
                                              "version": chosen.version,
                                              "options": asdict(options or ExportOptions())})

    def execute(self, ctx: JobContext) -> dict[str, Any]:
        """The export job: the dataset in ``exports/<job id>``, then one zip of it beside,
        written under a temporary name and renamed whole (a resumed job writes both
        again)."""
        import zipfile

        params = ctx.params
        target = self.wb.collections.get(params["collection_id"])
        chosen = self.wb.registry.get(target.extractor_name, params["version"])
        ctx.progress(0, 0, "exporting")
        result = self.into_workspace(target, ctx.job.id, chosen,
                                     ExportOptions(**params["options"]))
        files = sorted(p for p in result.path.rglob("*") if p.is_file())
        archive = export_zip(self.wb, ctx.job.id)
        partial = archive.with_name(archive.name + ".part")
        # Images are compressed already: stored, not deflated again.
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as bundle:
            for done, path in enumerate(files, 1):
                bundle.write(path, Path(ctx.job.id) / path.relative_to(result.path))
                if done % 200 == 0 or done == len(files):
                    ctx.check_cancelled()
                    ctx.progress(done, len(files), f"zipped {done}/{len(files)} files")
        os.replace(partial, archive)
        return {**_jsonable(asdict(result)), "zip": str(archive.relative_to(self.wb.home)),
                "zip_bytes": archive.stat().st_size}

    def _export(self, target: Collection, chosen: ExtractorVersion, out: Path | str,
                options: ExportOptions | None, allow_under: Path | None) -> ExportResult:
        wb, options = self.wb, options or ExportOptions()
        final = check_output_folder(out, wb.home, is_previous_export, "an export",
                                    allow_under=allow_under)
        images, report = labelled_images(wb, target.id, chosen.key, options)
        if not images:
            raise ValidationError(
                f"nothing to export from {target.name!r}: no complete image outside the gold "
                f"set ({len(report['skipped'])} skipped, {len(report['gold_images'])} in the "
                "gold set) — finish images in image review (mark each one done), or export "
                "with unreviewed='fill' to complete partly reviewed ones with the model's boxes")
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
    origins: Counter = Counter()
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
            origins[box.origin] += 1
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
    data_yaml = (f"# Exported by Flywheel Workbench from {target.name} ({chosen.key})\n"
                 f"path: {json.dumps(str(final))}\n" + "\n".join(splits) + "\n"
                 f"nc: {len(names)}\nnames:\n{yaml_names}\n")
    # The same file under the name FiftyOne's YOLOv5 importer looks for by default.
    for name in ("data.yaml", "dataset.yaml"):
        (out / name).write_text(data_yaml)
    if options.coco:
        (out / "coco").mkdir()
        for split in SPLITS:
            if counts[split]:
                (out / "coco" / f"{split}.json").write_text(json.dumps(coco[split]))
    content_hash = _content_hash(out, {m["file"]: m["sha256"] for m in manifest_images})
    splits_of = {m["object_id"]: m["split"] for m in manifest_images}
    negatives = [{**n, "split": splits_of[n["object_id"]]} for n in report["hard_negatives"]
                 if n["object_id"] in splits_of]
    manifest = {
        "generator": MANIFEST_GENERATOR, "collection": target.name,
        "extractor": chosen.key, "names": list(names),
        "options": asdict(options), "images": manifest_images,
        "annotation_ids": report["annotation_ids"], "skipped_images": report["skipped"],
        "rejected_boxes": report["rejected_boxes"], "hard_negatives": negatives,
        "content_hash": content_hash,
        "gold_images_left_out": len(report["gold_images"]),
        "counts": {"images": dict(counts), "objects": dict(objects),
                   "classes": dict(classes), "boxes_by_origin": dict(origins),
                   "background_images": background},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return ExportResult(final, content_hash, dict(counts), dict(objects), dict(classes), names,
                        background, len(report["skipped"]), report["rejected_boxes"],
                        len(report["annotation_ids"]), dict(origins))


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
        if relative in ("data.yaml", "dataset.yaml", "manifest.json") or \
                relative.startswith("coco/"):
            continue  # data.yaml holds the absolute path; the others are derived
        digest.update(relative.encode())
        if relative in image_hashes:
            digest.update(bytes.fromhex(image_hashes[relative]))
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
