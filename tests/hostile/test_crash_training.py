"""A training job killed (SIGKILL) at each of its commit points, then resumed by a worker:
exactly one new version, registered once, by that job; training not repeated once done."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from workbench import Workbench

POINTS = ["train.exported", "train.trained", "register.weights_copied", "train.registered"]


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_killed_at_a_commit_point_then_resumed_registers_one_version(own_copy, point):
    base = [sys.executable, "-m", "workbench", "--home", str(own_copy)]
    killed = subprocess.run([*base, "train", "c", "--epochs", "1", "--imgsz", "64",
                             "--batch", "2", "--val", "0"], cwd=REPO, capture_output=True,
                            env=dict(os.environ, WORKBENCH_CRASH_AT=point), timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    wb = Workbench.open(own_copy)
    (job,) = [j for j in wb.jobs.list() if j.kind == "train"]
    assert job.status == "running"  # as the kill left it
    best = own_copy / "runs" / job.id / "weights" / "best.pt"
    trained_at = best.stat().st_mtime_ns if best.exists() else None
    resumed = subprocess.run([*base, "worker", "--exit-when-idle"], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    job = wb.jobs.get(job.id)
    assert job.status == "done", job.error
    versions = wb.registry.list()
    assert [v.key for v in versions] == ["yolo_detector@1.0.0", "yolo_detector@2.0.0"]
    assert versions[1].training_job == job.id and job.result["version"] == versions[1].key
    assert versions[1].lineage["training_job"] == job.id
    assert sorted(p.name for p in (own_copy / "models" / "yolo_detector").iterdir()) == [
        "1.0.0", "2.0.0"]
    events = [e["type"] for e in wb.events.recent(limit=500)]
    assert events.count("training.completed") == 1 and events.count("model.registered") == 2
    if point != "train.exported":  # training had finished: it is not run again
        assert best.stat().st_mtime_ns == trained_at
