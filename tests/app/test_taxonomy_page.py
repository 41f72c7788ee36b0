"""The Taxonomy page: a reference set from reviewed detections, a taxonomy, a retroactive
apply with its before/after."""

import pytest

from tests.app.conftest import populate, run_page


@pytest.fixture
def reviewed(workspace, tmp_path):
    populate(workspace, tmp_path)
    wb = workspace
    collection = wb.collections.get("cams")
    for det in wb.detection.detections(collection, collection.active_key)[:12]:
        wb.annotations.create(document_id=det.id, collection_id=collection.id,
                              label="confirmed")
    return wb


def test_build_references_and_a_taxonomy_then_apply(reviewed):
    wb = reviewed
    at = run_page("pages/7_Taxonomy.py")
    assert not at.exception, [e.message for e in at.exception]
    at.button(key="refs_create").click().run()
    assert [r.name for r in wb.references.list()] == ["cams-references"]
    at.button(key="FormSubmitter:refs_promote-Promote").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert sum(wb.references.class_counts("cams-references").values()) == 12
    at.slider(key="tax_threshold").set_value(0.5)
    at.button(key="FormSubmitter:taxonomy_new-Create taxonomy").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (taxonomy,) = wb.taxonomies.list()
    assert taxonomy.threshold == 0.5 and taxonomy.kind == "flat"
    at.selectbox(key="tax_mode").select("retroactive").run()
    at.button(key="tax_attach").click().run()
    assert [m for _, m in wb.taxonomies.attachments("cams")] == ["retroactive"]
    at.button(key="tax_apply").click().run()
    (job,) = [j for j in wb.jobs.active() if j.kind == "taxonomy"]
    claimed = wb.jobs.claim("test-worker", job.id)  # what the worker would do
    assert wb.jobs.run_claimed(claimed, "test-worker").status == "done"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert sum(wb.taxonomies.label_counts(taxonomy.name).values()) == len(
        wb.detection.detections(wb.collections.get("cams"), "yolo_detector@1.0.0"))
    assert any("changed" in m.value for m in at.markdown)


@pytest.fixture
def classified(reviewed):
    """A flat taxonomy of the reviewed detections, applied to every detection."""
    wb = reviewed
    wb.references.create("cams-references", "cams")
    wb.references.promote("cams-references")
    wb.taxonomies.create("shapes", "cams-references", threshold=0.5)
    wb.taxonomies.apply("shapes")
    return wb


def results_table(at):
    (table,) = [d for d in at.dataframe if d.key == "tax_results_table"]
    return table.value


def test_results_per_detection_with_crops_filters_and_pages(classified, monkeypatch):
    import workbench.ui.taxonomy_results as results

    monkeypatch.setattr(results, "PER_PAGE", 5)  # several pages out of the few detections
    wb = classified
    stored = wb.taxonomies.assignments("shapes", limit=1000)
    at = run_page("pages/7_Taxonomy.py")
    assert not at.exception, [e.message for e in at.exception]
    first = results_table(at)
    assert list(first["detection"]) == [a["detection_id"] for a in stored[:5]]
    assert list(first["class"]) == [a["label"] for a in stored[:5]]
    assert list(first["score"]) == pytest.approx([a["score"] for a in stored[:5]], abs=1e-4)
    assert all(uri.startswith("data:image/jpeg;base64,") for uri in first["crop"])
    assert any(f"5 of {len(stored)} classified detections" in c.value for c in at.caption)

    at.button(key="tax_results_next").click().run()
    assert list(results_table(at)["detection"]) == [a["detection_id"] for a in stored[5:10]]
    at.button(key="tax_results_previous").click().run()
    assert list(results_table(at)["detection"]) == list(first["detection"])

    label = stored[0]["label"]
    at.selectbox(key="tax_results_class").select(label).run()
    assert set(results_table(at)["class"]) == {label}
    at.selectbox(key="tax_results_class").select("(any class)")
    at.slider(key="tax_results_score").set_range(0.8, 1.0).run()
    assert not at.exception, [e.message for e in at.exception]
    high = [a for a in stored if a["score"] >= 0.8]
    if high:
        assert (results_table(at)["score"] >= 0.8).all()
        assert any(f"of {len(high)} classified" in c.value for c in at.caption)
    else:
        assert any("No detection matches" in c.value for c in at.caption)


def test_results_of_a_version_not_classified_yet_say_how_to_get_them(reviewed):
    wb = reviewed
    wb.references.create("cams-references", "cams")
    wb.references.promote("cams-references")
    wb.taxonomies.create("shapes", "cams-references", threshold=0.5)
    at = run_page("pages/7_Taxonomy.py")
    assert not at.exception, [e.message for e in at.exception]
    assert any("has been classified by shapes yet" in c.value for c in at.caption)


def test_a_selected_result_goes_into_the_reference_set_with_its_true_class(classified):
    wb = classified
    at = run_page("pages/7_Taxonomy.py")
    table = results_table(at)
    outside = [d for d in table["detection"]
               if d not in {i.detection_id for i in wb.references.items("cams-references")}]
    row = list(table["detection"]).index(outside[0])
    at.session_state["tax_results_table"] = {"selection": {"rows": [row], "columns": [],
                                                           "cells": []}}
    at.run()
    assert at.selectbox(key="tax_results_refs_set").value == "cams-references"
    at.text_input(key="tax_results_refs_class").input("star")
    at.button(key="tax_results_refs_add").click().run()
    assert not at.exception, [e.message for e in at.exception]
    by_id = {i.detection_id: i.true_class for i in wb.references.items("cams-references")}
    assert by_id[outside[0]] == "star"
