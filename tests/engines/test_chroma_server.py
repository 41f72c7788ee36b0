"""Vectors on a Chroma server (``WORKBENCH_CHROMA_URL``): a real ``chroma run`` started by
the fixtures in conftest.py, each test in a database of its own. The layout is the embedded
store's (a collection per feature URI, the same ids), writes are batched by the server's
limit, a server that is down is one clear line, and a batch run rides out a restart and
resumes after a failure."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from workbench import Workbench
from workbench.errors import JobFailed, ValidationError
from workbench.store.vectors import VectorStore, collection_name
from workbench.store.vectors_server import (
    ServerVectorStore,
    VectorServerUnavailable,
    open_vector_store,
)

pytestmark = pytest.mark.chroma_server

URI = "workbench://yolo_detector@1.0.0/detection_embedding"


@pytest.fixture
def store() -> ServerVectorStore:
    from workbench.config import load_settings

    opened = open_vector_store(load_settings())
    assert isinstance(opened, ServerVectorStore)
    return opened


def _server_client(server):
    """A plain chromadb client on the test's database, to look at what was written."""
    import chromadb

    return chromadb.HttpClient(host="127.0.0.1", port=server.port,
                               database=os.environ["WORKBENCH_CHROMA_DATABASE"])


def test_the_setting_puts_a_workspaces_vectors_on_the_server(tmp_path, chroma_server):
    wb = Workbench.open(tmp_path / "ws")
    vectors = np.random.default_rng(0).normal(size=(20, 8)).astype("float32")
    ids = [f"det_{i}" for i in range(20)]
    wb.vectors.upsert(URI, ids, vectors)
    assert not (tmp_path / "ws" / "vectors").exists()  # nothing embedded on this host
    # The embedded layout: one collection per feature URI, named alike, holding these ids.
    collection = _server_client(chroma_server).get_collection(collection_name(URI))
    assert collection.metadata["feature_uri"] == URI
    assert sorted(collection.get(ids=ids)["ids"]) == sorted(ids)
    hnsw = collection.configuration["hnsw"]
    assert (hnsw["space"], hnsw["ef_construction"], hnsw["max_neighbors"]) == ("cosine", 64, 12)


def test_upsert_query_and_get_round_trip(store):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(30, 8)).astype("float32")
    ids = [f"det_{i}" for i in range(30)]
    store.upsert(URI, ids, vectors)
    store.upsert(URI, ids[:5], vectors[:5])  # re-running a batch does not duplicate
    assert store.count(URI) == 30
    (nearest, distance), *_ = store.query(URI, vectors[3], k=3)
    assert nearest == "det_3" and distance == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(store.get(URI, ["det_7", "nope", "det_2"]), vectors[[7, 2]],
                               rtol=1e-6)  # float32 on the server: exact
    # The server indexes on write: nothing is ever behind, an idle worker has nothing to do.
    assert store.unindexed() == {} and store.pending(URI) == 0 and store.index(URI) == 0
    # Another process (another host) sees them.
    from workbench.config import load_settings

    assert open_vector_store(load_settings()).count(URI) == 30


def test_reading_a_feature_without_vectors_creates_nothing(store, chroma_server):
    assert store.count(URI) == 0
    assert store.query(URI, np.ones(4, dtype="float32")) == []
    assert store.get_by_id(URI, ["a"]) == {}
    assert _server_client(chroma_server).list_collections() == []


def test_bad_input_is_refused_before_anything_is_sent(store, chroma_server):
    with pytest.raises(ValidationError, match="cosine"):
        store.upsert(URI, ["a"], np.ones((1, 4)), metric="manhattan")
    with pytest.raises(ValidationError, match="2 ids for vectors of shape"):
        store.upsert(URI, ["a", "b"], np.ones((3, 4)))
    assert _server_client(chroma_server).list_collections() == []


def test_upserts_larger_than_the_servers_batch_limit_are_split(store):
    n = store.max_batch_size() + 7  # one request of this size is refused by the server
    vectors = np.random.default_rng(2).normal(size=(n, 4)).astype("float32")
    store.upsert(URI, [f"v{i}" for i in range(n)], vectors)
    assert store.count(URI) == n


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot"])
def test_answers_match_the_embedded_store(store, tmp_path, metric):
    """The same vectors give the same neighbours and distances on the server as in the
    embedded store (its exact search before indexing, Chroma's after)."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(200, 16)).astype("float32")
    ids = [f"d{i}" for i in range(200)]
    embedded = VectorStore(tmp_path / "vectors")
    for target in (store, embedded):
        target.upsert(URI, ids, vectors, metric=metric)
    probe = rng.normal(size=16).astype("float32")
    here, there = embedded.query(URI, probe, k=10), store.query(URI, probe, k=10)
    assert [i for i, _ in here] == [i for i, _ in there]
    np.testing.assert_allclose([d for _, d in here], [d for _, d in there], rtol=1e-2,
                               atol=1e-2)  # the embedded copy keeps float16


def test_a_server_that_is_down_is_one_clear_line(tmp_path, monkeypatch):
    from tests.engines.conftest import ChromaServer

    gone = ChromaServer(tmp_path / "never-started")  # a free port where nothing listens
    monkeypatch.setenv("WORKBENCH_CHROMA_URL", gone.url)
    monkeypatch.setenv("WORKBENCH_CHROMA_RETRY_S", "1")
    wb = Workbench.open(tmp_path / "ws")
    started = time.monotonic()
    with pytest.raises(VectorServerUnavailable) as written:
        wb.vectors.upsert(URI, ["a"], np.ones((1, 4), dtype="float32"))
    assert 0.9 < time.monotonic() - started < 10  # retried for the window, then given up
    message = str(written.value)
    assert "\n" not in message
    assert f"cannot reach the Chroma server at {gone.url} (retried for" in message
    assert f"chroma run --path <folder> --host 0.0.0.0 --port {gone.port}" in message
    assert "WORKBENCH_CHROMA_URL" in message
    started = time.monotonic()
    with pytest.raises(VectorServerUnavailable, match="Connection refused"):
        wb.vectors.query(URI, np.ones(4, dtype="float32"))  # reads are not retried
    assert time.monotonic() - started < 1


def _demo_collection(wb, scale: float = 0.05):
    """The demo's scenes ingested and its collection made, not yet detected."""
    from workbench.demo import DEMO_BUCKET, DEMO_COLLECTION

    wb.demo.load(scale=scale)
    version = wb.demo.register_starter()
    wb.collections.create(DEMO_COLLECTION, [DEMO_BUCKET], version.name, version.version)
    return wb.collections.get(DEMO_COLLECTION), version


def _vector_ids(wb, collection, version) -> tuple[list[str], int]:
    """The detections' embedding ids (from the metadata) and how many the server holds."""
    import sqlalchemy as sa

    from workbench.store import tables as t

    with wb.db.read() as conn:
        ids = conn.execute(sa.select(t.detections.c.embedding_id).where(
            t.detections.c.collection_id == collection.id)).scalars().all()
    uri = version.spec.feature_uri("detection_embedding")
    return ids, wb.vectors.count(uri)


@pytest.mark.slow
def test_a_batch_run_fails_in_one_line_then_rides_out_a_restart_and_resumes(
        tmp_path, monkeypatch, own_chroma_server):
    """The demo's batch run against a server that is down: with a short retry window the
    job fails, saying where and what to do, and nothing is half-written; run again while
    the server comes back within the window, it waits, then finishes every image, with one
    vector per detection and none twice."""
    monkeypatch.setenv("WORKBENCH_CHROMA_URL", own_chroma_server.url)
    monkeypatch.delenv("WORKBENCH_CHROMA_DATABASE", raising=False)
    wb = Workbench.open(tmp_path / "ws", chroma_retry_s=1)
    collection, version = _demo_collection(wb)
    images = wb.collections.count_objects(collection)
    own_chroma_server.stop()
    with pytest.raises(JobFailed) as failed:
        wb.detection.run(collection.name, version.version)
    assert f"cannot reach the Chroma server at {own_chroma_server.url}" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert wb.detection.count_documents(collection, version.key) == 0  # vectors go first

    resumed = Workbench.open(tmp_path / "ws", chroma_retry_s=120)
    restart = threading.Timer(3.0, own_chroma_server.start)
    restart.start()
    try:
        job = resumed.detection.run(collection.name, version.version)
    finally:
        restart.join()
    assert job.status == "done" and job.result["documents"] == images
    ids, on_server = _vector_ids(resumed, collection, version)
    assert len(ids) > 0 and len(set(ids)) == len(ids) == on_server


@pytest.mark.slow
@pytest.mark.postgres
def test_the_demo_runs_through_postgres_a_chroma_server_and_a_shared_blob_root(
        tmp_path, monkeypatch, chroma_server):
    """The scale-out deployment on one machine, as docs/scale-out.md sets it up: metadata
    in Postgres, vectors on the Chroma server, blobs under a shared root. ``workbench demo``
    runs through them, and a second host (another workspace folder with the same settings)
    passes ``workbench doctor`` once the shared models folder is linked, and sees the same
    images and vectors."""
    import json

    from typer.testing import CliRunner

    from workbench.cli import app

    shared = tmp_path / "shared-blobs"
    monkeypatch.setenv("WORKBENCH_BLOB_ROOT", str(shared))
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "host-a"))  # --home sets it: restored
    runner = CliRunner()
    demo = runner.invoke(app, ["--home", str(tmp_path / "host-a"), "--json", "demo",
                               "--scale", "0.05"])
    assert demo.exit_code == 0, demo.output
    result = json.loads(demo.stdout)
    assert result["documents"] == result["accepted"] > 0
    # Host B has its own workspace folder: the models host A registered are not there
    # until the shared models folder is linked in (host A's stands in for it here).
    doctor = runner.invoke(app, ["--home", str(tmp_path / "host-b"), "doctor", "--json"])
    assert doctor.exit_code == 1, doctor.output
    failed = [c["name"] for c in json.loads(doctor.stdout)["checks"] if not c["ok"]]
    assert failed == ["models"]
    (tmp_path / "host-b").mkdir(exist_ok=True)
    (tmp_path / "host-b" / "models").symlink_to(tmp_path / "host-a" / "models")
    doctor = runner.invoke(app, ["--home", str(tmp_path / "host-b"), "doctor", "--json"])
    assert doctor.exit_code == 0, doctor.output
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["metadata"]["detail"].startswith("postgresql ")
    assert "migrations current" in checks["metadata"]["detail"]
    assert "Chroma server 1." in checks["vectors"]["detail"]
    assert chroma_server.url in checks["vectors"]["detail"]
    assert f"shared root {shared.resolve()} writable" in checks["blobs"]["detail"]

    other_host = Workbench.open(tmp_path / "host-b")
    collection = other_host.collections.get(result["collection"])
    version = other_host.registry.get(*result["model"].split("@"))
    ids, on_server = _vector_ids(other_host, collection, version)
    assert len(ids) == result["detections"] == on_server
    blobs = [p for p in shared.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    assert len(blobs) == result["accepted"]
    assert not (tmp_path / "host-a" / "blobs").exists()
    assert not (tmp_path / "host-a" / "vectors").exists()
    obj = other_host.buckets.objects(other_host.buckets.get("shapeworld"), limit=1)[0]
    assert other_host.image_path(obj).parent.parent.parent == shared
