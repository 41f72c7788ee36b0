"""ShapeWorld scenes: determinism, ground-truth geometry, lighting, clutter, occlusion, export."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from workbench.demo.shapeworld import (
    ALL_CLASSES,
    Scene,
    SceneConfig,
    ShapeObject,
    _render,
    generate_scene,
    generate_scenes,
    write_dataset,
    yolo_lines,
)

SMALL = dict(width=320, height=240)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def pixels(scene: Scene) -> np.ndarray:
    return np.asarray(scene.image)


# --- determinism ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        SceneConfig(**SMALL),
        SceneConfig(**SMALL, lighting="mixed", clutter=5, occlusion=0.5, classes=ALL_CLASSES),
        SceneConfig(**SMALL, lighting="night", max_objects=10),
    ],
    ids=["default", "mixed-clutter-occlusion", "night"],
)
def test_same_seed_and_index_give_identical_scenes(config):
    a, b = generate_scene(config, seed=11, index=3), generate_scene(config, seed=11, index=3)
    assert pixels(a).tobytes() == pixels(b).tobytes()
    assert a.objects == b.objects
    assert (a.lighting, a.seed, a.index) == (b.lighting, 11, 3)


@pytest.mark.parametrize("other", [dict(seed=11, index=4), dict(seed=12, index=3)])
def test_different_seed_or_index_give_different_scenes(other):
    config = SceneConfig(**SMALL)
    base = generate_scene(config, seed=11, index=3)
    changed = generate_scene(config, **other)
    assert pixels(base).tobytes() != pixels(changed).tobytes()


def test_generate_scenes_matches_generate_scene():
    config = SceneConfig(**SMALL)
    scenes = list(generate_scenes(config, 3, seed=5, start=10))
    assert [s.index for s in scenes] == [10, 11, 12]
    for scene in scenes:
        single = generate_scene(config, 5, scene.index)
        assert pixels(scene).tobytes() == pixels(single).tobytes()
        assert scene.objects == single.objects


# --- ground truth ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        SceneConfig(),
        SceneConfig(width=300, height=200, classes=ALL_CLASSES, max_objects=10),
        SceneConfig(**SMALL, classes=("star", "hexagon"), occlusion=1.0, max_objects=12),
        SceneConfig(**SMALL, size_range=(0.01, 0.05), max_objects=20),
    ],
    ids=["default", "300x200-all-classes", "occluded", "tiny"],
)
def test_boxes_lie_inside_the_image_with_positive_size_and_known_classes(config):
    for index in range(8):
        scene = generate_scene(config, seed=1, index=index)
        assert scene.image.mode == "RGB"
        assert scene.image.size == (config.width, config.height)
        assert len(scene.objects) <= config.max_objects
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.xyxy
            assert 0 <= x0 < x1 <= config.width and 0 <= y0 < y1 <= config.height
            assert x1 - x0 >= 4 and y1 - y0 >= 4
            assert obj.cls in config.classes


def test_boxes_are_the_tight_bounds_of_the_drawn_pixels():
    # Without occlusion every labelled object is fully visible in the id map, so the bounds of
    # its pixels there must reproduce the box exactly.
    config = SceneConfig(**SMALL, classes=ALL_CLASSES, max_objects=8)
    for index in range(6):
        render = _render(config, seed=2, index=index)
        for k, placed in enumerate(render.placed, start=1):
            if not placed.labelled:
                continue
            ys, xs = np.nonzero(render.object_ids == k)
            assert placed.xyxy == (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0)


def test_class_weights_steer_the_class_mix():
    config = SceneConfig(**SMALL, classes=("circle", "star"), class_weights=(0.0, 1.0))
    seen = {o.cls for i in range(10) for o in generate_scene(config, 0, i).objects}
    assert seen == {"star"}


def test_object_count_follows_min_and_max():
    config = SceneConfig(**SMALL, min_objects=3, max_objects=3)
    assert all(len(generate_scene(config, 0, i).objects) == 3 for i in range(6))


# --- lighting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_night_is_darker_than_day_for_the_same_seed(seed):
    day = generate_scene(SceneConfig(**SMALL, lighting="day"), seed)
    night = generate_scene(SceneConfig(**SMALL, lighting="night"), seed)
    assert (day.lighting, night.lighting) == ("day", "night")
    assert pixels(night).mean() < 60 < 180 < pixels(day).mean()
    # Night shapes are dim but must stay findable: some pixels clearly above the background.
    assert np.percentile(pixels(night), 99.5) > pixels(night).mean() + 25


@pytest.mark.parametrize(
    ("night_fraction", "expected"),
    [(0.0, {"day"}), (1.0, {"night"}), (0.5, {"day", "night"})],
)
def test_mixed_lighting_picks_per_scene(night_fraction, expected):
    config = SceneConfig(**SMALL, lighting="mixed", night_fraction=night_fraction)
    assert {s.lighting for s in generate_scenes(config, 16, seed=4)} == expected


# --- clutter and occlusion ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_clutter_draws_distractors_but_never_labels_them(seed):
    plain = generate_scene(SceneConfig(**SMALL), seed)
    cluttered = generate_scene(SceneConfig(**SMALL, clutter=6), seed)
    assert cluttered.objects == plain.objects
    differs = np.any(pixels(cluttered) != pixels(plain), axis=2)
    # More than noise: a distractor covers a solid patch of pixels.
    assert differs.mean() > 0.005


def test_without_occlusion_boxes_barely_overlap():
    config = SceneConfig(**SMALL, min_objects=8, max_objects=8, classes=ALL_CLASSES)
    for index in range(10):
        boxes = [o.xyxy for o in generate_scene(config, 3, index).objects]
        assert len(boxes) >= 5
        assert all(iou(a, b) < 0.3 for a, b in itertools.combinations(boxes, 2))


def test_full_occlusion_overlaps_objects_and_drops_hidden_ones():
    config = SceneConfig(**SMALL, min_objects=10, max_objects=10, occlusion=1.0)
    overlapping = dropped = 0
    for index in range(10):
        render = _render(config, seed=3, index=index)
        labelled = [p for p in render.placed if p.labelled]
        assert render.scene.objects == tuple(ShapeObject(p.cls, p.xyxy) for p in labelled)
        for placed in labelled:
            assert placed.visible_fraction >= 0.35
        for placed in render.placed:
            if not placed.labelled:
                dropped += 1
                assert (
                    placed.visible_fraction < 0.35
                    or placed.xyxy is None
                    or min(placed.xyxy[2] - placed.xyxy[0], placed.xyxy[3] - placed.xyxy[1]) < 4
                )
        boxes = [p.xyxy for p in labelled]
        overlapping += sum(iou(a, b) > 0 for a, b in itertools.combinations(boxes, 2))
    assert overlapping > 10
    assert dropped > 0


# --- export ------------------------------------------------------------------------------------


def read_labels(path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines()]


def test_write_dataset_writes_images_labels_annotations_and_yaml(tmp_path):
    config = SceneConfig(width=300, height=200, classes=("circle", "triangle"), max_objects=5)
    calls = []
    out = write_dataset(
        tmp_path / "ds", config, 4, seed=7, progress=lambda i, n: calls.append((i, n))
    )
    assert out == (tmp_path / "ds").absolute()
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]

    records = json.loads((out / "annotations.json").read_text())
    assert [r["file"] for r in records] == [f"images/scene_7_{i:05d}.jpg" for i in range(4)]
    for index, record in enumerate(records):
        scene = generate_scene(config, 7, index)
        stem = f"scene_7_{index:05d}"
        with Image.open(out / record["file"]) as image:
            assert image.size == (300, 200)
        assert (record["width"], record["height"]) == (300, 200)
        assert record["lighting"] == scene.lighting
        assert record["camera_id"] in {"cam_a", "cam_b", "cam_c", "cam_d"}
        assert record["timestamp"] == f"2026-01-01T00:{index:02d}:00Z"
        assert record["objects"] == [{"class": o.cls, "xyxy": list(o.xyxy)} for o in scene.objects]

        labels = read_labels(out / "labels" / f"{stem}.txt")
        assert len(labels) == len(scene.objects)
        for (cls_id, cx, cy, w, h), obj in zip(labels, scene.objects, strict=True):
            x0, y0, x1, y1 = obj.xyxy
            assert config.classes[int(cls_id)] == obj.cls
            # Normalised by the real 300x200 size, not a square or the default 640x480.
            assert cx == pytest.approx((x0 + x1) / 600, abs=1e-6)
            assert cy == pytest.approx((y0 + y1) / 400, abs=1e-6)
            assert w == pytest.approx((x1 - x0) / 300, abs=1e-6)
            assert h == pytest.approx((y1 - y0) / 200, abs=1e-6)

    assert (out / "data.yaml").read_text() == (
        f'path: "{out}"\ntrain: images\nval: images\nnames:\n  0: circle\n  1: triangle\n'
    )


def test_write_dataset_is_reproducible(tmp_path):
    config = SceneConfig(**SMALL, lighting="mixed")
    a = write_dataset(tmp_path / "a", config, 3, seed=1)
    b = write_dataset(tmp_path / "b", config, 3, seed=1)
    assert (a / "annotations.json").read_text() == (b / "annotations.json").read_text()
    for name in ("images/scene_1_00002.jpg", "labels/scene_1_00002.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_write_dataset_ids_follow_names_superset(tmp_path):
    config = SceneConfig(**SMALL, classes=("star", "hexagon"), min_objects=3)
    out = write_dataset(tmp_path, config, 3, names=ALL_CLASSES, split="val", image_format="png")
    assert (out / "images" / "val_0_00000.png").is_file()
    ids = {int(row[0]) for p in (out / "labels").glob("*.txt") for row in read_labels(p)}
    assert ids == {ALL_CLASSES.index("star"), ALL_CLASSES.index("hexagon")}
    yaml = (out / "data.yaml").read_text()
    assert "".join(f"  {i}: {n}\n" for i, n in enumerate(ALL_CLASSES)) in yaml


def test_write_dataset_writes_empty_label_files_for_empty_scenes(tmp_path):
    config = SceneConfig(**SMALL, min_objects=0, max_objects=0)
    out = write_dataset(tmp_path, config, 2)
    for index in range(2):
        assert (out / "labels" / f"scene_0_{index:05d}.txt").read_text() == ""
    assert all(r["objects"] == [] for r in json.loads((out / "annotations.json").read_text()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(names=("circle",)), "lack"),
        (dict(image_format="gif"), "image_format"),
        (dict(split="a/b"), "split"),
    ],
)
def test_write_dataset_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_dataset(tmp_path, SceneConfig(**SMALL), 1, **kwargs)


def test_yolo_lines_round_trip_to_boxes():
    scene = generate_scene(SceneConfig(width=300, height=200, max_objects=6), seed=9)
    lines = yolo_lines(scene, ("triangle", "square", "circle"))
    assert len(lines) == len(scene.objects)
    for line, obj in zip(lines, scene.objects, strict=True):
        cls_id, cx, cy, w, h = line.split()
        assert ("triangle", "square", "circle")[int(cls_id)] == obj.cls
        assert all(len(v.split(".")[1]) == 6 for v in (cx, cy, w, h))
        box = (
            (float(cx) - float(w) / 2) * 300,
            (float(cy) - float(h) / 2) * 200,
            (float(cx) + float(w) / 2) * 300,
            (float(cy) + float(h) / 2) * 200,
        )
        assert box == pytest.approx(obj.xyxy, abs=1e-3)
    with pytest.raises(ValueError, match="not in names"):
        yolo_lines(scene, ("star",))


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(classes=("circle", "pentagon")), "unknown classes"),
        (dict(classes=()), "non-empty"),
        (dict(classes=("circle", "circle")), "repeat"),
        (dict(class_weights=(1.0, 2.0)), "one weight per class"),
        (dict(class_weights=(1.0, -1.0, 1.0)), ">= 0"),
        (dict(class_weights=(0.0, 0.0, 0.0)), "all be zero"),
        (dict(min_objects=5, max_objects=2), "must not exceed"),
        (dict(min_objects=-1), "min_objects"),
        (dict(lighting="dusk"), "lighting must be one of"),
        (dict(night_fraction=1.5), "night_fraction"),
        (dict(size_range=(0.0, 0.2)), "size_range"),
        (dict(size_range=(0.1, 1.5)), "size_range"),
        (dict(size_range=(0.3, 0.2)), "size_range"),
        (dict(size_range=(0.1,)), "size_range"),
        (dict(width=8), "width"),
        (dict(height=480.0), "height must be an integer"),
        (dict(clutter=-1), "clutter"),
        (dict(occlusion=2.0), "occlusion"),
        (dict(noise=-0.1), "noise"),
    ],
)
def test_config_validation_explains_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SceneConfig(**kwargs)


def test_config_accepts_lists_and_stays_hashable():
    config = SceneConfig(classes=["star", "circle"], class_weights=[1, 3], size_range=[0.1, 0.2])
    assert config.classes == ("star", "circle")
    same = SceneConfig(classes=("star", "circle"), class_weights=(1, 3), size_range=(0.1, 0.2))
    assert config == same and hash(config) == hash(same)


@pytest.mark.parametrize("seed", [-1, 1.5])
def test_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(ValueError, match="seed"):
        generate_scene(SceneConfig(**SMALL), seed)
    with pytest.raises(ValueError, match="seed"):
        generate_scenes(SceneConfig(**SMALL), 3, seed)  # at the call, not at the first next()
