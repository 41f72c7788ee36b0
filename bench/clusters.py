"""Cluster benchmark: one cluster run over 20,000 detection embeddings, end to end, in a
warm worker process.

Builds detections as bench/review.py does (1024-d vectors, the width of YOLOv8n's detection
embedding, around three class centres, plus a fourth, smaller group that no class names: the
"unseen" one), warms UMAP up once (numba compiles for about a minute in every new process: the
app's long-lived worker pays that once),
then times complete runs — select, read vectors from Chroma, reduce, cluster, 2D projection,
store — for the configurations the Clusters page offers. Prints seconds per phase, how well
the unseen group is recovered, and peak memory; writes bench/results/clusters.json.
Target: <= 20 s for the UMAP run.

    .venv/bin/python bench/clusters.py [--detections 20000] [--dim 1024]
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
from review import build  # noqa: E402  (the same synthetic workspace)

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = [
    ("hdbscan", {"min_cluster_size": 50}, {"method": "pca", "n_components": 10}, "pca"),
    ("hdbscan", {"min_cluster_size": 50}, {"method": "umap", "n_components": 10}, "pca"),
    ("hdbscan", {"min_cluster_size": 50}, {"method": "umap", "n_components": 10}, "umap"),
    ("kmeans", {"n_clusters": 4}, {"method": "pca", "n_components": 10}, "pca"),
]


def add_unseen_group(wb, share: float, dim: int) -> set[str]:
    """Move a share of the detections to a fourth centre (their class stays a known one)."""
    import numpy as np
    import sqlalchemy as sa

    from workbench.store import tables as t

    uri = "workbench://yolo_detector@1.0.0/detection_embedding"
    with wb.db.read() as conn:
        ids = list(conn.execute(sa.select(t.detections.c.id).order_by(t.detections.c.id))
                   .scalars())
    rng = np.random.default_rng(5)
    chosen = [ids[i] for i in rng.choice(len(ids), int(len(ids) * share), replace=False)]
    centre = rng.normal(size=dim).astype("float32")
    vectors = centre + 0.8 * rng.normal(size=(len(chosen), dim)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    wb.vectors.upsert(uri, chosen, vectors)
    return set(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1024)
    args = parser.parse_args()

    import numpy as np

    from workbench import Workbench
    from workbench.clusters import reduce

    rows = []
    with tempfile.TemporaryDirectory(prefix="wb-bench-clusters-") as tmp:
        wb = Workbench.open(Path(tmp) / "ws")
        build(wb, args.detections, args.dim)
        unseen = add_unseen_group(wb, 0.05, args.dim)
        begun = time.perf_counter()
        # Over 4,096 points UMAP takes its approximate-neighbour path: compile that one too.
        reduce(np.random.default_rng(0).normal(size=(5000, 60)).astype("float32"), "umap", 2)
        warm_up_s = time.perf_counter() - begun
        print(f"UMAP warm-up (numba compilation, once per worker process): {warm_up_s:.1f} s")
        for algorithm, params, reduction, projection in CONFIGS:
            begun = time.perf_counter()
            run = wb.clusters.run("bench", algorithm, params, reduction=reduction,
                                  projection=projection)
            wall = time.perf_counter() - begun
            members = wb.clusters.members(run.id)
            by_cluster: dict[int, list[bool]] = {}
            for m in members:
                by_cluster.setdefault(m["cluster"], []).append(m["detection_id"] in unseen)
            best = max((c for c in by_cluster if c != -1),
                       key=lambda c: sum(by_cluster[c]), default=None)
            purity = (sum(by_cluster[best]) / len(by_cluster[best])) if best is not None else 0
            recall = (sum(by_cluster[best]) / len(unseen)) if best is not None else 0
            rows.append({"algorithm": algorithm, "params": params, "reduction": reduction,
                         "projection": projection, "wall_s": round(wall, 2),
                         "phases_s": run.seconds, "clusters": len(run.clusters),
                         "noise": run.noise, "unseen_purity": round(purity, 3),
                         "unseen_recall": round(recall, 3)})
            print(f"  {algorithm:8} reduce {reduction['method']:4} view {projection:4}: "
                  f"{wall:6.2f} s end to end ({', '.join(f'{k} {v:.2f}' for k, v in run.seconds.items() if k != 'total')}); "
                  f"{len(run.clusters)} clusters, {run.noise} noise; unseen group purity "
                  f"{purity:.2f}, recall {recall:.2f}", flush=True)
        wb.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"benchmark": "clusters", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "settings": vars(args), "umap_warm_up_s": round(warm_up_s, 1), "runs": rows,
              "peak_rss_mb": round(peak_mb)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "clusters.json").write_text(json.dumps(result, indent=2))
    print(f"peak memory {peak_mb:.0f} MB RSS ({result['machine']}); target <= 20 s per run")


if __name__ == "__main__":
    main()
