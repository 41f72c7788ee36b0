"""Detection benchmark: our full pipeline against raw ultralytics predict, side by side.

Over the same images in one run:
  (a) raw ultralytics batched predict from the image files (decode + infer + NMS),
  (b) our batch run: decode → infer → per-detection embeddings → vector copy + SQLite,
and, on already-decoded images, the embedding overhead (our extractor vs plain predict).
Prints images/s of (a) and (b), the ratio b/a (target >= 0.9) and the overhead, and writes
bench/results/detect.json.

    .venv/bin/python bench/detect.py [--n 300] [--imgsz 320] [--batch 8] [--weights PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
STARTER = Path(__file__).resolve().parents[1] / "data" / "starter" / "shapeworld_starter.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--weights", default=str(STARTER))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import numpy as np

    from workbench import Workbench
    from workbench.config import resolve_device
    from workbench.demo.shapeworld import SceneConfig, write_dataset
    from workbench.detection import DetectParams
    from workbench.images import load_image

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="wb-bench-detect-") as tmp:
        scenes = write_dataset(Path(tmp) / "scenes", SceneConfig(lighting="mixed", clutter=2),
                               args.n, seed=9)
        files = sorted((scenes / "images").iterdir())
        wb = Workbench.open(Path(tmp) / "ws", device=device)
        wb.buckets.create("bench")
        wb.ingest.run("bench", [scenes / "images"])
        version = wb.registry.register_yolo(args.weights)
        wb.collections.create("bench", ["bench"])
        params = DetectParams(imgsz=args.imgsz, batch_size=args.batch)

        from ultralytics import YOLO

        raw = YOLO(args.weights)
        kwargs = dict(imgsz=args.imgsz, conf=params.conf, iou=params.iou, device=device,
                      verbose=False)
        raw.predict([str(f) for f in files[: args.batch]], batch=args.batch, **kwargs)  # warm

        start = time.perf_counter()
        raw_boxes = 0
        for i in range(0, len(files), args.batch):
            chunk = [str(f) for f in files[i : i + args.batch]]
            raw_boxes += sum(len(r.boxes) for r in raw.predict(chunk, batch=len(chunk), **kwargs))
        raw_s = time.perf_counter() - start

        start = time.perf_counter()
        job = wb.detection.run("bench", params=params)
        ours_s = time.perf_counter() - start
        ours_boxes = job.result["detections_now"]

        # Embedding overhead on decoded images: same model, with and without pooling.
        images = [np.asarray(load_image(f)) for f in files[: min(len(files), 96)]]
        bgr = [np.ascontiguousarray(im[..., ::-1]) for im in images]
        extractor = wb.registry.load_extractor(version, params.model_params(), device=device)
        start = time.perf_counter()
        for i in range(0, len(bgr), args.batch):
            raw.predict(bgr[i : i + args.batch], batch=args.batch, **kwargs)
        plain_s = time.perf_counter() - start
        start = time.perf_counter()
        rgb_views = [image[..., ::-1] for image in bgr]  # laid out as a batch run decodes
        for i in range(0, len(rgb_views), args.batch):
            extractor.process(rgb_views[i : i + args.batch])
        embed_s = time.perf_counter() - start

    result = {
        "benchmark": "detect",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, device {device}",
        "model": Path(args.weights).name,
        "images": args.n,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "raw_predict_images_per_s": round(args.n / raw_s, 2),
        "pipeline_images_per_s": round(args.n / ours_s, 2),
        "ratio_pipeline_over_raw": round(raw_s / ours_s, 3),
        "raw_boxes": raw_boxes,
        "pipeline_boxes": ours_boxes,
        "embedding_overhead_pct": round(100 * (embed_s - plain_s) / plain_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "target_ratio": 0.9,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "detect.json").write_text(json.dumps(result, indent=2))
    print(f"\ndetect benchmark: {args.n} ShapeWorld images, {result['model']} at imgsz "
          f"{args.imgsz}, batch {args.batch}, on {result['machine']}")
    print(f"  (a) raw ultralytics predict : {result['raw_predict_images_per_s']:7.2f} images/s "
          f"({raw_boxes} boxes)")
    print(f"  (b) our full pipeline       : {result['pipeline_images_per_s']:7.2f} images/s "
          f"({ours_boxes} boxes, embeddings and persistence included)")
    print(f"  ratio b/a                   : {result['ratio_pipeline_over_raw']:.3f} "
          f"(target >= 0.9: {'met' if result['ratio_pipeline_over_raw'] >= 0.9 else 'MISSED'})")
    print(f"  embedding overhead          : {result['embedding_overhead_pct']:+.1f}% over plain "
          "predict on decoded images")
    print(f"  peak memory                 : {result['peak_rss_mb']:.0f} MB RSS")


if __name__ == "__main__":
    main()
