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
