"""Automation rules: each fires on its event and logs a run; off means off; the cursor makes
reprocessing (and a crash before the commit) fire exactly once; bad parameters are refused;
the retrain chain and evaluate-on-batch run for real on tiny data."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from tests.test_export import ewb  # noqa: F401 - real images, hand-made detections, verdicts
from workbench.errors import NotFoundError, ValidationError
from workbench.events import record_event
from workbench.store import tables as t

BOX = {"x": 50, "y": 50, "w": 20, "h": 20}


def verdict(wb, document_id, label, collection_id="col_x", **payload):
    return wb.annotations.create(document_id=document_id, collection_id=collection_id,
                                 label=label, payload=payload)


def hard_negative_ids(wb) -> list[str]:
    with wb.db.read() as conn:
        return sorted(conn.execute(sa.select(t.hard_negatives.c.detection_id)).scalars())


def queued(wb, kind: str) -> list:
    return [j for j in wb.jobs.list() if j.kind == kind]


# -- the rules, one by one ------------------------------------------------------------------
def test_defaults_only_hard_negative_is_on(review_wb):
    rules = {r.name: r for r in review_wb.rules.list()}
    assert {n for n, r in rules.items() if r.enabled} == {"hard_negative"}
    assert rules["retrain_on_corrections"].params["threshold"] == 50
    assert all(r.last_run is None and r.updated_at is None for r in rules.values())


def test_hard_negative_joins_the_list_that_the_export_lists(ewb, tmp_path):  # noqa: F811
    from workbench.export import ExportOptions

    # The fixture's verdicts are events from before; the rule (on by default) takes them.
    done = ewb.rules.process_pending()
    assert done["runs"] == 1 and done["failed"] == 0
    assert hard_negative_ids(ewb) == ["doc_fp_only_0"]
    (run,) = ewb.rules.runs("hard_negative")
    assert run["status"] == "done" and run["event_type"] == "annotation.created"
    assert "doc_fp_only_0" in run["message"]
    result = ewb.export.yolo("c", tmp_path / "out", options=ExportOptions(val_fraction=0.3))
    manifest = json.loads((result.path / "manifest.json").read_text())
    (negative,) = manifest["hard_negatives"]
    assert negative["detection_id"] == "doc_fp_only_0" and negative["class"] == "circle"
    assert negative["xyxy"] == [5, 5, 40, 40]
    fp_image = next(i for i in manifest["images"] if i["object_id"] == negative["object_id"])
    assert negative["split"] == fp_image["split"]
    # A verdict changed since: no longer a hard negative, and the export says so.
    (annotation,) = [a for a in ewb.annotations.list(document_id="doc_fp_only_0").items]
    ewb.annotations.update(annotation.id, label="confirmed")
    ewb.export.yolo("c", tmp_path / "out", options=ExportOptions(val_fraction=0.3))
    assert json.loads((result.path / "manifest.json").read_text())["hard_negatives"] == []


def test_reference_on_verdict_makes_the_set_and_adds_verified_detections(review_wb):
    wb = review_wb
    wb.rules.configure("reference_on_verdict", enabled=True,
                       params={"reference_set": "auto-refs"})
    verdict(wb, "obj_a_0", "confirmed")
    verdict(wb, "obj_b_0", "corrected", true_class="star")
    verdict(wb, "obj_c_0", "false_positive")  # not a reference; a hard negative
    verdict(wb, "doc_obj_d", "missed", true_class="star", bbox=BOX)  # no detection to add
    done = wb.rules.process_pending()
    assert done == {"events": 4, "runs": 3, "jobs": 0, "failed": 0}
    refs = wb.references.get("auto-refs")
    assert refs.collection_id == "col_x" and refs.version == 2
    assert {(i.detection_id, i.true_class, i.source) for i in wb.references.items("auto-refs")
            } == {("obj_a_0", "circle", "confirmed"), ("obj_b_0", "star", "corrected")}
    runs = wb.rules.runs("reference_on_verdict")
    assert [r["status"] for r in runs] == ["done", "done"]
    assert runs[0]["result"]["reference_set"] == "auto-refs"
    assert hard_negative_ids(wb) == ["obj_c_0"]
    # Processing again finds nothing new: one effect per event.
    assert wb.rules.process_pending()["events"] == 0
    assert wb.references.get("auto-refs").version == 2 and len(wb.rules.runs()) == 3


def test_disabled_rules_do_not_fire_and_a_rule_reacts_from_when_it_is_on(review_wb):
    wb = review_wb
    wb.rules.configure("hard_negative", enabled=False)
    verdict(wb, "obj_a_0", "false_positive")
    assert wb.rules.process_pending() == {"events": 1, "runs": 0, "jobs": 0, "failed": 0}
    assert hard_negative_ids(wb) == [] and wb.rules.runs() == []
    # Switched on while an event waits unconsumed: the rule reacts only to what comes after.
    verdict(wb, "obj_a_1", "false_positive")
    wb.rules.configure("hard_negative", enabled=True)
    verdict(wb, "obj_b_0", "false_positive")
    assert wb.rules.process_pending()["runs"] == 1
    assert hard_negative_ids(wb) == ["obj_b_0"]
    rule = wb.rules.get("hard_negative")
    assert rule.enabled and rule.enabled_at is not None and rule.last_run["status"] == "done"


def test_a_crash_before_the_commit_replays_the_event_once(review_wb, monkeypatch):
    import workbench.rules as rules

    wb = review_wb
    verdict(wb, "obj_a_0", "false_positive")
    verdict(wb, "obj_a_1", "false_positive")
    real = rules._advance
    calls = []

    def dies_on_the_second_event(conn, event):
        calls.append(event.id)
        moved = real(conn, event)
        if len(calls) == 2:  # after the reaction and the cursor were written, before commit
            raise sa.exc.OperationalError("commit", {}, Exception("power lost"))
        return moved

    monkeypatch.setattr(rules, "_advance", dies_on_the_second_event)
    with pytest.raises(sa.exc.OperationalError):
        wb.rules.process_pending()
    assert hard_negative_ids(wb) == ["obj_a_0"]  # the first event's transaction committed
    assert wb.rules.cursor()[1] == calls[0]
    monkeypatch.setattr(rules, "_advance", real)
    assert wb.rules.process_pending()["runs"] == 1
    assert hard_negative_ids(wb) == ["obj_a_0", "obj_a_1"]
    assert len(wb.rules.runs("hard_negative")) == 2
    assert wb.rules.process_pending()["events"] == 0


def test_two_engines_at_once_fire_once_per_event(review_wb):
    wb = review_wb
    for detection in ("obj_a_0", "obj_a_1", "obj_b_0", "obj_b_1", "obj_c_0"):
        verdict(wb, detection, "false_positive")
    errors = []

    def engine():
        try:
            wb.rules.process_pending()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=engine) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(wb.rules.runs("hard_negative")) == 5 and len(hard_negative_ids(wb)) == 5


def test_retrain_fires_exactly_at_the_threshold_once_per_chain(review_wb):
    wb = review_wb
    wb.rules.configure("retrain_on_corrections", enabled=True, params={"threshold": 3})
    verdict(wb, "obj_a_0", "corrected", true_class="star")
    verdict(wb, "obj_a_1", "confirmed")  # not a correction
    verdict(wb, "doc_obj_d", "missed", true_class="star", bbox=BOX)
    assert wb.rules.process_pending()["jobs"] == 0 and queued(wb, "retrain") == []
    verdict(wb, "obj_b_0", "corrected", true_class="circle")  # the third
    verdict(wb, "obj_b_1", "corrected", true_class="circle")  # a chain is in flight already
    assert wb.rules.process_pending()["jobs"] == 1
    assert wb.rules.process_pending()["events"] == 0
    (job,) = queued(wb, "retrain")
    assert job.params["collection_id"] == "col_x" and job.params["parent_version"] == "1.0.0"
    assert job.params["train"]["epochs"] == 10 and job.params["promote"] is True
    (run,) = wb.rules.runs("retrain_on_corrections")
    assert run["status"] == "submitted" and run["job_id"] == job.id
    assert run["result"]["corrections"] == 3 and run["result"]["since"] is None
    # The chain counts as the last training: the count starts again after it.
    wb.jobs.cancel(job.id)
    verdict(wb, "obj_c_0", "corrected", true_class="star")
    verdict(wb, "doc_obj_a", "missed", true_class="star", bbox=BOX)
    assert wb.rules.process_pending()["jobs"] == 0
    verdict(wb, "doc_obj_b", "missed", true_class="star", bbox=BOX)
    assert wb.rules.process_pending()["jobs"] == 1
    latest = wb.rules.runs("retrain_on_corrections")[0]
    assert latest["result"]["corrections"] == 3 and latest["result"]["since"] is not None


def _register_fake_version(wb, version: str, parent: str | None) -> None:
    """Another version row of the review workspace's detector (no weights: not run here)."""
    from workbench.extractors.yolo import yolo_spec
    from workbench.store.metadata import utcnow

    with wb.db.write() as conn:
        conn.execute(t.extractor_versions.insert().values(
            id=f"ext_{version}", name="yolo_detector", version=version, kind="yolo",
            spec=yolo_spec(version, 4, 4).to_dict(), classes=["circle", "square", "triangle"],
            parent_version=parent, lineage={}, metrics={}, notes="", created_at=utcnow()))


def _batch_completed(wb, version: str, processed: int = 4, requested_by=None) -> None:
    with wb.db.write() as conn:
        record_event(conn, "batch.completed", {
            "collection": "x", "collection_id": "col_x", "version": f"yolo_detector@{version}",
            "processed_now": processed, "job_id": None, "requested_by": requested_by})


def test_evaluate_on_batch_reacts_to_later_versions_only(review_wb):
    wb = review_wb
    wb.rules.configure("evaluate_on_batch", enabled=True, params={"max_class_drop": 0.1})
    _register_fake_version(wb, "2.0.0", parent="1.0.0")
    _batch_completed(wb, "1.0.0")  # the first version: nothing to compare with
    _batch_completed(wb, "2.0.0", processed=0)  # added nothing: no reason to evaluate
    _batch_completed(wb, "2.0.0", requested_by="job_chain")  # a retrain chain's own batch
    _batch_completed(wb, "2.0.0")
    assert wb.rules.process_pending() == {"events": 4, "runs": 2, "jobs": 1, "failed": 0}
    latest, first = wb.rules.runs("evaluate_on_batch")
    assert first["status"] == "skipped" and "first version" in first["message"]
    assert latest["status"] == "submitted"
    (job,) = queued(wb, "evaluate")
    assert latest["job_id"] == job.id
    assert job.params == {"collection_id": "col_x", "base_version": "1.0.0",
                          "candidate_version": "2.0.0",
                          "gate": {"min_map50_95_gain": 0.01, "max_class_drop": 0.1}}


# -- parameters -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "enabled", "params", "message"),
    [
        ("retrain_on_corrections", None, {"epoch": 3}, "no parameter 'epoch' (did you mean "
                                                       "'epochs'?); its parameters: threshold"),
        ("retrain_on_corrections", None, {"epochs": "ten"}, "epochs must be an integer, got "
                                                            "'ten' (str)"),
        ("retrain_on_corrections", None, {"epochs": True}, "must be an integer, got True"),
        ("retrain_on_corrections", None, {"val_fraction": "0.3"}, "must be a number"),
        ("retrain_on_corrections", None, {"unreviewed": "keep"}, "must be one of skip, fill"),
        ("retrain_on_corrections", None, {"threshold": 0}, "threshold must be at least 1"),
        ("retrain_on_corrections", None, {"epochs": 0}, "epochs must be at least 1, got 0"),
        ("retrain_on_corrections", None, {"imgsz": 16}, "imgsz must be at least 32"),
        ("retrain_on_corrections", None, {"val_fraction": 1.5}, "val_fraction must be in"),
        ("retrain_on_corrections", None, {"max_class_drop": -1.0}, "max_class_drop must be"),
        ("retrain_on_corrections", None, {"promote": "yes"}, "must be true or false"),
        ("reference_on_verdict", True, {}, "needs reference_set"),
        ("hard_negative", None, {"threshold": 3}, "hard_negative has no parameter 'threshold'; "
                                                  "its parameters: none"),
        ("retrain_on_correction", True, {}, "no rule 'retrain_on_correction' (did you mean "
                                            "'retrain_on_corrections'?)"),
    ],
)
def test_bad_parameters_are_refused_and_change_nothing(review_wb, name, enabled, params,
                                                       message):
    wb = review_wb
    with pytest.raises((ValidationError, NotFoundError), match=None) as caught:
        wb.rules.configure(name, enabled=enabled, params=params)
    assert message in str(caught.value)
    with wb.db.read() as conn:
        assert conn.execute(sa.select(t.rules)).all() == []


def test_parameters_from_text_are_typed_and_kept_across_switches(review_wb):
    wb = review_wb
    params = wb.rules.parse_params("retrain_on_corrections", [
        "threshold=20", "val_fraction=0.4", "promote=no", "imgsz=none", "device=cpu"])
    assert params == {"threshold": 20, "val_fraction": 0.4, "promote": False, "imgsz": None,
                      "device": "cpu"}
    with pytest.raises(ValidationError, match="threshold must be an integer, got '2.5'"):
        wb.rules.parse_params("retrain_on_corrections", ["threshold=2.5"])
    with pytest.raises(ValidationError, match="should look like key=value"):
        wb.rules.parse_params("retrain_on_corrections", ["threshold"])
    wb.rules.configure("retrain_on_corrections", enabled=True, params=params)
    wb.rules.configure("retrain_on_corrections", params={"epochs": 2})
    wb.rules.configure("retrain_on_corrections", enabled=False)
    rule = wb.rules.get("retrain_on_corrections")
    assert not rule.enabled
    assert (rule.params["threshold"], rule.params["epochs"], rule.params["batch"]) == (20, 2, 8)


def test_the_command_line(review_wb):
    from typer.testing import CliRunner

    from workbench.cli import app

    def cli(*args, code=0):
        result = CliRunner().invoke(app, ["--home", str(review_wb.home), *args])
        assert result.exit_code == code, result.output + str(result.exception)
        return result

    listed = cli("rules").output
    assert "hard_negative" in listed and "retrain_on_corrections   off threshold=50" in listed
    refused = cli("rules", "enable", "retrain_on_corrections", "-p", "epochs=ten", code=1)
    assert "epochs must be an integer" in str(refused.exception)
    cli("rules", "enable", "retrain_on_corrections", "-p", "threshold=2", "-p", "epochs=1")
    cli("rules", "disable", "hard_negative")
    verdict(review_wb, "obj_a_0", "corrected", true_class="star")
    verdict(review_wb, "obj_a_1", "false_positive")
    verdict(review_wb, "obj_b_0", "corrected", true_class="star")
    assert "3 event(s) consumed: 1 run(s), 1 job(s) queued" in cli("rules", "process").output
    runs = json.loads(cli("--json", "rules", "runs", "retrain_on_corrections").stdout)
    assert [r["status"] for r in runs] == ["submitted"]
    rules = {r["name"]: r for r in json.loads(cli("--json", "rules").stdout)}
    assert rules["retrain_on_corrections"]["params"]["epochs"] == 1
    assert rules["retrain_on_corrections"]["last_run"]["job_id"] == runs[0]["job_id"]
    assert not rules["hard_negative"]["enabled"]


# -- for real: ultralytics on tiny data -----------------------------------------------------
TINY = {"epochs": 1, "imgsz": 64, "batch": 4, "workers": 0, "unreviewed": "fill",
        "fill_threshold": 0.0, "val_fraction": 0.5}


def _gold(wb) -> list[str]:
    """Two of the fixture's complete images reserved for the gold set: the chain trains on
    the others and is scored on these."""
    chosen = sorted(wb._objects[name].id for name in ("many", "small"))
    assert wb.truth.set_gold("c", chosen) == 2
    return chosen


@pytest.mark.slow
def test_retrain_chain_registers_an_evaluated_version_with_the_gates_decision(ewb):  # noqa: F811
    from workbench.jobs import Worker

    wb = ewb
    corrections = 4  # the fixture's: corrected ×3 and a missed box
    gold = _gold(wb)
    wb.rules.configure("retrain_on_corrections", enabled=True,
                       params={**TINY, "threshold": corrections + 2})
    collection_id = wb.collections.get("c").id
    verdict(wb, "doc_unreviewed_1", "corrected", collection_id, true_class="circle")
    wb.rules.process_pending()
    assert queued(wb, "retrain") == []  # one short of the threshold
    verdict(wb, "doc_small", "missed", collection_id, true_class="circle",
            bbox={"x": 200, "y": 150, "w": 40, "h": 40})
    assert wb.rules.process_pending()["jobs"] == 1
    (chain,) = queued(wb, "retrain")
    Worker(wb).run(exit_when_idle=True)
    chain = wb.jobs.get(chain.id)
    assert chain.status == "done", chain.error
    v2 = wb.registry.get("yolo_detector", "2.0.0")
    assert v2.lineage["training_job"] == chain.id and v2.parent_version == "1.0.0"
    evaluation = wb.evaluation.latest("c")
    assert (evaluation["base_key"], evaluation["candidate_key"]) == (
        "yolo_detector@1.0.0", v2.key)
    assert sorted(evaluation["images"]["ids"]) == gold
    (run,) = wb.rules.runs("retrain_on_corrections")
    assert run["status"] == "done" and run["job_id"] == chain.id
    assert run["result"]["evaluation_id"] == evaluation["id"]
    assert run["result"]["decision"] == evaluation["decision"]
    assert any("mAP50-95" in r for r in run["result"]["decision"]["reasons"])
    # One epoch at 64 px does not beat the hand-made boxes: the gate holds it back.
    assert not evaluation["decision"]["promote"] and not run["result"]["promoted"]
    assert "the gate holds it back; not promoted" in run["message"]
    assert wb.collections.get("c").active_version == "1.0.0"
    # The chain ran v2 on the gold set only, and evaluate_on_batch was not asked.
    docs = wb.detection.count_documents(wb.collections.get("c"), v2.key)
    assert docs == len(gold) < 5
    assert wb.rules.runs("evaluate_on_batch") == []


@pytest.mark.slow
def test_evaluate_on_batch_evaluates_a_v2_batch_against_v1(ewb, starter_weights):  # noqa: F811
    from workbench.detection import DetectParams
    from workbench.jobs import Worker

    wb = ewb
    _gold(wb)
    wb.rules.configure("evaluate_on_batch", enabled=True)
    wb.registry.register_yolo(starter_weights, parent_version="1.0.0")
    wb.detection.run("c", "2.0.0", params=DetectParams(imgsz=64))
    assert wb.rules.process_pending()["jobs"] == 1
    Worker(wb).run(exit_when_idle=True)
    (run,) = wb.rules.runs("evaluate_on_batch")
    assert run["status"] == "done", run["message"]
    evaluation = wb.evaluation.latest("c")
    assert run["result"]["evaluation_id"] == evaluation["id"]
    assert (evaluation["base_key"], evaluation["candidate_key"]) == (
        "yolo_detector@1.0.0", "yolo_detector@2.0.0")
    assert run["result"]["decision"] == evaluation["decision"]
    assert run["message"].startswith("yolo_detector@2.0.0 vs yolo_detector@1.0.0: mAP50-95")


@pytest.mark.slow
def test_a_chain_that_passes_the_gate_promotes_and_redeploys(ewb):  # noqa: F811
    from workbench.jobs import Worker

    wb = ewb
    _gold(wb)
    wb.rules.configure("retrain_on_corrections", enabled=True, params={
        **TINY, "threshold": 5, "min_map50_95_gain": -1.0, "max_class_drop": 1.0})
    wb.rules.configure("evaluate_on_batch", enabled=True)
    verdict(wb, "doc_unreviewed_1", "corrected", wb.collections.get("c").id,
            true_class="circle")
    Worker(wb).run(exit_when_idle=True)  # consumes the event, runs the chain and redeploys
    (run,) = wb.rules.runs("retrain_on_corrections")
    assert run["status"] == "done", run["message"]
    assert run["result"]["decision"]["promote"] and run["result"]["promoted"]
    assert wb.collections.get("c").active_version == "2.0.0"
    redeploy = wb.jobs.get(run["result"]["redeploy_job"])
    assert redeploy.status == "done" and redeploy.params["requested_by"] == run["job_id"]
    assert wb.detection.count_documents(wb.collections.get("c"), "yolo_detector@2.0.0") == 5
    assert wb.rules.runs("evaluate_on_batch") == []  # the chain evaluated it itself


def test_an_unattended_gate_needs_a_gain():
    """0 → 0 (a chain trained on too little, scored on held-out images nobody can find
    anything on) must not be promoted: the rules ask for the app's 0.01 by default."""
    from workbench.rules import RULES

    for name in ("retrain_on_corrections", "evaluate_on_batch"):
        assert RULES[name].defaults["min_map50_95_gain"] == pytest.approx(0.01)
