"""Collections and batch runs: every image of a collection's buckets through an extractor.

A batch run is a job. It takes the collection's objects that have no document yet for the
chosen extractor version, a batch at a time: decode (threads) → extract → check the outputs
against the spec → upsert vectors (ids are deterministic, so a retry overwrites rather than
duplicates) → commit documents, detections and progress in one transaction. A run killed
at any point resumes with no duplicate document, detection or vector.

With ``WORKBENCH_EXECUTOR=ray`` the same job decodes and runs the model on a Ray cluster
(:mod:`workbench.executors.ray_data`) and writes here, through the same ``_persist``.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from workbench.boxes import center_to_xyxy, clip_xyxy
from workbench.domain import Collection, Detection, ExtractorVersion
from workbench.errors import JobFailed, NotFoundError, ValidationError
from workbench.events import record_event
from workbench.images import load_image
from workbench.paging import Keyset, Page
from workbench.params import DetectParams
from workbench.store import tables as t
from workbench.store.metadata import as_utc, new_id, utcnow

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.jobs import JobContext, ProgressListener
    from workbench.taxonomies import TaxonomyService
    from workbench.truth import TruthService


def default_params(version: ExtractorVersion) -> DetectParams:
    """Run at the size the model was trained at, when the registry knows it."""
    return DetectParams(imgsz=int(version.lineage.get("imgsz", DetectParams.imgsz)))


def uncertainty(found: list[dict[str, Any]]) -> float:
    """How unsure a version is about an image: the sum over its detections of ``1 - |2c - 1|``
    (a box at 0.5 counts 1, one at 0.95 counts 0.1); stored with the document, it is the
    image-review queue's first key."""
    return float(sum(1 - abs(2 * float(d["confidence"]) - 1) for d in found))


def document_id(collection_id: str, object_id: str, extractor_key: str) -> str:
    """Deterministic, so that a retried batch writes the same ids (and vector ids)."""
    digest = hashlib.sha1(f"{collection_id}|{object_id}|{extractor_key}".encode()).hexdigest()
    return f"doc_{digest[:20]}"


class CollectionService:
    """Create, find and list collections, and choose their active version."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db

    def create(self, name: str, buckets: list[str], extractor: str = "yolo_detector",
               version: str | None = None) -> Collection:
        """Bind buckets to an extractor version (default: the newest); a taken name is refused."""
        if not name or len(name) > 200:
            raise ValidationError("a collection needs a name of 1-200 characters")
        if not buckets:
            raise ValidationError("a collection needs at least one source bucket")
        bucket_ids = [self.wb.buckets.get(b).id for b in buckets]
        chosen = self.wb.registry.get(extractor, version)
        with self.db.write() as conn:
            self.db.insert_named(conn, t.collections, "collection", id=new_id("col"), name=name,
                                 extractor_name=chosen.name, active_version=chosen.version,
                                 bucket_ids=bucket_ids, created_at=utcnow())
        return self.get(name)

    def get(self, name_or_id: str) -> Collection:
        """A collection by name or id; NotFoundError (naming the collections there are) if none."""
        row = self.db.find(t.collections, name_or_id)
        if row is None:
            known = ", ".join(c.name for c in self.list()) or "none yet"
            raise NotFoundError(f"no collection {name_or_id!r} (collections: {known}); create "
                                "one with `workbench collections create NAME --bucket B`")
        return collection_from_row(row)

    def list(self) -> list[Collection]:
        """Every collection, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.collections).order_by(t.collections.c.created_at))
            return [collection_from_row(r) for r in rows]

    def exists(self, name: str) -> bool:
        """Whether a collection of this name exists (by name only, not by id)."""
        with self.db.read() as conn:
            return conn.execute(sa.select(t.collections.c.id).where(
                t.collections.c.name == name)).first() is not None

    def set_active_version(self, collection: str, version: str) -> Collection:
        """Make a registered version the collection's active one."""
        current = self.get(collection)
        self.wb.registry.get(current.extractor_name, version)  # must exist
        with self.db.write() as conn:
            conn.execute(t.collections.update().where(t.collections.c.id == current.id)
                         .values(active_version=version))
        return self.get(current.id)

    def versions_run(self, collection: Collection) -> list[str]:
        """Extractor keys that have documents in this collection."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.documents.c.extractor_key).distinct().where(
                t.documents.c.collection_id == collection.id)).scalars().all()
        return sorted(rows)

    def count_objects(self, collection: Collection) -> int:
        """How many images the collection's buckets hold."""
        with self.db.read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(t.objects).where(
                t.objects.c.bucket_id.in_(collection.bucket_ids))).scalar_one()


class DetectionService:
    """Batch runs of a collection's images through an extractor version, and the detections
    they stored. When a run completes, the ground truth carries over to the new boxes
    (``truth``) and ``materialize`` taxonomies classify them (``taxonomies``)."""

    def __init__(self, wb: Workbench, truth: TruthService, taxonomies: TaxonomyService):
        self.wb = wb
        self.db = wb.db
        self.truth = truth
        self.taxonomies = taxonomies

    # -- starting runs -----------------------------------------------------------------
    def _params(self, collection: str, version: str | None, params: DetectParams | None,
                object_ids: list[str] | None = None, requested_by: str | None = None):
        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        return {"collection_id": target.id, "version": chosen.version,
                "params": asdict(params or default_params(chosen)),
                "object_ids": sorted(object_ids) if object_ids is not None else None,
                "requested_by": requested_by}

    def submit(self, collection: str, version: str | None = None,
               params: DetectParams | None = None, object_ids: list[str] | None = None,
               requested_by: str | None = None):
        """Queue a batch run for the background worker (all images, or ``object_ids``);
        ``requested_by`` names the job that asked for it (a retrain chain)."""
        return self.wb.jobs.submit("detect", self._params(collection, version, params,
                                                          object_ids, requested_by))

    def run(self, collection: str, version: str | None = None,
            params: DetectParams | None = None, listener: ProgressListener | None = None,
            object_ids: list[str] | None = None, requested_by: str | None = None):
        """Run a batch run in this process (still a durable, resumable job)."""
        job = self.wb.jobs.run_inline("detect", self._params(collection, version, params,
                                                             object_ids, requested_by),
                                      listener)
        if job.status == "failed":
            raise JobFailed(job)
        return job

    # -- the job -----------------------------------------------------------------------
    def execute(self, ctx: JobContext) -> dict[str, Any]:
        """The batch-run job: run what is left, carry ground truth over, apply taxonomies."""
        collection = self.wb.collections.get(ctx.params["collection_id"])
        version = self.wb.registry.get(collection.extractor_name, ctx.params["version"])
        params = DetectParams(**ctx.params["params"])
        total = self.wb.collections.count_objects(collection)
        done = self.count_documents(collection, version.key)
        ctx.progress(done, total, f"loading {version.key}")
        if self.wb.settings.executor == "ray":  # the same job on a Ray cluster
            from workbench.executors.ray_data import run_on_ray

            started = time.perf_counter()
            pending, total, done = self._left_to_do(ctx, collection, version, total, done)
            processed, detections = run_on_ray(self, ctx, collection, version, params,
                                               pending, done, total)
        else:
            started, processed, detections = self._run_here(ctx, collection, version, params,
                                                            total, done)
        summary = {"collection": collection.name, "version": version.key,
                   "documents": self.count_documents(collection, version.key),
                   "processed_now": processed, "detections_now": detections,
                   "seconds": round(time.perf_counter() - started, 2)}
        with self.db.write() as conn:
            record_event(conn, "batch.completed", {
                **summary, "collection_id": collection.id, "job_id": ctx.job.id,
                "requested_by": ctx.params.get("requested_by")})
        self.db.ensure_statistics()  # a large run changes which index each query should take
        # What people established carries over to this version's boxes on reviewed images.
        # (every image this version has processed, not only this run's: a resumed run must
        # not leave out what the killed one did)
        with self.db.read() as conn:
            processed_ids = conn.execute(sa.select(t.documents.c.object_id).where(
                t.documents.c.collection_id == collection.id,
                t.documents.c.extractor_key == version.key)).scalars().all()
        summary["images_carried_over"] = self.truth.refresh(collection.id, processed_ids,
                                                            known_only=True)
        # Taxonomies attached in "materialize" mode classify what this run added.
        applied = self.taxonomies.after_batch(collection.id, version.key)
        if applied:
            summary["taxonomies"] = [{k: r[k] for k in ("taxonomy", "taxonomy_version", "new")}
                                     for r in applied]
        return summary

    def _run_here(self, ctx: JobContext, collection: Collection, version: ExtractorVersion,
                  params: DetectParams, total: int, done: int) -> tuple[float, int, int]:
        """The local executor: decode threads and one model in this process. Returns when
        it started (after the model loaded), the images processed and the detections found."""
        extractor = self.wb.registry.load_extractor(version, params.model_params())
        started = time.perf_counter()
        # What is left is listed once (a resumed job lists it again). Then three stages
        # overlap: the next batch decodes and the previous one is written while the current
        # one runs through the model; writes stay in order on their own thread.
        pending, total, done = self._left_to_do(ctx, collection, version, total, done)
        batches = [pending[i : i + params.batch_size]
                   for i in range(0, len(pending), params.batch_size)]
        processed = detections = 0
        with ThreadPoolExecutor(max_workers=2) as decoder, \
                ThreadPoolExecutor(max_workers=1) as prefetch, \
                ThreadPoolExecutor(max_workers=1) as writer:

            bgr_memory = version.kind == "yolo"

            def decode(batch):
                return list(decoder.map(partial(self._decode, bgr_memory=bgr_memory), batch))

            decoding = prefetch.submit(decode, batches[0]) if batches else None
            writing = None
            for index, batch in enumerate(batches):
                ctx.check_cancelled()
                images = decoding.result()
                if index + 1 < len(batches):
                    decoding = prefetch.submit(decode, batches[index + 1])
                outputs = extractor.process(images)
                if writing is not None:
                    detections += writing.result()
                writing = writer.submit(self._persist, ctx, collection, version, batch, outputs)
                processed += len(batch)
                rate = processed / max(time.perf_counter() - started, 1e-9)
                ctx.progress(done + processed, total,
                             f"{version.key}: {done + processed}/{total} images "
                             f"({rate:.1f} img/s)")
            if writing is not None:
                detections += writing.result()
        return started, processed, detections

    def _left_to_do(self, ctx: JobContext, collection: Collection, version: ExtractorVersion,
                    total: int, done: int) -> tuple[list[Any], int, int]:
        """The objects this run still has to process, in order, with the run's total and how
        many of it are done (a run over chosen ``object_ids`` counts those only)."""
        pending = self._pending(collection, version)
        subset = ctx.params.get("object_ids")
        if subset is not None:
            wanted = set(subset)
            pending = [row for row in pending if row.id in wanted]
            total, done = len(wanted), len(wanted) - len(pending)
        return pending, total, done

    def _decode(self, row, bgr_memory: bool = False):
        """An RGB array (what extractors take). ``bgr_memory``: laid out in memory as BGR,
        so that the YOLO extractor hands ultralytics the BGR it expects without copying the
        image on the model's thread; the copy is made here, on a decoder thread, ahead of
        the model. (Only for YOLO: the view has negative strides, which other code, such as
        ``torch.from_numpy``, may refuse.)"""
        import numpy as np

        rgb = np.asarray(load_image(self.wb.image_path(row)))
        if not bgr_memory or rgb.ndim != 3 or rgb.shape[2] != 3:
            return rgb
        return np.ascontiguousarray(rgb[..., ::-1])[..., ::-1]

    def _pending(self, collection: Collection, version: ExtractorVersion):
        """Objects of the collection that this version has no document for yet, in order."""
        done = sa.select(t.documents.c.object_id).where(
            t.documents.c.collection_id == collection.id,
            t.documents.c.extractor_key == version.key)
        query = (sa.select(t.objects)
                 .where(t.objects.c.bucket_id.in_(collection.bucket_ids),
                        t.objects.c.id.not_in(done))
                 .order_by(t.objects.c.created_at, t.objects.c.id))
        with self.db.read() as conn:
            return conn.execute(query).all()

    def count_documents(self, collection: Collection, extractor_key: str) -> int:
        """How many images of the collection this extractor version has processed."""
        with self.db.read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(t.documents).where(
                t.documents.c.collection_id == collection.id,
                t.documents.c.extractor_key == extractor_key)).scalar_one()

    def _persist(self, ctx, collection, version, batch, outputs) -> int:
        import numpy as np

        from workbench.extractors.spec import check_outputs

        spec = version.spec
        if len(outputs) != len(batch):
            raise ValidationError(f"{version.key} returned {len(outputs)} results for "
                                  f"{len(batch)} images")
        documents, detection_rows = [], []
        vectors: dict[str, tuple[list[str], list[Any]]] = {
            f.feature_name: ([], []) for f in spec.embeddings}
        for row, out in zip(batch, outputs, strict=True):
            found = out.get("detections") if "detections" in out else None
            check_outputs(spec, out, len(found) if found is not None else None)
            doc_id = document_id(collection.id, row.id, version.key)
            json_features = {f.feature_name: out[f.feature_name] for f in spec.features
                             if f.feature_type == "json" and f.feature_name != "detections"}
            documents.append({"id": doc_id, "collection_id": collection.id,
                              "object_id": row.id, "extractor_key": version.key,
                              "features": json_features, "n_detections": len(found or []),
                              "uncertainty": uncertainty(found or []),
                              "job_id": ctx.job.id, "created_at": utcnow()})
            det_ids = [f"{doc_id}_{i}" for i in range(len(found or []))]
            for i, det in enumerate(found or []):
                x1, y1, x2, y2 = clip_xyxy(center_to_xyxy(det["bbox"]), row.width, row.height)
                detection_rows.append({
                    "id": det_ids[i], "document_id": doc_id, "collection_id": collection.id,
                    "object_id": row.id, "extractor_key": version.key, "idx": i,
                    "class_name": det["class"], "confidence": float(det["confidence"]),
                    "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                    "embedding_id": det_ids[i] if spec.embeddings else None})
            for feature in spec.embeddings:
                ids, rows = vectors[feature.feature_name]
                values = np.asarray(out[feature.feature_name], dtype="float32")
                if feature.granularity == "detection":
                    ids.extend(det_ids)
                    rows.extend(values.reshape(len(det_ids), feature.embedding_dim))
                else:
                    ids.append(doc_id)
                    rows.append(values)
        # Vectors first: upserts by deterministic id are safe to repeat if we die before
        # the commit below, and the commit is what makes the documents count as done.
        for feature in spec.embeddings:
            ids, rows = vectors[feature.feature_name]
            self.wb.vectors.upsert(spec.feature_uri(feature.feature_name), ids,
                                   np.asarray(rows, dtype="float32") if rows else [],
                                   metric=feature.distance_metric)
        with self.db.write() as conn:
            conn.execute(t.documents.insert(), documents)
            if detection_rows:
                conn.execute(t.detections.insert(), detection_rows)
        return len(detection_rows)

    def embed_boxes(self, version: ExtractorVersion, boxes: list[tuple[str, tuple]]):
        """Detection embeddings, in ``version``'s feature space, of boxes ``(object_id,
        xyxy)`` that its model did not necessarily find: a float32 array, one L2-normalised
        row per box, in order. The extractor is loaded once per process and version."""
        import numpy as np

        if version.kind != "yolo":
            raise ValidationError(f"{version.key} cannot embed arbitrary boxes (only YOLO "
                                  "versions can); use its own detections")
        cache = self.__dict__.setdefault("_embedders", {})
        if version.key not in cache:
            cache[version.key] = self.wb.registry.load_extractor(version)
        extractor = cache[version.key]
        by_object: dict[str, list[int]] = {}
        for index, (object_id, _) in enumerate(boxes):
            by_object.setdefault(object_id, []).append(index)
        dim = version.spec.feature("detection_embedding").embedding_dim
        out = np.zeros((len(boxes), dim), dtype="float32")
        for object_id, indexes in by_object.items():
            image = self._decode(self.wb.buckets.get_object(object_id))
            (pooled,) = extractor.embed_boxes([image], [[boxes[i][1] for i in indexes]])
            out[indexes] = pooled
        return out

    # -- reading results ---------------------------------------------------------------
    def detections(self, collection: Collection, extractor_key: str,
                   classes: list[str] | None = None, min_conf: float = 0.0,
                   max_conf: float = 1.0, object_ids: list[str] | None = None
                   ) -> list[Detection]:
        """One version's detections in a collection, filtered, in image order."""
        query = sa.select(t.detections).where(*_matching(
            collection, extractor_key, classes, min_conf, max_conf,
            by_image=object_ids is not None))
        if object_ids is not None:
            query = query.where(t.detections.c.object_id.in_(object_ids))
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(t.detections.c.object_id, t.detections.c.idx))
            return [detection_from_row(r) for r in rows]

    def get(self, detection_id: str) -> Detection:
        """A detection by id; NotFoundError if there is none."""
        row = self.db.find(t.detections, detection_id)
        if row is None:
            raise NotFoundError(f"no detection {detection_id!r}")
        return detection_from_row(row)

    def images_with_detections(self, collection: Collection, extractor_key: str,
                               classes: list[str] | None = None, min_conf: float = 0.0,
                               max_conf: float = 1.0, cursor: str | None = None,
                               limit: int = 24, count: bool = True) -> Page[str]:
        """One page of the ids of the images having a matching detection, in id order,
        after ``cursor`` (a previous page's ``next_cursor``; the first page without one),
        with how many there are: counting stops past ``paging.COUNT_LIMIT`` images (the
        page says "more than"), so that a page costs a bounded read at any size.

        Pages are keyset pages on ``ix_detections_image`` (an OFFSET page read every image
        before it, and a DISTINCT over the version sorted them all: 9 s a page at 1M
        detections). A filter is applied one of two ways, chosen here because SQLite cannot
        tell how many detections a class or confidence filter lets through: when a probe of
        the version's class or confidence index finds at most ``FEW_MATCHES``, the images
        are those of the detections found there; otherwise each image's detections are
        checked as the walk reaches it, where matches are common enough that a page turns
        up early. At 1M detections a page costs 0.07 s of CPU unfiltered, at most 0.3
        filtered (the bounded count of a filter that tens of thousands of images pass).
        Without ``count`` the total is only what was served (see ``Keyset.page``): for a
        caller that knows it another way (``count_images_with_detections``)."""
        c = t.detections.c
        scope = {"collection": collection.id, "version": extractor_key,
                 "classes": sorted(classes or []), "min_conf": min_conf, "max_conf": max_conf}
        terms = _matching(collection, extractor_key, classes, min_conf, max_conf,
                          by_image=True)
        with self.db.read() as conn:
            if classes or min_conf > 0.0 or max_conf < 1.0:
                found = t.detections.alias("found")  # not correlated with the outer query
                matching = sa.select(found.c.object_id).where(*_matching(
                    collection, extractor_key, classes, min_conf, max_conf, by_image=False,
                    table=found))
                probe = matching.with_only_columns(found.c.confidence).limit(FEW_MATCHES + 1)
                if conn.execute(sa.select(sa.func.count()).select_from(probe.subquery())
                                ).scalar_one() <= FEW_MATCHES:
                    terms = [*terms[:2], c.object_id.in_(matching)]
            query = sa.select(c.object_id).distinct().where(*terms)
            return _IMAGE_ORDER.page(conn, query, cursor, limit, item=lambda row: row.object_id,
                                     scope=scope, count=count)

    def count_images_with_detections(self, collection: Collection, extractor_key: str) -> int:
        """How many images this version found at least one thing on, exactly, from the
        documents' index: every processed image less those without a detection. (An image
        without detections has uncertainty 0, the sum over none of them, or none stored if
        its row was written directly, so the index's ``uncertainty <= 0`` and NULL ranges
        hold them all and only the few others there are read; counting the version's
        distinct images among its detections read them all: 0.2 s at 1M detections.)"""
        d = t.documents.c
        version = (d.collection_id == collection.id, d.extractor_key == extractor_key)
        with self.db.read() as conn:
            processed = conn.execute(sa.select(sa.func.count()).where(*version)).scalar_one()
            empty = conn.execute(sa.select(sa.func.count()).where(
                *version, sa.or_(d.uncertainty <= 0, d.uncertainty.is_(None)),
                d.n_detections == 0)).scalar_one()
        return processed - empty

    def diff(self, collection: Collection, base_key: str, candidate_key: str,
             object_ids: list[str] | None = None, match_iou: float = 0.5,
             moved_iou: float = 0.9) -> list[ImageDiff]:
        """Per image, the detections added, removed, relabelled or moved from base to
        candidate, over the images both versions have processed."""
        with self.db.read() as conn:
            common = set(conn.execute(sa.select(t.documents.c.object_id).where(
                t.documents.c.collection_id == collection.id,
                t.documents.c.extractor_key == base_key)).scalars())
            common &= set(conn.execute(sa.select(t.documents.c.object_id).where(
                t.documents.c.collection_id == collection.id,
                t.documents.c.extractor_key == candidate_key)).scalars())
        if object_ids is not None:
            common &= set(object_ids)
        ids = sorted(common)
        base, candidate = {}, {}
        for start in range(0, len(ids), 500):  # an IN list per query, within SQLite's limit
            chunk = ids[start:start + 500]
            for det in self.detections(collection, base_key, object_ids=chunk):
                base.setdefault(det.object_id, []).append(det)
            for det in self.detections(collection, candidate_key, object_ids=chunk):
                candidate.setdefault(det.object_id, []).append(det)
        return [diff_detections(base.get(i, []), candidate.get(i, []), i, match_iou, moved_iou)
                for i in ids]

    def class_counts(self, collection: Collection, extractor_key: str,
                     at_most: int | None = None) -> dict[str, int]:
        """One version's detections in a collection per predicted class.

        Exactly, the count reads the version's whole class index (0.13 s of CPU at 1M
        detections, ten times that at 10M). With ``at_most``, each class is counted only up
        to ``at_most + 1`` (a count over ``at_most`` says "more than that"), from classes
        found by one index seek each: a cost bounded by the number of classes, whatever the
        version's size (5 ms at 1M), for pages that show counts on every first render."""
        c = t.detections.c
        version = (c.collection_id == collection.id, c.extractor_key == extractor_key)
        with self.db.read() as conn:
            if at_most is None:
                rows = conn.execute(sa.select(c.class_name, sa.func.count()).where(*version)
                                    .group_by(c.class_name)).all()
                return dict(sorted(rows))
            counts: dict[str, int] = {}
            name = conn.execute(sa.select(sa.func.min(c.class_name)).where(*version)).scalar()
            while name is not None:
                some = (sa.select(c.class_name)  # in the index: no row is read
                        .where(*version, c.class_name == name).limit(at_most + 1))
                counts[name] = conn.execute(sa.select(sa.func.count()).select_from(
                    some.subquery())).scalar_one()
                name = conn.execute(sa.select(sa.func.min(c.class_name)).where(
                    *version, c.class_name > name)).scalar()
        return counts


@dataclass(frozen=True)
class ImageDiff:
    """What changed on one image between two versions (boxes matched by IoU)."""

    object_id: str
    added: tuple[Detection, ...]
    removed: tuple[Detection, ...]
    class_changed: tuple[tuple[Detection, Detection], ...]
    moved: tuple[tuple[Detection, Detection, float], ...]
    unchanged: int

    @property
    def changed(self) -> bool:
        """Whether any box was added, removed, relabelled or moved."""
        return bool(self.added or self.removed or self.class_changed or self.moved)


def diff_detections(base: list[Detection], candidate: list[Detection], object_id: str,
                    match_iou: float = 0.5, moved_iou: float = 0.9) -> ImageDiff:
    """Pair the two versions' boxes one-to-one (Hungarian on IoU, class-agnostic); a pair
    under ``match_iou`` is no pair; a pair under ``moved_iou`` is a moved box."""
    import torch
    from scipy.optimize import linear_sum_assignment
    from torchvision.ops import box_iou

    pairs: list[tuple[int, int, float]] = []
    if base and candidate:
        iou = box_iou(torch.tensor([d.xyxy for d in base]),
                      torch.tensor([d.xyxy for d in candidate])).numpy()
        rows, cols = linear_sum_assignment(-iou)
        pairs = [(r, c, float(iou[r, c])) for r, c in zip(rows, cols, strict=True)
                 if iou[r, c] >= match_iou]
    matched_base = {r for r, _, _ in pairs}
    matched_candidate = {c for _, c, _ in pairs}
    class_changed, moved, unchanged = [], [], 0
    for r, c, overlap in pairs:
        if base[r].class_name != candidate[c].class_name:
            class_changed.append((base[r], candidate[c]))
        elif overlap < moved_iou:
            moved.append((base[r], candidate[c], round(overlap, 4)))
        else:
            unchanged += 1
    return ImageDiff(
        object_id=object_id,
        added=tuple(d for i, d in enumerate(candidate) if i not in matched_candidate),
        removed=tuple(d for i, d in enumerate(base) if i not in matched_base),
        class_changed=tuple(class_changed), moved=tuple(moved), unchanged=unchanged)


_IMAGE_ORDER = Keyset("images with detections", ((t.detections.c.object_id, False),))
# A filter this few detections pass is paged from the class or confidence index: reading
# them all costs less than walking the version's images until a page of them turns up.
FEW_MATCHES = 10_000


def _matching(collection: Collection, extractor_key: str, classes: list[str] | None,
              min_conf: float, max_conf: float, by_image: bool,
              table: sa.FromClause = t.detections) -> list[sa.ColumnElement]:
    """The terms that select one version's detections of a collection (of ``table``, the
    detections or an alias of them) by class and confidence, the version's two first; a
    confidence range of [0, 1] (every detection) adds no term.

    ``by_image``: the query names or pages images, which ``ix_detections_image`` serves,
    and its class and confidence terms are written so that no index can serve them
    (``confidence + 0``, ``class_name || ''``). Otherwise SQLite's planner, which guesses
    a range's selectivity, takes the version's confidence or class index, reads every
    detection in the range and sorts them: 3 s for the detections of 12 images at 1M
    detections, against a millisecond from the image index."""
    c = table.c
    terms = [c.collection_id == collection.id, c.extractor_key == extractor_key]
    confidence = c.confidence + 0 if by_image else c.confidence
    if min_conf > 0.0:
        terms.append(confidence >= min_conf)
    if max_conf < 1.0:
        terms.append(confidence <= max_conf)
    if classes:
        terms.append((c.class_name.concat("") if by_image else c.class_name).in_(classes))
    return terms


def collection_from_row(row) -> Collection:
    """The Collection a row of the collections table describes."""
    return Collection(id=row.id, name=row.name, extractor_name=row.extractor_name,
                      active_version=row.active_version, bucket_ids=tuple(row.bucket_ids),
                      created_at=as_utc(row.created_at))


def detection_from_row(row) -> Detection:
    """The Detection a row of the detections table describes."""
    return Detection(id=row.id, document_id=row.document_id, object_id=row.object_id,
                     extractor_key=row.extractor_key, index=row.idx, class_name=row.class_name,
                     confidence=row.confidence, xyxy=(row.x1, row.y1, row.x2, row.y2),
                     embedding_id=row.embedding_id)
