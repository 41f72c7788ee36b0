"""Taxonomy benchmark: a retroactive apply over 100,000 detections.

Builds a workspace as bench/review.py does (rows written directly, 1024-d vectors through the
vector store, the width of YOLOv8n's detection embedding, three classes around their own centres), puts 600 detections into a reference set, builds a
flat taxonomy and applies it to every detection (all new); then adds 300 references (a new
set version, so a new taxonomy version) and applies it again retroactively, which rewrites
only the assignments whose outcome changed. Prints detections/s for each apply, the time in
each phase (reading vectors from Chroma, classifying, writing) and peak memory, and writes
bench/results/taxonomy.json. Target: >= 10,000 detections/s on 2 cores. With
``--compare-chroma`` the vectors are indexed into Chroma first and reading them all back by id
is timed from the copy and from Chroma's own get, side by side.

    .venv/bin/python bench/taxonomy.py [--detections 100000] [--dim 1024] [--compare-chroma]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from review import KEY, build  # noqa: E402  (the same synthetic workspace)

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--compare-chroma", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import sqlalchemy as sa

    from workbench import Workbench
    from workbench.store import tables as t

    with tempfile.TemporaryDirectory(prefix="wb-bench-taxonomy-") as tmp:
        wb = Workbench.open(Path(tmp) / "ws")
        started = time.perf_counter()
        build(wb, args.detections, args.dim)
        build_s = time.perf_counter() - started
        with wb.db.read() as conn:
            rows = conn.execute(sa.select(t.detections.c.id, t.detections.c.class_name)
                                .order_by(t.detections.c.id)).all()
        # Reading every vector back by id, side by side: the contiguous copy (what the
        # workbench reads) against Chroma's own get (what it read before the copy).
        uri, all_ids = f"workbench://{KEY}/detection_embedding", [r.id for r in rows]
        began = time.perf_counter()
        from_copy = wb.vectors.copy(uri).get(all_ids)
        copy_s = time.perf_counter() - began
        chroma_s = None
        if args.compare_chroma:
            wb.vectors.index(uri)
            began = time.perf_counter()
            collection = wb.vectors.collection(uri)
            for start in range(0, len(all_ids), 5000):
                collection.get(ids=all_ids[start:start + 5000], include=["embeddings"])
            chroma_s = time.perf_counter() - began
        assert len(from_copy) == len(all_ids)
        rng = np.random.default_rng(7)
        picked = rng.choice(len(rows), 900, replace=False)
        first, second = picked[:600], picked[600:]
        wb.references.create("refs", "bench")
        for cls in ("circle", "square", "triangle"):
            wb.references.add("refs", [rows[i].id for i in first if rows[i].class_name == cls],
                              true_class=cls)
        wb.taxonomies.create("shapes", "refs", threshold=0.3, top_k=5)
        wb.taxonomies.attach("shapes", "bench", "retroactive")

        initial = wb.taxonomies.apply("shapes")
        for cls in ("circle", "square", "triangle"):
            wb.references.add("refs", [rows[i].id for i in second
                                       if rows[i].class_name == cls], true_class=cls)
        retro = wb.taxonomies.apply("shapes")
        truth = {r.id: r.class_name for r in rows}
        assigned = {r["detection_id"]: r["label"]
                    for r in wb.taxonomies.assignments("shapes", limit=len(rows))}
        accuracy = sum(assigned[d] == c for d, c in truth.items()) / len(truth)
        wb.close()

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "benchmark": "taxonomy", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "settings": vars(args), "build_s": round(build_s, 1),
        "first_apply": {k: v for k, v in initial.items() if k != "sample"},
        "retroactive": {k: v for k, v in retro.items() if k != "sample"},
        "first_detections_per_s": round(initial["classified"] / initial["seconds"]),
        "retroactive_detections_per_s": round(retro["classified"] / retro["seconds"]),
        "agreement_with_generating_class": round(accuracy, 4), "peak_rss_mb": round(peak_mb),
        "read_all_vectors": {"copy_per_s": round(len(all_ids) / copy_s)} | ({
            "chroma_per_s": round(len(all_ids) / chroma_s),
            "ratio": round(chroma_s / copy_s, 1)} if chroma_s else {}),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "taxonomy.json").write_text(json.dumps(result, indent=2))
    print(f"\ntaxonomy benchmark: {args.detections} detections, {args.dim}-d, flat taxonomy "
          f"of 3 classes, top_k 5 ({result['machine']})")
    for name, report in (("first apply", initial), ("retroactive", retro)):
        print(f"  {name:12} {report['classified'] / report['seconds']:9,.0f} detections/s  "
              f"({report['seconds']:.2f} s: read {report['read_s']:.2f}, classify "
              f"{report['classify_s']:.2f}, write {report['write_s']:.2f}; {report['new']} new, "
              f"{report['changed']} changed, {report['unchanged']} unchanged; "
              f"references v{report['reference_version']}, taxonomy v"
              f"{report['taxonomy_version']})")
    reads = result["read_all_vectors"]
    print(f"  reading every vector by id: contiguous copy {reads['copy_per_s']:,}/s" + (
        f", Chroma {reads['chroma_per_s']:,}/s ({reads['ratio']}x)" if chroma_s else ""))
    print(f"  agreement with the generating class: {accuracy:.3f}; peak memory "
          f"{peak_mb:.0f} MB RSS (target >= 10,000 detections/s)")


if __name__ == "__main__":
    main()
