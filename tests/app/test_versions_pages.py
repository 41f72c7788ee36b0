"""Versions everywhere: Export & Train and Clusters work from any registered version chosen on
the page (the active one by default), not only the active one."""

import json

import pytest

from tests.app.conftest import populate, run_page, shown
from tests.conftest import STARTER
from workbench.detection import DetectParams


@pytest.fixture
def two_versions(workspace, tmp_path):
    """The populated workspace with a second version that has run too, and two images made
    complete (every box of the active version confirmed, the image marked done)."""
    wb = workspace
    populate(wb, tmp_path)
    second = wb.registry.register_yolo(STARTER, lineage={"imgsz": 320}, notes="second")
    wb.detection.run("cams", second.version, params=DetectParams(imgsz=320, conf=0.1))
    collection = wb.collections.get("cams")
    detections = wb.detection.detections(collection, collection.active_key)
    for object_id in sorted({d.object_id for d in detections})[:2]:
        mine = [d for d in detections if d.object_id == object_id]
        for det in mine:
            wb.annotations.create(document_id=det.id, collection_id=collection.id,
                                  label="confirmed")
        wb.annotations.create(document_id=mine[0].document_id, collection_id=collection.id,
                              label="image_done")
    assert wb.collections.get("cams").active_version != second.version
    return wb, second


def test_export_and_train_from_a_version_that_is_not_the_active_one(two_versions):
    wb, second = two_versions
    at = run_page("pages/5_Train.py")
    assert not at.exception, [e.message for e in at.exception]
    picker = at.selectbox(key="train_version")
    assert picker.value == wb.collections.get("cams").active_version, "active by default"
    picker.select(second.version).run()
    assert any(second.key in shown(c) for c in at.caption)
    label = at.button(key="start_training").label.replace("\\", "")  # Markdown-escaped
    assert label == f"Fine-tune {second.key}"
    at.button(key="build_export").click().run()
    assert not at.exception, [e.message for e in at.exception]
    result = at.session_state["export_result"]
    assert json.loads((result.path / "manifest.json").read_text())["extractor"] == second.key
    at.button(key="start_training").click().run()
    (job,) = [j for j in wb.jobs.active() if j.kind == "train"]
    assert job.params["parent_version"] == second.version


def test_cluster_a_version_that_is_not_the_active_one(two_versions):
    wb, second = two_versions
    at = run_page("pages/8_Clusters.py")
    assert at.selectbox(key="cluster_version").value == wb.collections.get("cams").active_version
    at.selectbox(key="cluster_version").select(second.version)
    at.selectbox(key="cluster_source").select("all")
    at.selectbox(key="cluster_algorithm").select("kmeans")
    at.text_input(key="cluster_params").input('{"n_clusters": 2}')
    at.button(key="FormSubmitter:cluster_run-Run clustering").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (job,) = [j for j in wb.jobs.active() if j.kind == "cluster"]
    assert job.params["version"] == second.version
    claimed = wb.jobs.claim("test-worker", job.id)  # what the worker would do
    assert wb.jobs.run_claimed(claimed, "test-worker").status == "done"
    (run,) = wb.clusters.list()
    assert run.feature_uri == second.feature_uri("detection_embedding")
