"""Ground truth per image: derived from annotations whatever version showed the boxes,
carried over to other versions' boxes, reverted by undo, one box per object, and a gold set
that is drawn once."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from workbench.errors import ValidationError
from workbench.store import tables as t
from workbench.store.metadata import utcnow
from workbench.truth import derive, gold_draw

T0 = datetime(2026, 1, 1)
V1, V2 = "yolo_detector@1.0.0", "yolo_detector@2.0.0"


def det(id_, cls, box, key=V1):
    return SimpleNamespace(id=id_, class_name=cls, x1=box[0], y1=box[1], x2=box[2], y2=box[3],
                           extractor_key=key)


def ann(id_, document_id, label, minute, key=V1, **payload):
    return SimpleNamespace(id=id_, document_id=document_id, extractor_key=key, label=label,
                           payload=payload, author="me", created_at=T0 + timedelta(minutes=minute))


DETS = {d.id: d for d in (
    det("a", "circle", (0, 0, 10, 10)), det("b", "square", (20, 20, 40, 40)),
    det("c", "triangle", (50, 50, 70, 70)),
    det("a2", "circle", (1, 0, 11, 10), key=V2),  # the same object, found by v2
)}


# (case, annotations, expected objects as (class, xyxy), negatives' detections, state)
CASES = [
    ("nothing", [], [], [], "unreviewed"),
    ("confirmed", [ann("1", "a", "confirmed", 1)], [("circle", (0, 0, 10, 10))], [],
     "partial"),
    ("corrected class and box", [ann("1", "b", "corrected", 1, true_class="star",
                                      bbox={"x": 30, "y": 30, "w": 10, "h": 10})],
     [("star", (25, 25, 35, 35))], [], "partial"),
    ("false positive", [ann("1", "c", "false_positive", 1)], [], ["c"], "partial"),
    ("missed", [ann("1", "doc", "missed", 1, true_class="star",
                    bbox={"x": 100, "y": 100, "w": 10, "h": 10})],
     [("star", (95, 95, 105, 105))], [], "partial"),
    ("the newest verdict counts", [ann("1", "a", "confirmed", 1),
                                   ann("2", "a", "false_positive", 2)], [], ["a"], "partial"),
    ("done", [ann("1", "a", "confirmed", 1), ann("2", "doc", "image_done", 2)],
     [("circle", (0, 0, 10, 10))], [], "complete"),
    ("nothing here", [ann("1", "doc", "no_objects", 1)], [], [], "complete"),
    ("one object across versions", [ann("1", "a", "confirmed", 1),
                                     ann("2", "a2", "confirmed", 2, key=V2)],
     [("circle", (1, 0, 11, 10))], [], "partial"),
    ("two overlapping objects drawn in one review",
     [ann("1", "doc", "missed", 1, true_class="circle", bbox={"x": 5, "y": 5, "w": 10, "h": 10}),
      ann("2", "doc", "missed", 2, true_class="circle", bbox={"x": 6, "y": 5, "w": 10, "h": 10})],
     [("circle", (0, 0, 10, 10)), ("circle", (1, 0, 11, 10))], [], "partial"),
    ("a missed box drawn again under v2 is one object",
     [ann("1", "doc", "missed", 1, true_class="star", bbox={"x": 5, "y": 5, "w": 10, "h": 10}),
      ann("2", "doc2", "missed", 2, key=V2, true_class="star",
          bbox={"x": 5.5, "y": 5, "w": 10, "h": 10})],
     [("star", (0.5, 0, 10.5, 10))], [], "partial"),
]


@pytest.mark.parametrize(("annotations", "objects", "negatives", "state"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_derive(annotations, objects, negatives, state):
    truth = derive("obj", annotations, DETS)
    assert [(b.cls, b.xyxy) for b in truth.objects] == [(c, tuple(map(float, x)))
                                                         for c, x in objects]
    assert [b.detection_id for b in truth.negatives] == negatives
    assert truth.state == state


def test_the_gold_draw_is_a_pure_function_of_the_bytes():
    draws = [gold_draw(f"{i:064x}") for i in range(2000)]
    assert all(0 <= d < 1 for d in draws)
    assert 0.15 < sum(d < 0.2 for d in draws) / len(draws) < 0.25
    assert gold_draw("ab" * 32) == gold_draw("ab" * 32)


# -- in a workspace: carry-over, undo, the gold set ------------------------------------------
@pytest.fixture
def two_versions(review_wb):
    """review_wb's v1 detections, and a v2 that found some of the same objects."""
    from workbench.extractors.yolo import yolo_spec

    wb = review_wb
    now = utcnow()
    with wb.db.write() as conn:
        conn.execute(t.extractor_versions.insert().values(
            id="ext_2", name="yolo_detector", version="2.0.0", kind="yolo",
            spec=yolo_spec("2.0.0", 4, 4).to_dict(), classes=["circle", "square", "triangle"],
            lineage={}, metrics={}, notes="", created_at=now))
        conn.execute(t.documents.insert().values(
            id="doc2_obj_a", collection_id="col_x", object_id="obj_a", extractor_key=V2,
            features={}, n_detections=3, created_at=now))
        # obj_a: v1 has a circle (0,0,20,30) at 0.95 and a square (10,0,30,30) at 0.40
        for i, (cls, box) in enumerate([("circle", (1, 0, 21, 20)),   # the v1 circle again
                                        ("triangle", (10, 0, 30, 30)),  # v1's square, renamed
                                        ("circle", (60, 60, 90, 90))]):  # something new
            conn.execute(t.detections.insert().values(
                id=f"v2_a_{i}", document_id="doc2_obj_a", collection_id="col_x",
                object_id="obj_a", extractor_key=V2, idx=i, class_name=cls, confidence=0.8,
                x1=box[0], y1=box[1], x2=box[2], y2=box[3]))
    return wb


def _carried(wb):
    with wb.db.read() as conn:
        rows = conn.execute(sa.select(t.annotations).where(
            t.annotations.c.origin == "carried")).all()
    return {r.document_id: (r.label, r.payload.get("true_class")) for r in rows}


def test_carry_over_to_a_new_version(two_versions):
    wb = two_versions
    confirm = wb.annotations.create(document_id="obj_a_0", collection_id="col_x",
                                    label="confirmed")
    wb.annotations.create(document_id="obj_a_1", collection_id="col_x", label="corrected",
                          payload={"true_class": "square"})
    # Partial: v2's matches are carried, the new circle stays unknown.
    assert _carried(wb) == {"v2_a_0": ("confirmed", "circle"),
                            "v2_a_1": ("corrected", "square")}
    carried = wb.annotations.list(document_id="v2_a_0", origin="carried").items[0]
    assert carried.payload["carried_from"] == confirm.id and carried.payload["iou"] > 0.5
    assert carried.author == f"carry:{V2}"
    # The queues skip what is known; stats count carried verdicts apart.

    report = wb.stats.report("col_x")
    assert report["total"] == 2 and report["carried"] == {"confirmed": 1, "corrected": 1}
    # Complete: v2's box that is no object is a false positive.
    wb.annotations.create(document_id="doc_obj_a", collection_id="col_x", label="image_done")
    assert _carried(wb)["v2_a_2"] == ("false_positive", None)
    # Undo the done mark: back to partial, the carried false positive goes with it.
    done = wb.annotations.list(label="image_done").items[0]
    wb.annotations.delete(done.id)
    assert "v2_a_2" not in _carried(wb)
    assert wb.truth.image("x", "obj_a").state == "partial"
    # A carried verdict is not a person's to change; its source is.
    current = wb.annotations.list(document_id="v2_a_0", origin="carried").items[0]
    with pytest.raises(ValidationError, match="carried over from the ground truth"):
        wb.annotations.update(current.id, label="false_positive")


def test_a_verdict_changed_later_changes_the_truth_and_what_is_carried(two_versions):
    wb = two_versions
    verdict = wb.annotations.create(document_id="obj_a_0", collection_id="col_x",
                                    label="confirmed")
    assert _carried(wb)["v2_a_0"] == ("confirmed", "circle")
    wb.annotations.update(verdict.id, label="false_positive")
    truth = wb.truth.image("x", "obj_a")
    assert truth.objects == () and [n.detection_id for n in truth.negatives] == ["obj_a_0"]
    assert _carried(wb)["v2_a_0"] == ("false_positive", None)
    assert len(wb.annotations.history(verdict.id)) == 1  # the history stays


def test_the_gold_set_is_drawn_once_and_stops_at_its_target(review_wb, monkeypatch):
    from tests.conftest import IMAGES
    from workbench import Workbench

    wb = Workbench.open(review_wb.home, gold_fraction=1.0, gold_target=2)
    for obj, *_ in IMAGES:
        wb.annotations.create(document_id=f"doc_{obj}", collection_id="col_x",
                              label="no_objects")
    counts = wb.truth.counts("x")
    assert counts == {"partial": 0, "complete": 4, "gold": 2}
    gold = sorted(o for o, tr in wb.truth.images("col_x").items() if tr.gold)
    assert gold == ["obj_a", "obj_b"]  # the first two completed, while under the target
    # Undone and done again, an image keeps the place it was given.
    mark = wb.annotations.list(document_id="doc_obj_a").items[0]
    wb.annotations.delete(mark.id)
    wb.annotations.create(document_id="doc_obj_a", collection_id="col_x", label="no_objects")
    assert wb.truth.image("x", "obj_a").gold
    wb.truth.set_gold("x", ["obj_a"], gold=False)
    assert wb.truth.counts("x")["gold"] == 1


def test_image_review_ranks_a_partly_reviewed_image(review_wb):
    """A confirmed box on an image not yet done is both a candidate's detection and a known
    box for strangeness: its embedding is asked for twice, which Chroma refuses unless the
    ids are made unique (this crashed the loop benchmark's ranked reviewer)."""
    wb = review_wb
    wb.annotations.create(document_id="obj_a_0", collection_id="col_x", label="confirmed")
    queue = wb.image_review.queue("x", limit=10)
    ranked = {r.object_id: r for r in queue.images}
    assert ranked["obj_a"].state == "partial"
    assert set(ranked) == {"obj_a", "obj_b", "obj_c", "obj_d"}


def test_the_ground_truth_of_more_images_than_sqlite_takes_variables(wb, monkeypatch):
    """Images are read a few hundred to a query and their boxes through a subquery: one IN
    list of every complete image failed past SQLite's variable limit (32,766)."""
    import workbench.store.metadata as metadata

    monkeypatch.setattr(metadata, "IN_LIST", 2)  # five images: three queries
    from workbench.store import tables as t
    from workbench.store.metadata import utcnow

    now = utcnow()
    with wb.db.write() as conn:
        conn.execute(t.buckets.insert().values(id="bkt_v", name="v", schema={}, description="",
                                               created_at=now))
        conn.execute(t.collections.insert().values(
            id="col_v", name="v", extractor_name="x", active_version="1", bucket_ids=["bkt_v"],
            created_at=now))
        for i in range(5):
            conn.execute(t.objects.insert().values(
                id=f"obj_{i}", bucket_id="bkt_v", sha256=f"{i:064d}", width=9, height=9,
                format="PNG", size_bytes=1, source=f"{i}.png", metadata={}, created_at=now))
            conn.execute(t.image_truth.insert().values(
                collection_id="col_v", object_id=f"obj_{i}", state="complete", objects=1,
                negatives=0, gold=False, gold_decided=True, updated_at=now))
            conn.execute(t.truth_boxes.insert().values(
                collection_id="col_v", object_id=f"obj_{i}", kind="object", class_name="c",
                x1=0, y1=0, x2=i + 1, y2=i + 1, annotation_id=f"ann_{i}", label="confirmed",
                author="me", created_at=now))
    every = wb.truth.images("col_v")
    named = wb.truth.images("col_v", [f"obj_{i}" for i in (4, 0, 2, 3, 1, 9)])
    assert list(every) == [f"obj_{i}" for i in range(5)]
    assert [o.xyxy[2] for o in every["obj_3"].objects] == [4]
    assert {k: v.objects for k, v in named.items() if k != "obj_9"} == \
        {k: v.objects for k, v in every.items()}
    assert named["obj_9"].state == "unreviewed"
