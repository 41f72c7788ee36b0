"""The Clusters page: a run queued from the form, its scatter and members, the actions."""

import pytest

from tests.app.conftest import populate, run_page


@pytest.fixture
def detected(workspace, tmp_path):
    populate(workspace, tmp_path)
    return workspace


def test_queue_a_run_then_label_rename_and_relabel(detected):
    wb = detected
    at = run_page("pages/8_Clusters.py")
    assert not at.exception, [e.message for e in at.exception]
    at.selectbox(key="cluster_source").select("all")
    at.selectbox(key="cluster_algorithm").select("kmeans")
    at.text_input(key="cluster_params").input('{"n_clusters": 3}')
    at.selectbox(key="cluster_reduction").select("pca")
    at.button(key="FormSubmitter:cluster_run-Run clustering").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (job,) = [j for j in wb.jobs.active() if j.kind == "cluster"]
    assert job.params["algorithm"] == "kmeans" and job.params["filters"] is None
    claimed = wb.jobs.claim("test-worker", job.id)  # what the worker would do
    assert wb.jobs.run_claimed(claimed, "test-worker").status == "done"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    (run,) = wb.clusters.list()
    assert len(run.clusters) == 3
    at.button(key="cluster_label").click().run()
    assert all(c.get("labeller") == "builtin" for c in wb.clusters.get(run.id).clusters.values())
    at.text_input(key="cluster_name").input("odd ones")
    at.button(key="FormSubmitter:cluster_rename-Rename").click().run()
    chosen = at.selectbox(key="cluster_one").value
    assert wb.clusters.get(run.id).name_of(chosen) == "odd ones"
    at.text_input(key="cluster_class").input("star")
    at.button(key="FormSubmitter:cluster_relabel-Relabel for the next export").click().run()
    assert wb.annotations.list().total == 0  # not confirmed yet
    at.checkbox(key="cluster_sure").check()
    at.button(key="FormSubmitter:cluster_relabel-Relabel for the next export").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert wb.annotations.list().total == wb.clusters.get(run.id).clusters[str(chosen)]["size"]
