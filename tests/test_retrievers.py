"""Retrievers: filters (every operator, dotted paths, AND/OR/NOT), sorts, diversity, search."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import URI
from workbench.errors import NotFoundError, ValidationError
from workbench.retriever_stages import default_review_stages, render


@pytest.fixture
def rwb(review_wb):
    return review_wb


def run(wb, filters=None, stages=None, inputs=None):
    stages = stages or [{"stage_type": "filter", "config": {"filters": filters}}]
    wb.retrievers.save("r", "x", stages, replace=True)
    return [h.detection_id for h in wb.retrievers.execute("r", inputs).hits]


F = lambda field, op, value: {"field": field, "operator": op, "value": value}  # noqa: E731


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (F("confidence", "lt", 0.5), {"obj_a_1", "obj_b_1"}),
        (F("confidence", "lte", 0.55), {"obj_a_1", "obj_b_0", "obj_b_1"}),
        (F("confidence", "gt", 0.6), {"obj_a_0", "obj_c_0"}),
        (F("confidence", "gte", 0.65), {"obj_a_0", "obj_c_0"}),
        (F("class", "eq", "circle"), {"obj_a_0", "obj_b_1"}),
        (F("class", "ne", "circle"), {"obj_a_1", "obj_b_0", "obj_c_0"}),
        (F("class", "in", ["square", "triangle"]), {"obj_a_1", "obj_b_0", "obj_c_0"}),
        (F("class", "nin", ["square", "triangle"]), {"obj_a_0", "obj_b_1"}),
        (F("class", "contains", "ircl"), {"obj_a_0", "obj_b_1"}),
        (F("camera_id", "eq", "cam_1"), {"obj_a_0", "obj_a_1", "obj_c_0"}),
        (F("metadata.camera_id", "eq", "cam_2"), {"obj_b_0", "obj_b_1"}),
        (F("metadata.frame", "gte", 1), {"obj_b_0", "obj_b_1", "obj_c_0"}),
        (F("camera_id", "exists", True), {"obj_a_0", "obj_a_1", "obj_b_0", "obj_b_1",
                                          "obj_c_0"}),
        (F("detections.0.confidence", "lt", 0.7), {"obj_b_0", "obj_b_1", "obj_c_0"}),
        (F("detections.1.class", "eq", "circle"), {"obj_b_0", "obj_b_1"}),
        (F("bbox.w", "gt", 25), {"obj_b_0", "obj_b_1", "obj_c_0"}),
        ({"AND": [F("confidence", "lt", 0.7), F("camera_id", "eq", "cam_1")]},
         {"obj_a_1", "obj_c_0"}),
        ({"OR": [F("class", "eq", "triangle"), F("confidence", "gt", 0.9)]},
         {"obj_a_0", "obj_b_0"}),
        ({"NOT": F("class", "eq", "circle")}, {"obj_a_1", "obj_b_0", "obj_c_0"}),
        ({"AND": [{"OR": [F("class", "eq", "square"), F("class", "eq", "circle")]},
                  {"NOT": F("camera_id", "eq", "cam_2")}]}, {"obj_a_0", "obj_a_1", "obj_c_0"}),
        ([F("confidence", "lt", 0.7), F("class", "eq", "square")], {"obj_a_1", "obj_c_0"}),
    ],
)
def test_filters(rwb, filters, expected):
    assert set(run(rwb, filters)) == expected
    counted = rwb.retrievers.execute("r", count=True)  # the count takes its own query
    assert (counted.matched, counted.matched_exact) == (len(expected), True)


def test_a_field_that_no_bucket_has_is_refused_when_saved(rwb):
    """It used to be saved and to match nothing, silently."""
    with pytest.raises(ValidationError, match="field 'camera' is not known; did you mean "
                                              "'camera_id'"):
        run(rwb, F("camera", "eq", "cam_1"))
    assert [r.name for r in rwb.retrievers.list()] == []


def test_annotation_label_filters_reviewed_items(rwb):
    rwb.annotations.create(document_id="obj_a_1", collection_id="col_x", label="confirmed")
    unreviewed = F("annotation.label", "exists", False)
    assert "obj_a_1" not in run(rwb, unreviewed)
    assert run(rwb, F("annotation.label", "eq", "confirmed")) == ["obj_a_1"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ({"by": "confidence"}, ["obj_b_1", "obj_a_1", "obj_b_0", "obj_c_0", "obj_a_0"]),
        ({"by": "confidence", "order": "desc"},
         ["obj_a_0", "obj_c_0", "obj_b_0", "obj_a_1", "obj_b_1"]),
        ({"by": "uncertainty"}, ["obj_b_0", "obj_a_1", "obj_c_0", "obj_b_1", "obj_a_0"]),
        ({"by": "newest"}, ["obj_c_0", "obj_b_0", "obj_b_1", "obj_a_0", "obj_a_1"]),
    ],
)
def test_sorts(rwb, sort, expected):
    assert run(rwb, stages=[{"stage_type": "sort", "config": sort}]) == expected


def test_random_sort_is_seeded(rwb):
    stages = [{"stage_type": "sort", "config": {"by": "random", "seed": 3}}]
    first = run(rwb, stages=stages)
    assert first == run(rwb, stages=stages) and sorted(first) == sorted(run(rwb, stages=[
        {"stage_type": "sort", "config": {"by": "random", "seed": 4}}]))


def test_limit_offset_and_sample(rwb):
    sort = {"stage_type": "sort", "config": {"by": "confidence"}}
    assert run(rwb, stages=[sort, {"stage_type": "limit", "config": {"limit": 2, "offset": 1}}]
               ) == ["obj_a_1", "obj_b_0"]
    sampled = run(rwb, stages=[sort, {"stage_type": "sample", "config": {"n": 3, "seed": 1}}])
    assert len(sampled) == 3 and len(set(sampled)) == 3


def test_diversity_drops_near_duplicates(rwb):
    sort = {"stage_type": "sort", "config": {"by": "confidence", "order": "desc"}}
    plain = run(rwb, stages=[sort])
    diverse = run(rwb, stages=[sort, {"stage_type": "diversity",
                                      "config": {"max_similarity": 0.9}}])
    # obj_b_1 is nearly obj_a_0 and obj_c_0 nearly obj_a_1: the later of each pair goes.
    assert plain == ["obj_a_0", "obj_c_0", "obj_b_0", "obj_a_1", "obj_b_1"]
    assert diverse == ["obj_a_0", "obj_c_0", "obj_b_0"]
    per_image = run(rwb, stages=[sort, {"stage_type": "diversity", "config": {
        "max_similarity": 1.0, "max_per_image": 1}}])
    assert per_image == ["obj_a_0", "obj_c_0", "obj_b_0"]


def test_feature_search_by_example_detection_with_a_filter(rwb):
    stages = [
        {"stage_type": "feature_search", "config": {
            "feature_uri": URI, "query": {"detection_id": "{{INPUT.query}}"}, "top_k": 2}},
        {"stage_type": "filter", "config": {"filters": F("confidence", "lt", 0.7)}},
    ]
    rwb.retrievers.save("similar", "x", stages)
    result = rwb.retrievers.execute("similar", {"query": "obj_a_0"})
    # Nearest to obj_a_0 among the low-confidence ones: obj_b_1 (0.99 cos), then obj_a_1.
    assert [h.detection_id for h in result.hits] == ["obj_b_1", "obj_a_1"]
    assert result.hits[0].score == pytest.approx(0.995, abs=0.01)
    logged = rwb.retrievers.execution(result.id)
    assert logged["result_ids"] == ["obj_b_1", "obj_a_1"]
    assert logged["inputs"] == {"query": "obj_a_0"}
    assert "total" in logged["stage_ms"] and result.id.startswith("exec_")


def test_default_review_queue(rwb):
    queue = rwb.retrievers.review_queue("x")
    first = rwb.retrievers.execute(queue.name, count=True)
    # obj_c_0's vector is nearly obj_a_1's (cosine 0.98 > 0.97): the diversity step skips it.
    assert [h.detection_id for h in first.hits] == ["obj_b_0", "obj_a_1", "obj_b_1"]
    assert first.matched == 4
    rwb.annotations.create(document_id="obj_b_0", collection_id="col_x", label="confirmed",
                           retriever_id=queue.id, execution_id=first.id)
    second = rwb.retrievers.execute(queue.name)
    assert [h.detection_id for h in second.hits] == ["obj_a_1", "obj_b_1"]
    assert render(default_review_stages(5)[-1]["config"], {}) == {"limit": 5}
    assert len(rwb.retrievers.execute(queue.name, {"limit": 1}).hits) == 1


@pytest.mark.parametrize(
    ("stages", "error"),
    [
        ([], "non-empty list of stages"),
        ([{"stage_type": "filtr", "config": {}}], "stage 0 (filtr): stage_type 'filtr'"),
        ([{"stage_type": "filter", "config": {}}], "config.filters is required"),
        ([{"stage_type": "filter", "config": {"filters": F("confidence", "less", 1)}}],
         "operator 'less' is not one of"),
        ([{"stage_name": "low", "stage_type": "filter",
           "config": {"filters": {"AND": [{"operator": "lt", "value": 1}]}}}],
         "stage 0 (low): filters.AND[0]: 'field' is required"),
        ([{"stage_type": "filter", "config": {"filters": F("class", "in", "circle")}}],
         "needs a list value"),
        ([{"stage_type": "sort", "config": {"by": "size"}}], "sort by 'size'"),
        ([{"stage_type": "limit", "config": {"limit": 0}}], "limit must be a positive"),
        ([{"stage_type": "feature_search", "config": {"feature_uri": "mixpeek://x@1/y",
                                                      "query": "q"}}], "is not valid"),
        ([{"stage_type": "feature_search", "config": {"query": "q"}}], "needs config.feature_uri"),
        ([{"stage_type": "diversity", "config": {"max_similarity": 2}}], "max_similarity"),
        ([{"stage_type": "sort", "config": {"by": "confidence", "extra": 1}}],
         "unknown config key"),
    ],
)
def test_bad_stages_are_rejected_when_saved(rwb, stages, error):
    with pytest.raises(ValidationError) as info:
        rwb.retrievers.save("bad", "x", stages)
    assert error in str(info.value)
    with pytest.raises(NotFoundError):
        rwb.retrievers.get("bad")


def test_templating_keeps_types_and_requires_inputs():
    assert render({"a": "{{INPUT.k}}", "b": "top {{INPUT.k}}"}, {"k": 5}) == {"a": 5,
                                                                           "b": "top 5"}
    assert render({"a": "{{INPUT.k|20}}", "b": "{{ INPUT.s | near }}"}, {}) == {"a": 20,
                                                                             "b": "near"}
    with pytest.raises(ValidationError, match="input 'query' is required"):
        render("{{INPUT.query}}", {})


def test_an_unknown_field_is_explained(rwb):
    with pytest.raises(ValidationError, match="field 'bad-field' is not known"):
        run(rwb, F("bad-field", "eq", 1))


def test_feature_search_by_example_image(rwb):

    image_uri = URI.replace("detection_embedding", "image_embedding")
    rwb.vectors.upsert(image_uri, ["doc_obj_a", "doc_obj_b", "doc_obj_c"],
                       np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]], dtype="float32"))
    rwb.retrievers.save("like-image", "x", [{"stage_type": "feature_search", "config": {
        "feature_uri": URI, "query": {"object_id": "{{INPUT.image}}"}, "query_type": "image",
        "top_k": 1}}])
    # obj_a's image vector points where obj_b_0's detection vector does.
    hits = rwb.retrievers.execute("like-image", {"image": "obj_a"}).hits
    assert [h.detection_id for h in hits] == ["obj_b_0"]


def _tied_workspace(home):
    """Six detections at the same confidence on three images, under random ids."""
    from workbench import Workbench
    from workbench.extractors.yolo import yolo_spec
    from workbench.store import tables as t
    from workbench.store.metadata import new_id, utcnow

    wb = Workbench.open(home)
    now = utcnow()
    collection = new_id("col")
    with wb.db.write() as conn:
        conn.execute(t.buckets.insert().values(id="bkt_t", name="t", schema={}, description="",
                                               created_at=now))
        conn.execute(t.extractor_versions.insert().values(
            id=new_id("ext"), name="yolo_detector", version="1.0.0", kind="yolo",
            spec=yolo_spec("1.0.0", 4, 4).to_dict(), classes=["circle"], lineage={},
            metrics={}, notes="", created_at=now))
        conn.execute(t.collections.insert().values(
            id=collection, name="t", extractor_name="yolo_detector", active_version="1.0.0",
            bucket_ids=["bkt_t"], created_at=now))
        for sha in ("aa" * 32, "bb" * 32, "cc" * 32):
            obj, doc = new_id("obj"), new_id("doc")
            conn.execute(t.objects.insert().values(
                id=obj, bucket_id="bkt_t", sha256=sha, width=100, height=100, format="PNG",
                size_bytes=1, source=f"{sha[:2]}.png", metadata={}, created_at=now))
            conn.execute(t.documents.insert().values(
                id=doc, collection_id=collection, object_id=obj, extractor_key=KEY_T,
                features={}, n_detections=2, created_at=now))
            for idx in range(2):
                conn.execute(t.detections.insert().values(
                    id=new_id("det"), document_id=doc, collection_id=collection, object_id=obj,
                    extractor_key=KEY_T, idx=idx, class_name="circle", confidence=0.4, x1=0,
                    y1=0, x2=10 + idx, y2=10))
    return wb


KEY_T = "yolo_detector@1.0.0"


def test_ties_in_a_queue_go_to_the_image_content_not_to_random_ids(tmp_path):
    orders = []
    for name in ("one", "two"):  # the same data, other ids
        wb = _tied_workspace(tmp_path / name)
        wb.retrievers.save("q", "t", [
            {"stage_type": "sort", "config": {"by": "uncertainty"}},
            {"stage_type": "limit", "config": {"limit": 6}}])
        hits = wb.retrievers.execute("q").hits
        orders.append([(wb.buckets.get_object(h.object_id).sha256[:2],
                        h.detection_id.startswith("det")) for h in hits])
        wb.close()
    assert orders[0] == orders[1]
    assert [sha for sha, _ in orders[0]] == ["aa", "aa", "bb", "bb", "cc", "cc"]


def _many(wb, n: int) -> None:
    """``n`` more detections on one more image of collection "x" (SQL only, no vectors)."""
    from tests.conftest import KEY
    from workbench.store import tables as t
    from workbench.store.metadata import utcnow

    with wb.db.write() as conn:
        conn.execute(t.objects.insert().values(
            id="obj_many", bucket_id="bkt_x", sha256="f" * 64, width=100, height=100,
            format="PNG", size_bytes=1, source="many.png", metadata={"camera_id": "cam_9"},
            created_at=utcnow()))
        conn.execute(t.documents.insert().values(
            id="doc_many", collection_id="col_x", object_id="obj_many", extractor_key=KEY,
            features={}, n_detections=n, created_at=utcnow()))
        conn.execute(t.detections.insert(), [dict(
            id=f"many_{i:05d}", document_id="doc_many", collection_id="col_x",
            object_id="obj_many", extractor_key=KEY, idx=i, class_name="triangle",
            confidence=(i % 997) / 1000, x1=0, y1=0, x2=10, y2=10, embedding_id=None)
            for i in range(n)])


@pytest.mark.parametrize("sort", [None, {"by": "confidence", "order": "desc"},
                                  {"by": "uncertainty"}, {"by": "newest"}])
def test_more_matches_than_a_page_are_paged_with_a_cursor_never_cut(rwb, sort):
    """More candidates than MAX_FETCH: the first page says how many matched (at least, or
    exactly when counted), and following the cursor returns every match exactly once."""
    from workbench.retrievers import MAX_FETCH

    n = MAX_FETCH + 1234
    _many(rwb, n)
    stages = [{"stage_type": "filter", "config": {"filters": F("class", "eq", "triangle")}}]
    if sort is not None:
        stages.append({"stage_type": "sort", "config": sort})
    rwb.retrievers.save("all_triangles", "x", stages)
    total = n + 1  # and obj_b_0
    first = rwb.retrievers.execute("all_triangles")
    assert len(first.hits) == MAX_FETCH and first.next_cursor is not None
    assert not first.matched_exact and first.matched > MAX_FETCH
    assert rwb.retrievers.execute("all_triangles", count=True).matched == total
    seen = [h.detection_id for h in first.hits]
    page, pages = first, 1
    while page.next_cursor is not None:
        page = rwb.retrievers.execute("all_triangles", cursor=page.next_cursor)
        seen += [h.detection_id for h in page.hits]
        pages += 1
    assert pages == 2 and page.matched_exact and page.matched == total
    assert len(seen) == len(set(seen)) == total
    if sort == {"by": "confidence", "order": "desc"}:
        confidences = [rwb.detection.get(i).confidence for i in seen[MAX_FETCH - 2:
                                                                      MAX_FETCH + 2]]
        assert confidences == sorted(confidences, reverse=True)  # the order runs on


def test_a_bounded_count_stops_at_its_bound_and_says_so(rwb):
    """``count=N`` counts at most N candidates (a cost that does not grow with the
    workspace): past N it says "N, not exact"; under N it is the exact count."""
    n = 700
    _many(rwb, n)
    rwb.retrievers.save("few", "x", [
        {"stage_type": "filter", "config": {"filters": F("class", "eq", "triangle")}},
        {"stage_type": "sort", "config": {"by": "confidence", "order": "asc"}},
        {"stage_type": "limit", "config": {"limit": 20}}])
    exact = rwb.retrievers.execute("few", count=True)
    assert exact.matched == n + 1 and exact.matched_exact
    bounded = rwb.retrievers.execute("few", count=300)
    assert (bounded.matched, bounded.matched_exact) == (300, False)
    assert [h.detection_id for h in bounded.hits] == [h.detection_id for h in exact.hits]
    roomy = rwb.retrievers.execute("few", count=5000)
    assert (roomy.matched, roomy.matched_exact) == (n + 1, True)


def test_a_stage_that_saw_only_a_window_says_so(rwb):
    from workbench.retrievers import MAX_FETCH

    _many(rwb, MAX_FETCH + 10)
    rwb.retrievers.save("sampled", "x", [
        {"stage_type": "filter", "config": {"filters": F("class", "eq", "triangle")}},
        {"stage_type": "sample", "config": {"n": 50, "seed": 1}}])
    execution = rwb.retrievers.execute("sampled")
    assert len(execution.hits) == 50 and execution.next_cursor is None
    (note,) = execution.limits
    assert note.startswith(f"sample saw the first {MAX_FETCH:,} of at least ")
    counted = rwb.retrievers.execute("sampled", count=True)
    assert counted.limits == (f"sample saw the first {MAX_FETCH:,} of {MAX_FETCH + 11:,} "
                              "candidates (in content order)",)


def test_a_cursor_from_elsewhere_is_refused(rwb):
    rwb.retrievers.save("r", "x", [{"stage_type": "filter",
                                    "config": {"filters": F("confidence", "gt", 0)}}])
    with pytest.raises(ValidationError, match="is not one this workbench handed out"):
        rwb.retrievers.execute("r", cursor="not-a-cursor")


@pytest.mark.parametrize("state", [{"seen": 1, "offset": "abc"}, {"seen": 1, "after": "x"},
                                   {"seen": True, "offset": 0}, {"seen": -5, "offset": -3},
                                   {"seen": 1}, {"seen": 1, "offset": 1, "after": []}, [1]])
def test_a_forged_cursor_is_refused_in_one_line(rwb, state):
    import base64
    import json

    rwb.retrievers.save("r", "x", [{"stage_type": "filter",
                                    "config": {"filters": F("confidence", "gt", 0)}}])
    forged = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
    with pytest.raises(ValidationError, match="is not one this workbench handed out"):
        rwb.retrievers.execute("r", cursor=forged)
