"""The Search page: the neighbours of a detection through the collection's search retriever,
filtered; one verdict for a selection (bulk, by the app's reviewer); a reference set from a
selection; Find similar from a Review item."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import populate, run_page, shown
from tests.conftest import REPO
from tests.extractors.test_clip import TINY

PAGE = "pages/11_Search.py"


@pytest.fixture
def populated(workspace, tmp_path):
    populate(workspace, tmp_path)
    return workspace


@pytest.fixture
def clip_weights(tmp_path):
    """A real open_clip checkpoint of a tiny architecture (as tests/extractors/test_clip)."""
    import json

    import open_clip
    import torch

    config = tmp_path / "tiny-clip-test.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    path = tmp_path / "tiny_clip.pt"
    torch.save({"state_dict": open_clip.create_model("tiny-clip-test").state_dict()}, path)
    return path


def _ok(at):
    assert not at.exception, [e.message for e in at.exception]
    return at


def _search_from(detection_id: str) -> AppTest:
    """The page opened by another page's Find similar (``open_search``)."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.switch_page(PAGE)
    at.session_state["search.detection_id"] = detection_id
    return _ok(at.run())


def _hits(at):
    return at.session_state["search.result"][1].hits


def _query(wb):
    collection = wb.collections.get("cams")
    return wb.detection.detections(collection, collection.active_key)[0]


def test_without_a_detection_the_page_says_what_to_do(workspace):
    at = _ok(run_page(PAGE))
    assert any("Find similar" in i.value for i in at.info)
    # No CLIP here: the page says so and shows no text box.
    assert any("Text search needs CLIP" in c.value for c in at.caption)
    assert not [t for t in at.text_input if t.key == "search_text"]


def test_an_unknown_id_is_one_clear_line(populated):
    at = _ok(run_page(PAGE))
    at.text_input(key="search_detection_input").input("doc_nope_0").run()
    (error,) = at.error
    assert "no detection 'doc\\_nope\\_0'" in error.value or "doc_nope_0" in error.value
    assert "paste a detection id" in error.value


def test_neighbours_come_from_the_search_retriever(populated):
    wb = populated
    query = _query(wb)
    at = _search_from(query.id)
    hits = _hits(at)
    assert 0 < len(hits) <= 24
    assert query.id not in {h.detection_id for h in hits}  # the query itself is left out
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # The run is the retriever's, logged with its inputs, the same as `retrievers run`.
    (run,) = wb.retrievers.executions("cams:search")
    assert run["inputs"] == {"detection_id": query.id, "top_k": 24}
    assert run["result_ids"] == [h.detection_id for h in hits]
    # Drawn as tiles: one image and one checkbox per hit.
    assert len([c for c in at.checkbox if c.key.startswith("search_pick_")]) == len(hits)
    # A rerun (a checkbox) shows the same result without logging another execution.
    at.checkbox(key=f"search_pick_{hits[0].detection_id}").check().run()
    assert len(wb.retrievers.executions("cams:search")) == 1


def test_filters_narrow_the_candidates_before_the_search(populated):
    wb = populated
    query = _query(wb)
    at = _search_from(query.id)
    at.multiselect(key="search_classes").select(query.class_name).run()
    at.slider(key="search_confidence").set_value((0.3, 0.9)).run()
    _ok(at)
    hits = _hits(at)
    assert hits and all(h.class_name == query.class_name and 0.3 <= h.confidence <= 0.9
                        for h in hits)
    # Unreviewed only: a verdict takes its detection out.
    collection = wb.collections.get("cams")
    wb.annotations.create(document_id=hits[0].detection_id, collection_id=collection.id,
                          label="false_positive")
    at.multiselect(key="search_verdicts").select("unreviewed").run()
    assert hits[0].detection_id not in {h.detection_id for h in _hits(at)}
    # Image metadata: no image comes from camera c2.
    at.selectbox(key="search_meta_field").select("camera_id").run()
    at.text_input(key="search_meta_value").input("c2").run()
    assert _hits(at) == []
    assert any("widen them" in w.value for w in at.warning)
    at.text_input(key="search_meta_value").input("c1").run()
    assert _hits(at)


def test_one_verdict_for_a_selection(populated):
    wb = populated
    at = _search_from(_query(wb).id)
    chosen = [h.detection_id for h in _hits(at)[:3]]
    for detection_id in chosen:
        at.checkbox(key=f"search_pick_{detection_id}").check().run()
    at.radio(key="search_bulk_label").set_value("false_positive")
    at.button(key="search_apply_verdict").click().run()
    _ok(at)
    stored = wb.annotations.list(label="false_positive").items
    assert sorted(a.document_id for a in stored) == sorted(chosen)
    (run,) = wb.retrievers.executions("cams:search")
    search = wb.retrievers.get("cams:search")
    assert {(a.author, a.retriever_id, a.execution_id) for a in stored} == {
        (wb.annotations.default_author, search.id, run["id"])}
    assert any("3 verdict(s) 'false_positive' stored" in shown(s) for s in at.success)
    # The selection is cleared, and the tiles show the verdicts.
    assert not any(at.checkbox(key=f"search_pick_{d}").value for d in chosen)
    assert sum("false_positive" in shown(m) for m in at.markdown) >= 3


def test_a_correction_needs_its_class_and_gets_it(populated):
    wb = populated
    at = _search_from(_query(wb).id)
    target = _hits(at)[0]
    at.checkbox(key=f"search_pick_{target.detection_id}").check().run()
    at.radio(key="search_bulk_label").set_value("corrected")
    at.selectbox(key="search_bulk_class").select("triangle")
    at.button(key="search_apply_verdict").click().run()
    _ok(at)
    (corrected,) = wb.annotations.list(label="corrected").items
    assert corrected.document_id == target.detection_id
    assert corrected.payload["true_class"] == "triangle"


def test_a_selection_becomes_a_reference_set(populated):
    wb = populated
    at = _search_from(_query(wb).id)
    chosen = [h.detection_id for h in _hits(at)[:2]]
    for detection_id in chosen:
        at.checkbox(key=f"search_pick_{detection_id}").check().run()
    # A new set needs a name: without one, a clear line and nothing created.
    at.button(key="search_add_references_submit").click().run()
    assert any("name the new reference set" in e.value for e in at.error)
    assert wb.references.list() == []
    at.text_input(key="search_refs_new").input("look-alikes")
    at.button(key="search_add_references_submit").click().run()
    _ok(at)
    items = wb.references.items("look-alikes")
    assert sorted(i.detection_id for i in items) == sorted(chosen)
    assert any("Added 2 to reference set" in shown(s) for s in at.success)


def test_find_similar_on_a_review_item_opens_the_search(populated):
    at = run_page("pages/3_Review.py")
    at.selectbox(key="review_retriever").select("cams:review").run()
    current = at.session_state["review"].current
    at.button(key="find_similar").click().run()
    _ok(at)
    assert at.session_state["search.detection_id"] == current.detection_id
    assert at.title[0].value == "Search"
    assert at.text_input(key="search_detection_input").value == current.detection_id
    assert _hits(at)


def test_text_search_with_clip(populated, clip_weights):
    """With CLIP registered and the images embedded, a text box searches images by text and
    shows the detector's boxes on the nearest images."""
    wb = populated
    wb.settings.clip_model = "tiny-clip-test"
    wb.settings.clip_weights = clip_weights
    clip = wb.registry.register_clip()
    wb.collections.create("cams-clip", ["cams"], extractor=clip.name)
    wb.detection.run("cams-clip")
    at = _ok(run_page(PAGE))
    at.radio(key="search_mode").set_value("Text (CLIP)").run()
    _ok(at)
    assert at.selectbox(key="search_text_collection").options == ["cams"]
    at.text_input(key="search_text").input("a red circle").run()
    _ok(at)
    hits = _hits(at)
    collection = wb.collections.get("cams")
    boxes = {d.id: d for d in wb.detection.detections(collection, collection.active_key)}
    assert hits and all(h.detection_id in boxes for h in hits)
    # Boxes of one image share its image's score, best image first.
    by_image = {}
    for hit in hits:
        by_image.setdefault(hit.object_id, set()).add(hit.score)
    assert all(len(scores) == 1 for scores in by_image.values())
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    (run,) = wb.retrievers.executions("cams:text-search")
    assert run["inputs"] == {"text": "a red circle", "top_k": 24}
