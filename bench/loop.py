"""Loop benchmark: does the flywheel make a detector better on data it was not tuned to?

Two worlds: ShapeWorld (mixed day and night, clutter, occlusion), and SketchWorld
(``workbench/demo/sketchworld.py``: drawn by another module, rotated and outlined shapes on
textured backgrounds, blur, compression, dusk), each with a pool of images to review and a
frozen test set that is never reviewed — two draws from the same scenes — both holding a
class the shipped starter (v1) has never seen (``star``). For each world, from v1, three
cycles of:

1. **review** — the simulated reviewer spends the cycle's budget of reviewer actions (each
   verdict and each drawn box is one) through the same queues a person gets:
   ``images`` finishes whole images from the image-review queue (ranked by what the model
   stands to learn); ``detections`` is the detection-queue plan of before (uncertain
   detections, the spot-check, images with no detections); ``random`` finishes whole images
   in random order;
2. **compound** — references from the ground truth (the classes the current version knows) →
   a flat taxonomy applied retroactively to the current version → HDBSCAN over the
   detections it calls unknown → the reviewer looks at
   a sample of each big cluster (each look is an action) and accepts the best one if most of
   the sample is one class → that cluster becomes a taxonomy node and its members are
   relabelled as that class;
3. **export** (complete images; partly reviewed ones — the relabelled cluster members' —
   completed with the model's confident boxes as pseudo-labels) → **fine-tune** (a fixed
   budget of training images × epochs per cycle) → run the new version over the pool.

Five seeds for the image-review track, one for each comparison track. Every model is scored
on the world's frozen test set by the workbench's pycocotools evaluation over all four
classes (a model that cannot find stars is charged for them; ultralytics' validator would
drop the class), by ultralytics' own validator, and on the gold set (the complete images the
reviewer's workspace reserved) with a bootstrap interval. Writes bench/results/loop.json.

    .venv/bin/python bench/loop.py [--worlds shapeworld sketchworld] [--seeds 5]
        [--pool 200] [--test 80] [--budget 150] [--cycles 3] [--image-epochs 1200] [--jobs 2]
        [--unreviewed fill|skip]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = ("circle", "square", "triangle", "star")
UNSEEN = "star"
COMPOUND_LOOKS = 20  # actions the compound step may spend looking at cluster members
SAMPLE = 8  # members looked at per cluster


# -- the worlds ------------------------------------------------------------------------------
# Each world is one distribution of scenes; its pool (to review) and its test set (never
# reviewed) are two independent draws from it.
def make_shapeworld(root: Path, pool: int, test: int) -> tuple[list[Path], Path]:
    from workbench.demo.shapeworld import SceneConfig, write_dataset

    config = SceneConfig(lighting="mixed", night_fraction=0.4, classes=CLASSES, clutter=2,
                         occlusion=0.2)
    folder = write_dataset(root / "pool", config, pool, seed=500, split="pool", names=CLASSES)
    holdout = write_dataset(root / "test", config, test, seed=900, split="test", names=CLASSES)
    return [folder], holdout


def make_sketchworld(root: Path, pool: int, test: int) -> tuple[list[Path], Path]:
    from workbench.demo.sketchworld import SketchConfig, write_dataset

    config = SketchConfig(classes=CLASSES, dim=0.3)
    folder = write_dataset(root / "pool", config, pool, seed=700, split="pool", names=CLASSES)
    holdout = write_dataset(root / "test", config, test, seed=990, split="test", names=CLASSES)
    return [folder], holdout


WORLDS = {"shapeworld": make_shapeworld, "sketchworld": make_sketchworld}


# -- scoring ---------------------------------------------------------------------------------
def score(weights: Path, test: Path, imgsz: int, workdir: Path) -> dict:
    """The frozen test set, by the workbench's evaluation over all four classes and by
    ultralytics' validator (which scores the classes the model has)."""
    from ultralytics import YOLO

    from workbench.metrics import Box, EvalImage, evaluate

    records = json.loads((test / "annotations.json").read_text())
    images = [EvalImage(r["file"], r["width"], r["height"],
                        tuple(Box(o["class"], tuple(o["xyxy"])) for o in r["objects"]))
              for r in records]
    model = YOLO(str(weights))
    predictions = {}
    for record in records:
        (result,) = model.predict(str(test / record["file"]), imgsz=imgsz, conf=0.001,
                                  device="cpu", verbose=False)
        boxes = result.boxes
        predictions[record["file"]] = [
            Box(model.names[int(c)], tuple(float(v) for v in xyxy), float(p))
            for c, xyxy, p in zip(boxes.cls.tolist(), boxes.xyxy.tolist(),
                                  boxes.conf.tolist(), strict=True)]
    result = evaluate(images, predictions, CLASSES)
    per_class = {m.cls: m.ap50_95 for m in result.per_class}
    names = [model.names[i] for i in sorted(model.names)]
    workdir.mkdir(parents=True, exist_ok=True)
    yaml = workdir / "test.yaml"
    yaml.write_text(f'path: "{test}"\ntrain: images\nval: images\nnames:\n' + "".join(
        f"  {i}: {n}\n" for i, n in enumerate(names)))
    _relabel(test, names, workdir / "labels_for_val")
    metrics = model.val(data=str(yaml), imgsz=imgsz, batch=16, device="cpu", plots=False,
                        verbose=False, project=str(workdir), name="val", exist_ok=True)
    return {"mAP50_95": round(result.map50_95, 4), "mAP50": round(result.map50, 4),
            "AP50_95": {c: None if v is None else round(v, 4) for c, v in per_class.items()},
            "ultralytics_mAP50_95": round(float(metrics.box.map), 4),
            "ultralytics_classes": names}


def _relabel(test: Path, names: list[str], scratch: Path) -> None:
    """Label files with the model's own class ids (a model without stars skips them)."""
    records = json.loads((test / "annotations.json").read_text())
    labels = test / "labels"
    for record in records:
        stem = Path(record["file"]).stem
        lines = []
        for o in record["objects"]:
            if o["class"] not in names:
                continue
            x1, y1, x2, y2 = o["xyxy"]
            w, h = record["width"], record["height"]
            lines.append(f"{names.index(o['class'])} {(x1 + x2) / 2 / w:.6f} "
                         f"{(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        (labels / f"{stem}.txt").write_text("".join(f"{line}\n" for line in lines))
    for cache in test.glob("*.cache"):
        cache.unlink()


# -- one track -------------------------------------------------------------------------------
def compound(wb, reviewer, truth, cycle: int) -> dict:
    """References from the ground truth → taxonomy → clusters over the unknowns → accept the
    best cluster after looking at a sample of its members → promote and relabel."""
    from workbench.errors import ValidationError

    collection = wb.collections.get("pool")
    version = wb.registry.get(collection.extractor_name, collection.active_version)
    name = f"refs-c{cycle}"
    wb.references.create(name, "pool")
    # References of the classes the model knows: what is like none of them is unknown, and
    # an unseen class the model takes for a known one (a star called a triangle) stands out.
    added = wb.references.promote(name, classes=version.classes)["added"]
    if not added:
        return {"actions": 0, "references": 0, "accepted": None}
    tax = f"shapes-c{cycle}"
    wb.taxonomies.create(tax, name)
    wb.taxonomies.apply(tax, version=version.version)
    filters = {"field": f"taxonomy.{tax}", "operator": "eq", "value": "unknown"}
    try:
        run = wb.clusters.run("pool", "hdbscan", filters=filters, version=version.version)
    except ValidationError as exc:  # too few unknowns to cluster
        return {"actions": 0, "references": added, "accepted": None, "note": str(exc)}
    looks, best = 0, None
    for key, info in sorted(run.clusters.items(), key=lambda kv: -kv[1]["size"]):
        if int(key) < 0 or looks + SAMPLE > COMPOUND_LOOKS:
            continue
        members = wb.clusters.members(run.id, int(key))
        sample = members[:: max(1, len(members) // SAMPLE)][:SAMPLE]
        classes = [reviewer.true_class(m["detection_id"]) for m in sample]
        looks += len(sample)
        top = max(set(classes), key=classes.count)
        share = classes.count(top) / len(classes)
        if top is not None and share >= 0.75 and (best is None or (share, info["size"]) >
                                                  (best[2], best[3])):
            best = (int(key), top, share, info["size"])
    if best is None:
        return {"actions": looks, "references": added, "accepted": None}
    key, cls, share, size = best
    wb.clusters.rename(run.id, key, cls)
    wb.clusters.promote(run.id, key, tax)
    written = wb.clusters.relabel(run.id, key, cls, confirm=True, author="oracle")["written"]
    return {"actions": looks, "references": added,
            "accepted": {"class": cls, "sample_share": round(share, 2), "members": size,
                         "relabelled": written}}


def run_track(base: Path, root: Path, world: str, track: str, seed: int, test: Path,
              args) -> list[dict]:
    from workbench import Workbench
    from workbench.demo.reviewer import GroundTruth, SimulatedReviewer
    from workbench.detection import DetectParams
    from workbench.export import ExportOptions
    from workbench.training import TrainParams

    workspace = root / f"{track}-{seed}"
    shutil.copytree(base, workspace)
    wb = Workbench.open(workspace / "ws", gold_fraction=args.gold_fraction)
    truth = GroundTruth.from_datasets(sorted(p.parent for p in (workspace / "pool")
                                             .rglob("annotations.json")))
    reviewer = SimulatedReviewer(wb, truth)
    rows = []
    for cycle in range(1, args.cycles + 1):
        started = time.perf_counter()
        budget = args.budget - COMPOUND_LOOKS
        if track == "images":
            review = reviewer.review_images("pool", budget, order="ranked", seed=seed)
        elif track == "random":
            review = reviewer.review_images("pool", budget, order="random",
                                            seed=seed * 100 + cycle)
        else:
            review = reviewer.review("pool", budget, strategy="plan", seed=cycle,
                                     count_drawn=True)
        grown = compound(wb, reviewer, truth, cycle)
        options = ExportOptions(unreviewed=args.unreviewed, fill_threshold=args.fill_threshold,
                                val_fraction=args.val, pseudo_label=args.pseudo_label)
        epochs = _epochs(wb, args)
        job = wb.training.run("pool", export=options, params=TrainParams(
            epochs=epochs, imgsz=args.imgsz, batch=8, workers=2, patience=epochs,
            seed=seed, lr0=args.lr0, freeze=args.freeze))
        version = wb.registry.get(job.result["version"])
        wb.collections.set_active_version("pool", version.version)
        wb.detection.run("pool", version.version, params=DetectParams(imgsz=args.imgsz))
        gold = _gold(wb, version)
        lineage = version.lineage
        export = json.loads((Path(lineage["export_path"]) / "manifest.json").read_text())
        rows.append({
            "world": world, "track": track, "seed": seed, "cycle": cycle,
            "version": version.key, "actions": review["actions"] + grown["actions"],
            "review": {k: v for k, v in review.items() if k != "executions"},
            "compound": grown, "truth": wb.truth.counts("pool"),
            "export": {"images": export["counts"]["images"],
                       "boxes_by_origin": export["counts"]["boxes_by_origin"]},
            "gold": gold,
            **score(wb.home / version.weights_path, test, args.imgsz, workspace / "score"),
            "seconds": round(time.perf_counter() - started, 1)})
        rows[-1]["epochs"] = epochs
        r = rows[-1]
        print(f"  {world:11} {track:10} seed {seed} cycle {cycle}: {version.key} test "
              f"mAP50-95 {r['mAP50_95']:.4f} (ultralytics {r['ultralytics_mAP50_95']:.4f}), "
              f"{UNSEEN} {r['AP50_95'][UNSEEN] or 0:.4f}; gold {gold['text']}; "
              f"{r['truth']['complete']} complete, {r['actions']} actions, "
              f"{r['seconds']} s", flush=True)
    wb.close()
    shutil.rmtree(workspace, ignore_errors=True)
    return rows


def _epochs(wb, args) -> int:
    """Epochs for this cycle's fine-tune: a fixed budget of image-epochs (the compute a cycle
    may spend), spread over the images the export will train on."""
    counts = wb.truth.counts("pool")
    train = max(1, round((counts["complete"] - counts["gold"] + counts["partial"])
                         * (1 - args.val)))
    return max(args.min_epochs, min(args.max_epochs, round(args.image_epochs / train)))


def _gold(wb, version) -> dict:
    """The new version against its parent on the gold set, with the bootstrap interval."""
    from workbench.errors import ValidationError

    try:
        record = wb.evaluation.compare_versions("pool", version.parent_version,
                                                version.version, resamples=300)
    except ValidationError as exc:
        return {"images": 0, "text": f"n/a ({exc})"[:60]}
    interval = record["comparison"]["interval"]
    value, low_high = record["candidate"]["map50_95"], interval["candidate"]
    return {"images": len(record["images"]["ids"]), "mAP50_95": value,
            "interval": low_high, "delta_interval": interval["delta"],
            "text": (f"{value:.3f} [{low_high[0]:.3f}, {low_high[1]:.3f}] on "
                     f"{len(record['images']['ids'])} images" if value is not None and
                     low_high else "n/a")}


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _run(spec) -> list[dict]:
    return run_track(*spec)


def prepare(world: str, root: Path, args) -> tuple[Path, Path, dict]:
    """The world's pool and test set, and a workspace with the pool run through v1."""
    from workbench import Workbench
    from workbench.detection import DetectParams

    base = root / "base"
    folders, test = WORLDS[world](base, args.pool, args.test)
    wb = Workbench.open(base / "ws", gold_fraction=args.gold_fraction)
    wb.buckets.create("pool")
    wb.ingest.run("pool", [f / "images" for f in folders])
    v1 = wb.demo.register_starter()
    wb.collections.create("pool", ["pool"], v1.name, v1.version)
    wb.detection.run("pool", params=DetectParams(imgsz=args.imgsz))
    first = score(base / "ws" / v1.weights_path, test, args.imgsz, root / "score-v1")
    wb.close()
    return base, test, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tracks", nargs="+", default=["images", "detections", "random"])
    parser.add_argument("--pool", type=int, default=200)
    parser.add_argument("--test", type=int, default=80)
    parser.add_argument("--budget", type=int, default=150)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--image-epochs", type=int, default=1200,
                        help="training images × epochs per fine-tune (the compute budget)")
    parser.add_argument("--min-epochs", type=int, default=8)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--val", type=float, default=0.1)
    parser.add_argument("--lr0", type=float, default=0.005)
    parser.add_argument("--freeze", type=int, default=None,
                        help="layers kept frozen while fine-tuning (10: the backbone)")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--unreviewed", choices=("fill", "skip"), default="fill",
                        help="partly reviewed images: completed with the model's boxes at "
                             "--fill-threshold (fill) or left out (skip, export's default)")
    parser.add_argument("--fill-threshold", type=float, default=0.5)
    parser.add_argument("--gold-fraction", type=float, default=0.15)
    parser.add_argument("--pseudo-label", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--out", type=Path, default=RESULTS / "loop.json")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (processes)")
    args = parser.parse_args()
    from workbench.training import prepare_ultralytics

    started = time.perf_counter()
    rows, baselines, runs = [], {}, []
    with tempfile.TemporaryDirectory(prefix="wb-bench-loop-") as tmp:
        prepare_ultralytics(Path(tmp) / "ultralytics")
        for world in args.worlds:
            root = Path(tmp) / world
            base, test, baselines[world] = prepare(world, root, args)
            v1 = baselines[world]
            print(f"{world}: v1 test mAP50-95 {v1['mAP50_95']:.4f} (ultralytics "
                  f"{v1['ultralytics_mAP50_95']:.4f})", flush=True)
            for track in args.tracks:
                for seed in (range(args.seeds) if track == "images" else range(1)):
                    runs.append((base, root, world, track, seed, test, args))
        # Runs are independent (each in its own copy of the world's workspace): they share
        # the cores, one thread each, which keeps both busy through the single-threaded
        # parts (review, SQLite, decoding) that one run alone leaves idle.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context,
                                 initializer=_one_thread) as pool:
            for found in pool.map(_run, runs):
                rows += found
    elapsed = time.perf_counter() - started
    verdicts = {world: targets(baselines[world], [r for r in rows if r["world"] == world
                                                  and r["track"] == "images"])
                for world in args.worlds}
    result = {"benchmark": "loop", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "settings": {k: str(v) for k, v in vars(args).items()}, "v1": baselines,
              "rows": rows, "targets": verdicts, "seconds": round(elapsed, 1)}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    report(result, args)


def targets(v1: dict, rows: list[dict]) -> dict:
    """Issue 13's bar for the image-review track: v2 > v1 in every seed, v3 > v2 in at least
    four of five, median v3 ≥ 2× v1, the unseen class at AP50-95 ≥ 0.3 after cycle 2."""
    by_seed: dict[int, dict[int, dict]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["cycle"]] = r
    seeds = sorted(by_seed)
    if not seeds or any(3 not in by_seed[s] for s in seeds):
        return {"complete": False}
    v2 = [by_seed[s][1]["mAP50_95"] for s in seeds]
    v3 = [by_seed[s][2]["mAP50_95"] for s in seeds]
    v4 = [by_seed[s][3]["mAP50_95"] for s in seeds]
    unseen = [by_seed[s][2]["AP50_95"][UNSEEN] or 0 for s in seeds]
    return {"complete": True,
            "v2_beats_v1_every_seed": all(v > v1["mAP50_95"] for v in v2),
            "v3_beats_v2_in": sum(b > a for a, b in zip(v2, v3, strict=True)),
            "median_v3_over_v1": round(statistics.median(v3) / max(v1["mAP50_95"], 1e-9), 2),
            "unseen_ap_after_cycle_2": [round(u, 4) for u in unseen],
            "v4_after_cycle_3": v4}


def report(result: dict, args) -> None:
    print(f"\nloop benchmark ({args.pool} pool images, {args.test} test images per world, "
          f"{args.budget} actions per cycle, {args.image_epochs} image-epochs per fine-tune at "
          f"{args.imgsz} px; "
          f"{result['seconds'] / 60:.1f} min on {result['machine']})")
    for world, v1 in result["v1"].items():
        print(f"\n{world}: test mAP50-95 over {', '.join(CLASSES)} (v1 {v1['mAP50_95']:.4f}); "
              f"{UNSEEN} AP50-95 in brackets")
        print(f"  {'track':10} {'seed':>4}  " + "  ".join(f"{'cycle ' + str(c):>15}"
                                                        for c in range(1, args.cycles + 1)))
        rows = [r for r in result["rows"] if r["world"] == world]
        for track, seed in sorted({(r["track"], r["seed"]) for r in rows}):
            cells = [f"{r['mAP50_95']:.3f} ({r['AP50_95'][UNSEEN] or 0:.3f})".rjust(15)
                     for r in sorted((r for r in rows if r["track"] == track and
                                      r["seed"] == seed), key=lambda r: r["cycle"])]
            print(f"  {track:10} {seed:>4}  " + "  ".join(cells))
        print(f"  targets: {result['targets'][world]}")


if __name__ == "__main__":
    main()
