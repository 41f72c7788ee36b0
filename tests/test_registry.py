"""The model registry accepts real detection weights and explains every bad file."""

import shutil

import pytest

from workbench.errors import AlreadyExistsError, NotFoundError, ValidationError


@pytest.fixture
def classify_weights(tmp_path):
    from ultralytics import YOLO

    path = tmp_path / "classifier.pt"
    YOLO("yolov8n-cls.yaml").save(str(path))
    return path


def test_register_weights_as_versions_that_coexist(wb, starter_weights, tmp_path):
    v1 = wb.registry.register_yolo(starter_weights, metrics={"holdout_mAP50": 0.5},
                                   notes="starter")
    assert v1.key == "yolo_detector@1.0.0"
    assert v1.classes == ("circle", "square", "triangle")
    assert v1.metrics == {"holdout_mAP50": 0.5}
    detection = v1.spec.feature("detection_embedding")
    assert detection.granularity == "detection" and detection.embedding_dim > 0
    stored = wb.home / v1.weights_path
    assert stored.exists() and stored.read_bytes() == starter_weights.read_bytes()
    v2 = wb.registry.register_yolo(starter_weights, parent_version="1.0.0",
                                   lineage={"export": "abc"})
    assert v2.version == "2.0.0" and v2.parent_version == "1.0.0"
    assert v1.feature_uri("detection_embedding") != v2.feature_uri("detection_embedding")
    assert [v.version for v in wb.registry.list("yolo_detector")] == ["1.0.0", "2.0.0"]
    assert wb.registry.get("yolo_detector").version == "2.0.0"
    assert wb.registry.get("yolo_detector@1.0.0").notes == "starter"
    with pytest.raises(AlreadyExistsError, match="next free: 3.0.0"):
        wb.registry.register_yolo(starter_weights, version="2.0.0")

    assert [e["type"] for e in wb.events.recent()] == ["model.registered"] * 2


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda p, _: p.write_text("not a model, just text"), "not a loadable"),
        (lambda p, _: p.write_bytes(b""), "is empty"),
        (lambda p, good: p.write_bytes(good.read_bytes()[:4000]), "not a loadable"),
    ],
    ids=["text-renamed-pt", "empty", "truncated"],
)
def test_bad_weights_are_refused(wb, tmp_path, starter_weights, make, error):
    path = tmp_path / "model.pt"
    make(path, starter_weights)
    with pytest.raises(ValidationError, match=error):
        wb.registry.register_yolo(path)
    assert wb.registry.list() == []
    assert not (wb.home / "models" / "yolo_detector").exists() or not any(
        (wb.home / "models" / "yolo_detector").rglob("*.pt"))


def test_a_classification_model_is_refused(wb, classify_weights):
    with pytest.raises(ValidationError, match="is a classify model"):
        wb.registry.register_yolo(classify_weights)


def test_a_hub_name_offline_says_how_to_register_a_local_file(wb, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no yolo11n.pt lying around
    with pytest.raises(ValidationError, match="workbench models add") as info:
        wb.registry.register_yolo("yolo11n.pt")
    assert "yolo11n.pt" in str(info.value)


def test_unknown_versions_are_explained(wb, starter_weights):
    with pytest.raises(NotFoundError, match="none registered yet"):
        wb.registry.get("yolo_detector")
    wb.registry.register_yolo(starter_weights)
    with pytest.raises(NotFoundError, match="yolo_detector@1.0.0"):
        wb.registry.get("yolo_detector", "9.9.9")


def test_missing_file(wb, tmp_path):
    with pytest.raises(ValidationError, match="does not exist"):
        wb.registry.register_yolo(tmp_path / "nope" / "model.pt")
    shutil.rmtree(tmp_path / "nope", ignore_errors=True)
