import numpy as np
import pytest

from workbench.errors import ValidationError
from workbench.store.vectors import VectorStore, collection_name

URI = "workbench://yolo_detector@1.0.0/detection_embedding"


def test_collection_names_are_legal_and_unique_per_uri():
    a = collection_name(URI)
    b = collection_name("workbench://yolo_detector@2.0.0/detection_embedding")
    assert a != b
    assert a.startswith("yolo_detector-1.0.0-detection_embedding-")
    assert all(c.isalnum() or c in "._-" for c in a)


def test_upsert_query_and_get_round_trip(tmp_path):
    store = VectorStore(tmp_path / "vectors")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 8)).astype("float32")
    ids = [f"det_{i}" for i in range(20)]
    store.upsert(URI, ids, vectors)
    store.upsert(URI, ids[:5], vectors[:5])  # re-running a batch does not duplicate
    assert store.count(URI) == 20
    nearest = store.query(URI, vectors[3], k=3)
    assert nearest[0][0] == "det_3"
    assert nearest[0][1] == pytest.approx(0.0, abs=1e-5)
    got = store.get(URI, ["det_7", "det_2"])
    np.testing.assert_allclose(got, vectors[[7, 2]], rtol=1e-5)
    # Vectors persist on disk: a new client sees them.
    assert VectorStore(tmp_path / "vectors").count(URI) == 20


def test_unknown_metric_is_explained(tmp_path):
    with pytest.raises(ValidationError, match="cosine"):
        VectorStore(tmp_path).collection(URI, metric="manhattan")


def test_upserts_larger_than_chromas_batch_limit_are_split(tmp_path):
    store = VectorStore(tmp_path / "vectors")
    n = store.client.get_max_batch_size() + 7
    vectors = np.random.default_rng(1).normal(size=(n, 4)).astype("float32")
    store.upsert(URI, [f"v{i}" for i in range(n)], vectors)
    assert store.count(URI) == n
