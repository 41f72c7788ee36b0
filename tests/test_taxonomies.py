"""Reference sets and taxonomies: classification with thresholds and a hierarchy on
constructed embeddings; versions; retroactive re-application that rewrites only what changed."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import AlreadyExistsError, NotFoundError, ValidationError
from workbench.references import ReferenceItem, ReferenceMatrix, ReferenceSet
from workbench.store import tables as t
from workbench.taxonomies import UNKNOWN, classify, parse_nodes


def _matrix(refs: list[tuple[str, str | None, list[float]]]) -> ReferenceMatrix:
    items = tuple(ReferenceItem(f"ref_{i}", "set", f"det_{i}", "obj", cls, category,
                                (0, 0, 1, 1), "manual", 1, None)
                  for i, (cls, category, _) in enumerate(refs))
    vectors = np.array([v for *_, v in refs], dtype="float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ReferenceMatrix(ReferenceSet("set", "s", "col", "workbench://y@1.0.0/e", 1, "",
                                        None, None), 1, items, vectors)


# Three directions: two shapes close together (a "polygon" family), one round thing apart.
REFS = _matrix([("square", "polygon", [1, 0.1, 0]), ("square", "polygon", [1, 0.15, 0]),
                ("triangle", "polygon", [1, -0.4, 0.1]), ("circle", "round", [0, 0, 1])])
FLAT = parse_nodes("flat", ["square", "triangle", "circle"])
TREE = parse_nodes("tree", [
    {"name": "polygon", "threshold": 0.8},
    {"name": "square", "parent": "polygon", "threshold": 0.99},
    {"name": "triangle", "parent": "polygon"},
    {"name": "round", "classes": ["circle"]},
])


@pytest.mark.parametrize(("nodes", "vector", "threshold", "label", "path"), [
    (FLAT, [1, 0.12, 0], 0.9, "square", ("square",)),  # nearest two are squares
    (FLAT, [0.1, 0, 1], 0.9, "circle", ("circle",)),
    (FLAT, [0, 1, 0], 0.9, UNKNOWN, ()),  # far from every reference
    (FLAT, [1, -0.4, 0.1], 0.99, "triangle", ("triangle",)),  # exact reference
    # Hierarchy: inside "polygon" (0.8) but not close enough to a square (0.99): stops there.
    (TREE, [1, 0.4, 0], 0.5, "polygon", ("polygon",)),
    (TREE, [1, 0.12, 0], 0.5, "square", ("polygon", "square")),
    (TREE, [1, -0.35, 0.1], 0.5, "triangle", ("polygon", "triangle")),
    (TREE, [0.2, 0, 1], 0.5, "round", ("round",)),
    (TREE, [0, 1, 0], 0.5, UNKNOWN, ()),  # under every root threshold
])
def test_classification_with_thresholds_and_a_hierarchy(nodes, vector, threshold, label, path):
    (got,) = classify(np.array([vector], dtype="float32"), REFS, nodes, threshold, top_k=2)
    assert (got.label, got.path) == (label, path)
    assert -1 <= got.score <= 1
    if label != UNKNOWN:
        matched = next(i for i in REFS.items if i.id == got.reference_id)
        node = next(n for n in nodes if n.name == label)
        # the deciding reference is of the node's own classes, or (an inner node) under it
        assert matched.true_class in node.classes or matched.category == label


def test_top_k_averages_each_class_own_nearest_references():
    # "a" has one very close reference and one far one; "b" two fairly close ones.
    refs = _matrix([("a", None, [1, 0]), ("a", None, [0, 1]), ("b", None, [0.9, 0.44]),
                    ("b", None, [0.9, 0.43])])
    query = np.array([[0.98, 0.2]], dtype="float32")
    nodes = parse_nodes("flat", ["a", "b"])
    (nearest,) = classify(query, refs, nodes, 0.5, top_k=1)
    (averaged,) = classify(query, refs, nodes, 0.5, top_k=2)
    assert nearest.label == "a" and averaged.label == "b"
    # A class with one reference still wins where it is the closest (no vote to lose).
    lonely = _matrix([("a", None, [1, 0])] + [("b", None, [0.6, 0.8])] * 5)
    (got,) = classify(query, lonely, nodes, 0.5, top_k=3)
    assert got.label == "a"


def test_many_rows_in_chunks_match_one_by_one(monkeypatch):
    import workbench.taxonomies as taxonomies

    monkeypatch.setattr(taxonomies, "CHUNK", 64)
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(300, 3)).astype("float32")
    together = classify(queries, REFS, TREE, 0.5, 3)
    alone = [classify(q[None], REFS, TREE, 0.5, 3)[0] for q in queries[::7]]
    assert [(a.label, a.path, a.reference_id) for a in together[::7]] == [
        (a.label, a.path, a.reference_id) for a in alone]
    assert [a.score for a in together[::7]] == pytest.approx([a.score for a in alone], abs=1e-5)
    assert {a.label for a in together} == {"square", "triangle", "polygon", "round", UNKNOWN}
    assert classify(queries[:0], REFS, TREE, 0.5, 3) == []


@pytest.mark.parametrize(("kind", "nodes", "message"), [
    ("flat", [], "at least one node"),
    ("flat", ["a", "a"], "repeated: a"),
    ("flat", [{"name": "a", "parent": "b"}, "b"], "the taxonomy is flat"),
    ("tree", [{"name": "a", "parent": "z"}], "parent 'z' is not a node"),
    ("tree", [{"name": "a", "parent": "b"}, {"name": "b", "parent": "a"}], "cycle"),
    ("tree", [{"name": "a", "treshold": 0.5}], "unknown key"),
    ("tree", [{"name": "a", "threshold": 3}], "threshold"),
    ("flat", ["unknown"], "other than 'unknown'"),
    ("graph", ["a"], "kind must be"),
])
def test_bad_definitions_are_explained(kind, nodes, message):
    with pytest.raises(ValidationError, match=message):
        parse_nodes(kind, nodes)


# -- the services, on hand-made detections with exact vectors ---------------------------------
@pytest.fixture
def reviewed(review_wb):
    wb = review_wb
    collection = wb.collections.get("x")

    def verdict(det, label, **payload):
        return wb.annotations.create(document_id=det, collection_id=collection.id,
                                     label=label, payload=payload)

    verdict("obj_a_0", "confirmed")  # circle  [1, 0, 0, 0]
    verdict("obj_a_1", "corrected", true_class="hexagon")  # [0, 1, 0, 0]
    verdict("obj_b_0", "confirmed")  # triangle [0, 0, 1, 0]
    verdict("obj_b_1", "false_positive")
    return wb


def test_promote_reviewed_detections_into_a_versioned_reference_set(reviewed):
    wb = reviewed
    refs = wb.references.create("refs", "x")
    assert refs.version == 0 and refs.feature_uri.endswith("@1.0.0/detection_embedding")
    with pytest.raises(AlreadyExistsError):
        wb.references.create("refs", "x")
    with pytest.raises(ValidationError, match="only confirmed, corrected"):
        wb.references.promote("refs", labels=["false_positive"])
    first = wb.references.promote("refs")
    assert (first["added"], first["version"]) == (3, 1)
    assert wb.references.class_counts("refs") == {"circle": 1, "hexagon": 1, "triangle": 1}
    again = wb.references.promote("refs")
    assert (again["added"], again["already"], again["version"]) == (0, 3, 1)
    added = wb.references.add("refs", ["obj_c_0"], true_class="hexagon", category="polygon")
    assert added["version"] == 2
    removed = wb.references.remove("refs", ["obj_a_0"])
    assert removed == {"removed": 1, "version": 3}
    assert sorted(i.detection_id for i in wb.references.items("refs", version=1)) == [
        "obj_a_0", "obj_a_1", "obj_b_0"]
    now = wb.references.matrix("refs")
    assert {i.detection_id for i in now.items} == {"obj_a_1", "obj_b_0", "obj_c_0"}
    assert now.embeddings.shape == (3, 4)
    assert np.allclose(np.linalg.norm(now.embeddings, axis=1), 1)
    with pytest.raises(NotFoundError, match="do not exist"):
        wb.references.add("refs", ["nope"])
    with pytest.raises(NotFoundError, match="no reference set"):
        wb.references.get("other")


def test_apply_then_retroactive_rewrites_only_what_changed(reviewed):
    wb = reviewed
    wb.references.create("refs", "x")
    wb.references.promote("refs")
    taxonomy = wb.taxonomies.create("shapes", "refs", threshold=0.95, top_k=1)
    assert [n.name for n in taxonomy.nodes] == ["circle", "hexagon", "triangle"]
    wb.taxonomies.attach("shapes", "x", "retroactive")
    first = wb.taxonomies.apply("shapes")
    assert (first["classified"], first["new"], first["changed"]) == (5, 5, 0)
    rows = {r["detection_id"]: r for r in wb.taxonomies.assignments("shapes")}
    assert rows["obj_b_1"]["label"] == "circle"  # [0.99, 0.1] next to the circle
    assert rows["obj_c_0"]["label"] == "hexagon"  # [0, 0.98, 0.2]: cosine 0.98
    assert rows["obj_c_0"]["fields"]["verified_class"] == "hexagon"
    assert {r["taxonomy_version"] for r in rows.values()} == {1}

    # Unchanged references and definition: nothing is rewritten.
    same = wb.taxonomies.apply("shapes")
    assert (same["rewritten"], same["unchanged"], same["taxonomy_version"]) == (0, 5, 1)

    # A stricter threshold is a new version; only the detection it affects is rewritten.
    wb.taxonomies.update("shapes", threshold=0.99)
    stricter = wb.taxonomies.apply("shapes")
    assert stricter["taxonomy_version"] == 2
    assert (stricter["changed"], stricter["unchanged"]) == (1, 4)
    assert stricter["sample"] == [{"detection_id": "obj_c_0", "before": "hexagon",
                                   "after": UNKNOWN, "score": pytest.approx(0.98, abs=1e-3)}]
    rows = {r["detection_id"]: r for r in wb.taxonomies.assignments("shapes")}
    assert rows["obj_c_0"]["taxonomy_version"] == 2 and rows["obj_a_1"]["taxonomy_version"] == 1
    assert wb.taxonomies.label_counts("shapes")[UNKNOWN] == 1
    # Counts are of one version's detections: another version's assignments stay apart.
    with wb.db.write() as conn:
        conn.execute(t.taxonomy_assignments.insert().values(
            **{**rows["obj_a_1"], "detection_id": "det_of_another_version",
               "extractor_key": "yolo_detector@2.0.0"}))
    assert sum(wb.taxonomies.label_counts("shapes").values()) == 5
    assert wb.taxonomies.label_counts("shapes", "2.0.0") == {rows["obj_a_1"]["label"]: 1}

    # New references (the detection itself, as a hexagon) make the next version.
    wb.references.add("refs", ["obj_c_0"], true_class="hexagon")
    after = wb.taxonomies.apply("shapes")
    assert (after["taxonomy_version"], after["reference_version"]) == (3, 2)
    assert after["changed"] == 1 and after["sample"][0]["after"] == "hexagon"
    assert [e["type"] for e in wb_events(wb)].count("taxonomy.applied") == 4
    # On demand: classified now, nothing stored.
    outcome = wb.taxonomies.classify_detections("shapes", ["obj_b_1"])
    assert outcome["obj_b_1"].label == "circle"


def test_on_demand_classification_of_more_ids_than_sqlite_binds(reviewed):
    """A million-detection retriever hands over more ids than SQLite takes in one statement
    (32,766 variables): they are looked up in slices."""
    wb = reviewed
    wb.references.create("refs", "x")
    wb.references.promote("refs")
    wb.taxonomies.create("shapes", "refs", threshold=0.95, top_k=1)
    ids = [f"no_such_{i}" for i in range(40_000)] + ["obj_b_1"]
    outcome = wb.taxonomies.classify_detections("shapes", ids)
    assert list(outcome) == ["obj_b_1"] and outcome["obj_b_1"].label == "circle"


def wb_events(wb):

    return wb.events.recent(limit=100)


def test_attach_checks_mode_and_collection(reviewed):
    wb = reviewed
    wb.references.create("refs", "x")
    wb.references.promote("refs")
    wb.taxonomies.create("shapes", "refs")
    with pytest.raises(ValidationError, match="mode must be"):
        wb.taxonomies.attach("shapes", "x", "sometimes")
    wb.taxonomies.attach("shapes", "x", "on_demand")
    wb.taxonomies.attach("shapes", "x", "materialize")
    assert [(tax.name, mode) for tax, mode in wb.taxonomies.attachments("x")] == [
        ("shapes", "materialize")]
    with pytest.raises(ValidationError, match="needs its nodes"):
        wb.taxonomies.create("tree", "refs", kind="tree")
    with pytest.raises(ValidationError, match="top_k"):
        wb.taxonomies.create("k0", "refs", top_k=0)


def test_retrievers_filter_on_stored_labels_and_classify_on_demand(reviewed):
    wb = reviewed
    wb.references.create("refs", "x")
    wb.references.promote("refs")
    wb.taxonomies.create("shapes", "refs", threshold=0.99, top_k=1)
    with pytest.raises(ValidationError, match="keep must be a list"):
        wb.retrievers.save("bad", "x", [{"stage_type": "taxonomy",
                                         "config": {"taxonomy": "shapes", "keep": "unknown"}}])
    wb.retrievers.save("unknown-now", "x", [
        {"stage_type": "taxonomy", "config": {"taxonomy": "shapes", "keep": ["unknown"]}},
        {"stage_type": "limit", "config": {"limit": 10}}])
    hits = wb.retrievers.execute("unknown-now").hits
    assert [h.detection_id for h in hits] == ["obj_c_0"]  # cosine 0.98 < 0.99
    assert hits[0].taxonomy["label"] == UNKNOWN and hits[0].taxonomy["taxonomy_version"] == 1
    assert wb.taxonomies.assignments("shapes") == []  # on demand stores nothing

    wb.taxonomies.apply("shapes")
    wb.retrievers.save("unknown-stored", "x", [{"stage_type": "filter", "config": {
        "filters": {"field": "taxonomy.shapes", "operator": "eq", "value": "unknown"}}}])
    assert [h.detection_id for h in wb.retrievers.execute("unknown-stored").hits] == [
        "obj_c_0"]


def test_materialize_classifies_what_a_batch_run_adds(wb, tmp_path, starter_weights):
    """Real detections and embeddings from the starter model on ShapeWorld scenes."""
    from workbench.demo.shapeworld import SceneConfig, write_dataset
    from workbench.detection import DetectParams

    config = SceneConfig(width=320, height=240, min_objects=3)
    first = write_dataset(tmp_path / "first", config, 4, seed=31)
    later = write_dataset(tmp_path / "later", config, 2, seed=32)
    wb.buckets.create("b")
    wb.ingest.run("b", [first / "images"])
    wb.registry.register_yolo(starter_weights, lineage={"imgsz": 320})
    collection = wb.collections.create("c", ["b"])
    wb.detection.run("c", params=DetectParams(imgsz=320))
    detections = wb.detection.detections(collection, collection.active_key)
    assert len(detections) >= 6
    for det in detections:  # a reviewer confirms everything on the first images
        wb.annotations.create(document_id=det.id, collection_id=collection.id,
                              label="confirmed")
    wb.references.create("refs", "c")
    assert wb.references.promote("refs")["added"] == len(detections)
    wb.taxonomies.create("shapes", "refs", threshold=0.5, top_k=1)
    wb.taxonomies.attach("shapes", "c", "materialize")

    wb.ingest.run("b", [later / "images"])
    job = wb.detection.run("c", params=DetectParams(imgsz=320))
    (applied,) = job.result["taxonomies"]
    everything = wb.detection.detections(collection, collection.active_key)
    added = len(everything) - len(detections)
    assert added > 0 and applied["new"] == len(everything)  # nothing was classified before
    rows = wb.taxonomies.assignments("shapes", limit=1000)
    assert {r["detection_id"] for r in rows} == {d.id for d in everything}
    # With top_k 1 a reference is its own nearest neighbour: confirmed ones keep their class.
    by_id = {r["detection_id"]: r for r in rows}
    assert all(by_id[d.id]["label"] == d.class_name for d in detections)
    assert all(by_id[d.id]["score"] == pytest.approx(1, abs=1e-4) for d in detections)
    # The next run adds nothing, so nothing new is classified.
    again = wb.detection.run("c", params=DetectParams(imgsz=320))
    assert again.result["taxonomies"][0]["new"] == 0
