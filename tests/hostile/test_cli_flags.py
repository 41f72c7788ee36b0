"""Bad flags and files on the command line: each row is what a user typed and the one-line
error it must print; the workspace is unchanged afterwards."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hostile.conftest import Snapshot, assert_refused
from workbench import Workbench


@dataclass(frozen=True)
class Ctx:
    home: Path
    tmp: Path
    det: str  # a detection id of collection "c"
    image_doc: str  # an image document id of collection "c"

    def file(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def folder(self, name: str, files: dict[str, str] | None = None) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        for file, text in (files or {}).items():
            (path / file).write_text(text)
        return path


NOT_JSON_OBJECT = "parameters must be a JSON object"
F = lambda field, op, value: {"field": field, "operator": op, "value": value}  # noqa: E731


def stages(*filters) -> str:
    return json.dumps([{"stage_type": "filter", "config": {"filters": f}} for f in filters])


ROWS = [
    # -- export: never a folder it did not write -------------------------------------------
    ("export-out-is-a-file", lambda c: ["export", "c", "--out", c.file("x.txt", "mine")],
     "is a file, not a folder"),
    ("export-out-is-the-workspace", lambda c: ["export", "c", "--out", c.home],
     "is inside the workspace"),
    ("export-out-inside-the-workspace", lambda c: ["export", "c", "--out", c.home / "blobs"],
     "is inside the workspace"),
    ("export-out-holds-the-workspace", lambda c: ["export", "c", "--out", c.home.parent],
     "contains the workspace"),
    ("export-out-is-a-user-folder", lambda c: ["export", "c", "--out", c.folder(
        "thesis", {"chapter1.tex": "do not delete"})], "is not an export written by the"),
    ("export-out-fake-manifest", lambda c: ["export", "c", "--out", c.folder(
        "fake", {"manifest.json": '{"hello": 1}', "notes.txt": "x"})], "is not an export"),
    ("export-val-nan", lambda c: ["export", "c", "--out", c.tmp / "e", "--val", "nan"],
     "val_fraction must be a finite number, got nan"),
    ("export-fill-threshold-2", lambda c: ["export", "c", "--out", c.tmp / "e",
                                           "--fill-threshold", "2"],
     "fill_threshold must be in [0, 1]"),
    ("export-unreviewed-maybe", lambda c: ["export", "c", "--out", c.tmp / "e",
                                           "--unreviewed", "maybe"],
     "unreviewed must be 'skip' or 'fill'"),
    ("export-unknown-collection", lambda c: ["export", "nope", "--out", c.tmp / "e"],
     "no collection"),
    # -- clusters ------------------------------------------------------------------------------
    ("cluster-params-list", lambda c: ["cluster", "run", "c", "--params", "[1,2]"],
     NOT_JSON_OBJECT),
    ("cluster-params-number", lambda c: ["cluster", "run", "c", "--params", "42"],
     NOT_JSON_OBJECT),
    ("cluster-params-not-json", lambda c: ["cluster", "run", "c", "--params", "{min: 3}"],
     "--params is not JSON"),
    ("cluster-params-nan", lambda c: ["cluster", "run", "c", "--params",
                                      '{"min_cluster_size": NaN}'], "give a finite number"),
    ("cluster-unknown-param", lambda c: ["cluster", "run", "c", "--params", '{"nope": 1}'],
     "hdbscan has no parameter 'nope'"),
    ("cluster-unknown-algorithm", lambda c: ["cluster", "run", "c", "--algorithm", "magic"],
     "algorithm must be one of 'hdbscan', "),
    ("cluster-unknown-reduction", lambda c: ["cluster", "run", "c", "--reduce", "lda"],
     "reduction is"),
    ("cluster-zero-components", lambda c: ["cluster", "run", "c", "--reduce", "pca",
                                           "--components", "0"], "a positive integer"),
    ("cluster-filter-unknown-field", lambda c: ["cluster", "run", "c", "--filters", json.dumps(
        F("colour", "eq", "red"))], "field 'colour' is not known"),
    ("cluster-filter-nan", lambda c: ["cluster", "run", "c", "--filters",
                                      '{"field": "confidence", "operator": "lt", "value": NaN}'],
     "is not a finite number"),
    # -- taxonomies ----------------------------------------------------------------------------
    ("taxonomy-node-threshold-word", lambda c: ["taxonomy", "create", "t", "-r", "refs",
                                                "--nodes", c.file("n.json", json.dumps(
                                                    [{"name": "circle", "threshold": "high"}]))],
     "threshold is a cosine similarity in [-1, 1], got 'high'"),
    ("taxonomy-node-threshold-nan", lambda c: ["taxonomy", "create", "t", "-r", "refs",
                                               "--nodes", c.file("n.json", '[{"name": "a", '
                                                                 '"threshold": NaN}]')],
     "threshold is a cosine similarity in [-1, 1], got nan"),
    ("taxonomy-threshold-nan", lambda c: ["taxonomy", "create", "t", "-r", "refs",
                                          "--threshold", "nan"],
     "threshold must be a finite number, got nan"),
    ("taxonomy-mode-sometimes", lambda c: ["taxonomy", "create", "t", "-r", "refs",
                                           "--attach", "c", "--mode", "sometimes"],
     "mode must be one of"),
    ("taxonomy-attach-unknown-collection", lambda c: ["taxonomy", "create", "t", "-r", "refs",
                                                      "--attach", "nope"], "no collection"),
    ("taxonomy-nodes-object", lambda c: ["taxonomy", "create", "t", "-r", "refs", "--nodes",
                                         c.file("n.json", '{"circle": 1}')],
     "nodes must be a list"),
    ("taxonomy-node-classes-number", lambda c: ["taxonomy", "create", "t", "-r", "refs",
                                                "--nodes", c.file("n.json", json.dumps(
                                                    [{"name": "a", "classes": 5}]))],
     "classes must be a list of names"),
    ("taxonomy-nodes-not-json", lambda c: ["taxonomy", "create", "t", "-r", "refs", "--nodes",
                                           c.file("n.json", "[circle")], "cannot read nodes"),
    ("taxonomy-attach-unknown", lambda c: ["taxonomy", "attach", "nope", "-c", "c"],
     "no taxonomy 'nope'"),
    # -- annotate ------------------------------------------------------------------------------
    ("annotate-bbox-nan", lambda c: ["annotate", c.det, "-c", "c", "-l", "corrected",
                                     "--bbox", "nan,nan,nan,nan"],
     "payload.bbox.x is nan; give a finite number"),
    ("annotate-bbox-inf", lambda c: ["annotate", c.det, "-c", "c", "-l", "corrected",
                                     "--bbox", "10,10,inf,5"],
     "payload.bbox.w is inf; give a finite number"),
    ("annotate-bbox-three-values", lambda c: ["annotate", c.det, "-c", "c", "-l", "corrected",
                                              "--bbox", "1,2,3"], "should be x,y,w,h"),
    ("annotate-bbox-outside", lambda c: ["annotate", c.det, "-c", "c", "-l", "corrected",
                                         "--bbox", "5000,5000,10,10"], "lies outside"),
    ("annotate-confidence-nan", lambda c: ["annotate", c.det, "-c", "c", "-l", "confirmed",
                                           "--confidence", "nan"], "confidence"),
    ("annotate-confidence-2", lambda c: ["annotate", c.det, "-c", "c", "-l", "confirmed",
                                         "--confidence", "2"], "confidence"),
    ("annotate-missed-without-box", lambda c: ["annotate", c.image_doc, "-c", "c", "-l",
                                               "missed"], "needs payload.bbox"),
    ("annotate-unknown-document", lambda c: ["annotate", "det_nope", "-c", "c", "-l",
                                             "confirmed"], "no detection or image document"),
    ("annotate-empty-label", lambda c: ["annotate", c.det, "-c", "c", "-l", ""],
     "give DOCUMENT_ID, --collection and --label"),
    ("annotate-empty-bulk-file", lambda c: ["annotate", "--bulk", c.file("b.jsonl", "\n\n")],
     "holds no operations"),
    ("annotate-bulk-missing", lambda c: ["annotate", "--bulk", c.tmp / "absent.jsonl"],
     "cannot read"),
    # -- retrievers ----------------------------------------------------------------------------
    ("retriever-unknown-field", lambda c: ["retrievers", "save", "r", "-c", "c", "--stages",
                                           c.file("s.json", stages(F("colour", "eq", "red")))],
     "field 'colour' is not known"),
    ("retriever-misspelt-metadata", lambda c: ["retrievers", "save", "r", "-c", "c",
                                               "--stages", c.file("s.json", stages(
                                                   F("metadata.camera", "eq", "c1")))],
     "did you mean 'metadata.camera_id'"),
    ("retriever-bad-field-syntax", lambda c: ["retrievers", "save", "r", "-c", "c", "--stages",
                                              c.file("s.json", stages(F("bbox.area", "gt", 4)))],
     "field 'bbox.area' is not known"),
    ("retriever-nan-value", lambda c: ["retrievers", "save", "r", "-c", "c", "--stages",
                                       c.file("s.json", '[{"stage_type": "filter", "config": '
                                              '{"filters": {"field": "confidence", "operator": '
                                              '"lt", "value": NaN}}}]')],
     "is not a finite number"),
    ("retriever-stages-not-json", lambda c: ["retrievers", "save", "r", "-c", "c", "--stages",
                                             c.file("s.json", "[{")], "cannot read stages"),
    ("retriever-stages-object", lambda c: ["retrievers", "save", "r", "-c", "c", "--stages",
                                           c.file("s.json", "{}")], "a non-empty list of stages"),
    # -- webhooks ------------------------------------------------------------------------------
    ("webhook-url-newline", lambda c: ["webhooks", "create", "w", "http://127.0.0.1:9/a\nb"],
     "must not hold whitespace or control characters"),
    ("webhook-url-ftp", lambda c: ["webhooks", "create", "w", "ftp://example.com/x"],
     "http:// or https://"),
    ("webhook-url-port", lambda c: ["webhooks", "create", "w", "http://127.0.0.1:99999/x"],
     "a webhook URL that cannot be used"),
    ("webhook-unknown-event", lambda c: ["webhooks", "create", "w", "http://127.0.0.1:9/x",
                                         "-e", "annotation.made"], "unknown event type"),
    ("webhook-delete-without-yes", lambda c: ["webhooks", "delete", "hook"], "add --yes"),
    ("webhook-delete-unknown", lambda c: ["webhooks", "delete", "nope", "--yes"],
     "no webhook 'nope'"),
    ("webhook-disable-unknown", lambda c: ["webhooks", "disable", "nope"], "no webhook 'nope'"),
    # -- models, detection, evaluation -----------------------------------------------------
    ("models-add-folder", lambda c: ["models", "add", c.folder("weights")], "is a folder"),
    ("models-add-missing", lambda c: ["models", "add", c.tmp / "absent.pt"], "does not exist"),
    ("models-add-text", lambda c: ["models", "add", c.file("m.pt", "not a model")],
     "is not a loadable PyTorch checkpoint"),
    ("detect-conf-nan", lambda c: ["detect", "c", "--conf", "nan"],
     "conf must be a finite number, got nan"),
    ("detect-unknown-version", lambda c: ["detect", "c", "--version", "9.9.9"],
     "no extractor yolo_detector@9.9.9"),
    ("evaluate-min-gain-nan", lambda c: ["evaluate", "c", "--min-gain", "nan"],
     "min_map50_95_gain must be a finite number"),
    ("promote-unknown-version", lambda c: ["promote", "c", "9.9.9"], "9.9.9"),
    ("jobs-show-unknown", lambda c: ["jobs", "show", "job_nope"], "no job with id"),
]


@pytest.fixture(scope="module")
def ids(loaded_home):
    wb = Workbench.open(loaded_home)
    try:
        collection = wb.collections.get("c")
        det = wb.detection.detections(collection, collection.active_key)[-1].id
        with wb.db.read() as conn:
            import sqlalchemy as sa

            from workbench.store import tables as t

            doc = conn.execute(sa.select(t.documents.c.id).where(
                t.documents.c.collection_id == collection.id)).scalars().first()
    finally:
        wb.close()
    return det, doc


@pytest.mark.parametrize(("args", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_refused_with_one_line_and_nothing_changed(cli, loaded_home, tmp_path, ids, args,
                                                   message):
    context = Ctx(loaded_home, tmp_path, *ids)
    argv = args(context)
    user_files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    before = Snapshot.of(loaded_home)
    outcome = cli(loaded_home, *argv)
    assert_refused(outcome, message)
    assert before.changes(Snapshot.of(loaded_home)) == {}
    for path, data in user_files.items():  # what the user had is still there, unchanged
        assert path.read_bytes() == data
