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


def select_members(at, run_id: str, cluster: int, rows: list[int], page: int = 0):
    """What clicking rows' left edge in the member grid does in the browser."""
    at.session_state[f"cluster_members_{run_id}_{cluster}_{page}"] = {
        "selection": {"rows": rows, "columns": [], "cells": []}}
    return at.run()


def test_members_selected_in_the_grid_become_references_or_stay_out_of_a_relabel(
        detected, monkeypatch):
    import workbench.ui.clusters as clusters

    monkeypatch.setattr(clusters, "MEMBERS_PER_PAGE", 3)  # a selection across two pages
    wb = detected
    run = wb.clusters.run("cams", "kmeans", {"n_clusters": 2, "n_init": "auto"})
    at = run_page("pages/8_Clusters.py")
    assert not at.exception, [e.message for e in at.exception]
    # The larger of the two clusters (which one it is depends on the detections' random ids).
    chosen = max((int(k) for k in wb.clusters.get(run.id).clusters),
                 key=lambda c: len(wb.clusters.members(run.id, c)))
    at = at.selectbox(key="cluster_one").set_value(chosen).run()
    chosen = at.selectbox(key="cluster_one").value
    members = wb.clusters.members(run.id, chosen)
    assert len(members) >= 6
    (grid,) = [d for d in at.dataframe if d.key == f"cluster_members_{run.id}_{chosen}_0"]
    assert list(grid.value["detection"]) == [m["detection_id"] for m in members[:3]]
    assert at.checkbox(key="cluster_leave_out").disabled, "nothing selected to leave out"

    at = select_members(at, run.id, chosen, [0])
    at.button(key="cluster_members_next").click().run()
    (grid,) = [d for d in at.dataframe if d.key == f"cluster_members_{run.id}_{chosen}_1"]
    assert list(grid.value["detection"]) == [m["detection_id"] for m in members[3:6]]
    at = select_members(at, run.id, chosen, [1], page=1)
    picked = [members[0]["detection_id"], members[4]["detection_id"]]
    assert any("2 member(s) selected" in c.value for c in at.caption)
    at.button(key="cluster_members_previous").click().run()  # page 0 still has its row
    assert any("2 member(s) selected" in c.value for c in at.caption)
    at.button(key="cluster_refs_add").click().run()  # into a new set, named by default
    assert not at.exception, [e.message for e in at.exception]
    assert sorted(i.detection_id for i in wb.references.items("cams-references")) == \
        sorted(picked)

    at.text_input(key="cluster_class").input("star")
    at.checkbox(key="cluster_leave_out").check()
    at.checkbox(key="cluster_sure").check()
    at.button(key="FormSubmitter:cluster_relabel-Relabel for the next export").click().run()
    assert not at.exception, [e.message for e in at.exception]
    written = {a.document_id for a in wb.annotations.list(limit=1000).items}
    assert written == {m["detection_id"] for m in members} - set(picked)


def test_relabel_refuses_to_leave_out_a_detection_that_is_not_a_member(detected):
    from workbench.errors import ValidationError

    run = detected.clusters.run("cams", "kmeans", {"n_clusters": 2, "n_init": "auto"})
    with pytest.raises(ValidationError, match="not members of cluster 0"):
        detected.clusters.relabel(run.id, 0, "star", confirm=True, exclude=["det_nowhere"])
    assert detected.annotations.list().total == 0
