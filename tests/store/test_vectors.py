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
    got = store.get(URI, ["det_7", "det_2"])  # from the float16 copy: 3 significant digits
    np.testing.assert_allclose(got, vectors[[7, 2]], rtol=2e-3, atol=1e-3)
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


def test_reads_by_id_come_from_the_contiguous_copy_without_chroma(tmp_path):
    vectors = np.random.default_rng(2).normal(size=(50, 16)).astype("float32")
    ids = [f"d{i}" for i in range(50)]
    VectorStore(tmp_path / "vectors").upsert(URI, ids, vectors)
    store = VectorStore(tmp_path / "vectors")  # another process, say
    got = store.get(URI, ["d7", "d2", "nope", "d7"])
    assert store._client is None  # the Chroma index was never opened
    np.testing.assert_allclose(got, vectors[[7, 2, 7]], rtol=2e-3, atol=1e-3)  # float16
    assert set(store.get_by_id(URI, ids)) == set(ids)
    # Written again: the newest vector wins, and the copy does not grow its id count.
    store.upsert(URI, ["d2"], vectors[:1] * 2)
    np.testing.assert_allclose(store.get(URI, ["d2"])[0], vectors[0] * 2, rtol=2e-3, atol=1e-3)
    assert len(store.copy(URI)) == 50


def test_ids_the_copy_lacks_are_read_from_chroma(tmp_path):
    """Vectors written before the copy existed (older workspaces) are still found."""
    store = VectorStore(tmp_path / "vectors")
    store.collection(URI).upsert(ids=["old"], embeddings=[[0.5, 0.5, 0.5, 0.5]])  # no copy
    store.upsert(URI, ["new"], np.ones((1, 4), dtype="float32"))
    assert not store.copy(URI).complete()
    got = store.get_by_id(URI, ["old", "new"])
    np.testing.assert_allclose(got["old"], [0.5] * 4)
    np.testing.assert_allclose(got["new"], [1.0] * 4)


def test_values_beyond_float16_are_kept_exactly(tmp_path):
    big = np.array([[1e6, -2.5, 3.0]], dtype="float32")
    store = VectorStore(tmp_path / "vectors")
    store.upsert(URI, ["big"], big)
    np.testing.assert_array_equal(store.get(URI, ["big"]), big)  # a float32 copy
    assert store.copy(URI)._meta()["dtype"] == "float32"


def test_a_row_half_written_by_a_kill_is_dropped_on_the_next_append(tmp_path):
    store = VectorStore(tmp_path / "vectors")
    store.upsert(URI, ["a"], np.ones((1, 8), dtype="float32"))
    with open(store.copy(URI)._data, "ab") as data:
        data.write(b"\x00" * 5)  # a kill in the middle of the next row
    store.upsert(URI, ["b"], np.full((1, 8), 2, dtype="float32"))
    got = VectorStore(tmp_path / "vectors").get_by_id(URI, ["a", "b"])
    np.testing.assert_allclose(got["a"], 1)
    np.testing.assert_allclose(got["b"], 2)


def test_killed_between_the_rows_and_the_id_map_nothing_is_half_there(tmp_path):
    """SIGKILL after a batch's rows reach the file and before the map names them: the batch
    is not found (its detections were not committed either, and a resumed run writes it
    again), earlier vectors are intact, and the next append goes on."""
    import os
    import subprocess
    import sys

    store = VectorStore(tmp_path / "vectors")
    store.upsert(URI, ["kept"], np.full((1, 8), 3, dtype="float32"))
    code = ("import numpy as np\nfrom workbench.store.vectors import VectorStore\n"
            f"VectorStore({str(tmp_path / 'vectors')!r}).upsert({URI!r}, ['lost'], "
            "np.ones((1, 8), dtype='float32'))\n")
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            env={**os.environ, "WORKBENCH_CRASH_AT": "vectors.rows_written"})
    assert killed.returncode == -9, killed.stderr
    reopened = VectorStore(tmp_path / "vectors")
    assert set(reopened.copy(URI).get(["kept", "lost"])) == {"kept"}
    reopened.upsert(URI, ["lost"], np.full((1, 8), 2, dtype="float32"))  # the resumed batch
    got = VectorStore(tmp_path / "vectors").get_by_id(URI, ["kept", "lost"])
    np.testing.assert_allclose(got["kept"], 3)
    np.testing.assert_allclose(got["lost"], 2)
