"""Loop benchmark: does reviewing what the review plan picks beat reviewing at random?

On ShapeWorld with a frozen holdout (its own scenes, never reviewed or trained on), start from
the shipped starter (v1). Two tracks, each in its own workspace copy: the simulated reviewer
spends the same budget on (a) the default review plan (images the model found nothing on,
the spot-check of confident detections, the uncertainty queue: see SimulatedReviewer.review)
or (b) detections drawn uniformly at random; then export (reviewed images completed with
confident unreviewed boxes, and — unless --no-pseudo-label — images nobody reviewed on which
the model is sure of every box), fine-tune with the same settings, run the new version over
the pool, and repeat from it. Every model is scored on the holdout over all four classes by
the workbench's own evaluation (pycocotools). Prints mAP50-95 per cycle and the annotations
used, and writes bench/results/loop.json.

    .venv/bin/python bench/loop.py [--pool 300] [--holdout 100] [--budget 150] [--cycles 2]
                                   [--epochs 8] [--imgsz 320]
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
    """Holdout mAP over all four classes, by the workbench's own evaluation (pycocotools).

    ultralytics' validator drops the labels of classes a model does not have, so it would
    score v1 (three classes) on an easier task than v2 (four): a model that cannot find stars
    must be charged for them. ``mAP50_95_known`` is the same over the three classes v1 knows.
    """
    from ultralytics import YOLO

    from workbench.evaluation import Box, EvalImage, evaluate

    folder = holdout_yaml.parent
    records = json.loads((folder / "annotations.json").read_text())
    images = [EvalImage(r["file"], r["width"], r["height"],
                        tuple(Box(o["class"], tuple(o["xyxy"])) for o in r["objects"]))
              for r in records]
    model = YOLO(str(weights))
    predictions = {}
    for record in records:
        (result,) = model.predict(str(folder / record["file"]), imgsz=imgsz, conf=0.001,
                                  device="cpu", verbose=False)
        boxes = result.boxes
        predictions[record["file"]] = [
            Box(model.names[int(c)], tuple(float(v) for v in xyxy), float(p))
            for c, xyxy, p in zip(boxes.cls.tolist(), boxes.xyxy.tolist(), boxes.conf.tolist(),
                                  strict=True)]
    everything = evaluate(images, predictions, CLASSES)
    known = [c for c in CLASSES if c != "star"]
    per_class = {m.cls: m.ap50_95 for m in everything.per_class}
    return {"mAP50": round(everything.map50, 4), "mAP50_95": round(everything.map50_95, 4),
            "mAP50_95_known": round(sum(per_class[c] for c in known) / len(known), 4),
            "AP50_95": {c: round(v, 4) if v is not None else None
                        for c, v in per_class.items()}}


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
    parser.add_argument("--epochs", type=int, default=8)
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
        for strategy in ("plan", "random"):
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
    print(f"  {'cycle':>5}  {'v1':>8}  {'v2 (plan)':>10}  {'v2 (random)':>12}  "
          f"annotations plan/random")
    for cycle in range(1, args.cycles + 1):
        a = next(r for r in rows if r["cycle"] == cycle and r["strategy"] == "plan")
        b = next(r for r in rows if r["cycle"] == cycle and r["strategy"] == "random")
        print(f"  {cycle:>5}  {baseline['mAP50_95']:8.4f}  {a['mAP50_95']:10.4f}  "
              f"{b['mAP50_95']:12.4f}  {a['annotations_total']}/{b['annotations_total']}")
    print("\n  per-class AP50-95 after the last cycle (v1 / plan / random):")
    last_a = next(r for r in rows if r["cycle"] == args.cycles and r["strategy"] == "plan")
    last_b = next(r for r in rows if r["cycle"] == args.cycles and r["strategy"] == "random")
    for cls in CLASSES:
        print(f"    {cls:9} {baseline['AP50_95'][cls]:.4f} / {last_a['AP50_95'][cls]:.4f} / "
              f"{last_b['AP50_95'][cls]:.4f}")


if __name__ == "__main__":
    main()
