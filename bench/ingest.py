"""Ingest benchmark: 2,000 generated JPEGs from a folder into a fresh workspace.

Prints images/s and peak memory of the ingest process (target: >= 150 images/s on 2 cores),
then the same folder again (every image a duplicate), and writes bench/results/ingest.json.

    .venv/bin/python bench/ingest.py [--n 2000] [--no-fsync]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _ingest_child(home: str, folder: str, fsync: bool, queue) -> None:
    """Runs in a fresh process so that its peak RSS is the ingest's own."""
    from tqdm import tqdm

    from workbench import Workbench

    wb = Workbench.open(home, fsync=fsync)
    wb.buckets.create("bench")
    figures = {}
    for label in ("first", "again"):
        bar = tqdm(desc=f"ingest ({label})", unit="img")

        def update(job, bar=bar):
            bar.total = job.progress_total or None
            bar.n = job.progress_done
            bar.refresh()

        start = time.perf_counter()
        report = wb.ingest.run("bench", [folder], listener=update)
        seconds = time.perf_counter() - start
        bar.close()
        figures[label] = {
            "seconds": round(seconds, 3),
            "images": len(report.items),
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "images_per_s": round(len(report.items) / seconds, 1),
        }
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    queue.put(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--no-fsync", action="store_true", help="skip fsync of each blob")
    args = parser.parse_args()

    from workbench.demo.shapeworld import SceneConfig, write_dataset

    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        data = Path(tmp) / "scenes"
        start = time.perf_counter()
        from tqdm import tqdm

        with tqdm(total=args.n, desc="generate", unit="img") as bar:
            write_dataset(data, SceneConfig(lighting="mixed", clutter=2), args.n, seed=7,
                          progress=lambda i, n: bar.update(1))
        generated_s = time.perf_counter() - start
        images = data / "images"
        size_mb = sum(p.stat().st_size for p in images.iterdir()) / 1e6

        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_ingest_child,
                            args=(str(Path(tmp) / "ws"), str(images), not args.no_fsync, queue))
        child.start()
        figures = queue.get()
        child.join()

    result = {
        "benchmark": "ingest",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "images": args.n,
        "image_size": "640x480 JPEG q90",
        "folder_mb": round(size_mb, 1),
        "fsync": not args.no_fsync,
        "generate_seconds": round(generated_s, 1),
        **figures,
        "target_images_per_s": 150,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2))
    first = figures["first"]
    print(f"\ningest of {args.n} JPEGs ({size_mb:.0f} MB) on {result['machine']}, "
          f"fsync={'on' if result['fsync'] else 'off'}")
    print(f"  first pass : {first['images_per_s']:7.1f} images/s "
          f"({first['seconds']:.1f} s, {first['accepted']} accepted)")
    print(f"  second pass: {figures['again']['images_per_s']:7.1f} images/s "
          f"(all {figures['again']['duplicates']} duplicates)")
    print(f"  peak memory: {figures['peak_rss_mb']:.0f} MB RSS (ingest process)")
    print(f"  target >= 150 images/s: {'met' if first['images_per_s'] >= 150 else 'MISSED'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
