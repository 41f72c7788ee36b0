"""The built-in YOLO extractor: boxes, and an embedding per box from the same forward pass."""

import numpy as np
import pytest

from workbench.extractors.base import LoadContext
from workbench.extractors.spec import check_outputs
from workbench.extractors.yolo import YoloDetector, embedding_dims, yolo_spec


@pytest.fixture(scope="module")
def detector(starter_weights):
    det_dim, img_dim = embedding_dims(starter_weights)
    spec = yolo_spec("1.0.0", det_dim, img_dim)
    extractor = YoloDetector(spec)
    extractor.load(LoadContext(spec=spec, weights=starter_weights, device="cpu",
                               params={"imgsz": 320, "conf": 0.25}))
    return extractor


@pytest.fixture(scope="module")
def scenes():
    from workbench.demo.shapeworld import SceneConfig, generate_scene

    config = SceneConfig(width=320, height=240, min_objects=3, max_objects=5)
    return [generate_scene(config, seed=21, index=i) for i in range(4)]


def test_detections_are_well_formed_with_one_embedding_each(detector, scenes):
    images = [np.asarray(scene.image) for scene in scenes]
    outputs = detector.process(images)
    assert len(outputs) == len(images)
    total = 0
    for out, scene in zip(outputs, scenes, strict=True):
        found = out["detections"]
        check_outputs(detector.spec, out, len(found))  # schema and dims
        total += len(found)
        embeddings = np.asarray(out["detection_embedding"])
        assert embeddings.shape == (len(found), detector.spec.feature(
            "detection_embedding").embedding_dim)
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-4)
        for det in found:
            assert det["class"] in ("circle", "square", "triangle")
            assert 0.25 <= det["confidence"] <= 1
            box = det["bbox"]
            assert 0 <= box["x"] <= 320 and 0 <= box["y"] <= 240 and box["w"] > 0
    assert total >= len(scenes)  # the starter finds day shapes


def test_embeddings_are_deterministic_and_box_specific(detector, scenes):
    image = np.asarray(scenes[0].image)
    first = detector.process([image])[0]
    again = detector.process([image, np.asarray(scenes[1].image)])[0]  # other batch company
    np.testing.assert_allclose(first["detection_embedding"], again["detection_embedding"],
                               atol=1e-4)
    embeddings = np.asarray(first["detection_embedding"])
    if len(embeddings) >= 2:  # different boxes pool different regions
        similarity = embeddings @ embeddings.T
        assert np.all(similarity[~np.eye(len(embeddings), dtype=bool)] < 0.9999)


def test_an_empty_image_has_no_detections_but_an_image_embedding(detector):
    out = detector.process([np.full((240, 320, 3), 230, dtype=np.uint8)])[0]
    assert out["detections"] == []
    assert np.asarray(out["detection_embedding"]).shape[0] == 0
    assert np.linalg.norm(out["image_embedding"]) == pytest.approx(1.0, rel=1e-4)


def test_same_class_boxes_are_closer_than_other_classes(detector):
    """Embeddings carry what the box holds: nearest neighbours mostly share the class."""
    from workbench.demo.shapeworld import SceneConfig, generate_scene

    config = SceneConfig(width=320, height=240, min_objects=4, max_objects=6)
    vectors, labels = [], []
    for i in range(12):
        out = detector.process([np.asarray(generate_scene(config, seed=5, index=i).image)])[0]
        vectors.extend(out["detection_embedding"])
        labels.extend(d["class"] for d in out["detections"])
    vectors = np.asarray(vectors)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1)
    nearest = similarity.argmax(axis=1)
    agreement = np.mean([labels[i] == labels[j] for i, j in enumerate(nearest)])
    # Three classes: a nearest neighbour agrees by chance a third of the time.
    assert len(labels) > 20 and agreement > 0.5


def test_detection_embedding_is_a_backbone_grid_and_old_versions_keep_the_neck(
        starter_weights, scenes):
    det_dim, img_dim = embedding_dims(starter_weights)
    assert det_dim == 64 * 4 * 4  # YOLOv8n's stride-8 backbone map, 4x4 RoI cells
    image = np.asarray(scenes[0].image)
    # A version registered before the grid recorded the neck's width (the image embedding's):
    # it must go on producing neck vectors, or its index would mix two kinds.
    legacy = YoloDetector(yolo_spec("1.0.0", img_dim, img_dim))
    legacy.load(LoadContext(spec=legacy.spec, weights=starter_weights, device="cpu",
                            params={"imgsz": 320}))
    out = legacy.process([image])[0]
    check_outputs(legacy.spec, out, len(out["detections"]))
    assert np.asarray(out["detection_embedding"]).shape[1] == img_dim != det_dim
