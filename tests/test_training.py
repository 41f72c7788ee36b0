"""Fine-tuning on a tiny export registers the next version with its lineage; a cancel leaves
the registry as it was."""

import threading
import time

import pytest

from tests.test_export import ewb  # noqa: F401 - the export fixture: real images, verdicts
from workbench.export import ExportOptions
from workbench.jobs import Worker
from workbench.training import TrainParams

pytestmark = pytest.mark.slow
TINY = TrainParams(epochs=1, imgsz=64, batch=4, workers=0)
ALL_IN = ExportOptions(unreviewed="fill", fill_threshold=0.0, val_fraction=0.0)


def test_a_one_epoch_fine_tune_registers_v2_with_lineage(ewb):  # noqa: F811
    job = ewb.training.run("c", export=ALL_IN, params=TINY)
    assert job.status == "done", job.error
    v2 = ewb.registry.get("yolo_detector", "2.0.0")
    assert job.result["version"] == v2.key and v2.parent_version == "1.0.0"
    assert v2.lineage["export_hash"] == job.result["export_hash"]
    assert v2.lineage["annotation_count"] == 12  # 8 verdicts and 4 images marked done
    assert v2.lineage["params"]["epochs"] == 1 and v2.lineage["imgsz"] == 64
    # The new classes from the review are now the model's own.
    assert v2.classes == ("circle", "square", "triangle", "hexagon", "star")
    assert set(v2.metrics) == {"val_mAP50", "val_mAP50_95"}
    (epoch,) = job.result["epochs"]
    assert epoch["epoch"] == 1 and "mAP50-95(B)" in epoch
    assert "training.completed" in [e["type"] for e in ewb.events.recent()]
    assert (ewb.home / v2.weights_path).exists()


def test_cancelling_a_training_leaves_the_registry_untouched(ewb):  # noqa: F811
    job = ewb.training.submit("c", export=ALL_IN, params=TrainParams(
        epochs=30, imgsz=64, batch=4, workers=0))
    worker = threading.Thread(target=Worker(ewb).run, kwargs={"exit_when_idle": True})
    worker.start()
    deadline = time.monotonic() + 120
    while ewb.jobs.get(job.id).progress_done < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    ewb.jobs.cancel(job.id)
    worker.join(120)
    assert ewb.jobs.get(job.id).status == "cancelled"
    assert [v.version for v in ewb.registry.list("yolo_detector")] == ["1.0.0"]


def test_new_classes_keep_the_known_classes_weights(starter_weights):
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from workbench.training import carry_class_weights

    parent = YOLO(str(starter_weights)).model
    extended = DetectionModel(parent.yaml, nc=4, verbose=False)
    assert carry_class_weights(parent, extended) == 3
    for old, new in zip(parent.model[-1].cv3, extended.model[-1].cv3, strict=True):
        assert torch.equal(new[-1].weight[:3], old[-1].weight.to(new[-1].weight))
        assert torch.equal(new[-1].bias[:3], old[-1].bias.to(new[-1].bias))
