"""A workspace made by the previous schema (0009) gets its ground truth from its annotations
when it is opened, and building it again gives the same rows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from workbench.store.metadata import MIGRATIONS_DIR, MetadataStore, head_revision


def _old_workspace(home):
    """Schema 0009 and rows as the previous version wrote them (no origin, no truth)."""
    from alembic import command
    from alembic.config import Config

    home.mkdir(parents=True)
    store = MetadataStore(f"sqlite:///{home / 'workbench.db'}", lock_dir=home)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0009")
        conn.commit()
    now = "2026-11-01 10:00:00"
    statements = [
        "INSERT INTO buckets VALUES ('bkt_1', 'b', '{}', '', :now)",
        "INSERT INTO objects (id, bucket_id, sha256, width, height, format, size_bytes, source,"
        " metadata, created_at) VALUES ('obj_1', 'bkt_1', 'aa', 100, 100, 'PNG', 1, '1.png',"
        " '{}', :now), ('obj_2', 'bkt_1', 'bb', 100, 100, 'PNG', 1, '2.png', '{}', :now)",
        "INSERT INTO extractor_versions (id, name, version, kind, spec, classes, lineage, "
        "metrics, notes, created_at) VALUES ('ext_1', 'yolo_detector', '1.0.0', 'yolo', '{}', "
        "'[\"circle\"]', '{}', '{}', '', :now)",
        "INSERT INTO collections VALUES ('col_1', 'c', 'yolo_detector', '1.0.0', "
        "'[\"bkt_1\"]', :now)",
        "INSERT INTO documents (id, collection_id, object_id, extractor_key, features, "
        "n_detections, created_at) VALUES ('doc_1', 'col_1', 'obj_1', 'yolo_detector@1.0.0', "
        "'{}', 2, :now), ('doc_2', 'col_1', 'obj_2', 'yolo_detector@1.0.0', '{}', 0, :now)",
        "INSERT INTO detections (id, document_id, collection_id, object_id, extractor_key, idx, "
        "class_name, confidence, x1, y1, x2, y2) VALUES "
        "('doc_1_0', 'doc_1', 'col_1', 'obj_1', 'yolo_detector@1.0.0', 0, 'circle', 0.9, "
        "0, 0, 20, 20), ('doc_1_1', 'doc_1', 'col_1', 'obj_1', 'yolo_detector@1.0.0', 1, "
        "'circle', 0.3, 50, 50, 70, 70)",
    ]
    annotations = [  # every box of obj_1 judged and a missed one drawn; obj_2 marked empty
        ("ann_1", "doc_1_0", "obj_1", "confirmed", "{}"),
        ("ann_2", "doc_1_1", "obj_1", "false_positive", "{}"),
        ("ann_3", "doc_1", "obj_1", "missed",
         '{"true_class": "star", "bbox": {"x": 80, "y": 80, "w": 10, "h": 10}}'),
        ("ann_4", "doc_2", "obj_2", "no_objects", "{}"),
    ]
    with store.write() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), {"now": now})
        for i, (id_, doc, obj, label, payload) in enumerate(annotations):
            conn.execute(sa.text(
                "INSERT INTO annotations (id, document_id, collection_id, object_id, "
                "extractor_key, label, reasoning, payload, author, revision, created_at, "
                "updated_at) VALUES (:id, :doc, 'col_1', :obj, 'yolo_detector@1.0.0', :label, "
                "'', :payload, 'me', 1, :t, :t)"),
                {"id": id_, "doc": doc, "obj": obj, "label": label, "payload": payload,
                 "t": f"2026-11-01 10:0{i}:00"})
    store.dispose()


def _rows(wb):
    from workbench.store import tables as t

    with wb.db.read() as conn:
        boxes = sorted((r.object_id, r.kind, r.class_name, r.x1, r.y1, r.x2, r.y2,
                        r.annotation_id) for r in conn.execute(sa.select(t.truth_boxes)))
        states = sorted((r.object_id, r.state, r.objects, r.negatives)
                        for r in conn.execute(sa.select(t.image_truth)))
    return boxes, states


def test_an_old_workspace_gets_its_ground_truth(tmp_path):
    from workbench import Workbench

    home = tmp_path / "ws"
    _old_workspace(home)
    wb = Workbench.open(home)
    assert wb.db.schema_version() == head_revision()
    boxes, states = _rows(wb)
    # Every box of obj_1 was judged, but nobody marked the image done: partly reviewed, not
    # training data. obj_2 was looked over and found empty: complete.
    assert states == [("obj_1", "partial", 2, 1), ("obj_2", "complete", 0, 0)]
    assert [b[:3] for b in boxes] == [("obj_1", "negative", "circle"),
                                      ("obj_1", "object", "circle"),
                                      ("obj_1", "object", "star")]
    assert {a.origin for a in wb.annotations.list(collection_id="col_1").items} == {"human"}
    # Built again, the same rows.
    wb.truth.refresh("c")
    assert _rows(wb) == (boxes, states)


def test_an_old_workspace_gets_each_images_uncertainty(tmp_path):
    """0011 fills in each document's uncertainty from its detections (the image-review
    queue's index): 0.9 counts 0.2, 0.3 counts 0.6, an image with nothing counts 0."""
    from workbench import Workbench
    from workbench.store import tables as t

    home = tmp_path / "ws"
    _old_workspace(home)
    wb = Workbench.open(home)
    with wb.db.read() as conn:
        rows = dict(conn.execute(sa.select(t.documents.c.id, t.documents.c.uncertainty)).all())
    assert rows["doc_1"] == pytest.approx(0.8)
    assert rows["doc_2"] == 0
