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
