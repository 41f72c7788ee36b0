"""Extractor specs: passing and failing cases in one table."""

import copy

import numpy as np
import pytest

from workbench.errors import ValidationError
from workbench.extractors.spec import (
    bump_version,
    check_outputs,
    parse_feature_uri,
    parse_spec,
)

GOOD = {
    "feature_extractor_name": "yolo_detector",
    "version": "1.0.0",
    "description": "YOLO",
    "dependencies": ["ultralytics"],
    "features": [
        {"feature_type": "json", "feature_name": "detections"},
        {"feature_type": "embedding", "feature_name": "detection_embedding",
         "embedding_dim": 4, "distance_metric": "cosine", "granularity": "detection"},
        {"feature_type": "embedding", "feature_name": "image_embedding",
         "embedding_dim": 3, "distance_metric": "euclidean"},
    ],
    "output_schema": {"detections": {"type": "array", "items": {
        "type": "object", "required": ["class"], "properties": {"class": {"type": "string"}}}}},
    "input_mappings": {"image": "image"},
    "compute_profile": {"resource_type": "gpu"},
}


def changed(path, value=None, delete=False):
    spec = copy.deepcopy(GOOD)
    target = spec
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


def renamed(index, old, new):
    spec = copy.deepcopy(GOOD)
    feature = spec["features"][index]
    feature[new] = feature.pop(old)
    return spec


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (GOOD, None),
        (changed(["version"], "2.1.0-rc.1"), None),
        (renamed(1, "embedding_dim", "dimensions"),
         "features[1]: unknown key 'dimensions' — did you mean 'embedding_dim'?"),
        (renamed(1, "distance_metric", "distance"),
         "features[1]: unknown key 'distance' — did you mean 'distance_metric'?"),
        (renamed(0, "feature_name", "name"),
         "features[0]: unknown key 'name' — did you mean 'feature_name'?"),
        (renamed(0, "feature_type", "type"), "did you mean 'feature_type'?"),
        (changed(["featrues"], []), "unknown key 'featrues' — did you mean 'features'?"),
        (changed(["version"], delete=True), "missing required key 'version'"),
        (changed(["version"], "1.0"), "version '1.0' is not semantic versioning"),
        (changed(["version"], "v1.0.0"), "is not semantic versioning"),
        (changed(["feature_extractor_name"], "YOLO detector"), "feature_extractor_name"),
        (changed(["features"], []), "features must be a non-empty list"),
        (changed(["features", 1, "embedding_dim"], 0), "embedding_dim must be a positive"),
        (changed(["features", 1, "embedding_dim"], "512"), "embedding_dim must be a positive"),
        (changed(["features", 1, "distance_metric"], "manhattan"), "distance_metric must be"),
        (changed(["features", 0, "feature_type"], "vector"), "feature_type must be one of"),
        (changed(["features", 2, "feature_name"], "detections"), "used twice"),
        (changed(["features", 1, "granularity"], "box"), "granularity must be one of"),
        (changed(["features", 0, "embedding_dim"], 3), "apply only to embeddings"),
        (changed(["dependencies"], "ultralytics"), "dependencies must be a list"),
    ],
)
def test_spec_validation(raw, error):
    if error is None:
        spec = parse_spec(raw)
        assert spec.key == f"yolo_detector@{raw['version']}"
        assert spec.to_dict()["features"][1]["embedding_dim"] == 4
        assert parse_spec(spec.to_dict()) == spec  # round-trips
    else:
        with pytest.raises(ValidationError) as info:
            parse_spec(raw)
        assert error in str(info.value)


def test_every_problem_is_listed_at_once():
    raw = renamed(1, "embedding_dim", "dimensions")
    raw["version"] = "one"
    message = str(pytest.raises(ValidationError, parse_spec, raw).value)
    assert "dimensions" in message and "semantic versioning" in message


def test_feature_uris_are_stable():
    spec = parse_spec(GOOD)
    uri = spec.feature_uri("detection_embedding")
    assert uri == "workbench://yolo_detector@1.0.0/detection_embedding"
    assert parse_feature_uri(uri) == ("yolo_detector", "1.0.0", "detection_embedding")
    assert spec.with_version("2.0.0").feature_uri("detection_embedding").endswith(
        "@2.0.0/detection_embedding")
    with pytest.raises(ValidationError, match="has no feature 'embedding'"):
        spec.feature_uri("embedding")
    for bad in ("mixpeek://yolo@1.0.0/x", "workbench://yolo@1.0/x", "workbench://yolo@1.0.0"):
        with pytest.raises(ValidationError, match="not valid"):
            parse_feature_uri(bad)


@pytest.mark.parametrize(("version", "part", "expected"),
                         [("1.0.0", "major", "2.0.0"), ("1.4.2", "minor", "1.5.0"),
                          ("1.4.2", "patch", "1.4.3")])
def test_bump_version(version, part, expected):
    assert bump_version(version, part) == expected


def _out(n_det=2, det_dim=4, img_dim=3, detections=None):
    unit = np.eye(max(det_dim, 1), dtype="float32")[:1].repeat(n_det, 0)[:, :det_dim]
    return {
        "detections": detections if detections is not None else [{"class": "a"}] * n_det,
        "detection_embedding": unit,
        "image_embedding": np.ones(img_dim, dtype="float32"),
    }


@pytest.mark.parametrize(
    ("outputs", "n", "error"),
    [
        (_out(), 2, None),
        (_out(n_det=0), 0, None),
        (_out(det_dim=5), 2, "has shape (2, 5); the spec declares (2, 4)"),
        (_out(img_dim=2), 2, "has shape (2,); the spec declares (3,)"),
        (_out(n_det=1), 2, "the spec declares (2, 4)"),
        ({"detections": []}, 0, "returned no 'detection_embedding', 'image_embedding'"),
        (_out(detections=[{"klass": "a"}, {"class": "b"}]), 2, "output_schema at 0"),
        ({**_out(), "image_embedding": np.array([np.nan, 1, 1])}, 2, "NaN or infinite"),
        ({**_out(), "detection_embedding": np.zeros((2, 4))}, 2, "zero vector"),
    ],
)
def test_outputs_are_checked_against_the_spec(outputs, n, error):
    spec = parse_spec(GOOD)
    if error is None:
        check_outputs(spec, outputs, n)
    else:
        with pytest.raises(ValidationError) as info:
            check_outputs(spec, outputs, n)
        assert error in str(info.value)
