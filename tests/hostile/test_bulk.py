"""Bulk annotation files: every line succeeds or fails alone, whatever it holds, and a line
that fails writes nothing."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.hostile.conftest import Snapshot
from workbench import Workbench
from workbench.store import tables as t


def _ids(home):
    wb = Workbench.open(home)
    try:
        collection = wb.collections.get("c")
        dets = wb.detection.detections(collection, collection.active_key)
        return collection.id, [d.id for d in dets]
    finally:
        wb.close()


# Each row: one line of the file (DET stands for a detection id, COL for the collection id)
# and the error that line must get.
ROWS = [
    ("json-list", "[1, 2]", "an operation must be a JSON object"),
    ("json-number", "42", "an operation must be a JSON object"),
    ("json-string", '"confirmed"', "an operation must be a JSON object"),
    ("json-null", "null", "an operation must be a JSON object"),
    ("malformed-json", '{"document_id": "DET", "label": ', "not JSON"),
    ("numeric-collection", '{"document_id": "DET", "collection_id": 5, "label": "confirmed"}',
     "collection_id: Input should be a valid string"),
    ("unknown-collection", '{"document_id": "DET", "collection_id": "nope", '
                           '"label": "confirmed"}', "belongs to collection"),
    ("unknown-op", '{"op": "explode", "id": "ann_x"}', "unknown op 'explode'"),
    ("delete-without-id", '{"op": "delete"}', "delete needs 'id'"),
    ("update-numeric-id", '{"op": "update", "id": 123, "label": "confirmed"}',
     "update needs 'id'"),
    ("update-unknown", '{"op": "update", "id": "ann_nope", "label": "confirmed"}',
     "no annotation 'ann_nope'"),
    ("delete-extra-fields", '{"op": "delete", "id": "ann_nope", "label": "x"}',
     "delete takes only 'id' and 'author'"),
    ("author-number", '{"op": "delete", "id": "ann_nope", "author": 7}',
     "author must be a string"),
    ("bbox-nan", '{"document_id": "DET", "collection_id": "COL", "label": "corrected", '
                 '"payload": {"bbox": {"x": NaN, "y": 1, "w": 2, "h": 2}}}',
     "payload.bbox.x is nan"),
    ("confidence-infinity", '{"document_id": "DET", "collection_id": "COL", "label": '
                            '"confirmed", "confidence": Infinity}', "confidence"),
    ("nested-nan", '{"document_id": "DET", "collection_id": "COL", "label": "confirmed", '
                   '"payload": {"extra": [1, NaN]}}', "payload.extra[1] is nan"),
    ("unknown-field", '{"document_id": "DET", "collection_id": "COL", "label": "confirmed", '
                      '"colour": "red"}', "unknown field 'colour'"),
    ("label-too-long", '{"document_id": "DET", "collection_id": "COL", "label": "'
                       + "x" * 101 + '"}', "label"),
    ("missing-document", '{"collection_id": "COL", "label": "confirmed"}',
     "document_id is required"),
]


@pytest.mark.parametrize(("line", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_a_bad_line_fails_alone(cli, loaded_home, tmp_path, line, message):
    collection_id, dets = _ids(loaded_home)
    line = line.replace("DET", dets[-1]).replace("COL", collection_id)
    bulk = tmp_path / "bulk.jsonl"
    bulk.write_text(line + "\n")
    before = Snapshot.of(loaded_home)
    outcome = cli(loaded_home, "annotate", "--bulk", bulk)
    assert outcome.code == 1  # every line failed
    first, summary = outcome.out.splitlines()
    assert first.startswith("line 1: ") and message in first, outcome.out
    assert summary == "0 saved, 1 failed"
    assert before.changes(Snapshot.of(loaded_home)) == {}


def test_good_lines_are_saved_beside_bad_ones(cli, own_copy, tmp_path):
    """Before, one malformed line (or a line that was JSON but not an object, or a numeric
    collection) lost every line of the file."""
    collection_id, dets = _ids(own_copy)
    good = [{"document_id": d, "collection_id": "c", "label": "false_positive"}
            for d in dets[-3:]]  # by collection name: resolved line by line
    lines = [json.dumps(good[0]), "[1, 2]", "{broken", "", json.dumps(good[1]),
             '{"document_id": "x", "collection_id": 5, "label": "confirmed"}',
             json.dumps(good[2])]
    bulk = tmp_path / "bulk.jsonl"
    bulk.write_text("\n".join(lines) + "\n")
    outcome = cli(own_copy, "annotate", "--bulk", bulk)
    assert outcome.code == 0
    report = outcome.out.splitlines()
    assert [r.split(":")[0] for r in report[:-1]] == ["line 2", "line 3", "line 6"]
    assert report[-1] == "3 saved, 3 failed"
    wb = Workbench.open(own_copy)
    with wb.db.read() as conn:
        # people's verdicts only: a verdict on a box may carry over to a box of the same
        # object (origin "carried"), which depends on which boxes the last three are
        saved = conn.execute(sa.select(t.annotations.c.document_id).where(
            t.annotations.c.label == "false_positive",
            t.annotations.c.origin == "human")).scalars().all()
    assert sorted(saved) == sorted(dets[-3:])
