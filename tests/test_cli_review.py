"""The review commands: retrievers, review-queue, annotate (single and bulk), stats."""

import json

from typer.testing import CliRunner

from workbench.cli import app


def invoke(wb, *args):
    return CliRunner().invoke(app, ["--home", str(wb.home), *map(str, args)])


def test_review_queue_counts_what_is_left_up_to_a_bound(review_wb, monkeypatch):
    """The count of what is left stops at COUNT_AT_MOST and says so ("N+"): counting every
    unreviewed candidate took 2.7 s of the command at 1M detections."""
    import workbench.cli.review as review

    exact = json.loads(invoke(review_wb, "--json", "review-queue", "x", "--no-lease").output)
    assert (exact["remaining"], exact["remaining_exact"]) == (4, True)
    from tests.test_retrievers import _many

    _many(review_wb, 700)  # more candidates than the queue's page fetches
    monkeypatch.setattr(review, "COUNT_AT_MOST", 300)
    bounded = invoke(review_wb, "review-queue", "x", "--limit", "5", "--no-lease")
    assert bounded.output.startswith("300+ left to review;"), bounded.output
    as_json = json.loads(invoke(review_wb, "--json", "review-queue", "x", "--no-lease").output)
    assert (as_json["remaining"], as_json["remaining_exact"]) == (300, False)


def test_review_queue_annotate_and_stats(review_wb, tmp_path):
    wb = review_wb
    queue = json.loads(invoke(wb, "--json", "review-queue", "x", "--limit", "2").output)
    assert queue["remaining"] == 4 and len(queue["hits"]) == 2
    first = queue["hits"][0]["detection_id"]
    done = invoke(wb, "annotate", first, "-c", "x", "-l", "confirmed",
                  "--retriever", queue["retriever_id"], "--execution", queue["execution_id"])
    assert done.exit_code == 0, done.output
    bulk = tmp_path / "verdicts.jsonl"
    bulk.write_text("\n".join(json.dumps(op) for op in [
        {"document_id": "obj_a_1", "collection_id": "x", "label": "corrected",
         "payload": {"true_class": "hexagon"}},
        {"document_id": "obj_c_0", "collection_id": "x", "label": "corrected"},
        {"document_id": "doc_obj_d", "collection_id": "x", "label": "missed",
         "payload": {"true_class": "star", "bbox": {"x": 40, "y": 40, "w": 10, "h": 10}}},
    ]))
    result = invoke(wb, "annotate", "--bulk", bulk)
    assert "2 saved, 1 failed" in result.output and "line 2:" in result.output
    (saved,) = wb.annotations.list(label="confirmed").items
    assert saved.execution_id == queue["execution_id"]
    report = json.loads(invoke(wb, "--json", "stats", "-c", "x").output)
    assert report["total"] == 3
    assert report["precision_recall"]["tp"] == 1
    assert {row["label"] for row in report["labels"]} == {"confirmed", "corrected", "missed"}
    again = json.loads(invoke(wb, "--json", "review-queue", "x").output)
    assert first not in [h["detection_id"] for h in again["hits"]]


def test_annotate_errors_are_one_line(review_wb):
    result = invoke(review_wb, "annotate", "obj_a_0", "-c", "x", "-l", "corrected")
    assert result.exit_code != 0
    assert "needs payload.true_class" in str(result.exception or result.output)


def test_save_and_run_a_retriever(review_wb, tmp_path):
    stages = tmp_path / "stages.json"
    stages.write_text(json.dumps([
        {"stage_type": "filter", "config": {"filters": {"field": "class", "operator": "eq",
                                                         "value": "{{INPUT.cls}}"}}},
        {"stage_type": "sort", "config": {"by": "confidence", "order": "desc"}}]))
    assert invoke(review_wb, "retrievers", "save", "by-class", "-c", "x", "--stages",
                  stages).exit_code == 0
    out = json.loads(invoke(review_wb, "--json", "retrievers", "run", "by-class", "-i",
                            "cls=circle").output)
    assert [h["detection_id"] for h in out["hits"]] == ["obj_a_0", "obj_b_1"]
    assert (out["matched"], out["matched_exact"], out["next_cursor"]) == (2, True, None)
    plain = invoke(review_wb, "retrievers", "run", "by-class", "-i", "cls=circle").output
    assert "2 hits; 2 matched" in plain and "more:" not in plain
    stages.write_text(json.dumps([{"stage_type": "sort", "config": {"by": "size"}}]))
    bad = invoke(review_wb, "retrievers", "save", "bad", "-c", "x", "--stages", stages)
    assert bad.exit_code != 0 and "sort by 'size'" in str(bad.exception)


def test_review_queue_spot_check_and_images_with_nothing_found(review_wb):
    spot = json.loads(invoke(review_wb, "--json", "review-queue", "x", "--spot-check").output)
    confidences = {h["detection_id"]: h["confidence"] for h in spot["hits"]}
    assert confidences and all(c >= 0.7 for c in confidences.values())
    images = json.loads(invoke(review_wb, "--json", "review-queue", "x", "--images").output)
    assert [i["document_id"] for i in images["images"]] == ["doc_obj_d"]
    done = invoke(review_wb, "annotate", "doc_obj_d", "-c", "x", "-l", "no_objects")
    assert done.exit_code == 0, done.output
    images = json.loads(invoke(review_wb, "--json", "review-queue", "x", "--images").output)
    assert images["images"] == []
    both = invoke(review_wb, "review-queue", "x", "--images", "--spot-check")
    assert both.exit_code != 0 and "choose one of" in str(both.exception or both.output)


def test_references_and_taxonomy_commands(review_wb):
    wb = review_wb
    collection = wb.collections.get("x")
    for det, label, payload in (("obj_a_0", "confirmed", {}), ("obj_b_0", "confirmed", {}),
                                ("obj_a_1", "corrected", {"true_class": "hexagon"})):
        wb.annotations.create(document_id=det, collection_id=collection.id, label=label,
                              payload=payload)
    assert invoke(wb, "references", "create", "refs", "-c", "x").exit_code == 0
    promoted = json.loads(invoke(wb, "--json", "references", "promote", "refs").output)
    assert (promoted["added"], promoted["version"]) == (3, 1)
    listed = json.loads(invoke(wb, "--json", "references").output)
    assert listed[0]["classes"] == {"circle": 1, "hexagon": 1, "triangle": 1}
    made = invoke(wb, "taxonomy", "create", "shapes", "-r", "refs", "--threshold", "0.95",
                  "--top-k", "1", "--attach", "x", "--mode", "retroactive")
    assert made.exit_code == 0, made.output
    report = json.loads(invoke(wb, "--json", "taxonomy", "apply", "shapes").output)
    assert report["classified"] == 5 and report["labels"]["circle"] == 2
    human = invoke(wb, "taxonomy")
    assert "shapes" in human.output and "circle" in human.output
    bad = invoke(wb, "taxonomy", "create", "t2", "-r", "nope")
    assert bad.exit_code != 0 and "no reference set" in str(bad.exception or bad.output)


def test_cluster_commands(review_wb):
    out = invoke(review_wb, "--json", "cluster", "run", "x", "--algorithm", "kmeans",
                 "--params", '{"n_clusters": 2}')
    assert out.exit_code == 0, out.output
    run = json.loads(out.output)
    assert run["n_members"] == 5 and len(run["clusters"]) == 2
    assert all("name" in c for c in run["clusters"].values())
    listed = invoke(review_wb, "cluster")
    assert run["id"] in listed.output
    renamed = json.loads(invoke(review_wb, "--json", "cluster", "label", run["id"],
                                "--rename", "0=blob").output)
    assert renamed["clusters"]["0"]["name"] == "blob"
    dry = invoke(review_wb, "cluster", "relabel", run["id"], "0", "--class", "disc")
    assert "add --yes" in dry.output and review_wb.annotations.list().total == 0
    done = invoke(review_wb, "cluster", "relabel", run["id"], "0", "--class", "disc", "--yes")
    assert done.exit_code == 0 and review_wb.annotations.list().total == run["clusters"]["0"][
        "size"]
    bad = invoke(review_wb, "cluster", "run", "x", "--params", "{nope")
    assert bad.exit_code != 0 and "not JSON" in str(bad.exception or bad.output)


def test_webhook_and_event_commands(review_wb):
    made = json.loads(invoke(review_wb, "--json", "webhooks", "create", "hook",
                             "http://127.0.0.1:9/x", "-e", "annotation.created").output)
    assert made["secret"].startswith("whsec_")
    listed = invoke(review_wb, "webhooks")
    assert "hook" in listed.output and made["secret"] not in listed.output
    collection = review_wb.collections.get("x")
    review_wb.annotations.create(document_id="obj_a_0", collection_id=collection.id,
                                 label="confirmed")
    rows = json.loads(invoke(review_wb, "--json", "webhooks", "deliveries", "hook").output)
    assert [r["event_type"] for r in rows] == ["annotation.created"]
    assert invoke(review_wb, "webhooks", "ping", "hook").exit_code == 0
    assert "annotation.created" in invoke(review_wb, "events").output
    bad = invoke(review_wb, "webhooks", "create", "bad", "ftp://x")
    assert bad.exit_code != 0 and "http://" in str(bad.exception or bad.output)
