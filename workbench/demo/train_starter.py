"""Train the starter detector that the demo workspace ships with.

    python -m workbench.demo.train_starter [--epochs 35] [--out data/starter]

A small YOLO (``yolov8n.yaml``: the architecture only, no pretrained weights — nothing is
downloaded) is trained on ShapeWorld *day* scenes with three classes (circle, square,
triangle). It is meant to be useful but imperfect: it has never seen night scenes, clutter or
stars, which the demo workspace contains. Its mAP50 / mAP50-95 on a held-out set of day scenes
is measured with ultralytics' validator and written next to the weights (``starter.json``);
the registry records it when the demo registers the model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

STARTER_CLASSES = ("circle", "square", "triangle")
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "data" / "starter"
WEIGHTS_NAME = "shapeworld_starter.pt"
CARD_NAME = "starter.json"


def _data_yaml(root: Path, train: str, val: str) -> Path:
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(STARTER_CLASSES))
    path = root / f"{train}.yaml"
    path.write_text(f'path: "{root}"\ntrain: {train}/images\nval: {val}/images\nnames:\n{names}\n')
    return path


def train_starter(out: Path = DEFAULT_OUT, epochs: int = 35, n_train: int = 320,
                  imgsz: int = 320, seed: int = 0) -> dict:
    """Train, validate on a held-out set, and write the weights and their card to ``out``."""
    from workbench.demo.shapeworld import SceneConfig, write_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="starter-") as tmp:
        root = Path(tmp)
        from workbench.training import prepare_ultralytics

        prepare_ultralytics(root / "ultralytics")
        day = SceneConfig(lighting="day", classes=STARTER_CLASSES, max_objects=6)
        write_dataset(root / "train", day, n_train, seed=1000 + seed, split="train")
        write_dataset(root / "val", day, 64, seed=2000 + seed, split="val")
        write_dataset(root / "holdout", day, 100, seed=3000 + seed, split="holdout")

        from ultralytics import YOLO

        model = YOLO("yolov8n.yaml")
        start = time.perf_counter()
        model.train(
            data=str(_data_yaml(root, "train", "val")), epochs=epochs, imgsz=imgsz, batch=8,
            workers=2, device="cpu", seed=seed, deterministic=True, project=str(root / "runs"),
            name="starter", exist_ok=True, plots=False, amp=False, verbose=False,
            close_mosaic=max(1, epochs // 6), patience=epochs,
        )
        train_seconds = time.perf_counter() - start
        best = root / "runs" / "starter" / "weights" / "best.pt"
        trained = YOLO(str(best))
        metrics = trained.val(data=str(_data_yaml(root, "holdout", "holdout")), imgsz=imgsz,
                              batch=16, device="cpu", plots=False, verbose=False,
                              project=str(root / "runs"), name="holdout", exist_ok=True)
        shutil.copy(best, out / WEIGHTS_NAME)

    card = {
        "architecture": "yolov8n.yaml (trained from scratch, no pretrained weights)",
        "classes": list(STARTER_CLASSES),
        "trained_on": f"{n_train} ShapeWorld day scenes (seed {1000 + seed}), 640x480",
        "epochs": epochs,
        "imgsz": imgsz,
        "train_seconds": round(train_seconds, 1),
        "holdout": f"100 ShapeWorld day scenes (seed {3000 + seed})",
        "metrics": {
            "holdout_mAP50": round(float(metrics.box.map50), 4),
            "holdout_mAP50_95": round(float(metrics.box.map), 4),
            "holdout_precision": round(float(metrics.box.mp), 4),
            "holdout_recall": round(float(metrics.box.mr), 4),
        },
    }
    (out / CARD_NAME).write_text(json.dumps(card, indent=2))
    return card


def main() -> None:
    """The command line: train the starter detector and print its card."""
    parser = argparse.ArgumentParser(description="Train the demo's starter detector.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=35)
    parser.add_argument("--n-train", type=int, default=320)
    parser.add_argument("--imgsz", type=int, default=320)
    args = parser.parse_args()
    card = train_starter(args.out, args.epochs, args.n_train, args.imgsz)
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
