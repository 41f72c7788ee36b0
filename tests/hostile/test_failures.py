"""How a failure reaches the user: a job that fails in this process is one line from the
CLI (not a traceback), and the Python API holds the same bars as the CLI and the app."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from tests.hostile.conftest import assert_refused
from workbench import Workbench
from workbench.errors import JobFailed, ValidationError


@pytest.fixture
def unreviewed(own_copy) -> Path:
    """The loaded workspace with a second collection over the same images that nobody has
    reviewed: a training job on it has nothing to export."""
    from workbench.detection import DetectParams

    wb = Workbench.open(own_copy)
    try:
        wb.collections.create("fresh", ["cams"])
        wb.detection.run("fresh", params=DetectParams(imgsz=320))
    finally:
        wb.close()
    return own_copy


def test_a_failed_training_job_is_one_line_from_the_cli(cli, unreviewed):
    # The job's export finds nothing to train on: the job fails inside run_inline, and the
    # CLI says so in one line.
    own_copy = unreviewed
    outcome = cli(own_copy, "train", "fresh", "--epochs", "1")
    assert_refused(outcome, "nothing to export from 'fresh'")
    assert outcome.error_lines[0].startswith("error: train job ")
    assert "Traceback" not in outcome.err
    wb = Workbench.open(own_copy)
    try:
        (job,) = [j for j in wb.jobs.list() if j.kind == "train"]
        assert job.status == "failed" and job.error  # the traceback stays on the job
        assert job.id in outcome.error_lines[0]
    finally:
        wb.close()


def test_job_failed_is_a_workbench_error_with_the_jobs_reason(unreviewed):
    wb = Workbench.open(unreviewed)
    try:
        with pytest.raises(JobFailed, match=r"^train job \S+ failed: .+") as failed:
            from workbench.training import TrainParams

            wb.training.run("fresh", params=TrainParams(epochs=1))
        assert "\n" not in str(failed.value) and failed.value.error
    finally:
        wb.close()


def test_the_gate_has_one_default_everywhere():
    from workbench.cli.evaluation import evaluate
    from workbench.evaluation import Gate
    from workbench.rules import _gate_params

    gate = Gate()
    signature = inspect.signature(evaluate).parameters
    assert gate.min_map50_95_gain == 0.01 == signature["min_gain"].default
    assert gate.max_class_drop == signature["max_class_drop"].default
    params = _gate_params()
    assert params["min_map50_95_gain"].default == gate.min_map50_95_gain
    assert params["max_class_drop"].default == gate.max_class_drop


@pytest.mark.parametrize("imgsz", [16, 0, -320])
def test_train_params_refuse_a_tiny_image_size(imgsz):
    from workbench.training import TrainParams

    with pytest.raises(ValidationError, match="imgsz must be at least 32"):
        TrainParams(imgsz=imgsz)


def test_train_imgsz_16_is_refused_before_any_job(cli, own_copy):
    outcome = cli(own_copy, "train", "c", "--imgsz", "16")
    assert_refused(outcome, "imgsz must be at least 32")
