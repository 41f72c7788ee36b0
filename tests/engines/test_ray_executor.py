"""Batch detection on Ray (``WORKBENCH_EXECUTOR=ray``) against a real local Ray cluster.

The module starts its own cluster (``ray start --head --block`` on 127.0.0.1 with 2 CPUs and
a free port, in a temporary folder) and stops it when it is done; the tests' process joins
it as the driver through ``WORKBENCH_RAY_ADDRESS``, as a deployment's workers would. The
workspace is the demo's (ShapeWorld scenes and the shipped starter detector), small: its
images run at 320 pixels.

Marked ``ray``: left out of a plain ``pytest`` (tests/engines/conftest.py); CI runs them in
``.ci/run`` after the Postgres suites. The plan and the missing-install error need no
cluster and run everywhere.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tests.conftest import STARTER
from workbench import Workbench
from workbench.errors import JobFailed
from workbench.executors.ray_data import CPU_ACTOR_THREADS, ModelPool, RayPlan, plan_for
from workbench.params import DetectParams
from workbench.store import tables as t

PARAMS = DetectParams(imgsz=320, batch_size=4)
KEY = "yolo_detector@1.0.0"
RAY_CLI = Path(sys.executable).parent / "ray"


# -- no cluster needed ---------------------------------------------------------------------
@pytest.mark.parametrize(("resources", "device", "expected"), [
    ({"CPU": 2.0}, "auto", RayPlan(1, 1, 0, 2, 1)),
    ({"CPU": 16.0}, "auto", RayPlan(16 // CPU_ACTOR_THREADS, CPU_ACTOR_THREADS - 1, 0,
                                    CPU_ACTOR_THREADS, 1)),
    ({"CPU": 16.0, "GPU": 2.0}, "auto", RayPlan(2, 1, 1, None, 1)),
    ({"CPU": 16.0, "GPU": 2.0}, "cpu", RayPlan(16 // CPU_ACTOR_THREADS, CPU_ACTOR_THREADS - 1,
                                               0, CPU_ACTOR_THREADS, 1)),
    # Too small for an actor's CPU and a decode task's: they share the CPUs evenly.
    ({"CPU": 1.0}, "auto", RayPlan(1, 0.5, 0, 1, 0.5)),
    ({"CPU": 4.0, "GPU": 4.0}, "auto", RayPlan(4, 0.8, 1, None, 0.8)),
])
def test_the_plan_fits_the_cluster(resources, device, expected):
    plan = plan_for(resources, device)
    assert plan == expected
    # A decode task always fits beside the actors, which stay up between runs.
    assert plan.actors * plan.actor_cpus + plan.decode_cpus <= resources["CPU"]


@pytest.mark.parametrize("idle_s", [float("inf"), 1e308])
def test_an_idle_time_past_what_a_timer_can_wait_keeps_the_actors(idle_s):
    """``WORKBENCH_RAY_ACTOR_IDLE_S=inf`` (or a huge number) keeps the actors while the worker
    lives; a timer that long failed in its thread (OverflowError) after the run."""
    pool = ModelPool(ray=None, key=(), actors=[], holder=None)
    ModelPool._lock.acquire()  # as acquire() leaves it for the run
    pool.release_after(idle_s)
    assert pool._timer is None and not ModelPool._lock.locked()


def test_a_missing_ray_install_is_one_clear_line(tmp_path, monkeypatch):
    wb = Workbench.open(tmp_path / "ws", executor="ray")
    wb.demo.load(scale=0.05)
    wb.demo.register_starter()
    wb.collections.create("c", ["shapeworld"])
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray gives
    with pytest.raises(JobFailed) as failed:
        wb.detection.run("c", params=PARAMS)
    message = wb.jobs.get(failed.value.job_id).message
    assert message.startswith("ConfigError: WORKBENCH_EXECUTOR=ray needs Ray Data")
    assert "pip install 'ray[data]==" in message and "\n" not in message
    assert _documents(wb, "c") == []  # nothing half-written
    wb.close()


# -- a real cluster ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-CPU Ray head on 127.0.0.1 for this module: its address. Stopped (SIGTERM to
    the ``ray start --block`` that owns it) when the module is done.

    Everything stays on the loopback: Ray replaces 127.0.0.1 by the machine's outward
    address unless it is told that this is a one-machine cluster (the switch it reads at
    import, so it is set before the first ``import ray``, in this process and its children).
    The cluster takes a token of its own (Ray's token authentication), given to every process
    through the environment: whatever ``~/.ray`` holds on this machine changes nothing.
    """
    if not RAY_CLI.exists():
        pytest.skip(f"Ray is not installed in this environment ({RAY_CLI} is missing)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        patch.setenv("RAY_AUTH_MODE", "token")
        patch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        yield from _ray_head()


def _ray_head():
    root = Path(tempfile.mkdtemp(prefix="wb-ray-"))  # short: Ray's socket paths have a limit
    port = _free_port()
    head = subprocess.Popen(
        [str(RAY_CLI), "start", "--head", "--block", "--num-cpus", "2", "--num-gpus", "0",
         "--node-ip-address", "127.0.0.1", "--port", str(port), "--temp-dir", str(root),
         "--include-dashboard", "false", "--disable-usage-stats",
         "--object-store-memory", str(500 * 2**20)],
        stdout=open(root / "head.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        _wait_for_head(head, address, root)
        yield address
    finally:
        import ray

        ray.shutdown()
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops what it started
            try:
                head.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_head(head: subprocess.Popen, address: str, root: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"`ray start` exited {head.returncode}:\n"
                               f"{(root / 'head.log').read_text()[-2000:]}")
        status = subprocess.run([str(RAY_CLI), "status", "--address", address],
                                capture_output=True, text=True)
        if status.returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray head at {address} did not come up in 120 s:\n"
                       f"{(root / 'head.log').read_text()[-2000:]}")


@pytest.fixture
def demo_home(tmp_path, monkeypatch, ray_cluster) -> Iterator[Path]:
    """A demo workspace (30 scenes, the starter registered) with two collections over its
    images, ``local`` and ``ray``; this process and the workers it starts join the cluster."""
    monkeypatch.setenv("WORKBENCH_RAY_ADDRESS", ray_cluster)
    home = tmp_path / "ws"
    wb = Workbench.open(home)
    wb.demo.load(scale=0.2)
    wb.demo.register_starter()
    wb.collections.create("local", ["shapeworld"])
    wb.collections.create("ray", ["shapeworld"])
    wb.close()
    yield home
    ModelPool.stop_current()  # this process's model actors hold a CPU the next test needs


def _documents(wb, collection: str) -> list:
    with wb.db.read() as conn:
        return conn.execute(sa.select(t.documents).where(
            t.documents.c.collection_id == wb.collections.get(collection).id)
            .order_by(t.documents.c.object_id)).all()


def _detections(wb, collection: str) -> dict[str, list]:
    """Per image, its detections in order, with their detection vectors."""
    found = wb.detection.detections(wb.collections.get(collection), KEY)
    uri = wb.registry.get(KEY).feature_uri("detection_embedding")
    vectors = wb.vectors.get_by_id(uri, [d.embedding_id for d in found])
    per_image: dict[str, list] = {}
    for det in found:
        per_image.setdefault(det.object_id, []).append((det, vectors[det.embedding_id]))
    return per_image


def _image_vectors(wb, collection: str) -> dict[str, np.ndarray]:
    uri = wb.registry.get(KEY).feature_uri("image_embedding")
    documents = _documents(wb, collection)
    found = wb.vectors.get_by_id(uri, [d.id for d in documents])
    return {d.object_id: found[d.id] for d in documents}


def _assert_complete_and_unique(wb, collection: str, images: int) -> None:
    """Every image once, every detection once, and one vector for each."""
    documents = _documents(wb, collection)
    assert len(documents) == images == len({d.object_id for d in documents})
    found = wb.detection.detections(wb.collections.get(collection), KEY)
    assert len({d.id for d in found}) == len(found) == sum(d.n_detections for d in documents)
    uri = wb.registry.get(KEY).feature_uri("detection_embedding")
    assert len(wb.vectors.get_by_id(uri, [d.embedding_id for d in found])) == len(found)
    assert len(_image_vectors(wb, collection)) == images


@pytest.mark.ray
def test_a_ray_run_gives_exactly_what_the_local_run_gives(demo_home):
    local = Workbench.open(demo_home)
    local_job = local.detection.run("local", params=PARAMS)
    expected_docs = {d.object_id: d for d in _documents(local, "local")}
    expected = _detections(local, "local")
    expected_images = _image_vectors(local, "local")
    local.close()

    wb = Workbench.open(demo_home, executor="ray")
    seen = []
    job = wb.detection.run("ray", params=PARAMS, listener=lambda j: seen.append(j.message))
    assert job.status == "done", job.error
    assert job.result["documents"] == job.result["processed_now"] == 30
    assert job.result["detections_now"] == local_job.result["detections_now"] > 0
    assert any("on Ray" in (m or "") for m in seen)  # the progress said where it ran
    got_docs = {d.object_id: d for d in _documents(wb, "ray")}
    assert got_docs.keys() == expected_docs.keys()
    for object_id, doc in got_docs.items():
        assert doc.n_detections == expected_docs[object_id].n_detections
        assert doc.uncertainty == pytest.approx(expected_docs[object_id].uncertainty, abs=1e-4)
        assert doc.job_id == job.id
    got = _detections(wb, "ray")
    assert got.keys() == expected.keys()
    for object_id, pairs in got.items():
        assert len(pairs) == len(expected[object_id])
        for (det, vector), (want, want_vector) in zip(pairs, expected[object_id], strict=True):
            assert det.id.endswith(f"_{det.index}") and det.index == want.index
            assert det.class_name == want.class_name
            assert det.xyxy == pytest.approx(want.xyxy, abs=1e-4)
            assert det.confidence == pytest.approx(want.confidence, abs=1e-4)
            assert np.linalg.norm(vector) == pytest.approx(np.linalg.norm(want_vector), abs=1e-4)
            np.testing.assert_allclose(vector, want_vector, atol=1e-4)
    images = _image_vectors(wb, "ray")
    assert images.keys() == expected_images.keys()
    for object_id, vector in images.items():
        np.testing.assert_allclose(vector, expected_images[object_id], atol=1e-4)
    # Nothing is left: a second run processes nothing.
    assert wb.detection.run("ray", params=PARAMS).result["processed_now"] == 0
    wb.close()


@pytest.mark.ray
def test_a_ray_run_is_cancelled_between_batches_and_resumes(demo_home):
    wb = Workbench.open(demo_home, executor="ray")
    small = DetectParams(imgsz=320, batch_size=2)
    asked = []

    def cancel_after_first_batch(job):
        if job.progress_done > 0 and not asked and job.status == "running":
            asked.append(wb.jobs.cancel(job.id))

    job = wb.detection.run("ray", params=small, listener=cancel_after_first_batch)
    assert asked and job.status == "cancelled", (job.status, job.message)
    kept = len(_documents(wb, "ray"))
    assert 0 < kept < 30 and kept == job.progress_done
    again = wb.detection.run("ray", params=small)
    assert again.status == "done"
    assert again.result["processed_now"] == 30 - kept
    _assert_complete_and_unique(wb, "ray", 30)
    wb.close()


def _model_actors() -> list[dict]:
    """The cluster's live Ray Data map actors (where the models run), from Ray's own table."""
    import ray._private.state

    return [a for a in ray._private.state.actors().values()
            if "ModelActor" in a["ActorClassName"] and a["State"] == "ALIVE"]


@pytest.mark.ray
def test_a_model_actor_killed_mid_run_is_replaced_and_nothing_is_doubled(demo_home):
    wb = Workbench.open(demo_home, executor="ray")
    killed = []

    def kill_the_model_once(job):
        if job.progress_done > 0 and not killed:
            (actor,) = _model_actors()
            os.kill(actor["Pid"], signal.SIGKILL)  # mid-run: the next batches were in flight
            killed.append(actor)

    job = wb.detection.run("ray", params=DetectParams(imgsz=320, batch_size=2),
                           listener=kill_the_model_once)
    assert killed and job.status == "done", job.error
    assert job.result["processed_now"] == 30
    _assert_complete_and_unique(wb, "ray", 30)
    wb.close()


@pytest.mark.ray
def test_a_workers_next_run_of_the_model_finds_its_actors_loaded(demo_home):
    """The model actors outlive a run: the next run of the same version uses them (no new
    actor, no model load); another version replaces them; with ``ray_actor_idle_s`` 0 they
    stop with the run."""
    wb = Workbench.open(demo_home, executor="ray")
    wb.collections.create("again", ["shapeworld"])
    messages: list[str] = []
    wb.detection.run("ray", params=PARAMS, listener=lambda j: messages.append(j.message or ""))
    first = [a["ActorID"] for a in _model_actors()]
    assert len(first) == 1 and any("starting 1 model actor" in m for m in messages)
    messages.clear()
    job = wb.detection.run("again", params=PARAMS,
                           listener=lambda j: messages.append(j.message or ""))
    assert job.result["processed_now"] == 30
    assert [a["ActorID"] for a in _model_actors()] == first
    assert not any("starting" in m for m in messages)
    _assert_complete_and_unique(wb, "again", 30)
    wb.close()

    wb = Workbench.open(demo_home, executor="ray", ray_actor_idle_s=0)
    wb.registry.register_yolo(str(STARTER), version="2.0.0")
    job = wb.detection.run("ray", version="2.0.0", params=PARAMS)
    assert job.result["processed_now"] == 30
    deadline = time.monotonic() + 30  # ray.kill is asynchronous
    while _model_actors() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _model_actors() == []  # the 1.0.0 actor made way, the 2.0.0 one stopped after
    wb.close()


@pytest.mark.ray
@pytest.mark.slow
def test_a_driver_killed_mid_run_is_resumed_by_the_next_worker(demo_home):
    """SIGKILL of the job's process (the Ray driver) halfway; the next worker resumes it."""
    wb = Workbench.open(demo_home, executor="ray")
    job = wb.detection.submit("ray", params=DetectParams(imgsz=320, batch_size=2))
    env = {**os.environ, "WORKBENCH_HOME": str(demo_home), "WORKBENCH_EXECUTOR": "ray"}
    worker = subprocess.Popen([sys.executable, "-m", "workbench", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while wb.jobs.get(job.id).progress_done < 6 and time.monotonic() < deadline:
            assert worker.poll() is None, "the worker died by itself"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    cut = wb.jobs.get(job.id)
    kept = len(_documents(wb, "ray"))
    assert cut.status == "running" and 6 <= cut.progress_done <= kept < 30, (cut, kept)
    resumed = subprocess.run([sys.executable, "-m", "workbench", "worker", "--exit-when-idle"],
                             env=env, timeout=300, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    done = wb.jobs.get(job.id)
    assert done.status == "done", done.error
    assert done.result["processed_now"] == 30 - kept  # only what was left
    assert done.result["documents"] == 30
    _assert_complete_and_unique(wb, "ray", 30)
    wb.close()


@pytest.mark.ray
def test_an_unreachable_cluster_is_one_clear_line(tmp_path, monkeypatch):
    import ray

    ray.shutdown()  # a connection from an earlier test would be reused
    monkeypatch.setenv("WORKBENCH_RAY_ADDRESS", f"127.0.0.1:{_free_port()}")
    wb = Workbench.open(tmp_path / "ws", executor="ray")
    wb.demo.load(scale=0.05)
    wb.demo.register_starter()
    wb.collections.create("c", ["shapeworld"])
    with pytest.raises(JobFailed) as failed:
        wb.detection.run("c", params=PARAMS)
    message = wb.jobs.get(failed.value.job_id).message
    assert message.startswith("ConfigError: could not start or join the Ray cluster at")
    assert "ray start --head" in message and "\n" not in message
    wb.close()


@pytest.mark.ray
@pytest.mark.postgres
@pytest.mark.chroma_server
def test_the_demo_runs_through_postgres_a_chroma_server_and_ray(tmp_path, monkeypatch,
                                                                ray_cluster, chroma_server):
    """The whole scale-out deployment of docs/scale-out.md at once: metadata in Postgres,
    vectors on the Chroma server, blobs under a shared root, and the demo's batch run on the
    Ray cluster. ``workbench doctor`` passes on it, the run said it ran on Ray, and its
    documents, detections and vectors are where the settings put them, once each."""
    import json

    from typer.testing import CliRunner

    from workbench.cli import app

    shared = tmp_path / "shared-blobs"
    home = tmp_path / "host-a"
    for name, value in (("WORKBENCH_BLOB_ROOT", str(shared)), ("WORKBENCH_HOME", str(home)),
                        ("WORKBENCH_EXECUTOR", "ray"), ("WORKBENCH_RAY_ADDRESS", ray_cluster)):
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    doctor = runner.invoke(app, ["--home", str(home), "doctor", "--json"])
    assert doctor.exit_code == 0, doctor.output
    checks = {c["name"]: c["detail"] for c in json.loads(doctor.stdout)["checks"]}
    assert checks["metadata"].startswith("postgresql ")
    assert chroma_server.url in checks["vectors"]
    assert checks["executor"].startswith("ray") and ray_cluster in checks["executor"]
    demo = runner.invoke(app, ["--home", str(home), "--json", "demo", "--scale", "0.05"])
    assert demo.exit_code == 0, demo.output
    result = json.loads(demo.stdout)
    assert result["documents"] == result["accepted"] > 0
    assert len(_model_actors()) == 1  # the demo's batch run started one, and keeps it
    ModelPool.stop_current()

    wb = Workbench.open(home)
    assert wb.settings.executor == "ray" and wb.db.engine.dialect.name == "postgresql"
    (job,) = [j for j in wb.jobs.list() if j.kind == "detect"]
    assert job.status == "done" and job.result["processed_now"] == result["accepted"]
    collection = wb.collections.get(result["collection"])
    documents = _documents(wb, result["collection"])
    assert len(documents) == len({d.object_id for d in documents}) == result["accepted"]
    found = wb.detection.detections(collection, result["model"])
    assert len({d.id for d in found}) == len(found) == result["detections"]
    uri = wb.registry.get(result["model"]).feature_uri("detection_embedding")
    assert len(wb.vectors.get_by_id(uri, [d.embedding_id for d in found])) == len(found)
    assert wb.vectors.count(uri) == len(found)  # on the server: no vector twice
    assert not (home / "blobs").exists() and not (home / "vectors").exists()
    blobs = [p for p in shared.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    assert len(blobs) == result["accepted"]
    wb.close()
