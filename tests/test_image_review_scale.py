"""The image-review queue at scale (issue 15): past a pool size it ranks the most uncertain
open images and a sample of the others, says so, and keeps its count exact; embeddings are
read by id in chunks Chroma accepts, and a feature with no vectors reads as empty."""

from __future__ import annotations

import numpy as np

from workbench.store.vectors import VectorStore, collection_name

URI = "workbench://yolo_detector@1.0.0/detection_embedding"


def test_get_by_id_reads_more_ids_than_sqlite_binds_from_chroma(tmp_path):
    """Vectors that live only in Chroma (written before the copy existed), asked for with
    more ids than SQLite's bound-variable limit (32,766): one Chroma get of them all fails
    with "too many SQL variables"."""
    store = VectorStore(tmp_path / "vectors")
    vectors = np.random.default_rng(0).normal(size=(30, 8)).astype("float32")
    store.collection(URI).upsert(ids=[f"det_{i}" for i in range(30)], embeddings=vectors)
    wanted = [f"det_{i}" for i in range(40_000)]
    found = store.get_by_id(URI, wanted)
    assert sorted(found) == sorted(f"det_{i}" for i in range(30))
    np.testing.assert_allclose(found["det_7"], vectors[7], rtol=1e-6)


def test_get_by_id_of_a_feature_with_no_vectors_is_empty_and_creates_nothing(tmp_path):
    store = VectorStore(tmp_path / "vectors")
    assert store.get_by_id(URI, ["det_1", "det_2"]) == {}
    assert not (tmp_path / "vectors" / "chroma.sqlite3").exists()  # Chroma never opened
    other = "workbench://yolo_detector@1.0.0/image_embedding"
    store.collection(other).upsert(ids=["doc_1"], embeddings=[[1.0, 0.0]])
    assert store.get_by_id(URI, ["det_1"]) == {}
    assert [c.name for c in store.client.list_collections()] == [collection_name(other)]


# -- the queue past its pool size ---------------------------------------------------------
KEY = "yolo_detector@1.0.0"
IMAGE_URI = f"workbench://{KEY}/image_embedding"
# The most uncertain image, the next one, the rest; one image the model found nothing on,
# unlike every other (its embedding points elsewhere); and four that get completed.
TOP, SECOND, DONE_TOP, NOVEL = "obj_000", "obj_002", "obj_001", "obj_059"
COMPLETED = [DONE_TOP, "obj_050", "obj_051", "obj_052"]


def _confidences(i: int) -> list[float]:
    if i == 0:
        return [0.5, 0.5, 0.5]  # uncertainty 3
    if i == 1:
        return [0.55, 0.55, 0.55]  # 2.7, but complete
    if i == 2:
        return [0.6, 0.6]  # 1.6
    if i == 59:
        return []
    return [0.9 + i / 1000]  # 0.2 and less, each its own


def _fill(wb) -> None:
    """Sixty images of one collection ("cams") written as a detection run writes them
    (hashed document ids, each document's uncertainty), with image embeddings."""
    from workbench.detection import document_id, uncertainty
    from workbench.extractors.yolo import yolo_spec
    from workbench.store import tables as t
    from workbench.store.metadata import utcnow

    now = utcnow()
    rng = np.random.default_rng(0)
    documents, vectors = [], []
    with wb.db.write() as conn:
        conn.execute(t.buckets.insert().values(id="bkt_c", name="cams", schema={"properties": {
            "image": {"type": "image"}}}, description="", created_at=now))
        conn.execute(t.extractor_versions.insert().values(
            id="ext_1", name="yolo_detector", version="1.0.0", kind="yolo",
            spec=yolo_spec("1.0.0", 4, 4).to_dict(), classes=["circle", "square"], lineage={},
            metrics={}, notes="", created_at=now))
        conn.execute(t.collections.insert().values(
            id="col_c", name="cams", extractor_name="yolo_detector", active_version="1.0.0",
            bucket_ids=["bkt_c"], created_at=now))
        for i in range(60):
            obj, found = f"obj_{i:03d}", [{"confidence": c} for c in _confidences(i)]
            doc = document_id("col_c", obj, KEY)
            conn.execute(t.objects.insert().values(
                id=obj, bucket_id="bkt_c", sha256=f"{i:064d}", width=100, height=100,
                format="PNG", size_bytes=1, source=f"{obj}.png", metadata={}, created_at=now))
            conn.execute(t.documents.insert().values(
                id=doc, collection_id="col_c", object_id=obj, extractor_key=KEY, features={},
                n_detections=len(found), uncertainty=uncertainty(found), created_at=now))
            for k, det in enumerate(found):
                conn.execute(t.detections.insert().values(
                    id=f"{doc}_{k}", document_id=doc, collection_id="col_c", object_id=obj,
                    extractor_key=KEY, idx=k, class_name="circle",
                    confidence=det["confidence"], x1=10 * k, y1=0, x2=10 * k + 20, y2=20))
            documents.append(doc)
            vectors.append([0, 0, 1, 0] if i == 59 else
                           [1, 0, 0, 0] + 0.1 * rng.normal(size=4))
    wb.vectors.upsert(IMAGE_URI, documents, np.asarray(vectors, dtype="float32"))
    for obj in COMPLETED:
        wb.image_review.finish("cams", document_id("col_c", obj, KEY), [])


def test_past_its_pool_the_queue_ranks_the_most_uncertain_and_a_sample(wb, monkeypatch):
    from workbench import image_review

    _fill(wb)
    monkeypatch.setattr(image_review, "POOL", 20)
    monkeypatch.setattr(image_review, "SAMPLE", 5)
    queue = wb.image_review.queue("cams", limit=3)
    ranked = [r.object_id for r in queue.images]
    assert ranked[0] == TOP
    assert DONE_TOP not in ranked  # complete: the pool reads past it
    assert queue.remaining == 56  # exact: 60 images, 4 complete
    assert (queue.ranked_from, queue.sampled) == (25, 5) and queue.cut
    logged = wb.retrievers.execution(queue.execution_id)["inputs"]
    assert (logged["matched"], logged["ranked_from"], logged["sampled"]) == (56, 25, 5)
    # A skipped image leaves the count and the pool; the next most uncertain comes first.
    skipped = wb.image_review.queue("cams", limit=3, exclude=[TOP])
    assert skipped.images[0].object_id == SECOND
    assert TOP not in [r.object_id for r in skipped.images]
    assert skipped.remaining == 55 and skipped.ranked_from == 25


def test_the_sample_lets_an_image_the_model_found_nothing_on_come_up(wb, monkeypatch):
    """The image with no detections is not among the most uncertain; unlike anything
    completed, it comes up when the sample holds it, and never without a sample."""
    from workbench import image_review

    _fill(wb)
    monkeypatch.setattr(image_review, "POOL", 20)
    monkeypatch.setattr(image_review, "SAMPLE", 0)
    assert NOVEL not in [r.object_id for r in wb.image_review.queue("cams", limit=3).images]
    monkeypatch.setattr(image_review, "SAMPLE", 60)  # every open image outside the pool
    queue = wb.image_review.queue("cams", limit=3)
    assert NOVEL in [r.object_id for r in queue.images]
    assert queue.ranked_from == queue.remaining == 56 and queue.sampled == 36


def test_up_to_its_pool_the_queue_ranks_every_open_image(wb, monkeypatch):
    from workbench import image_review

    _fill(wb)
    monkeypatch.setattr(image_review, "POOL", 100)
    queue = wb.image_review.queue("cams", limit=3)
    assert queue.remaining == queue.ranked_from == 56 and queue.sampled == 0
    assert not queue.cut
    assert queue.images[0].object_id == TOP
    assert NOVEL in [r.object_id for r in queue.images]


def test_the_review_page_says_it_ranked_a_pool(wb, home, monkeypatch):
    from tests.app.conftest import run_page
    from workbench import image_review

    _fill(wb)
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.setattr(image_review, "POOL", 20)
    monkeypatch.setattr(image_review, "SAMPLE", 5)
    at = run_page("pages/3_Review.py")
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state["image_review"].current.object_id == TOP
    assert "Ranked the 20 most uncertain of 56 open images plus a sample of 5." in [
        c.value for c in at.caption]


def test_disagreements_read_complete_images_in_chunks(wb, monkeypatch):
    """Complete images are read a chunk at a time (one IN list of them all fails past
    SQLite's variable limit); chunks change nothing in the answer."""
    import workbench.store.metadata as metadata

    _fill(wb)  # the complete images' boxes were all rejected: false positives
    whole = wb.image_review.disagreements("cams")
    assert [(r["object_id"], r["false_positives"]) for r in whole] == [
        (DONE_TOP, 3), ("obj_050", 1), ("obj_051", 1), ("obj_052", 1)]
    monkeypatch.setattr(metadata, "IN_LIST", 3)
    assert wb.image_review.disagreements("cams") == whole
