"""FiftyOne sync benchmark: a first sync, a re-sync with nothing changed, one after a change.

Builds a workspace as bench/review.py does (rows written directly, detection vectors in
Chroma; no image files: a sample's filepath names where its blob would be, and width and
height come from the rows), with each image's embedding in the vector store and every 20th
image reviewed to completion (verdicts on its boxes, then ``image_done``; the ground truth
derived by the truth service), so that the sync writes predictions with verdict tags, ground
truth and embeddings. Then, with FiftyOne's database already started, times
  (a) the first sync of the collection (samples/s),
  (b) a re-sync with nothing changed (the watermark matches: no sample read),
  (c) a re-sync after one new verdict (every sample compared, one written),
and prints the figures and the machine. Writes bench/results/fiftyone_sync.json.
Target (issue 15): >= 1,000 samples/s on the first sync.

    .venv/bin/python bench/fiftyone_sync.py [--images 20000] [--dim 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from review import KEY, build  # noqa: E402  (the same synthetic workspace)

RESULTS = Path(__file__).resolve().parent / "results"
PER_IMAGE = 5
REVIEW_EVERY = 20  # every n-th image is reviewed to completion


def add_image_embeddings(wb, n_images: int, dim: int) -> None:
    """Each image's embedding under its document id, as a detection run writes it."""
    import numpy as np

    rng = np.random.default_rng(2)
    uri = f"workbench://{KEY}/image_embedding"
    for start in range(0, n_images, 5000):
        ids = [f"doc_{i:07d}" for i in range(start, min(n_images, start + 5000))]
        vectors = rng.normal(size=(len(ids), dim)).astype("float32")
        wb.vectors.upsert(uri, ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


def review(wb, n_images: int) -> int:
    """Complete every REVIEW_EVERY-th image: a verdict on each box (one in five a false
    positive), then image_done. The rows are written directly and the ground truth derived
    from them by the truth service, in batches: through the annotation service each write
    refreshes its image's truth on its own, which takes ~0.25 s a write at 100k detections
    (truth.refresh's detections query scans the collection; see the note in the report).
    Returns how many annotations were written."""
    from workbench.store import tables as t
    from workbench.store.metadata import new_id, utcnow

    now = utcnow()
    rows, objects = [], []
    with wb.db.read() as conn:
        classes = dict(conn.execute(t.detections.select().with_only_columns(
            t.detections.c.id, t.detections.c.class_name)).all())
    for i in range(0, n_images, REVIEW_EVERY):
        objects.append(f"obj_{i:07d}")
        marks = [(f"doc_{i:07d}_{k}", "false_positive" if k == PER_IMAGE - 1 else "confirmed")
                 for k in range(PER_IMAGE)] + [(f"doc_{i:07d}", "image_done")]
        for document_id, label in marks:
            payload = ({"predicted_class": classes[document_id]} if document_id in classes
                       else {})
            rows.append({"id": new_id("ann"), "document_id": document_id,
                         "collection_id": "col_b", "object_id": f"obj_{i:07d}",
                         "extractor_key": KEY, "label": label, "confidence": None,
                         "reasoning": "", "payload": payload, "retriever_id": None,
                         "execution_id": None, "author": "bench", "revision": 1,
                         "created_at": now, "updated_at": now})
    with wb.db.write() as conn:
        conn.execute(t.annotations.insert(), rows)
    wb.truth.refresh("bench", objects)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=64,
                        help="width of the detection and image embeddings")
    parser.add_argument("--runs", type=int, default=5, help="no-change re-syncs to time")
    args = parser.parse_args()

    from workbench import Workbench

    with tempfile.TemporaryDirectory(prefix="wb-bench-fiftyone-",
                                     ignore_cleanup_errors=True) as tmp:
        wb = Workbench.open(Path(tmp) / "ws")
        started = time.perf_counter()
        build(wb, args.images * PER_IMAGE, args.dim, per_image=PER_IMAGE)
        add_image_embeddings(wb, args.images, args.dim)
        annotations = review(wb, args.images)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        wb.fiftyone.active_database_dir()  # FiftyOne's mongod starts once per process
        database_s = time.perf_counter() - started

        first = wb.fiftyone.sync("bench")
        assert first.added == args.images and first.samples == args.images, first
        reviewed = len(range(0, args.images, REVIEW_EVERY))
        assert len(wb.fiftyone.load("bench").exists("ground_truth")) == reviewed
        unchanged = [wb.fiftyone.sync("bench") for _ in range(args.runs)]
        assert all(r.nothing_changed for r in unchanged), unchanged
        wb.annotations.create(document_id=f"doc_{1:07d}_0", collection_id="col_b",
                              label="corrected", payload={"true_class": "square"})
        changed = wb.fiftyone.sync("bench")
        assert (changed.updated, changed.added, changed.nothing_changed) == (1, 0, False)
        after_change = wb.fiftyone.sync("bench")
        assert after_change.nothing_changed
        wb.fiftyone.delete("bench")
        wb.close()
        from workbench import fiftyone_sync

        if fiftyone_sync._database is not None:  # mongod stops before its folder goes
            fiftyone_sync._database.stop()

    no_change = [r.seconds for r in unchanged]
    result = {
        "benchmark": "fiftyone_sync",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}, {platform.platform()}",
        "images": args.images, "detections": args.images * PER_IMAGE,
        "embedding_dim": args.dim, "reviewed_images": reviewed,
        "annotations": annotations, "build_s": round(build_s, 1),
        "database_start_s": round(database_s, 1),
        "first_sync": {"seconds": first.seconds, "samples_per_s": round(
            first.samples / first.seconds), "phases": first.phases},
        "no_change_resync_s": {"median": round(statistics.median(no_change), 3),
                               "max": round(max(no_change), 3), "runs": len(no_change)},
        "resync_after_one_verdict": {"seconds": changed.seconds, "updated": changed.updated,
                                     "phases": changed.phases},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "targets": {"first_sync_samples_per_s": 1000},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fiftyone_sync.json").write_text(json.dumps(result, indent=2))
    f, c = result["first_sync"], result["resync_after_one_verdict"]
    print(f"\nFiftyOne sync benchmark: {args.images:,} images, {args.images * PER_IMAGE:,} "
          f"detections, {result['reviewed_images']:,} images reviewed, {args.dim}-d image "
          f"embeddings\n  machine: {result['machine']}")
    print(f"  (a) first sync                {f['seconds']:7.2f} s  {f['samples_per_s']:,} "
          f"samples/s (target >= 1,000); phases {f['phases']}")
    print(f"  (b) re-sync, nothing changed  {result['no_change_resync_s']['median']:7.3f} s "
          f"median of {len(no_change)} (max {result['no_change_resync_s']['max']:.3f} s)")
    print(f"  (c) re-sync after one verdict {c['seconds']:7.2f} s  ({c['updated']} sample "
          f"written; phases {c['phases']})")
    print(f"  peak memory {result['peak_rss_mb']} MB RSS; FiftyOne's database started in "
          f"{database_s:.1f} s (not counted)")


if __name__ == "__main__":
    main()
