"""Export & Train and Models pages on a workspace that has been round the loop once."""

import pytest

from tests.app.conftest import run_page
from workbench.demo.reviewer import GroundTruth, SimulatedReviewer
from workbench.detection import DetectParams
from workbench.export import ExportOptions
from workbench.training import TrainParams

pytestmark = pytest.mark.slow


@pytest.fixture
def looped(workspace):
    from workbench import Workbench

    workspace.demo.setup(scale=0.15)
    reviewing = Workbench.open(workspace.home, gold_fraction=0.5)  # keeps a gold set
    SimulatedReviewer(reviewing, GroundTruth.for_demo(reviewing)).review_images(
        "shapeworld", budget=200, order="random")
    assert workspace.truth.counts("shapeworld")["gold"] > 0
    return workspace


def test_export_page_builds_a_dataset_and_starts_training(looped):
    at = run_page("pages/5_Train.py")
    assert not at.exception, [e.message for e in at.exception]
    at.radio(key="export_policy").set_value("fill").run()
    at.button(key="build_export").click().run()
    assert not at.exception, [e.message for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Images"]) > 0
    assert at.session_state["export_result"].data_yaml.exists()
    at.button(key="start_training").click().run()
    (job,) = [j for j in looped.jobs.active() if j.kind == "train"]
    assert job.params["export"]["unreviewed"] == "fill"


def test_models_page_compares_and_promotes(looped):
    wb = looped
    job = wb.training.run("shapeworld", export=ExportOptions(unreviewed="fill",
                                                             val_fraction=0.4),
                          params=TrainParams(epochs=1, imgsz=64, workers=0))
    v2 = wb.registry.get(job.result["version"])
    wb.detection.run("shapeworld", v2.version, params=DetectParams(imgsz=64))
    at = run_page("pages/6_Models.py")
    assert not at.exception, [e.message for e in at.exception]
    at.button(key="evaluate").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(m.label.startswith("mAP50") for m in at.metric)
    assert at.get("plotly_chart")
    record = wb.evaluation.latest("shapeworld")
    assert record["candidate_key"] == v2.key
    at.text_input(key="promote_reason").input("looks right on the night cameras").run()
    at.button(key="promote").click().run()
    assert not at.exception
    assert wb.collections.get("shapeworld").active_version == v2.version
