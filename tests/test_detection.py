"""Collections and batch runs: one document per image per version, resumable, coexisting."""

import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from tests.conftest import write_images
from workbench import Workbench
from workbench.detection import DetectParams
from workbench.errors import NotFoundError, ValidationError
from workbench.store import tables as t

FAST = DetectParams(imgsz=320, batch_size=4)


@pytest.fixture
def detect_ws(wb, starter_weights, shapeworld_images, tmp_path):
    wb.buckets.create("scenes")
    blank = tmp_path / "blank"
    blank.mkdir()
    from PIL import Image

    Image.new("RGB", (320, 240), (235, 235, 235)).save(blank / "empty.png")
    wb.ingest.run("scenes", [shapeworld_images, blank])
    wb.registry.register_yolo(starter_weights, lineage={"imgsz": 320})
    wb.collections.create("scenes", ["scenes"])
    return wb


def _counts(wb, key):
    with wb.db.read() as conn:
        docs = conn.execute(sa.select(sa.func.count()).select_from(t.documents).where(
            t.documents.c.extractor_key == key)).scalar()
        dets = conn.execute(sa.select(sa.func.count()).select_from(t.detections).where(
            t.detections.c.extractor_key == key)).scalar()
    return docs, dets


def test_a_batch_run_makes_documents_detections_and_vectors(detect_ws):
    wb = detect_ws
    job = wb.detection.run("scenes", params=FAST)
    key = "yolo_detector@1.0.0"
    docs, dets = _counts(wb, key)
    assert docs == 7 == job.result["documents"]  # the blank image is a document too
    assert dets == job.result["detections_now"] > 0
    version = wb.registry.get(key)
    assert wb.vectors.count(version.feature_uri("detection_embedding")) == dets
    assert wb.vectors.count(version.feature_uri("image_embedding")) == docs
    collection = wb.collections.get("scenes")
    found = wb.detection.detections(collection, key)
    for det in found:
        x1, y1, x2, y2 = det.xyxy
        assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240
    with wb.db.read() as conn:  # each image's uncertainty, written with it (image review)
        stored = dict(conn.execute(sa.select(t.documents.c.id, t.documents.c.uncertainty)).all())
    expected = dict.fromkeys(stored, 0.0)
    for det in found:
        expected[det.document_id] += 1 - abs(2 * det.confidence - 1)
    assert stored == pytest.approx(expected)
    high = wb.detection.detections(collection, key, min_conf=0.8)
    assert all(d.confidence >= 0.8 for d in high) and len(high) <= len(found)
    (event,) = [e for e in wb.events.recent() if e["type"] == "batch.completed"]
    assert event["payload"]["documents"] == 7 and event["payload"]["job_id"] == job.id
    # A second run finds nothing left to do.
    again = wb.detection.run("scenes", params=FAST)
    assert again.result["processed_now"] == 0 and _counts(wb, key) == (docs, dets)


def test_versions_coexist_with_their_own_feature_uris(detect_ws, starter_weights):
    wb = detect_ws
    wb.detection.run("scenes", params=FAST)
    wb.registry.register_yolo(starter_weights, parent_version="1.0.0")
    wb.detection.run("scenes", "2.0.0", params=FAST)
    collection = wb.collections.get("scenes")
    assert wb.collections.versions_run(collection) == ["yolo_detector@1.0.0",
                                                       "yolo_detector@2.0.0"]
    assert _counts(wb, "yolo_detector@1.0.0") == _counts(wb, "yolo_detector@2.0.0")
    assert collection.active_version == "1.0.0"
    assert wb.collections.set_active_version("scenes", "2.0.0").active_version == "2.0.0"


def test_bad_requests_are_explained(detect_ws):
    with pytest.raises(NotFoundError, match="no collection 'nope'"):
        detect_ws.detection.run("nope")
    with pytest.raises(NotFoundError, match="yolo_detector@7.0.0"):
        detect_ws.detection.run("scenes", "7.0.0")
    with pytest.raises(ValidationError, match=r"conf must be in \[0, 1\], got 1.5"):
        DetectParams(conf=1.5)
    with pytest.raises(ValidationError, match="at least one source bucket"):
        detect_ws.collections.create("empty", [])


@pytest.mark.slow
def test_a_detect_job_killed_with_sigkill_resumes_without_duplicates(
        home, tmp_path, starter_weights):
    n = 40
    write_images(tmp_path / "imgs", n)
    wb = Workbench.open(home)
    wb.buckets.create("b")
    wb.ingest.run("b", [tmp_path / "imgs"])
    version = wb.registry.register_yolo(starter_weights)
    wb.collections.create("c", ["b"])
    job = wb.detection.submit("c", params=DetectParams(imgsz=128, batch_size=1, conf=0.001, max_det=20))
    env = dict(os.environ, WORKBENCH_HOME=str(home))
    worker = subprocess.Popen([sys.executable, "-m", "workbench", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while wb.jobs.get(job.id).progress_done < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    killed = wb.jobs.get(job.id)
    assert killed.status == "running" and 8 <= killed.progress_done < n
    subprocess.run([sys.executable, "-m", "workbench", "worker", "--exit-when-idle"], env=env,
                   check=True, timeout=300, capture_output=True)
    done = wb.jobs.get(job.id)
    assert done.status == "done", done.error
    docs, dets = _counts(wb, version.key)
    assert docs == n and done.result["documents"] == n
    with wb.db.read() as conn:
        distinct = conn.execute(sa.select(sa.func.count(sa.distinct(
            t.documents.c.object_id)))).scalar()
    assert distinct == n
    assert wb.vectors.count(version.feature_uri("detection_embedding")) == dets
    assert wb.vectors.count(version.feature_uri("image_embedding")) == n


def _det(i, cls, xyxy):
    from workbench.domain import Detection

    return Detection(f"d{i}", "doc", "obj", "k", i, cls, 0.9, xyxy)


def test_diff_between_versions_pairs_boxes_by_iou():
    from workbench.detection import diff_detections

    base = [_det(0, "circle", (0, 0, 10, 10)), _det(1, "square", (20, 20, 30, 30)),
            _det(2, "square", (50, 50, 60, 60)), _det(3, "circle", (80, 80, 90, 90))]
    candidate = [_det(0, "circle", (0, 0, 10, 10)), _det(1, "star", (20, 20, 30, 30)),
                 _det(2, "square", (51, 50, 61, 60)), _det(4, "triangle", (100, 0, 110, 10))]
    diff = diff_detections(base, candidate, "obj")
    assert diff.unchanged == 1
    assert [(a.class_name, b.class_name) for a, b in diff.class_changed] == [("square", "star")]
    assert [(a.id, b.id) for a, b, _ in diff.moved] == [("d2", "d2")]
    assert [d.id for d in diff.removed] == ["d3"] and [d.id for d in diff.added] == ["d4"]


def test_diff_over_a_collection(detect_ws, starter_weights):
    wb = detect_ws
    wb.detection.run("scenes", params=FAST)
    wb.registry.register_yolo(starter_weights, parent_version="1.0.0")
    wb.detection.run("scenes", "2.0.0", params=DetectParams(imgsz=256, batch_size=4))
    diffs = wb.detection.diff(wb.collections.get("scenes"), "yolo_detector@1.0.0",
                              "yolo_detector@2.0.0")
    assert len(diffs) == 7
    total_base = sum(d.unchanged + len(d.removed) + len(d.class_changed) + len(d.moved)
                     for d in diffs)
    assert total_base == _counts(wb, "yolo_detector@1.0.0")[1]


def test_a_run_over_a_chosen_subset(detect_ws):
    wb = detect_ws
    objects = wb.buckets.objects(wb.buckets.get("scenes"))
    chosen = [o.id for o in objects[:3]]
    job = wb.detection.run("scenes", params=FAST, object_ids=chosen)
    assert job.result["processed_now"] == 3
    assert (job.progress_done, job.progress_total) == (3, 3)
    assert _counts(wb, "yolo_detector@1.0.0")[0] == 3
    assert wb.detection.run("scenes", params=FAST).result["processed_now"] == 4
