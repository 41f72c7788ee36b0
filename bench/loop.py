"""Loop benchmark: does reviewing what the queue picks beat reviewing at random?

On ShapeWorld with a frozen holdout (its own scenes, never reviewed or trained on), start from
the shipped starter (v1). Two tracks, each in its own workspace copy: the simulated reviewer
spends the same budget of verdicts on detections chosen by (a) the default review queue or
(b) uniform random; then export (reviewed images completed with confident unreviewed boxes,
and — unless --no-pseudo-label — the model's confident boxes on the images nobody reviewed),
fine-tune with the same settings, run the new version over the pool, and repeat. Every model
is scored on the holdout by ultralytics' validator. Prints mAP50-95 per cycle and the
annotations used, and writes bench/results/loop.json.

    .venv/bin/python bench/loop.py [--pool 300] [--holdout 100] [--budget 150] [--cycles 2]
                                   [--epochs 10] [--imgsz 320]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = ("circle", "square", "triangle", "star")


def make_pool(wb, root: Path, n: int) -> list[Path]:
    """Scenes like the demo's: mostly day, with night, clutter and the unseen star."""
    from workbench.demo.shapeworld import ALL_CLASSES, SceneConfig, write_dataset

    parts = [("day", 0.4, SceneConfig(lighting="day")),
             ("night", 0.2, SceneConfig(lighting="night")),
             ("clutter", 0.2, SceneConfig(lighting="day", clutter=4, occlusion=0.3)),
             ("star", 0.2, SceneConfig(lighting="mixed", classes=CLASSES))]
    folders = []
    for i, (name, share, config) in enumerate(parts):
        folder = write_dataset(root / name, config, max(1, round(n * share)), seed=500 + i,
                               split=name, names=ALL_CLASSES)
        folders.append(folder)
    return folders


def make_holdout(root: Path, n: int) -> Path:
    """A YOLO dataset never seen by any model, labelled with CLASSES ids."""
    from workbench.demo.shapeworld import SceneConfig, write_dataset

    config = SceneConfig(lighting="mixed", classes=CLASSES, clutter=2)
    folder = write_dataset(root / "holdout", config, n, seed=900, split="holdout",
                           names=CLASSES)
    names = "\n".join(f"  {i}: {c}" for i, c in enumerate(CLASSES))
    (folder / "holdout.yaml").write_text(
        f'path: "{folder}"\ntrain: images\nval: images\nnames:\n{names}\n')
    return folder / "holdout.yaml"


def score(weights: Path, holdout_yaml: Path, imgsz: int) -> dict[str, float]:
    from ultralytics import YOLO

    model = YOLO(str(weights))
    # The holdout's ids follow CLASSES; a model with another order is scored through its names.
    order = [model.names[i] for i in sorted(model.names)]
    if order != list(CLASSES[: len(order)]):
        raise RuntimeError(f"model classes {order} do not extend {CLASSES}")
    metrics = model.val(data=str(holdout_yaml), imgsz=imgsz, batch=16, device="cpu",
                        plots=False, verbose=False, split="val")
    return {"mAP50": round(float(metrics.box.map50), 4),
            "mAP50_95": round(float(metrics.box.map), 4)}


def run_track(workspace: Path, strategy: str, args, holdout_yaml: Path) -> list[dict]:
    from workbench import Workbench
    from workbench.demo.reviewer import GroundTruth, SimulatedReviewer
    from workbench.detection import DetectParams
    from workbench.export import ExportOptions
    from workbench.training import TrainParams

    wb = Workbench.open(workspace)
    truth = GroundTruth.from_datasets(sorted(p.parent for p in (workspace.parent / "pool")
                                             .rglob("annotations.json")))
    reviewer = SimulatedReviewer(wb, truth)
    rows = []
    for cycle in range(1, args.cycles + 1):
        started = time.perf_counter()
        review = reviewer.review("pool", args.budget, strategy=strategy, seed=cycle)
        options = ExportOptions(unreviewed="fill", fill_threshold=0.5, val_fraction=0.2,
                                pseudo_label=args.pseudo_label)
        job = wb.training.run("pool", export=options, params=TrainParams(
            epochs=args.epochs, imgsz=args.imgsz, batch=16, workers=2, patience=args.epochs))
        version = wb.registry.get(job.result["version"])
        wb.collections.set_active_version("pool", version.version)
        wb.detection.run("pool", version.version, params=DetectParams(imgsz=args.imgsz))
        rows.append({"cycle": cycle, "strategy": strategy, "version": version.key,
                     "annotations_total": wb.annotations.list(limit=1).total,
                     "review": {k: v for k, v in review.items() if k != "executions"},
                     "export_images": version.lineage["images"],
                     **score(wb.home / version.weights_path, holdout_yaml, args.imgsz),
                     "seconds": round(time.perf_counter() - started, 1)})
        print(f"  {strategy:6} cycle {cycle}: {version.key} mAP50-95 {rows[-1]['mAP50_95']:.4f} "
              f"({rows[-1]['annotations_total']} annotations, {rows[-1]['seconds']} s)",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=300)
    parser.add_argument("--holdout", type=int, default=100)
    parser.add_argument("--budget", type=int, default=150)
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--pseudo-label", action=argparse.BooleanOptionalAction, default=True,
                        help="train on the model's confident boxes of unreviewed images too")
    args = parser.parse_args()

    from workbench import Workbench
    from workbench.demo import register_starter
    from workbench.detection import DetectParams

    with tempfile.TemporaryDirectory(prefix="wb-bench-loop-") as tmp:
        root = Path(tmp)
        holdout_yaml = make_holdout(root, args.holdout)
        base = root / "base" / "ws"
        wb = Workbench.open(base)
        wb.buckets.create("pool")
        folders = make_pool(wb, root / "base" / "pool", args.pool)
        wb.ingest.run("pool", [f / "images" for f in folders])
        v1 = register_starter(wb)
        wb.collections.create("pool", ["pool"], v1.name, v1.version)
        wb.detection.run("pool", params=DetectParams(imgsz=args.imgsz))
        baseline = score(base / v1.weights_path, holdout_yaml, args.imgsz)
        print(f"v1 {v1.key}: holdout mAP50-95 {baseline['mAP50_95']:.4f}", flush=True)
        wb.close()
        rows = []
        for strategy in ("queue", "random"):
            track = root / strategy
            shutil.copytree(root / "base", track)
            rows += run_track(track / "ws", strategy, args, holdout_yaml)

    result = {"benchmark": "loop", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "settings": vars(args), "v1": baseline, "cycles": rows}
    RESULTS.mkdir(exist_ok=True)
    name = "loop.json" if args.pseudo_label else "loop_reviewed_only.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(f"\nloop benchmark ({args.pool} pool images, {args.holdout} holdout, budget "
          f"{args.budget} verdicts per cycle, {args.epochs} epochs at {args.imgsz}, pseudo "
          f"labels {'on' if args.pseudo_label else 'off'}):")
    print(f"  {'cycle':>5}  {'v1':>8}  {'v2 (queue)':>11}  {'v2 (random)':>12}  annotations q/r")
    for cycle in range(1, args.cycles + 1):
        q = next(r for r in rows if r["cycle"] == cycle and r["strategy"] == "queue")
        r = next(r for r in rows if r["cycle"] == cycle and r["strategy"] == "random")
        print(f"  {cycle:>5}  {baseline['mAP50_95']:8.4f}  {q['mAP50_95']:11.4f}  "
              f"{r['mAP50_95']:12.4f}  {q['annotations_total']}/{r['annotations_total']}")


if __name__ == "__main__":
    main()
