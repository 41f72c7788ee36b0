"""FiftyOne sync: a collection as a persistent FiftyOne dataset, for inspection in its App.

One sample per image of the collection's buckets, by the path of its blob (nothing is
copied), with:

* the bucket's metadata fields (``camera_id``, ``timestamp``, … — a name FiftyOne reserves,
  such as ``id`` or ``tags``, gets a ``meta_`` prefix) and ``bucket``;
* per model version that has processed the image, ``pred_<version>`` (``pred_v1_0_0`` for
  ``1.0.0``): ``fo.Detections`` with the confidence, the workbench ``detection_id``, the
  verdict as a label tag (``confirmed``, ``corrected``, ``false_positive``, …) and, for a
  correction, ``true_class``; every taxonomy's stored label as ``taxonomy_<name>``; and the
  cluster of the collection's latest cluster run as ``cluster`` / ``cluster_name``;
* ``embedding_<version>``: the version's image embedding from the vector store, so that
  ``fiftyone.brain.compute_visualization(dataset, embeddings="embedding_v1_0_0")`` works (the
  sync can compute it: ``compute_visualization=True``, brain key ``img_viz_<version>``);
* ``ground_truth``: the ground truth of complete images (``gold`` tags the gold set)
  (:func:`workbench.export.labelled_images`) on images whose detections are all reviewed;
  ``None`` elsewhere, so ``dataset.exists("ground_truth")`` is the evaluable set;
* sample tags ``reviewed`` and the image-level marks (``missed``, ``no_objects``).

Boxes are absolute pixel ``xyxy`` everywhere in the library; here, and only here, they become
FiftyOne's relative top-left ``[x, y, w, h]`` (:func:`workbench.boxes.xyxy_to_fiftyone`).

**Incremental.** Each sample keeps ``wb_object_id`` and ``wb_sync_hash``, a hash of
everything the sync wrote to it. A re-sync builds the same description from the workspace and
writes only what differs: new images are added, changed samples updated in place (their ids,
and fields the user added, stay), unchanged ones are not touched, samples of images that left
the collection are deleted; samples someone else added (no ``wb_object_id``) are left alone.
No workbench table is involved.

**Watermark.** A sync leaves on the dataset (``info["workbench_watermark"]``) a fingerprint of
everything it read, taken from a dozen aggregate queries (counts, sums and newest timestamps
of the collection's objects, documents, detections, annotations, ground truth, taxonomy
labels, and the latest cluster run's names; :meth:`FiftyOneSync.watermark`). A re-sync whose
watermark is the same, on a dataset still holding the samples that sync left, returns at once
without reading a sample (``nothing_changed``); any other re-sync compares every sample.

**Bulk.** Samples are written as database documents in batches (``insert_many``,
``bulk_write``), shaped as FiftyOne itself stores them (:func:`_document`), with the schema
declared first as ``add_samples`` would declare it, and the samples' object ids and hashes
are read with one projected query: FiftyOne's per-sample path (building and validating an
``fo.Sample`` per image) ran at 140-270 samples/s.

**Where.** FiftyOne keeps its database in ``<workspace>/fiftyone-db``
(``FIFTYONE_DATABASE_DIR``, set by :meth:`Settings.apply_environment` before FiftyOne is first
imported). Its ``mongod`` starts with the first call in a process (a few seconds) and is
shared with other processes of the same workspace only (:func:`_start_database`).

FiftyOne is imported inside the functions that use it: ``import workbench`` never loads it.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import itertools
import logging
import marshal
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import sqlalchemy as sa

from workbench.boxes import xyxy_to_fiftyone
from workbench.errors import (
    ConfigError,
    MissingDependencyError,
    NotFoundError,
    ValidationError,
)
from workbench.images import FORMAT_EXTENSIONS
from workbench.store import tables as t
from workbench.store.blobs import BlobStore

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.domain import Collection, ExtractorVersion

log = logging.getLogger(__name__)

DEFAULT_PORT = 5151
ADDRESS = "127.0.0.1"
GROUND_TRUTH = "ground_truth"
OBJECT_FIELD = "wb_object_id"
HASH_FIELD = "wb_sync_hash"
IMAGE_EMBEDDING = "image_embedding"
# FiftyOne's own sample fields and this module's: a bucket metadata key with one of these
# names is written as meta_<key>.
RESERVED = {"id", "filepath", "tags", "metadata", "media_type", "created_at",
            "last_modified_at", "bucket", GROUND_TRUTH, OBJECT_FIELD, HASH_FIELD}
# Agreement of FiftyOne's evaluate_detections (COCO method) with pycocotools, in absolute
# mAP. Both use 101 recall points and COCO's greedy matching, and agree to 1e-15 on the demo;
# they order predictions of exactly equal confidence differently (which only float ties
# expose), hence the margin. True-positive, false-positive and false-negative counts must
# agree exactly.
CROSS_CHECK_TOLERANCE = 1e-3
WRITE_BATCH = 2000  # samples written per database round trip
WATERMARK = "workbench_watermark"  # dataset info: the workspace's mark at the last sync
SYNCED_SAMPLES = "workbench_samples"  # dataset info: how many samples that sync left
# Part of the watermark: a change to what the sync writes makes every stored mark stale.
SYNC_FORMAT = 2
LABELS = object()  # stands for an fo.Detections value when the schema is declared
COUNTS = ("tp", "fp", "fn")
VISUALIZATION_METHODS = ("pca", "umap", "tsne")

Progress = Callable[[int, int, str], None]


def dataset_name(collection_name: str) -> str:
    """The default FiftyOne dataset of a collection: ``workbench-<collection>``."""
    return f"workbench-{collection_name}"


@functools.lru_cache(maxsize=256)  # asked for every sample of a sync
def version_slug(version: str) -> str:
    """A field-name-safe form of a version: ``1.0.0`` → ``v1_0_0``."""
    return "v" + (re.sub(r"[^0-9A-Za-z]+", "_", version).strip("_") or "0")


def prediction_field(version: str) -> str:
    """The sample field of a version's predictions: ``pred_<slug>``."""
    return f"pred_{version_slug(version)}"


def embedding_field(version: str) -> str:
    """The sample field of a version's image embedding: ``embedding_<slug>``."""
    return f"embedding_{version_slug(version)}"


def _attribute(prefix: str, name: str) -> str:
    return f"{prefix}_{re.sub(r'[^0-9A-Za-z_]+', '_', name).strip('_')}"


@dataclass(frozen=True)
class SyncReport:
    """What one sync did; ``fields`` lists the per-version fields now in the dataset;
    ``nothing_changed``: the workspace's watermark matched the last sync's, so no sample was
    read or written."""

    dataset: str
    collection: str
    added: int
    updated: int
    unchanged: int
    removed: int
    samples: int
    versions: tuple[str, ...]
    fields: tuple[str, ...]
    database_dir: str
    seconds: float
    visualizations: tuple[str, ...] = ()
    nothing_changed: bool = False
    phases: dict[str, float] = field(default_factory=dict)  # seconds: watermark, read, write

    def summary(self) -> str:
        """The counts and the time in one line."""
        if self.nothing_changed:
            return (f"{self.dataset}: nothing changed since the last sync ({self.samples} "
                    f"samples, {self.seconds:.2f} s)")
        return (f"{self.dataset}: {self.added} added, {self.updated} updated, "
                f"{self.unchanged} unchanged, {self.removed} removed ({self.samples} samples, "
                f"{self.seconds:.1f} s)")


@dataclass(frozen=True)
class CrossCheck:
    """FiftyOne's ``evaluate_detections`` against the workbench's pycocotools evaluation on
    the same images; ``agrees`` when every mAP differs by at most ``tolerance`` and the
    TP/FP/FN counts at ``iou`` are equal."""

    version: str
    images: int
    iou: float
    tolerance: float
    workbench: dict[str, float | int | None]
    fiftyone: dict[str, float | int | None]
    differences: dict[str, float | None] = field(default_factory=dict)
    eval_key: str = ""

    @property
    def agrees(self) -> bool:
        """Whether every mAP is within ``tolerance`` and every TP/FP/FN count is equal.

        A figure undefined on one side only is a disagreement.
        """
        for name, delta in self.differences.items():
            if delta is None:  # one side undefined: agreement only when both are
                if (self.workbench[name] is None) != (self.fiftyone[name] is None):
                    return False
            elif abs(delta) > (0 if name in COUNTS else self.tolerance):
                return False
        return True

    def summary(self) -> str:
        """Every figure, workbench against FiftyOne, and the verdict, in one line."""
        def fmt(value):
            return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float)
                                                else str(value))

        parts = [f"{name} {fmt(self.workbench[name])} vs {fmt(self.fiftyone[name])}"
                 for name in self.workbench]
        verdict = "agree" if self.agrees else "DISAGREE"
        return (f"{self.version} on {self.images} reviewed images: {'; '.join(parts)} "
                f"(workbench vs FiftyOne) — {verdict} within {self.tolerance}")


def _import_fiftyone():
    """FiftyOne, imported on first use."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    try:
        import fiftyone as fo
    except ImportError as exc:  # pragma: no cover - fiftyone is in requirements.txt
        raise MissingDependencyError(
            "the FiftyOne sync needs fiftyone: pip install -r requirements.txt "
            "(then scripts/ensure_mongod.sh .venv/bin/python)") from exc
    return fo


_database = None  # the database service this process started or joined, kept alive


def _start_database() -> None:
    """Start, or join, a FiftyOne database service whose ``mongod`` uses the folder that
    ``FIFTYONE_DATABASE_DIR`` names, and point FiftyOne at it.

    FiftyOne's own service joins *any* FiftyOne database already running for this user,
    whatever its folder (another workspace's, or ``~/.fiftyone``'s), so the datasets would
    land there. This one joins only a service running ``mongod --dbpath`` on the same folder,
    and hands its port to FiftyOne (``FIFTYONE_PRIVATE_DATABASE_PORT``, which FiftyOne's
    connection honours and child processes such as the App server inherit). Nothing is done
    when FiftyOne is given a database URI, or a port, already.
    """
    global _database
    if _database is not None or os.environ.get("FIFTYONE_PRIVATE_DATABASE_PORT") or \
            os.environ.get("FIFTYONE_DATABASE_URI"):
        return
    import fiftyone.core.service as fos
    import fiftyone.service.util as fosu

    class WorkspaceDatabaseService(fos.DatabaseService):
        def start(self):
            # The service's command line holds "--51-service db --multi <mongod> --dbpath
            # <folder>": only a service on this very folder is joined.
            for process in fosu.find_processes_by_args(self._service_args + self.command[:3]):
                try:
                    if fosu.send_ipc_message(process, ("register", os.getpid())) is True:
                        self.attached, self.child = True, process
                        return
                except OSError:
                    continue
            fos.Service.start(self)

    _database = WorkspaceDatabaseService()
    os.environ["FIFTYONE_PRIVATE_DATABASE_PORT"] = str(_database.port)


def port_in_use(port: int, address: str = ADDRESS) -> bool:
    """Whether something already listens on ``address:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((address, port)) == 0


_session = None  # FiftyOne allows one App session per process


class FiftyOneSync:
    """Push collections into FiftyOne, check its evaluation against ours, open its App."""

    def __init__(self, wb: Workbench):
        self.wb = wb

    # -- where ----------------------------------------------------------------------------
    @property
    def database_dir(self) -> Path:
        """The workspace's FiftyOne database folder."""
        return (self.wb.home / "fiftyone-db").resolve()

    def _fo(self):
        fo = _import_fiftyone()
        _start_database()
        return fo

    def active_database_dir(self) -> Path:
        """The folder of the ``mongod`` this process is connected to (FiftyOne connects once
        per process: a second workspace opened in the same process, as in tests, shares the
        first one's database, and a warning says so)."""
        fo = self._fo()
        from fiftyone.core.odm.database import get_db_client

        options = get_db_client().admin.command("getCmdLineOpts")
        active = Path(options.get("parsed", {}).get("storage", {}).get(
            "dbPath", fo.config.database_dir)).resolve()
        if active != self.database_dir:
            log.warning("FiftyOne's database in this process is %s, not this workspace's %s "
                        "(FiftyOne was first used here for another workspace, or "
                        "FIFTYONE_DATABASE_DIR / FIFTYONE_DATABASE_URI say so)", active,
                        self.database_dir)
        return active

    # -- datasets ---------------------------------------------------------------------------
    def load(self, collection: str, dataset: str | None = None):
        """The synced dataset of ``collection`` (``NotFoundError`` if never synced)."""
        fo = self._fo()
        target = self.wb.collections.get(collection)
        name = dataset or dataset_name(target.name)
        if not fo.dataset_exists(name):
            raise NotFoundError(f"no FiftyOne dataset {name!r} yet: sync the collection first "
                                f"(`workbench fiftyone {target.name}`)")
        loaded = fo.load_dataset(name)
        self._check_owner(loaded, target)
        return loaded

    def delete(self, collection: str, dataset: str | None = None) -> bool:
        """Delete the collection's FiftyOne dataset; False when there was none."""
        fo = self._fo()
        target = self.wb.collections.get(collection)
        name = dataset or dataset_name(target.name)
        if not fo.dataset_exists(name):
            return False
        existing = fo.load_dataset(name)
        self._check_owner(existing, target)
        existing.delete()
        return True

    def _check_owner(self, dataset, target: Collection) -> None:
        owner = dataset.info.get("workbench_collection_id")
        if owner != target.id:
            where = (f"collection {dataset.info.get('workbench_collection')!r} of workspace "
                     f"{dataset.info.get('workbench_home')}" if owner else
                     "something other than the workbench")
            raise ValidationError(
                f"the FiftyOne dataset {dataset.name!r} belongs to {where}, not to collection "
                f"{target.name!r} here; sync under another name (--dataset NAME) or delete it "
                f"(fiftyone datasets delete {dataset.name})")

    # -- sync -------------------------------------------------------------------------------
    def sync(self, collection: str, dataset: str | None = None,
             compute_visualization: bool = False, visualization_method: str = "pca",
             progress: Progress | None = None) -> SyncReport:
        """Write what changed in ``collection`` since the last sync into its FiftyOne dataset
        (created, persistent, on the first sync) and return the counts.

        When the workspace's watermark (:meth:`watermark`) equals the one the last sync left
        on the dataset, and the dataset still holds the samples it wrote, nothing is read or
        written: the report says ``nothing_changed``.

        ``compute_visualization`` also runs ``fiftyone.brain.compute_visualization`` on each
        version's image embeddings (``visualization_method``: ``pca`` is quick; ``umap`` and
        ``tsne`` take longer). ``progress(done, total, message)`` is called as samples are
        written.
        """
        started = time.perf_counter()
        if visualization_method not in VISUALIZATION_METHODS:
            raise ValidationError(f"visualization method {visualization_method!r} is not one "
                                  f"of {', '.join(VISUALIZATION_METHODS)}")
        target = self.wb.collections.get(collection)
        versions = self._versions(target)
        if not versions:
            raise ValidationError(
                f"collection {target.name!r} has no detections yet: run a model over it first "
                f"(`workbench detect {target.name}`), then sync")
        step = progress or (lambda done, total, message: None)
        phases: dict[str, float] = {}
        clock = time.perf_counter()
        # Read before anything it vouches for: a change made while this sync reads the
        # workspace moves the workspace past the mark stored below, so the next sync sees it.
        mark = self._watermark(target, versions)
        phases["watermark"] = time.perf_counter() - clock

        fo = self._fo()
        name = dataset or dataset_name(target.name)
        ds = fo.load_dataset(name) if fo.dataset_exists(name) else None
        if ds is not None:
            self._check_owner(ds, target)
            if ds.info.get(WATERMARK) == mark and ds.info.get(SYNCED_SAMPLES) == len(ds):
                step(0, 0, "nothing changed since the last sync")
                visualizations = (self._visualize(ds, versions, visualization_method)
                                  if compute_visualization else [])
                return self._report(ds, target, versions, started, visualizations, phases,
                                    unchanged=len(ds), nothing_changed=True)

        from bson import ObjectId
        from fiftyone.core.odm.sample import _generate_rand  # FiftyOne's default for _rand
        from pymongo import UpdateOne

        step(0, 0, "reading the workspace")
        clock = time.perf_counter()
        with _gc_paused():
            snapshots = self._snapshots(target, versions)
        phases["read"] = time.perf_counter() - clock
        clock = time.perf_counter()
        if ds is None:
            ds = fo.Dataset(name)
            ds.media_type = "image"  # samples are written in bulk below, not by add_samples
        ds.persistent = True
        # No watermark while the samples are being written: a sync that dies half-way leaves
        # none, and the next one compares every sample.
        ds.info = {**ds.info, "workbench_home": str(self.wb.home.resolve()),
                   "workbench_collection": target.name, "workbench_collection_id": target.id,
                   "workbench_versions": {version_slug(v.version): v.key for v in versions},
                   WATERMARK: None, SYNCED_SAMPLES: None}
        ds.save()

        samples = ds._sample_collection  # bulk reads and writes, see the module's docstring
        # A sample without an object id was added by someone else: it is left alone.
        existing = {d[OBJECT_FIELD]: (str(d["_id"]), d.get(HASH_FIELD)) for d in samples.find(
            {OBJECT_FIELD: {"$ne": None}}, {OBJECT_FIELD: True, HASH_FIELD: True})}
        new = [s for s in snapshots if s["object_id"] not in existing]
        changed = [(existing[s["object_id"]][0], s) for s in snapshots
                   if s["object_id"] in existing and existing[s["object_id"]][1] != s["hash"]]
        wanted = {s["object_id"] for s in snapshots}
        gone = [sample_id for object_id, (sample_id, _) in existing.items()
                if object_id not in wanted]
        total = len(new) + len(changed)
        done = 0
        step(done, total, f"{len(new)} to add, {len(changed)} to update")

        self._declare(fo, ds, [*new, *(s for _, s in changed)])
        now = datetime.now(UTC).replace(tzinfo=None)  # FiftyOne's timestamps are naive UTC
        next_id = _object_ids()
        common = {"_media_type": "image", "_dataset_id": ds._doc.id, "created_at": now,
                  "last_modified_at": now}
        for begin in range(0, len(new), WRITE_BATCH):
            batch = new[begin:begin + WRITE_BATCH]
            with _gc_paused():
                documents = [{"_id": next_id(), "_rand": _generate_rand(), **common,
                              **_document(s, next_id)} for s in batch]
            samples.insert_many(documents, ordered=False)
            done += len(batch)
            step(done, total, f"added {begin + len(batch)}/{len(new)}")
        owned = [n for n in ds.get_field_schema() if n == GROUND_TRUTH or n.startswith(
            ("pred_", "embedding_"))]
        for begin in range(0, len(changed), WRITE_BATCH):
            batch = changed[begin:begin + WRITE_BATCH]
            ops = []
            with _gc_paused():
                for sample_id, snapshot in batch:
                    document = _document(snapshot, next_id)
                    # Fields the sync wrote before and no longer has (a version's predictions,
                    # the truth) are cleared; fields a person added in FiftyOne stay.
                    stale = {n: "" for n in owned if n not in document}
                    ops.append(UpdateOne({"_id": ObjectId(sample_id)}, {
                        "$set": {**document, "last_modified_at": now},
                        **({"$unset": stale} if stale else {})}))
            ds._bulk_write(ops, ids=[sample_id for sample_id, _ in batch])
            done += len(batch)
            step(done, total, f"updated {begin + len(batch)}/{len(changed)}")
        if gone:
            ds.delete_samples(gone)
        ds.info = {**ds.info, WATERMARK: mark, SYNCED_SAMPLES: len(ds)}
        ds.save()
        phases["write"] = time.perf_counter() - clock

        visualizations: list[str] = []
        if compute_visualization:
            step(done, total, "computing the embeddings visualization")
            visualizations = self._visualize(ds, versions, visualization_method)
        return self._report(ds, target, versions, started, visualizations, phases,
                            added=len(new), updated=len(changed),
                            unchanged=len(snapshots) - len(new) - len(changed),
                            removed=len(gone))

    def _report(self, ds, target: Collection, versions: list[ExtractorVersion], started: float,
                visualizations: list[str], phases: dict[str, float], added: int = 0,
                updated: int = 0, unchanged: int = 0, removed: int = 0,
                nothing_changed: bool = False) -> SyncReport:
        schema = ds.get_field_schema()
        return SyncReport(
            dataset=ds.name, collection=target.name, added=added, updated=updated,
            unchanged=unchanged, removed=removed, samples=len(ds),
            versions=tuple(v.key for v in versions),
            fields=tuple(f for v in versions
                         for f in (prediction_field(v.version), embedding_field(v.version))
                         if f in schema),
            database_dir=str(self.active_database_dir()),
            seconds=round(time.perf_counter() - started, 3),
            visualizations=tuple(visualizations), nothing_changed=nothing_changed,
            phases={k: round(v, 3) for k, v in phases.items()})

    def _versions(self, target: Collection) -> list[ExtractorVersion]:
        keys = set(self.wb.collections.versions_run(target))
        return [v for v in self.wb.registry.list(target.extractor_name) if v.key in keys]

    def watermark(self, collection: str) -> dict[str, Any]:
        """A fingerprint of everything a sync of ``collection`` reads, from a dozen aggregate
        queries (counts, sums and newest timestamps per table, on indexed columns where
        there is one): any write the workbench makes to those rows changes it. A sync keeps
        the one it read on the dataset; the next compares.

        Rows are only ever added to objects, documents and detections (a count and the
        newest ``created_at`` see that); annotations are also edited and deleted (every edit
        or deletion raises ``revision``, and carried verdicts are deleted and rewritten
        together with their image's ``image_truth`` row, whose ``updated_at`` moves);
        taxonomy assignments are deleted and rewritten (count, newest ``assigned_at``);
        cluster names are edited in place, so the latest run's names are part of the mark.
        """
        target = self.wb.collections.get(collection)
        return self._watermark(target, self._versions(target))

    def _watermark(self, target: Collection, versions: list[ExtractorVersion]
                   ) -> dict[str, Any]:
        o, doc, d = t.objects.c, t.documents.c, t.detections.c
        a, it, tb, ta = (t.annotations.c, t.image_truth.c, t.truth_boxes.c,
                         t.taxonomy_assignments.c)
        count = sa.func.count()

        def aggregate(conn, *columns, where):
            return [_plain(v) for v in conn.execute(sa.select(*columns).where(where)).one()]

        with self.wb.db.read() as conn:
            mark = {
                "format": SYNC_FORMAT, "home": str(self.wb.home.resolve()),
                "collection": [target.name, sorted(target.bucket_ids)],
                "versions": [v.key for v in versions],
                "buckets": [list(r) for r in conn.execute(
                    sa.select(t.buckets.c.id, t.buckets.c.name).where(
                        t.buckets.c.id.in_(target.bucket_ids)).order_by(t.buckets.c.id))],
                "objects": aggregate(conn, count, sa.func.max(o.created_at),
                                     where=o.bucket_id.in_(target.bucket_ids)),
                "documents": aggregate(conn, count, sa.func.max(doc.created_at),
                                       where=doc.collection_id == target.id),
                "detections": aggregate(conn, count, sa.func.sum(d.confidence),
                                        where=d.collection_id == target.id),
                "annotations": aggregate(conn, count, sa.func.sum(a.revision),
                                         sa.func.max(a.created_at), sa.func.max(a.updated_at),
                                         sa.func.count(a.deleted_at),
                                         where=a.collection_id == target.id),
                "image_truth": aggregate(conn, count, sa.func.max(it.updated_at),
                                         sa.func.sum(sa.case((it.gold, 1), else_=0)),
                                         where=it.collection_id == target.id),
                "truth_boxes": aggregate(conn, count, sa.func.max(tb.id),
                                         where=tb.collection_id == target.id),
                "taxonomy_assignments": aggregate(conn, count, sa.func.max(ta.assigned_at),
                                                  where=ta.collection_id == target.id),
                "taxonomies": [list(r) for r in conn.execute(sa.select(
                    t.taxonomies.c.id, t.taxonomies.c.name).order_by(t.taxonomies.c.id))],
            }
        runs = self.wb.clusters.list(target.name, limit=1)
        mark["clusters"] = [runs[0].id, {key: runs[0].name_of(int(key))
                                         for key in sorted(runs[0].clusters)}] if runs else None
        return mark

    def _snapshots(self, target: Collection, versions: list[ExtractorVersion]
                   ) -> list[dict[str, Any]]:
        """Per image, a plain description of its sample, with the hash of that description;
        the workspace is read in a handful of queries, one per table."""
        from workbench.truth import IMAGE_MARKS

        d = t.detections.c
        version_of = {v.key: v.version for v in versions}
        with self.wb.db.read() as conn:
            objects = conn.execute(sa.select(t.objects).where(
                t.objects.c.bucket_id.in_(target.bucket_ids)).order_by(
                    t.objects.c.created_at, t.objects.c.id)).all()
            buckets = dict(conn.execute(sa.select(t.buckets.c.id, t.buckets.c.name).where(
                t.buckets.c.id.in_(target.bucket_ids))).all())
            documents = conn.execute(sa.select(
                t.documents.c.id, t.documents.c.object_id, t.documents.c.extractor_key).where(
                    t.documents.c.collection_id == target.id)).all()
            detections = conn.execute(sa.select(
                d.id, d.object_id, d.extractor_key, d.class_name, d.confidence,
                d.x1, d.y1, d.x2, d.y2).where(
                    d.collection_id == target.id, d.extractor_key.in_(list(version_of)))
                .order_by(d.object_id, d.extractor_key, d.idx)).all()
            annotations = conn.execute(sa.select(
                t.annotations.c.document_id, t.annotations.c.object_id, t.annotations.c.label,
                t.annotations.c.payload).where(
                    t.annotations.c.collection_id == target.id,
                    t.annotations.c.deleted_at.is_(None)).order_by(
                        t.annotations.c.created_at, t.annotations.c.id)).all()
            taxonomy_labels = conn.execute(
                sa.select(t.taxonomy_assignments.c.detection_id, t.taxonomies.c.name,
                          t.taxonomy_assignments.c.label)
                .select_from(t.taxonomy_assignments.join(
                    t.taxonomies, t.taxonomies.c.id == t.taxonomy_assignments.c.taxonomy_id))
                .where(t.taxonomy_assignments.c.collection_id == target.id)
                .order_by(t.taxonomies.c.name)).all()
        runs = self.wb.clusters.list(target.name, limit=1)
        clusters: dict[str, tuple[int, str]] = {}
        if runs:
            with self.wb.db.read() as conn:
                for detection_id, cluster in conn.execute(sa.select(
                        t.cluster_members.c.detection_id, t.cluster_members.c.cluster).where(
                            t.cluster_members.c.run_id == runs[0].id)):
                    clusters[detection_id] = (cluster, runs[0].name_of(cluster))

        verdicts: dict[str, Any] = {}  # newest verdict per detection
        marks: dict[str, set[str]] = {}  # image-level annotations per object
        for a in annotations:
            marks.setdefault(a.object_id, set()).add("reviewed")
            if a.label in ("missed", *IMAGE_MARKS):
                marks[a.object_id].add(a.label)
            else:
                verdicts[a.document_id] = a
        taxonomies: dict[str, dict[str, str]] = {}
        for detection_id, taxonomy, label in taxonomy_labels:
            taxonomies.setdefault(detection_id, {})[_attribute("taxonomy", taxonomy)] = label
        truth = self.wb.truth.images(target.id, states=("complete",))

        found: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (object, version) -> boxes
        for det_id, object_id, key, class_name, confidence, x1, y1, x2, y2 in detections:
            verdict = verdicts.get(det_id)
            item = {"id": det_id, "label": class_name, "confidence": confidence,
                    "xyxy": [x1, y1, x2, y2], "tags": [verdict.label] if verdict else [],
                    **taxonomies.get(det_id, {})}
            if verdict is not None and (verdict.payload or {}).get("true_class"):
                item["true_class"] = verdict.payload["true_class"]
            if det_id in clusters:
                item["cluster"], item["cluster_name"] = clusters[det_id]
            found.setdefault((object_id, version_of[key]), []).append(item)
        embeddings: dict[str, dict[str, Any]] = {}
        for version in versions:
            if any(f.feature_name == IMAGE_EMBEDDING for f in version.spec.embeddings):
                doc_ids = [doc.id for doc in documents if doc.extractor_key == version.key]
                embeddings[version.version] = self.wb.vectors.get_by_id(
                    version.feature_uri(IMAGE_EMBEDDING), doc_ids)
        processed: dict[str, dict[str, str]] = {}  # object -> {version: document id}
        for doc in documents:
            if doc.extractor_key in version_of:
                processed.setdefault(doc.object_id, {})[version_of[doc.extractor_key]] = doc.id

        # The blob root resolved once: resolving every image's path costs seconds at 100k
        # images, and nothing below the root is a link.
        blobs = BlobStore(self.wb.blobs.root.resolve())
        snapshots = []
        for obj in objects:
            item: dict[str, Any] = {
                "object_id": obj.id,
                "filepath": str(blobs.path_for(obj.sha256, FORMAT_EXTENSIONS[obj.format])),
                "width": obj.width, "height": obj.height, "size_bytes": obj.size_bytes,
                "format": obj.format, "bucket": buckets.get(obj.bucket_id),
                "metadata": {(f"meta_{k}" if k in RESERVED or k.startswith(("pred_",
                              "embedding_", "_")) else k): v
                             for k, v in sorted((obj.metadata or {}).items())},
                "tags": sorted(marks.get(obj.id, ())), "versions": {}, "embeddings": {},
                "truth": None}
            done = processed.get(obj.id, {})
            for version in versions:  # in the registry's order, as the hash expects
                doc_id = done.get(version.version)
                if doc_id is None:
                    continue  # this version has not processed the image
                item["versions"][version.version] = found.get((obj.id, version.version), [])
                vector = embeddings.get(version.version, {}).get(doc_id)
                if vector is not None:
                    item["embeddings"][version.version] = vector
            image = truth.get(obj.id)
            if image is not None:
                item["truth"] = [{"label": b.cls, "xyxy": list(b.xyxy), "source": b.label,
                                  "annotation_id": b.annotation_id} for b in image.objects]
                if image.gold:
                    item["tags"] = sorted({*item["tags"], "gold"})
            item["hash"] = _hash(item)
            snapshots.append(item)
        return snapshots

    def _declare(self, fo, ds, snapshots: list[dict[str, Any]]) -> None:
        """Add to the dataset's schema every field these samples bring that it lacks, typed as
        ``add_samples`` would type it (the samples themselves are written in bulk)."""
        from fiftyone.core.odm.utils import get_implied_field_kwargs

        known = set(ds.get_field_schema())
        example: dict[str, Any] = {}
        shapes = set()  # one sample of each combination of fields is enough
        for snapshot in snapshots:
            shape = (tuple(k for k, v in snapshot["metadata"].items() if v is not None),
                     tuple(snapshot["versions"]), tuple(snapshot["embeddings"]),
                     snapshot["truth"] is None, snapshot["bucket"] is None)
            if shape in shapes:
                continue
            shapes.add(shape)
            values: dict[str, Any] = {"bucket": snapshot["bucket"],
                                      OBJECT_FIELD: snapshot["object_id"],
                                      HASH_FIELD: snapshot["hash"], **snapshot["metadata"]}
            values.update({prediction_field(v): LABELS for v in snapshot["versions"]})
            values.update({embedding_field(v): vector
                           for v, vector in snapshot["embeddings"].items()})
            if snapshot["truth"] is not None:
                values[GROUND_TRUTH] = LABELS
            for name, value in values.items():
                if value is not None and name not in known and name not in example:
                    example[name] = value
        for name, value in example.items():
            value = fo.Detections() if value is LABELS else value
            ds.add_sample_field(name, **get_implied_field_kwargs(value))

    def _visualize(self, ds, versions: list[ExtractorVersion], method: str) -> list[str]:
        try:
            import fiftyone.brain as fob
        except ImportError as exc:  # pragma: no cover - fiftyone-brain comes with fiftyone
            raise MissingDependencyError("computing a visualization needs fiftyone-brain: "
                                         "pip install fiftyone-brain") from exc
        keys = []
        schema = ds.get_field_schema()
        for version in versions:
            embeddings = embedding_field(version.version)
            if embeddings not in schema:
                continue
            view = ds.exists(embeddings)
            if len(view) < 3:
                log.warning("%s: %d embeddings, too few to visualize", embeddings, len(view))
                continue
            brain_key = f"img_viz_{version_slug(version.version)}"
            if brain_key in ds.list_brain_runs():
                ds.delete_brain_run(brain_key)
            fob.compute_visualization(view, embeddings=embeddings, brain_key=brain_key,
                                      method=method, seed=0, progress=False)
            keys.append(brain_key)
        return keys

    # -- cross-check ------------------------------------------------------------------------
    def cross_check(self, collection: str, version: str | None = None,
                    dataset: str | None = None, iou: float = 0.5,
                    tolerance: float = CROSS_CHECK_TOLERANCE) -> CrossCheck:
        """Evaluate a version in FiftyOne (``evaluate_detections``, COCO method, on the synced
        samples that have ground truth) and with the workbench's pycocotools evaluation on the
        same images, and set the figures side by side.

        The FiftyOne evaluation stays on the dataset as ``eval_<version>`` (TP/FP per box,
        counts per sample) for browsing in the App.
        """
        from workbench.metrics import Box, evaluate

        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        ds = self.load(target.name, dataset)
        pred = prediction_field(chosen.version)
        if pred not in ds.get_field_schema():
            raise ValidationError(f"the dataset {ds.name!r} has no {pred} field: run "
                                  f"{chosen.key} over {target.name!r} and sync again")
        view = ds.exists(GROUND_TRUTH).exists(pred)
        if not len(view):
            raise ValidationError(
                f"no synced image has both ground truth and {chosen.key} predictions: complete "
                f"some images in image review, then sync again")
        eval_key = f"eval_{version_slug(chosen.version)}"
        sweep_key = f"{eval_key}_map50"
        for key in (eval_key, sweep_key):
            if key in ds.list_evaluations():
                ds.delete_evaluation(key)
        full = view.evaluate_detections(pred, gt_field=GROUND_TRUTH, eval_key=eval_key,
                                        method="coco", iou=iou, compute_mAP=True,
                                        progress=False)
        at_50 = view.evaluate_detections(pred, gt_field=GROUND_TRUTH, eval_key=sweep_key,
                                         method="coco", iou=0.5, compute_mAP=True,
                                         iou_threshs=[0.5], progress=False)
        ds.delete_evaluation(sweep_key)
        theirs = {"map50_95": _defined(full.mAP()), "map50": _defined(at_50.mAP()),
                  **{name: int(sum(view.values(f"{eval_key}_{name}"))) for name in COUNTS}}

        images = self.wb.evaluation.complete_images(target.id, None,
                                                    list(view.values(OBJECT_FIELD)))
        predictions: dict[str, list[Box]] = {i.image_id: [] for i in images}
        for det in self.wb.detection.detections(target, chosen.key,
                                                object_ids=list(predictions)):
            predictions[det.object_id].append(Box(det.class_name, det.xyxy, det.confidence))
        # conf=0: FiftyOne counts every prediction, so the per-image counts must too.
        result = evaluate(images, predictions, list(chosen.classes), iou_match=iou, conf=0.0)
        ours = {"map50_95": result.map50_95, "map50": result.map50,
                **{name: sum(getattr(o, name) for o in result.per_image) for name in COUNTS}}
        differences = {name: (None if ours[name] is None or theirs[name] is None
                              else theirs[name] - ours[name]) for name in ours}
        return CrossCheck(version=chosen.key, images=len(images), iou=iou, tolerance=tolerance,
                          workbench=ours, fiftyone=theirs, differences=differences,
                          eval_key=eval_key)

    # -- the App ----------------------------------------------------------------------------
    def open_app(self, collection: str, port: int = DEFAULT_PORT, dataset: str | None = None
                 ) -> str:
        """Serve the FiftyOne App on 127.0.0.1:``port`` with the collection's synced dataset
        (sync first) and return its URL. The server runs in the background until this
        process ends; a second call in the same process switches the dataset."""
        global _session
        if not 1 <= port <= 65535:
            raise ConfigError(f"port must be in 1-65535, got {port}")
        ours = _session is not None and _session.server_port == port
        if not ours and port_in_use(port):
            raise ConfigError(
                f"port {port} on {ADDRESS} is in use (another FiftyOne App, or another "
                f"program); choose a free one with --port, e.g. --port {port + 1}")
        ds = self.load(collection, dataset)
        if ours:
            _session.dataset = ds
        else:
            _session = self._fo().launch_app(ds, remote=True, address=ADDRESS, port=port,
                                             auto=False)
        return f"http://{ADDRESS}:{port}/datasets/{quote(ds.name)}"

    def wait(self) -> None:
        """Block while the App started by :meth:`open_app` serves (until Ctrl-C)."""
        if _session is None:
            raise ValidationError("no FiftyOne App is running in this process: open_app first")
        _session.wait(-1)


def _object_ids() -> Callable[[], Any]:
    """A maker of fresh ObjectIds laid out as bson lays them out (seconds, 5 random bytes, a
    counter), without the lock and checks of ``ObjectId()``: ten times faster for the 100k+
    label ids of a large sync. A new maker draws new random bytes."""
    from bson import ObjectId

    prefix = int(time.time()).to_bytes(4, "big") + os.urandom(5)
    counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
    return lambda: ObjectId(prefix + (next(counter) & 0xFFFFFF).to_bytes(3, "big"))


def _document(snapshot: dict[str, Any], next_id: Callable[[], Any]) -> dict[str, Any]:
    """The fields the sync writes to a sample, as the database document FiftyOne itself would
    store for them (``fo.Detections`` of ``fo.Detection``, ``fo.ImageMetadata``, vectors as
    FiftyOne serializes them); built as plain dicts, because constructing and validating
    FiftyOne's objects one by one is what made a first sync of 100k images take minutes.
    ``test_bulk_written_samples_are_what_fiftyone_itself_writes`` holds the two together."""
    from fiftyone.core.utils import serialize_numpy_array

    width, height = snapshot["width"], snapshot["height"]

    def detection(item: dict[str, Any], attributes: dict[str, Any]) -> dict[str, Any]:
        return {"_id": next_id(), "_cls": "Detection", "attributes": {},
                "label": item["label"],
                "bounding_box": list(xyxy_to_fiftyone(item["xyxy"], width, height)),
                **attributes}

    document: dict[str, Any] = {
        "filepath": snapshot["filepath"], "tags": list(snapshot["tags"]),
        "metadata": {"_cls": "ImageMetadata", "size_bytes": snapshot["size_bytes"],
                     "mime_type": f"image/{snapshot['format'].lower()}", "width": width,
                     "height": height},
        "bucket": snapshot["bucket"], OBJECT_FIELD: snapshot["object_id"],
        HASH_FIELD: snapshot["hash"],
        **{k: v for k, v in snapshot["metadata"].items() if v is not None}}
    for version, items in snapshot["versions"].items():
        document[prediction_field(version)] = {"_cls": "Detections", "detections": [
            detection(item, {"tags": list(item["tags"]), "confidence": item["confidence"],
                             "detection_id": item["id"],
                             **{k: v for k, v in item.items()
                                if k not in ("id", "label", "confidence", "xyxy", "tags")}})
            for item in items]}
    for version, vector in snapshot["embeddings"].items():
        document[embedding_field(version)] = serialize_numpy_array(vector)
    if snapshot["truth"] is not None:
        document[GROUND_TRUTH] = {"_cls": "Detections", "detections": [
            detection(box, {"tags": [], "source": box["source"],
                            "annotation_id": box["annotation_id"]})
            for box in snapshot["truth"]]}
    return document


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Cyclic garbage collection paused while hundreds of thousands of small dicts are built:
    otherwise full collections scan them again and again (a quarter of a first sync's time).
    What is built holds no cycles, so reference counting frees it all the same."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _plain(value: Any) -> Any:
    """An aggregate as a value that survives a round trip through the dataset's info."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):  # Postgres sums integers as numeric
        return int(value) if value == int(value) else float(value)
    return value


def _hash(snapshot: dict[str, Any]) -> str:
    """A digest of everything the sync writes to a sample (vectors by their bytes).

    The description is serialized with marshal's format 2, which has no back-references (equal
    values give equal bytes whichever objects hold them) and writes floats in binary: five
    times faster than JSON's decimal text over 100k boxes. Its dicts are built in a fixed order.
    """
    digest = hashlib.sha256()
    plain = {k: v for k, v in snapshot.items() if k not in ("embeddings", "hash")}
    digest.update(marshal.dumps(plain, 2))
    for version, vector in sorted(snapshot["embeddings"].items()):
        digest.update(version.encode())
        digest.update(vector.tobytes())
    return digest.hexdigest()[:32]


def _defined(value: float) -> float | None:
    """FiftyOne reports an undefined mAP (no truth boxes) as -1."""
    return None if value is None or value < 0 else float(value)
