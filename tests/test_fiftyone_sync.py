"""FiftyOne sync: real FiftyOne and its mongod, real detections by the starter model, truth
from a simulated reviewer; boxes back in xyxy, incremental re-sync, the cross-check."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa

from tests.conftest import REPO
from workbench.boxes import fiftyone_to_xyxy
from workbench.detection import document_id
from workbench.errors import ConfigError, NotFoundError, ValidationError
from workbench.fiftyone_sync import (
    CROSS_CHECK_TOLERANCE,
    GROUND_TRUTH,
    dataset_name,
    prediction_field,
    version_slug,
)
from workbench.store import tables as t

KEY = "yolo_detector@1.0.0"
PRED = prediction_field("1.0.0")
EMBEDDING = "embedding_v1_0_0"


@pytest.fixture
def scenes(tmp_path):
    """Six small cluttered scenes with occlusion, on which the starter makes mistakes."""
    from workbench.demo.shapeworld import SceneConfig, write_dataset

    config = SceneConfig(width=320, height=240, clutter=3, occlusion=0.3, min_objects=3)
    return write_dataset(tmp_path / "scenes", config, 6, seed=3)


def _detect_and_review(wb, scenes, images):
    from workbench.demo.reviewer import GroundTruth, SimulatedReviewer
    from workbench.detection import DetectParams

    wb.ingest.run("cams", images, metadata={"camera_id": "cam_1"})
    wb.detection.run("cams", params=DetectParams(imgsz=320, conf=0.1, batch_size=4))
    SimulatedReviewer(wb, GroundTruth.from_datasets([scenes])).review_images(
        "cams", budget=500, order="random")


@pytest.fixture
def fo_ws(wb, scenes, starter_weights):
    """Four of the six scenes ingested, detected and every image reviewed to completion."""
    wb.buckets.create("cams", {"properties": {"image": {"type": "image"},
                                              "camera_id": {"type": "text"}}})
    wb.registry.register_yolo(starter_weights, lineage={"imgsz": 320})
    wb.collections.create("cams", ["cams"])
    _detect_and_review(wb, scenes, sorted((scenes / "images").iterdir())[:4])
    return wb


@pytest.fixture
def name():
    """A dataset name of this test's own, deleted afterwards."""
    unique = f"wbtest-{uuid.uuid4().hex[:10]}"
    yield unique
    import fiftyone as fo

    if fo.dataset_exists(unique):
        fo.delete_dataset(unique)


def _by_object(dataset):
    return {s.wb_object_id: s for s in dataset}


def _verdicts(wb):
    """Newest live verdict per detection, from the workspace."""
    with wb.db.read() as conn:
        rows = conn.execute(sa.select(t.annotations.c.document_id, t.annotations.c.label)
                            .where(t.annotations.c.deleted_at.is_(None))
                            .order_by(t.annotations.c.created_at, t.annotations.c.id)).all()
    return {r.document_id: r.label for r in rows if r.label not in ("missed", "no_objects")}


@pytest.mark.slow
def test_sync_round_trips_samples_boxes_verdicts_truth_and_embeddings(fo_ws, name):
    import fiftyone as fo

    wb = fo_ws
    collection = wb.collections.get("cams")
    report = wb.fiftyone.sync("cams", dataset=name)
    assert (report.added, report.updated, report.unchanged, report.samples) == (4, 0, 0, 4)
    assert report.fields == (PRED, EMBEDDING)
    dataset = fo.load_dataset(name)
    assert dataset.persistent and dataset.info["workbench_collection_id"] == collection.id
    samples = _by_object(dataset)
    objects = {o.id: o for o in wb.buckets.objects(wb.buckets.get("cams"))}
    assert set(samples) == set(objects)

    verdicts = _verdicts(wb)
    truth = wb.truth.images(collection.id, states=("complete",))
    assert len(truth) == 4
    uri = wb.registry.get(KEY).feature_uri("image_embedding")
    tags = Counter()
    for object_id, sample in samples.items():
        obj = objects[object_id]
        assert sample.filepath == str(wb.image_path(obj).resolve())
        assert (sample.metadata.width, sample.metadata.height) == (obj.width, obj.height)
        assert sample.camera_id == "cam_1" and sample.bucket == "cams"
        expected = wb.detection.detections(collection, KEY, object_ids=[object_id])
        got = sample[PRED].detections
        assert [d.detection_id for d in got] == [d.id for d in expected]
        for mine, theirs in zip(expected, got, strict=True):
            assert theirs.label == mine.class_name
            assert theirs.confidence == pytest.approx(mine.confidence)
            assert fiftyone_to_xyxy(theirs.bounding_box, obj.width, obj.height) == \
                pytest.approx(mine.xyxy, abs=1e-3)
            assert theirs.tags == ([verdicts[mine.id]] if mine.id in verdicts else [])
            tags.update(theirs.tags)
        if object_id in truth:
            boxes = sample[GROUND_TRUTH].detections
            assert [b.label for b in boxes] == [b.cls for b in truth[object_id].objects]
            for box, labelled in zip(boxes, truth[object_id].objects, strict=True):
                assert fiftyone_to_xyxy(box.bounding_box, obj.width, obj.height) == \
                    pytest.approx(labelled.xyxy, abs=1e-3)
                assert box.source == labelled.label
        else:
            assert sample[GROUND_TRUTH] is None
        # The image embedding is stored under the image's document id.
        (vector,) = wb.vectors.get(uri, [document_id(collection.id, object_id, KEY)])
        assert sample[EMBEDDING].tolist() == pytest.approx(vector.tolist())
    # The reviewer confirmed and rejected boxes: both tags reached FiftyOne.
    assert tags["confirmed"] and tags["false_positive"], tags
    assert sum(len(s[GROUND_TRUTH].detections) for s in samples.values()
               if s[GROUND_TRUTH] is not None) > 0
    assert "reviewed" in next(iter(samples.values())).tags


@pytest.mark.slow
def test_resync_adds_new_images_and_updates_only_changed_samples(fo_ws, scenes, name):
    import fiftyone as fo

    wb = fo_ws
    collection = wb.collections.get("cams")
    wb.fiftyone.sync("cams", dataset=name)
    before = {s.wb_object_id: (s.id, s.last_modified_at) for s in fo.load_dataset(name)}
    again = wb.fiftyone.sync("cams", dataset=name)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 4)

    # One verdict changes on one image; two new images arrive, are detected and reviewed.
    changed = next(d for d in wb.detection.detections(collection, KEY)
                   if _verdicts(wb).get(d.id) == "confirmed")
    wb.annotations.create(document_id=changed.id, collection_id=collection.id,
                          label="false_positive")
    _detect_and_review(wb, scenes, sorted((scenes / "images").iterdir())[4:])
    seen = []
    report = wb.fiftyone.sync("cams", dataset=name,
                              progress=lambda done, total, message: seen.append((done, total)))
    assert (report.added, report.updated, report.unchanged, report.samples) == (2, 1, 3, 6)
    assert seen[-1] == (3, 3)

    after = {s.wb_object_id: s for s in fo.load_dataset(name)}
    assert len(after) == 6
    for object_id, (sample_id, modified) in before.items():
        assert after[object_id].id == sample_id  # updated in place, never re-added
        if object_id == changed.object_id:
            assert after[object_id].last_modified_at > modified
            (box,) = [d for d in after[object_id][PRED].detections
                      if d.detection_id == changed.id]
            assert box.tags == ["false_positive"]
        else:
            assert after[object_id].last_modified_at == modified  # untouched
    new = set(after) - set(before)
    assert len(new) == 2 and all(after[i][PRED] is not None for i in new)


@pytest.mark.slow
def test_taxonomy_labels_and_clusters_become_detection_attributes(fo_ws, name):
    import fiftyone as fo

    wb = fo_ws
    wb.references.create("refs", "cams")
    wb.references.promote("refs")
    wb.taxonomies.create("shapes", "refs", threshold=0.5)
    wb.taxonomies.apply("shapes")
    run = wb.clusters.run("cams", "kmeans", {"n_clusters": 2, "n_init": 1})
    wb.fiftyone.sync("cams", dataset=name)

    labels = {a["detection_id"]: a["label"] for a in wb.taxonomies.assignments("shapes",
                                                                               limit=10_000)}
    clusters = {m["detection_id"]: m["cluster"] for m in wb.clusters.members(run.id)}
    assert labels and clusters
    boxes = [d for s in fo.load_dataset(name) for d in s[PRED].detections]
    for box in boxes:
        assert box.taxonomy_shapes == labels[box.detection_id]
        assert box.cluster == clusters[box.detection_id]
        assert box.cluster_name == run.name_of(box.cluster)


@pytest.mark.slow
def test_fiftyone_evaluation_agrees_with_ours(fo_ws, name):
    wb = fo_ws
    wb.fiftyone.sync("cams", dataset=name)
    check = wb.fiftyone.cross_check("cams", dataset=name)
    assert check.images >= 3
    # Not a trivial agreement: the starter errs on night and cluttered scenes.
    assert check.workbench["fp"] + check.workbench["fn"] > 0
    assert 0 < check.workbench["map50_95"] < 1
    for metric in ("map50", "map50_95"):
        assert check.fiftyone[metric] == pytest.approx(check.workbench[metric],
                                                       abs=CROSS_CHECK_TOLERANCE), metric
    for count in ("tp", "fp", "fn"):
        assert check.fiftyone[count] == check.workbench[count], count
    assert check.agrees, check.summary()
    # The evaluation stays on the dataset for the App.
    dataset = wb.fiftyone.load("cams", name)
    assert check.eval_key in dataset.list_evaluations()


@pytest.mark.slow
def test_dataset_persists_across_processes_in_the_workspace_database(fo_ws, tmp_path):
    """The CLI syncs in one process; another process finds the dataset in the workspace."""
    home = fo_ws.home.resolve()
    fo_ws.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_")}
    unique = f"wbtest-{uuid.uuid4().hex[:10]}"
    cli = subprocess.run(
        [sys.executable, "-m", "workbench", "--home", str(home), "--json", "fiftyone", "cams",
         "--dataset", unique], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)["sync"]
    assert report["added"] == 4 and report["dataset"] == unique
    assert report["database_dir"] == str(home / "fiftyone-db")
    assert any((home / "fiftyone-db").iterdir())
    code = (
        "import json, sys\nfrom workbench import Workbench\n"
        f"wb = Workbench.open({str(home)!r})\n"
        f"dataset = wb.fiftyone.load('cams', {unique!r})\n"
        "import fiftyone as fo\n"
        "out = {'samples': len(dataset), 'persistent': dataset.persistent,\n"
        "       'database_dir': fo.config.database_dir}\n"
        "dataset.delete()\nprint(json.dumps(out))\n")
    reader = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=300)
    assert reader.returncode == 0, reader.stderr
    found = json.loads(reader.stdout.strip().splitlines()[-1])
    assert found == {"samples": 4, "persistent": True,
                     "database_dir": str(home / "fiftyone-db")}


# -- bad input -------------------------------------------------------------------------------
def test_an_unknown_collection_is_named(wb):
    with pytest.raises(NotFoundError, match="no collection 'nope'"):
        wb.fiftyone.sync("nope")


def test_a_collection_without_detections_says_what_to_run(review_wb):
    with review_wb.db.write() as conn:
        conn.execute(t.detections.delete())
        conn.execute(t.documents.delete())
    with pytest.raises(ValidationError, match="no detections yet.*workbench detect x"):
        review_wb.fiftyone.sync("x")


def test_a_port_in_use_is_refused_before_anything_starts(review_wb):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is in use"):
            review_wb.fiftyone.open_app("x", port=port)


def test_the_cli_refuses_an_unknown_collection(home):
    from typer.testing import CliRunner

    from workbench.cli import app

    result = CliRunner().invoke(app, ["--home", str(home), "fiftyone", "nope"])
    assert result.exit_code != 0 and isinstance(result.exception, NotFoundError)


@pytest.mark.parametrize(("version", "slug"), [("1.0.0", "v1_0_0"), ("2.1.0-rc.1", "v2_1_0_rc_1")])
def test_field_names_are_safe(version, slug):
    assert version_slug(version) == slug
    assert prediction_field(version) == f"pred_{slug}"
    assert dataset_name("shapeworld") == "workbench-shapeworld"


def test_the_page_helper_imports_without_loading_fiftyone():
    code = ("import sys\nfrom workbench.ui.fiftyone import open_in_fiftyone\n"
            "assert callable(open_in_fiftyone)\n"
            "print('fiftyone' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "False"
    for page in ("pages/2_Detect.py", "pages/6_Models.py"):
        assert "open_in_fiftyone(" in (REPO / page).read_text()


# -- bulk writes and the watermark -----------------------------------------------------------
IMAGE_URI = f"workbench://{KEY}/image_embedding"


@pytest.fixture
def reviewed(review_wb):
    """The hand-made workspace with verdicts (one correction), one image complete and in the
    gold set, image embeddings and a cluster run: every kind of field the sync writes."""
    import numpy as np

    wb = review_wb
    wb.annotations.create(document_id="obj_a_0", collection_id="col_x", label="confirmed")
    wb.annotations.create(document_id="obj_a_1", collection_id="col_x", label="corrected",
                          payload={"true_class": "triangle"})
    wb.annotations.create(document_id="doc_obj_a", collection_id="col_x", label="image_done")
    wb.annotations.create(document_id="obj_b_1", collection_id="col_x", label="false_positive")
    wb.truth.set_gold("x", ["obj_a"])
    documents = [f"doc_obj_{c}" for c in "abcd"]
    wb.vectors.upsert(IMAGE_URI, documents, np.eye(4, dtype="float32"))
    wb.clusters.run("x", "kmeans", {"n_clusters": 2, "n_init": 1})
    return wb


def _raw(dataset, sample_id):
    """A sample's document as the database holds it, without what differs by construction."""
    from bson import ObjectId

    document = dataset._sample_collection.find_one({"_id": ObjectId(sample_id)})
    volatile = {"_id", "_dataset_id", "_rand", "created_at", "last_modified_at"}

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "_id"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return {k: strip(v) for k, v in document.items() if k not in volatile}


@pytest.mark.slow
def test_bulk_written_samples_are_what_fiftyone_itself_writes(reviewed, name):
    """The sync writes documents, not fo.Sample objects: FiftyOne, given copies of the synced
    samples through its own add_samples, stores the same documents and declares the same
    schema."""
    import fiftyone as fo

    reviewed.fiftyone.sync("x", dataset=name)
    dataset = fo.load_dataset(name)
    samples = list(dataset)
    reference = fo.Dataset(f"{name}-reference")
    try:
        copies = [s.copy() for s in samples]
        reference.add_samples(copies, progress=False)
        for ours, theirs in zip(samples, copies, strict=True):
            assert _raw(dataset, ours.id) == _raw(reference, theirs.id)

        def schema(ds):
            return {k: (type(f).__name__, getattr(f, "document_type", None))
                    for k, f in ds.get_field_schema(flat=True).items()}

        assert schema(dataset) == schema(reference)
    finally:
        reference.delete()
    # Every kind of field was there to compare.
    by_object = _by_object(dataset)
    boxes = {d.detection_id: d for s in samples for d in s[PRED].detections}
    assert boxes["obj_a_1"].tags == ["corrected"] and boxes["obj_a_1"].true_class == "triangle"
    assert all(isinstance(d.cluster, int) and d.cluster_name for d in boxes.values())
    assert [b.label for b in by_object["obj_a"][GROUND_TRUTH].detections] == ["circle",
                                                                             "triangle"]
    assert {"gold", "reviewed"} <= set(by_object["obj_a"].tags)
    assert by_object["obj_b"].camera_id == "cam_2" and by_object["obj_b"].frame == 1
    assert by_object["obj_c"][EMBEDDING].tolist() == [0, 0, 1, 0]


@pytest.mark.slow
def test_a_resync_with_nothing_changed_reads_no_sample(reviewed, name, monkeypatch):
    import fiftyone as fo

    from workbench.fiftyone_sync import FiftyOneSync

    wb = reviewed
    first = wb.fiftyone.sync("x", dataset=name)
    assert not first.nothing_changed and first.added == 4
    modified = {s.id: s.last_modified_at for s in fo.load_dataset(name)}

    def no_reading(*args, **kwargs):
        raise AssertionError("a re-sync with nothing changed read the workspace's samples")

    monkeypatch.setattr(FiftyOneSync, "_snapshots", no_reading)
    # Reading the workspace (queues, stats, truth) changes nothing.
    wb.stats.report("col_x")
    wb.truth.counts("x")
    again = wb.fiftyone.sync("x", dataset=name)
    assert again.nothing_changed
    assert (again.added, again.updated, again.unchanged, again.removed, again.samples) == \
        (0, 0, 4, 0, 4)
    assert "nothing changed since the last sync" in again.summary()
    assert {s.id: s.last_modified_at for s in fo.load_dataset(name)} == modified
    monkeypatch.undo()

    # A sample deleted in FiftyOne is noticed (the dataset no longer holds what the sync
    # left) and written again.
    dataset = fo.load_dataset(name)
    dataset.delete_samples(dataset.first())
    restored = wb.fiftyone.sync("x", dataset=name)
    assert not restored.nothing_changed and (restored.added, restored.samples) == (1, 4)
    # A sample someone added in FiftyOne is compared against nothing, and left alone.
    fo.load_dataset(name).add_sample(fo.Sample(filepath="/elsewhere/mine.jpg"))
    report = wb.fiftyone.sync("x", dataset=name)
    assert (report.added, report.updated, report.removed, report.samples) == (0, 0, 0, 5)
    assert wb.fiftyone.sync("x", dataset=name).nothing_changed


def _box(dataset, detection_id):
    return next(d for s in dataset for d in (s[PRED].detections if s[PRED] else [])
                if d.detection_id == detection_id)


@pytest.mark.slow
def test_each_kind_of_change_reaches_fiftyone_after_the_watermark(reviewed, name):
    """One change at a time, each followed by a re-sync: none is taken for nothing changed,
    and each shows in the dataset."""
    import fiftyone as fo
    import numpy as np

    from workbench.store.metadata import utcnow

    wb = reviewed
    wb.fiftyone.sync("x", dataset=name)

    def resync():
        report = wb.fiftyone.sync("x", dataset=name)
        assert not report.nothing_changed
        return report, fo.load_dataset(name)

    # A new verdict, then a change of it, then its deletion.
    verdict = wb.annotations.create(document_id="obj_c_0", collection_id="col_x",
                                    label="confirmed")
    report, dataset = resync()
    assert report.updated == 1 and _box(dataset, "obj_c_0").tags == ["confirmed"]
    wb.annotations.update(verdict.id, label="false_positive")
    report, dataset = resync()
    assert report.updated == 1 and _box(dataset, "obj_c_0").tags == ["false_positive"]
    wb.annotations.delete(verdict.id)
    report, dataset = resync()
    assert report.updated == 1 and _box(dataset, "obj_c_0").tags == []

    # The gold set, by hand; a cluster renamed.
    wb.truth.set_gold("x", ["obj_a"], gold=False)
    report, dataset = resync()
    assert report.updated == 1 and "gold" not in _by_object(dataset)["obj_a"].tags
    run = wb.clusters.list("x", limit=1)[0]
    cluster = _box(dataset, "obj_a_0").cluster
    wb.clusters.rename(run.id, cluster, "round things")
    report, dataset = resync()
    assert _box(dataset, "obj_a_0").cluster_name == "round things"

    # A new image, detected by the same version.
    now = utcnow()
    with wb.db.write() as conn:
        conn.execute(t.objects.insert().values(
            id="obj_e", bucket_id="bkt_x", sha256="e" * 64, width=100, height=100,
            format="PNG", size_bytes=1, source="obj_e.png", metadata={"camera_id": "cam_9"},
            created_at=now))
        conn.execute(t.documents.insert().values(
            id="doc_obj_e", collection_id="col_x", object_id="obj_e", extractor_key=KEY,
            features={}, n_detections=1, created_at=now))
        conn.execute(t.detections.insert().values(
            id="obj_e_0", document_id="doc_obj_e", collection_id="col_x", object_id="obj_e",
            extractor_key=KEY, idx=0, class_name="square", confidence=0.8, x1=1, y1=2, x2=30,
            y2=40, embedding_id="obj_e_0"))
    wb.vectors.upsert(IMAGE_URI, ["doc_obj_e"], np.ones((1, 4), dtype="float32") / 2)
    report, dataset = resync()
    assert (report.added, report.updated, report.samples) == (1, 0, 5)
    new = _by_object(dataset)["obj_e"]
    assert [d.detection_id for d in new[PRED].detections] == ["obj_e_0"]
    assert new.camera_id == "cam_9" and new[EMBEDDING].tolist() == [0.5] * 4


@pytest.mark.slow
def test_a_new_detection_run_reaches_fiftyone(fo_ws, starter_weights, name):
    """A second version run over the collection (a real detection run, whose carried verdicts
    rewrite annotations too): every sample gains the version's predictions."""
    import fiftyone as fo

    from workbench.detection import DetectParams

    wb = fo_ws
    wb.fiftyone.sync("cams", dataset=name)
    assert wb.fiftyone.sync("cams", dataset=name).nothing_changed
    wb.registry.register_yolo(starter_weights, version="1.1.0", lineage={"imgsz": 320})
    wb.detection.run("cams", version="1.1.0", params=DetectParams(imgsz=320, conf=0.1,
                                                                 batch_size=4))
    report = wb.fiftyone.sync("cams", dataset=name)
    second = prediction_field("1.1.0")
    assert not report.nothing_changed and report.updated == 4
    assert second in report.fields and "embedding_v1_1_0" in report.fields
    collection = wb.collections.get("cams")
    for sample in fo.load_dataset(name):
        expected = wb.detection.detections(collection, "yolo_detector@1.1.0",
                                           object_ids=[sample.wb_object_id])
        assert [d.detection_id for d in sample[second].detections] == [d.id for d in expected]
    assert wb.fiftyone.sync("cams", dataset=name).nothing_changed


# Each a write the sync mirrors, made through the services: the watermark must move.
CHANGES = {
    "new verdict": lambda wb: wb.annotations.create(
        document_id="obj_c_0", collection_id="col_x", label="confirmed"),
    "verdict changed": lambda wb: wb.annotations.update(
        wb.annotations.list(document_id="obj_a_0").items[0].id, label="false_positive"),
    "verdict deleted": lambda wb: wb.annotations.delete(
        wb.annotations.list(document_id="obj_a_0").items[0].id),
    "image marked": lambda wb: wb.annotations.create(
        document_id="doc_obj_d", collection_id="col_x", label="no_objects"),
    "gold set by hand": lambda wb: wb.truth.set_gold("x", ["obj_a"], gold=False),
    "cluster renamed": lambda wb: wb.clusters.rename(
        wb.clusters.list("x", limit=1)[0].id, 0, "renamed"),
    "new cluster run": lambda wb: wb.clusters.run("x", "kmeans", {"n_clusters": 3,
                                                                  "n_init": 1}),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_watermark_moves_with_every_change_the_sync_mirrors(reviewed, change):
    wb = reviewed
    before = wb.fiftyone.watermark("x")
    assert wb.fiftyone.watermark("x") == before  # nothing written, the same mark
    CHANGES[change](wb)
    assert wb.fiftyone.watermark("x") != before, change


def test_the_watermark_moves_with_new_images_documents_and_taxonomy_labels(reviewed):
    from workbench.store.metadata import utcnow

    wb = reviewed
    marks = [wb.fiftyone.watermark("x")]
    now = utcnow()
    for table, row in [
        (t.objects, dict(id="obj_e", bucket_id="bkt_x", sha256="e" * 64, width=9, height=9,
                         format="PNG", size_bytes=1, source="e.png", metadata={},
                         created_at=now)),
        (t.documents, dict(id="doc_obj_e", collection_id="col_x", object_id="obj_e",
                           extractor_key=KEY, features={}, n_detections=0, created_at=now)),
    ]:
        with wb.db.write() as conn:
            conn.execute(table.insert().values(**row))
        marks.append(wb.fiftyone.watermark("x"))
    wb.references.create("refs", "x")
    wb.references.add("refs", ["obj_a_0"], true_class="circle")
    wb.taxonomies.create("shapes", "refs", threshold=0.1)
    wb.taxonomies.apply("shapes")
    marks.append(wb.fiftyone.watermark("x"))
    assert all(a != b for a, b in zip(marks, marks[1:])), marks
