"""Run parameters in one place.

The parameter dataclasses (``TrainParams``, ``ExportOptions``, ``DetectParams``, ``Gate``,
``TaxonomyParams``, ``ClusterParams``) live here, in a module that imports nothing heavy (the
CLI reads them as it starts), and declare their fields with :func:`setting`: the default,
the bounds or choices and one line of help. The CLI options, the pages' widgets and the
rules' parameter forms read them through :func:`spec`, and :func:`check_bounds` enforces them
when a dataclass is made, so a default or a bound is written once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from workbench.errors import ValidationError

_KEY = "workbench"


@dataclass(frozen=True)
class Spec:
    """What the CLI, the pages and the rules need to offer one parameter."""

    name: str
    kind: type  # int, float, bool or str
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None is a value: "take the default from elsewhere"

    def bounds_text(self) -> str:
        """The allowed values in words (``in [0, 1]``, ``'a' or 'b'``), for help and errors."""
        if self.choices:
            quoted = [repr(c) for c in self.choices]
            return " or ".join(quoted) if len(quoted) == 2 else "one of " + ", ".join(quoted)
        return _range_text(self.min, self.max)


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"in [{low:g}, {high:g}]"
    if low is not None:
        return f"at least {low:g}"
    if high is not None:
        return f"at most {high:g}"
    return "a value"


def broken_bound(kind: type, low: float | None, high: float | None, value: float
                 ) -> str | None:
    """The bound a number breaks, in words ("at least 1", "in [0, 1]"), or None when it is
    within them: a range reads best whole for fractions; a count is told its one bound."""
    below = low is not None and value < low
    if not below and (high is None or value <= high):
        return None
    if kind is float:
        return _range_text(low, high)
    return f"at least {low:g}" if below else f"at most {high:g}"


def setting(default: Any, help: str, *, kind: type | None = None, min: float | None = None,
            max: float | None = None, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field that carries its type, bounds and help (read back with :func:`spec`).
    A default of ``None`` means "decided elsewhere" (the parent version's size, the
    machine's device) and needs ``kind``."""
    if kind is None and default is None:
        raise TypeError("a setting whose default is None needs kind=")
    return field(default=default, metadata={_KEY: Spec(
        "", kind or type(default), default, help, min, max, choices, default is None)})


@functools.cache
def specs(cls: type) -> dict[str, Spec]:
    """Every parameter of ``cls`` declared with :func:`setting`, by field name."""
    return {f.name: replace(f.metadata[_KEY], name=f.name)
            for f in fields(cls) if _KEY in f.metadata}


def spec(cls: type, name: str) -> Spec:
    """One parameter of ``cls``."""
    try:
        return specs(cls)[name]
    except KeyError:
        raise KeyError(f"{cls.__name__} has no parameter {name!r}") from None


def check_bounds(obj: Any) -> None:
    """Raise a :class:`ValidationError` naming the first parameter of ``obj`` that is of the
    wrong type, not finite, out of its bounds or not one of its choices."""
    for s in specs(type(obj)).values():
        value = getattr(obj, s.name)
        if value is None and s.optional:
            continue
        if s.choices is not None:
            if value not in s.choices:
                raise ValidationError(f"{s.name} must be {s.bounds_text()}, got {value!r}")
        elif s.kind is bool or s.kind is str:
            if not isinstance(value, s.kind):
                raise ValidationError(f"{s.name} must be a {s.kind.__name__}, got {value!r}")
        else:
            whole = s.kind is int
            if (isinstance(value, bool) or not isinstance(value, int if whole else int | float)
                    or not math.isfinite(value)):
                kind = "a whole number" if whole else "a finite number"
                raise ValidationError(f"{s.name} must be {kind}, got {value!r}")
            bound = broken_bound(s.kind, s.min, s.max, value)
            if bound is not None:
                raise ValidationError(f"{s.name} must be {bound}, got {value!r}")


# -- the run parameters ---------------------------------------------------------------
OPTIMIZERS = ("SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp", "auto")
MIN_VAL_FOR_BEST = 20

KINDS = ("flat", "tree")
MODES = ("materialize", "retroactive", "on_demand")
# Cosine similarity a node must reach. YOLO detection embeddings are non-negative grids whose
# cosines sit high (a typical nearest neighbour is at 0.97): 0.92 is where, on ShapeWorld, the
# known classes are accepted and an unseen one is left unknown.
DEFAULT_THRESHOLD = 0.92

ALGORITHMS = ("hdbscan", "dbscan", "kmeans", "agglomerative", "gaussian_mixture", "spectral",
              "mean_shift", "optics")
REDUCTIONS = ("pca", "umap", "tsne")


@dataclass(frozen=True)
class DetectParams:
    """Run parameters of a batch run (the model's own settings live in its version)."""

    conf: float = setting(0.25, "minimum confidence kept", min=0, max=1)
    iou: float = setting(0.7, "NMS IoU threshold", min=0, max=1)
    imgsz: int = setting(640, "inference size (long side, letterboxed)", min=32,
                         max=8192)
    max_det: int = setting(300, "at most this many boxes per image", min=1,
                           max=100_000)
    batch_size: int = setting(8, "images per forward pass and per commit", min=1,
                              max=1024)

    def __post_init__(self):
        check_bounds(self)

    def model_params(self) -> dict[str, Any]:
        """The settings the model itself takes (``batch_size`` is the run's)."""
        return {"conf": self.conf, "iou": self.iou, "imgsz": self.imgsz, "max_det": self.max_det}


@dataclass(frozen=True)
class ExportOptions:
    """How to turn annotations into a training set."""

    unreviewed: str = setting("skip", "images with unreviewed boxes: left out (skip) or "
                              "completed with the model's boxes (fill)", choices=("skip", "fill"))
    fill_threshold: float = setting(0.5, "with fill: unreviewed boxes at or above this",
                                    min=0, max=1)
    val_fraction: float = setting(0.2, "share of images in the validation split", min=0, max=1)
    holdout_fraction: float = setting(0.0, "share in a fixed holdout split, never trained on",
                                      min=0, max=1)
    # with "fill": also images nobody reviewed, when the model is sure of every box on them
    # (self-training keeps what it knew; an unsure or empty image is left out, not background)
    pseudo_label: bool = setting(False, "with fill: also images nobody reviewed on which the "
                                 "model is sure of every box")
    seed: str = setting("workbench", "split seed: change it to draw another split")
    link: bool = setting(True, "hard-link images when possible (else copy)")
    coco: bool = setting(True, "also write coco/<split>.json")

    def __post_init__(self):
        check_bounds(self)
        if self.pseudo_label and self.unreviewed != "fill":
            raise ValidationError("pseudo_label needs unreviewed='fill' (its boxes come from "
                                  "the model above fill_threshold)")
        if self.val_fraction + self.holdout_fraction >= 1:
            raise ValidationError("val_fraction + holdout_fraction must leave images to train on")


@dataclass(frozen=True)
class TrainParams:
    """Run parameters of a fine-tune (machine settings come from Settings)."""

    epochs: int = setting(10, "training epochs", min=1, max=10_000)
    imgsz: int | None = setting(None, "training size (default: the parent version's)",
                                kind=int, min=32, max=8192)
    batch: int = setting(8, "training batch size", min=1, max=1024)
    patience: int = setting(10, "stop after this many epochs without improvement", min=1,
                            max=10_000)
    device: str | None = setting(None, "device: auto, cpu or cuda:N (default: "
                                 "WORKBENCH_DEVICE)", kind=str)
    seed: int = setting(0, "random seed of the run")
    workers: int = setting(2, "data-loader processes", min=0)
    # Final epochs trained without mosaic; default a quarter of them (ultralytics' own default
    # of 10 means a fine-tune of 10 epochs or fewer never sees a mosaic, and on a few hundred
    # images mosaic is what keeps it from over-fitting: +0.10 holdout mAP50-95 measured).
    close_mosaic: int | None = setting(None, "final epochs without mosaic (default: a quarter)",
                                       kind=int, min=0)
    freeze: int | None = setting(None, "freeze the first N layers (10 = the YOLOv8 backbone)",
                                 kind=int, min=0)
    # SGD with a one-epoch warm-up: ultralytics' "auto" picks AdamW at ~0.0014 for a run this
    # short, which barely moves a model in a few hundred steps (40 images, 40 epochs on a
    # shifted world: mAP50-95 0.06 -> 0.07 with auto, -> 0.31 with SGD at 0.01). 0.005: at
    # 0.01 a fine-tune on ~30 images made a model that was already fair worse (0.28 -> 0.27).
    optimizer: str = setting("SGD", "optimizer", choices=OPTIMIZERS)
    lr0: float = setting(0.005, "initial learning rate", min=1e-6, max=0.999)
    warmup_epochs: float = setting(1.0, "warm-up epochs (at most epochs)", min=0)
    # Which weights become the version: "best" (the epoch with the best validation fitness),
    # "last", or "auto": best with MIN_VAL_FOR_BEST validation images or more, else last (a
    # best-epoch pick on a handful of images is noise).
    keep: str = setting("auto", "weights kept: the best epoch's, the last, or auto (best with "
                        f"{MIN_VAL_FOR_BEST}+ validation images)", choices=("auto", "best", "last"))

    def __post_init__(self):
        check_bounds(self)
        if self.warmup_epochs > self.epochs:
            raise ValidationError(f"warmup_epochs must be in [0, epochs], got "
                                  f"{self.warmup_epochs!r}")

    @property
    def mosaic_off_epochs(self) -> int:
        """The final epochs without mosaic: ``close_mosaic``, else a quarter (at least one)."""
        return self.close_mosaic if self.close_mosaic is not None else max(1, self.epochs // 4)


@dataclass(frozen=True)
class Gate:
    """The bar a candidate must clear to replace the base model."""

    # The candidate must beat the base by at least this (absolute): the same bar in the CLI,
    # the Models page and the rules, all of which read it from here.
    min_map50_95_gain: float = setting(0.01, "mAP50-95 gain needed to promote")
    max_class_drop: float = setting(0.05, "largest AP50-95 drop allowed for any class", min=0)

    def __post_init__(self):
        check_bounds(self)


@dataclass(frozen=True)
class TaxonomyParams:
    """How a taxonomy classifies, and how it is kept up to date on a collection."""

    kind: str = setting("flat", "flat (one level) or tree (nodes with parents)", choices=KINDS)
    threshold: float = setting(DEFAULT_THRESHOLD, "cosine similarity a node must reach",
                               min=-1, max=1)
    top_k: int = setting(5, "references averaged per node", min=1, max=1000)
    mode: str = setting("materialize", "materialize (after each batch run), retroactive (over "
                        "what is there now) or on_demand", choices=MODES)

    def __post_init__(self):
        check_bounds(self)


@dataclass(frozen=True)
class ClusterParams:
    """A cluster run's choices (the algorithm's own parameters are a free-form dict, checked
    by :func:`make_estimator`)."""

    algorithm: str = setting("hdbscan", "clustering algorithm", choices=ALGORITHMS)
    reduce: str | None = setting(None, "reduce the embeddings first: pca, umap or tsne",
                                 kind=str, choices=REDUCTIONS)
    components: int = setting(10, "dimensions after the reduction", min=1, max=1024)
    projection: str = setting("pca", "the 2D view: pca, umap or tsne", choices=REDUCTIONS)
    seed: int = setting(0, "random seed of the reduction and the algorithm")

    def __post_init__(self):
        check_bounds(self)
