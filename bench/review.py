"""Review benchmark at 100,000 detections: queue page, filtered search, stats, writes.

Builds a workspace with N detections (rows written directly, vectors through the vector
store and then indexed — the detector itself is measured by bench/detect.py), then measures p50/p95 latency of
  (a) the default review queue's next page (unreviewed, confidence < 0.7, most uncertain
      first, diverse, 20 items), while annotations are added between pages,
  (b) a filtered feature search (confidence < 0.7, top 20) by example detection — ours
      (SQL filter + vector search that over-fetches) side by side with Chroma's own
      ``where`` filter on the same query,
  (c) the stats computation,
and annotation writes/s (one call per annotation, and bulk). Writes bench/results/review.json.

    .venv/bin/python bench/review.py [--detections 100000] [--dim 448]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
KEY = "yolo_detector@1.0.0"


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def build(wb, n_detections: int, dim: int, per_image: int = 5):
    """Images, documents and detections as a batch run would write them, plus vectors."""
    import numpy as np
    from tqdm import tqdm

    from workbench.extractors.yolo import yolo_spec
    from workbench.store import tables as t
    from workbench.store.metadata import utcnow

    rng = np.random.default_rng(0)
    now = utcnow()
    classes = ["circle", "square", "triangle"]
    centres = rng.normal(size=(len(classes), dim)).astype("float32")
    with wb.db.write() as conn:
        conn.execute(t.buckets.insert().values(id="bkt_b", name="bench", schema={"properties": {
            "image": {"type": "image"}, "camera_id": {"type": "text"}}}, description="",
            created_at=now))
        conn.execute(t.extractor_versions.insert().values(
            id="ext_b", name="yolo_detector", version="1.0.0", kind="yolo",
            spec=yolo_spec("1.0.0", dim, dim).to_dict(), classes=classes, lineage={},
            metrics={}, notes="", created_at=now))
        conn.execute(t.collections.insert().values(
            id="col_b", name="bench", extractor_name="yolo_detector", active_version="1.0.0",
            bucket_ids=["bkt_b"], created_at=now))
    n_images = n_detections // per_image
    uri = f"workbench://{KEY}/detection_embedding"
    chunk = 2000
    bar = tqdm(total=n_images * per_image, desc="build", unit="det")
    for start in range(0, n_images, chunk):
        images = range(start, min(n_images, start + chunk))
        objects, documents, detections, ids, vectors = [], [], [], [], []
        for i in images:
            obj = f"obj_{i:07d}"
            objects.append({"id": obj, "bucket_id": "bkt_b", "sha256": f"{i:064d}",
                            "width": 640, "height": 480, "format": "JPEG", "size_bytes": 1,
                            "source": f"{obj}.jpg", "metadata": {"camera_id": f"cam_{i % 4}"},
                            "created_at": now})
            confidences = np.sort(rng.uniform(0.25, 1.0, per_image))[::-1]
            documents.append({"id": f"doc_{i:07d}", "collection_id": "col_b", "object_id": obj,
                              "extractor_key": KEY, "features": {}, "n_detections": per_image,
                              "uncertainty": float(np.sum(1 - np.abs(2 * confidences - 1))),
                              "created_at": now})
            for k in range(per_image):
                det = f"doc_{i:07d}_{k}"
                cls = int(rng.integers(len(classes)))
                x, y = rng.uniform(0, 560), rng.uniform(0, 400)
                detections.append({"id": det, "document_id": f"doc_{i:07d}",
                                   "collection_id": "col_b", "object_id": obj,
                                   "extractor_key": KEY, "idx": k, "class_name": classes[cls],
                                   "confidence": float(confidences[k]), "x1": x, "y1": y,
                                   "x2": x + 60, "y2": y + 60, "embedding_id": det})
                ids.append(det)
                vectors.append(centres[cls] + 0.8 * rng.normal(size=dim).astype("float32"))
        with wb.db.write() as conn:
            conn.execute(t.objects.insert(), objects)
            conn.execute(t.documents.insert(), documents)
            conn.execute(t.detections.insert(), detections)
        array = np.asarray(vectors, dtype="float32")
        array /= np.linalg.norm(array, axis=1, keepdims=True)
        wb.vectors.upsert(uri, ids, array)
        bar.update(len(ids))
    bar.close()
    wb.db.ensure_statistics()  # as a batch run does when it ends
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=448)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()

    import numpy as np
    import sqlalchemy as sa

    from workbench import Workbench

    with tempfile.TemporaryDirectory(prefix="wb-bench-review-") as tmp:
        wb = Workbench.open(Path(tmp) / "ws")
        started = time.perf_counter()
        uri = build(wb, args.detections, args.dim)
        build_s = time.perf_counter() - started
        wb.vectors.index(uri)  # what the idle worker does behind the writes
        # Confidence in Chroma's metadata only so that its own where filter can be measured
        # beside ours; the workbench never filters in Chroma.
        from workbench.store import tables as t

        with wb.db.read() as conn:
            confidences = conn.execute(sa.select(t.detections.c.id,
                                                 t.detections.c.confidence)).all()
        for start in range(0, len(confidences), 5000):
            chunk = confidences[start:start + 5000]
            wb.vectors.collection(uri).update(ids=[i for i, _ in chunk], metadatas=[
                {"confidence": c} for _, c in chunk])
        rng = np.random.default_rng(1)

        # (a) the review queue, reviewing the first three items of every page
        queue = wb.retrievers.review_queue("bench")
        wb.retrievers.execute(queue.name)  # warm caches
        queue_ms = []
        for _ in range(args.runs):
            begun = time.perf_counter()
            page = wb.retrievers.execute(queue.name)
            queue_ms.append((time.perf_counter() - begun) * 1000)
            for hit in page.hits[:3]:
                wb.annotations.create(document_id=hit.detection_id, collection_id="col_b",
                                      label="confirmed", retriever_id=queue.id,
                                      execution_id=page.id)

        # (b) filtered feature search, ours and Chroma's where filter on the same queries
        stages = [{"stage_type": "feature_search", "config": {
                      "feature_uri": uri, "query": {"detection_id": "{{INPUT.query}}"},
                      "top_k": 20}},
                  {"stage_type": "filter", "config": {"filters": {
                      "field": "confidence", "operator": "lt", "value": 0.7}}}]
        wb.retrievers.save("similar-uncertain", "bench", stages)
        examples = [f"doc_{int(i):07d}_0" for i in rng.integers(0, args.detections // 5,
                                                                args.runs)]
        wb.retrievers.execute("similar-uncertain", {"query": examples[0]})
        search_ms, chroma_ms, overlap = [], [], []
        collection = wb.vectors.collection(uri)
        for example in examples:
            begun = time.perf_counter()
            ours = wb.retrievers.execute("similar-uncertain", {"query": example})
            search_ms.append((time.perf_counter() - begun) * 1000)
            vector = wb.vectors.get(uri, [example])[0]
            begun = time.perf_counter()
            theirs = collection.query(query_embeddings=[vector], n_results=20,
                                      where={"confidence": {"$lt": 0.7}}, include=["distances"])
            chroma_ms.append((time.perf_counter() - begun) * 1000)
            mine = {h.detection_id for h in ours.hits}
            overlap.append(len(mine & set(theirs["ids"][0])) / 20)

        # annotation writes: one call each, then bulk
        unreviewed = wb.retrievers.execute(queue.name, {"limit": 1000}).hits
        singles = unreviewed[:500]
        begun = time.perf_counter()
        for hit in singles:
            wb.annotations.create(document_id=hit.detection_id, collection_id="col_b",
                                  label="false_positive")
        single_rate = len(singles) / (time.perf_counter() - begun)
        more = wb.retrievers.execute(queue.name, {"limit": 1000}).hits
        operations = [{"document_id": h.detection_id, "collection_id": "col_b",
                       "label": "corrected", "payload": {"true_class": "star"}} for h in more]
        begun = time.perf_counter()
        results = wb.annotations.bulk(operations)
        bulk_rate = sum(r.ok for r in results) / (time.perf_counter() - begun)

        # (c) stats over everything written so far
        stats_ms = []
        for _ in range(20):
            begun = time.perf_counter()
            wb.stats.report("col_b")
            stats_ms.append((time.perf_counter() - begun) * 1000)
        n_annotations = wb.annotations.list(collection_id="col_b", limit=1).total

    result = {
        "benchmark": "review",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "detections": args.detections, "embedding_dim": args.dim,
        "build_seconds": round(build_s, 1),
        "queue_page_ms": {"p50": round(pct(queue_ms, 50), 2), "p95": round(pct(queue_ms, 95), 2)},
        "filtered_search_ms": {"p50": round(pct(search_ms, 50), 2),
                               "p95": round(pct(search_ms, 95), 2)},
        "chroma_where_ms": {"p50": round(pct(chroma_ms, 50), 2),
                            "p95": round(pct(chroma_ms, 95), 2)},
        "chroma_over_ours_p50": round(pct(chroma_ms, 50) / pct(search_ms, 50), 1),
        "top20_overlap_with_chroma": round(statistics.mean(overlap), 3),
        "stats_ms": {"p50": round(pct(stats_ms, 50), 1), "p95": round(pct(stats_ms, 95), 1),
                     "annotations": n_annotations},
        "annotation_writes_per_s": {"single": round(single_rate, 1), "bulk": round(bulk_rate, 1)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {"queue_p95_ms": 20, "search_p95_ms": 20, "writes_per_s": 500},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "review.json").write_text(json.dumps(result, indent=2))
    q, f, c = result["queue_page_ms"], result["filtered_search_ms"], result["chroma_where_ms"]
    w = result["annotation_writes_per_s"]
    print(f"\nreview benchmark: {args.detections:,} detections ({args.dim}-d vectors) on "
          f"{result['machine']}")
    print(f"  (a) review queue next page   p50 {q['p50']:7.2f} ms  p95 {q['p95']:7.2f} ms "
          f"(target p95 <= 20)")
    print(f"  (b) filtered feature search  p50 {f['p50']:7.2f} ms  p95 {f['p95']:7.2f} ms "
          f"(target p95 <= 20)")
    print(f"      Chroma's where filter    p50 {c['p50']:7.2f} ms  p95 {c['p95']:7.2f} ms "
          f"-> Chroma/ours at p50: {result['chroma_over_ours_p50']}x; same top-20 "
          f"{result['top20_overlap_with_chroma']:.0%}")
    print(f"  (c) stats                    p50 {result['stats_ms']['p50']:7.1f} ms  p95 "
          f"{result['stats_ms']['p95']:7.1f} ms over {n_annotations:,} annotations")
    print(f"  annotation writes            {w['single']:.0f}/s one by one, {w['bulk']:.0f}/s bulk "
          f"(target >= 500)")
    print(f"  peak memory                  {result['peak_rss_mb']:.0f} MB RSS")


if __name__ == "__main__":
    main()
