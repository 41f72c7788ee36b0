"""The loop on tiny data: review (oracle) → export → train → redeploy → evaluate → promote."""

import pytest

from workbench.demo.reviewer import GroundTruth, SimulatedReviewer
from workbench.detection import DetectParams
from workbench.errors import ValidationError
from workbench.evaluation import Gate
from workbench.export import ExportOptions
from workbench.training import TrainParams

pytestmark = pytest.mark.slow


@pytest.fixture
def gold_wb(home, monkeypatch):
    """A workspace that reserves half of the images it completes for the gold set."""
    from workbench import Workbench

    monkeypatch.setenv("WORKBENCH_GOLD_FRACTION", "0.5")
    workbench = Workbench.open(home)
    yield workbench
    workbench.close()


def _review(wb):
    wb.demo.setup(scale=0.15)
    SimulatedReviewer(wb, GroundTruth.for_demo(wb)).review_images("shapeworld", budget=200,
                                                                  order="random")
    counts = wb.truth.counts("shapeworld")
    assert counts["complete"] > counts["gold"] > 0


def test_the_loop_end_to_end(gold_wb):
    wb = gold_wb
    _review(wb)
    options = ExportOptions(unreviewed="fill", fill_threshold=0.5, val_fraction=0.4)
    job = wb.training.run("shapeworld", export=options,
                          params=TrainParams(epochs=1, imgsz=64, batch=8, workers=0))
    v2 = wb.registry.get(job.result["version"])
    assert v2.lineage["export_options"]["val_fraction"] == 0.4
    with pytest.raises(ValidationError, match="has not processed"):
        wb.evaluation.compare_versions("shapeworld")
    wb.detection.run("shapeworld", v2.version, params=DetectParams(imgsz=64))
    record = wb.evaluation.compare_versions("shapeworld", gate=Gate(min_map50_95_gain=0.5))
    assert record["base_key"] == "yolo_detector@1.0.0" and record["candidate_key"] == v2.key
    assert record["images"]["ids"] and "gold set" in record["images"]["chosen_by"]
    assert len(record["images"]["ids"]) == wb.truth.counts("shapeworld")["gold"]
    interval = record["comparison"]["interval"]
    assert interval["delta"][0] <= interval["delta"][1] and interval["resamples"] == 500
    assert record["base"]["map50_95"] is not None
    # A 1-epoch model at 64 px cannot gain 0.5 mAP: the gate refuses, with its reasons.
    assert not record["decision"]["promote"]
    assert any("mAP50-95" in r for r in record["decision"]["reasons"])
    with pytest.raises(ValidationError, match="did not pass the promotion gate"):
        wb.evaluation.promote("shapeworld", v2.version)
    promotion = wb.evaluation.promote("shapeworld", v2.version,
                                      override_reason="demo: promote anyway")
    assert promotion["override_reason"] == "demo: promote anyway"
    assert wb.collections.get("shapeworld").active_version == v2.version
    rollback = wb.evaluation.promote("shapeworld", "1.0.0", override_reason="roll back")
    assert rollback["from_version"] == v2.version
    assert wb.collections.get("shapeworld").active_version == "1.0.0"


def test_the_loop_from_the_command_line(gold_wb, tmp_path):
    import json

    wb = gold_wb

    from typer.testing import CliRunner

    from workbench.cli import app

    def cli(*args):
        result = CliRunner().invoke(app, ["--home", str(wb.home), "--json", *map(str, args)])
        assert result.exit_code == 0, result.output + str(result.exception)
        return json.loads(result.stdout)  # library chatter goes to stderr with --json

    _review(wb)
    exported = cli("export", "shapeworld", "--out", tmp_path / "ds", "--unreviewed", "fill")
    assert (tmp_path / "ds" / "data.yaml").exists() and exported["content_hash"]
    trained = cli("train", "shapeworld", "--epochs", "1", "--imgsz", "64", "--unreviewed",
                  "fill", "--val", "0.4")
    cli("detect", "shapeworld", "--version", trained["version"].split("@")[1], "--imgsz", "64")
    record = cli("evaluate", "shapeworld")
    assert record["candidate_key"] == trained["version"]
    result = CliRunner().invoke(app, ["--home", str(wb.home), "promote", "shapeworld", "2.0.0"])
    if not record["decision"]["promote"]:
        assert result.exit_code != 0 and "promotion gate" in str(result.exception)
        cli("promote", "shapeworld", "2.0.0", "--reason", "try it on the cameras")
    assert wb.collections.get("shapeworld").active_version == "2.0.0"
