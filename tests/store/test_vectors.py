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


def test_rows_are_gathered_in_any_order_with_runs_and_repeats(tmp_path):
    """Rows are read one run at a time (not through a memory map, which held most of a 2 GB
    copy resident): any order, repeats and consecutive runs come back in the order asked."""
    vectors = np.random.default_rng(5).normal(size=(300, 8)).astype("float32")
    VectorStore(tmp_path / "vectors").upsert(URI, [f"d{i}" for i in range(300)], vectors)
    copy = VectorStore(tmp_path / "vectors").copy(URI)
    rows = [299, 5, 6, 7, 5, 0, 150, 151, 8, 299]
    np.testing.assert_allclose(copy.read_rows(rows), vectors[rows], rtol=2e-3, atol=1e-3)
    assert copy.read_rows([]).shape == (0, 8)
    with pytest.raises(IndexError, match="past the end"):
        copy.read_rows([300])


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


def test_vectors_are_searchable_before_chroma_indexes_them(tmp_path):
    """The copy is the write path: a query searches the rows Chroma has not taken in yet
    exactly, and merges them with Chroma's answer once part of the feature is indexed."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, 16)).astype("float32")
    ids = [f"d{i}" for i in range(300)]
    store = VectorStore(tmp_path / "vectors")
    store.upsert(URI, ids[:200], vectors[:200])
    assert store.pending(URI) == 200
    assert store.query(URI, vectors[150], k=1)[0][0] == "d150"
    assert store._client is None  # nothing indexed yet: Chroma was not even opened
    assert store.index(URI, limit=120) == 120  # the idle worker goes a batch at a time
    assert store.pending(URI) == 80
    assert store.collection(URI).count() == 120
    store.upsert(URI, ids[200:], vectors[200:])
    for probe in (5, 150, 250):  # indexed, not yet, written after the index began
        (nearest, distance), *_ = store.query(URI, vectors[probe], k=3)
        assert nearest == f"d{probe}" and distance == pytest.approx(0, abs=1e-3)
    # The merged answer is the exact one (Chroma's HNSW is exact at this size).
    query = rng.normal(size=16).astype("float32")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = [ids[i] for i in np.argsort(1 - unit @ (query / np.linalg.norm(query)))[:10]]
    assert [i for i, _ in store.query(URI, query, k=10)] == exact
    assert store.index(URI) == 180 and store.pending(URI) == 0
    assert store.unindexed() == {}
    assert [i for i, _ in store.query(URI, query, k=10)] == exact
    # Rewritten after indexing: the newer vector (in the tail) answers for its id.
    store.upsert(URI, ["d5"], vectors[7:8])
    hits = dict(store.query(URI, vectors[7], k=2))
    assert hits["d5"] == pytest.approx(0, abs=1e-3) and "d7" in hits
    assert store.count(URI) == 300


@pytest.mark.parametrize("metric", ["euclidean", "dot"])
def test_the_exact_tail_search_speaks_chromas_distances(tmp_path, metric):
    vectors = np.random.default_rng(4).normal(size=(40, 8)).astype("float32")
    ids = [f"v{i}" for i in range(40)]
    store = VectorStore(tmp_path / "vectors")
    store.upsert(URI, ids, vectors, metric=metric)
    before = store.query(URI, vectors[0] * 0.5, k=5)
    store.index(URI)
    after = store.query(URI, vectors[0] * 0.5, k=5)
    assert [i for i, _ in before] == [i for i, _ in after]
    np.testing.assert_allclose([d for _, d in before], [d for _, d in after], rtol=1e-2,
                               atol=1e-2)
    # The index is made with the feature's metric and the lighter graph (bench/vectors.py).
    hnsw = store.collection(URI, metric).configuration["hnsw"]
    assert (hnsw["space"], hnsw["ef_construction"], hnsw["max_neighbors"]) == (
        {"euclidean": "l2", "dot": "ip"}[metric], 64, 12)


def test_an_idle_worker_builds_the_index_behind_the_writes(tmp_path):
    from workbench import Workbench
    from workbench.jobs import Worker

    wb = Workbench.open(tmp_path / "ws")
    vectors = np.random.default_rng(5).normal(size=(12_000, 8)).astype("float32")
    wb.vectors.upsert(URI, [f"v{i}" for i in range(12_000)], vectors)
    assert wb.vectors.unindexed() == {URI: 12_000}
    Worker(wb).run(exit_when_idle=True)
    assert wb.vectors.unindexed() == {} and wb.vectors.collection(URI).count() == 12_000


def test_a_copy_written_before_the_index_moved_behind_it_counts_as_indexed(tmp_path):
    """Older workspaces wrote Chroma and the copy together: their rows are not searched again
    as a tail, and the next write starts the watermark there."""
    import json

    store = VectorStore(tmp_path / "vectors")
    vectors = np.random.default_rng(6).normal(size=(10, 4)).astype("float32")
    store.upsert(URI, [f"o{i}" for i in range(10)], vectors)
    store.index(URI)
    meta_path = store.copy(URI).folder / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["indexed_rows"], meta["feature_uri"]
    meta_path.write_text(json.dumps(meta))
    reopened = VectorStore(tmp_path / "vectors")
    assert reopened.pending(URI) == 0 and reopened.unindexed() == {}
    reopened.upsert(URI, ["n0"], vectors[:1])
    assert reopened.pending(URI) == 1 and reopened.unindexed() == {URI: 1}
    assert {i for i, _ in reopened.query(URI, vectors[0], k=2)} == {"o0", "n0"}


def test_the_cli_says_what_is_behind_and_indexes_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from workbench import Workbench
    from workbench.cli import app

    wb = Workbench.open(tmp_path / "ws")
    wb.vectors.upsert(URI, ["a", "b", "c"], np.eye(3, 4, dtype="float32"))
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "ws"))
    runner = CliRunner()
    status = runner.invoke(app, ["vectors"])
    assert status.exit_code == 0 and f"{URI}: 3 row(s) not yet indexed" in status.output
    indexed = runner.invoke(app, ["--json", "vectors", "index"])
    assert indexed.exit_code == 0, indexed.output
    assert '"' + URI + '": 3' in indexed.output
    assert "every vector is indexed" in runner.invoke(app, ["vectors"]).output
    assert Workbench.open(tmp_path / "ws").vectors.collection(URI).count() == 3
