"""The Retrievers page (list, create, edit, validate with the CLI's errors, run with inputs,
executions) and the Review page asking for a queue retriever's inputs before it runs."""

from __future__ import annotations

import json

import pytest

from tests.app.conftest import populate, run_page, shown
from workbench.errors import ValidationError
from workbench.retriever_stages import validate_stages

PAGE = "pages/12_Retrievers.py"
WITH_INPUT = [
    {"stage_name": "of_a_class", "stage_type": "filter", "config": {"filters": {
        "field": "class", "operator": "eq", "value": "{{INPUT.class}}"}}},
    {"stage_name": "most_uncertain", "stage_type": "sort", "config": {"by": "uncertainty"}},
    {"stage_name": "page", "stage_type": "limit", "config": {"limit": "{{INPUT.limit|5}}"}},
]


@pytest.fixture
def populated(workspace, tmp_path):
    populate(workspace, tmp_path)
    return workspace


def _ok(at):
    assert not at.exception, [e.message for e in at.exception]
    return at


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def test_an_empty_workspace_says_so(workspace):
    at = _ok(run_page(PAGE))
    assert any("No collection yet" in i.value for i in at.info)


def test_create_validate_and_save_a_retriever(populated):
    wb = populated
    at = _ok(run_page(PAGE))
    assert at.selectbox(key="retrievers_choice").value == "+ new retriever"
    at.text_input(key="retriever_name").input("circles")
    at.text_area(key="retriever_stages").input(json.dumps(WITH_INPUT))
    at.button(key="retriever_validate").click().run()
    _ok(at)
    assert any("Valid: 3 stage(s), filter → sort → limit; inputs: class, limit" in shown(s)
               for s in at.success)
    assert [r.name for r in wb.retrievers.list()] == []  # validating stores nothing
    at.button(key="retriever_save").click().run()
    _ok(at)
    saved = wb.retrievers.get("circles")
    assert [s["stage_type"] for s in saved.stages] == ["filter", "sort", "limit"]
    assert any("Saved retriever 'circles'" in shown(s) for s in at.success)
    # The page now edits and runs it, and lists it with its inputs.
    assert at.selectbox(key="retrievers_choice").value == "circles"
    table = at.dataframe[0].value
    assert list(table["name"]) == ["circles"] and list(table["inputs"]) == ["class, limit"]


@pytest.mark.parametrize("stages", [
    [{"stage_type": "filtr", "config": {}}],
    [{"stage_type": "filter", "config": {"filters": {"field": "confidance", "operator": "lt",
                                                     "value": 0.5}}}],
    [{"stage_type": "limit", "config": {"limit": 0}}],
    [{"stage_type": "sort", "config": {"by": "size"}}],
])
def test_a_bad_stage_list_gets_the_clis_error_in_one_line(populated, stages):
    wb = populated
    with pytest.raises(ValidationError) as raised:  # what `retrievers save` says
        validate_stages(stages, frozenset({"camera_id"}))
    at = _ok(run_page(PAGE))
    at.text_input(key="retriever_name").input("bad")
    at.text_area(key="retriever_stages").input(json.dumps(stages))
    for button in ("retriever_validate", "retriever_save"):
        at.button(key=button).click().run()
        (error,) = _errors(at)
        assert "\n" not in error
        assert error.replace("\\", "") == str(raised.value)
    assert wb.retrievers.list() == []


def test_stages_that_are_not_json_are_one_line(populated):
    at = _ok(run_page(PAGE))
    at.text_input(key="retriever_name").input("bad")
    at.text_area(key="retriever_stages").input("[{\"stage_type\": ")
    at.button(key="retriever_save").click().run()
    (error,) = _errors(at)
    assert "the stages are not JSON" in error
    assert populated.retrievers.list() == []


def test_edit_a_stored_retriever(populated):
    wb = populated
    wb.retrievers.save("circles", "cams", WITH_INPUT, "before")
    at = _ok(run_page(PAGE))
    at.selectbox(key="retrievers_choice").select("circles").run()
    assert json.loads(at.text_area(key="retriever_stages").value) == list(
        wb.retrievers.get("circles").stages)
    edited = [*WITH_INPUT[:2], {"stage_type": "limit", "config": {"limit": 3}}]
    at.text_input(key="retriever_description").input("after")
    at.text_area(key="retriever_stages").input(json.dumps(edited))
    at.button(key="retriever_save").click().run()
    _ok(at)
    saved = wb.retrievers.get("circles")
    assert saved.description == "after" and saved.stages[-1]["config"] == {"limit": 3}
    assert len(wb.retrievers.list()) == 1  # replaced, not copied


def test_run_with_inputs_and_see_the_execution(populated):
    wb = populated
    saved = wb.retrievers.save("circles", "cams", WITH_INPUT)
    at = _ok(run_page(PAGE))
    at.selectbox(key="retrievers_choice").select("circles").run()
    form = f"retriever_inputs_{saved.id}"
    assert at.text_input(key=f"{form}_limit").value == "5"  # its default, shown
    # The required input left empty: one line, nothing run.
    at.button(key=f"{form}_submit").click().run()
    assert any("input 'class' is required" in e for e in _errors(at))
    assert wb.retrievers.executions("circles") == []
    at.text_input(key=f"{form}_class").input("circle")
    at.text_input(key=f"{form}_limit").input("3")
    at.button(key=f"{form}_submit").click().run()
    _ok(at)
    (run,) = wb.retrievers.executions("circles")
    assert run["inputs"] == {"class": "circle", "limit": 3}
    assert 0 < len(run["result_ids"]) <= 3
    hits = at.dataframe[1].value  # the table of the run's hits
    assert list(hits["detection_id"]) == run["result_ids"]
    assert set(hits["class"]) == {"circle"}
    assert any(run["id"] in m.value for m in at.markdown)
    # The executions table and the chosen one's inputs, result ids, time per stage.
    executions = at.dataframe[2].value
    assert list(executions["execution"]) == [run["id"]]
    assert at.selectbox(key="retriever_execution").value == run["id"]
    assert json.loads(at.json[0].value) == {"class": "circle", "limit": 3}
    assert at.code[0].value.splitlines() == run["result_ids"]
    stages = at.dataframe[3].value
    assert set(run["stage_ms"]) == set(stages["stage"]) >= {"compile", "fetch", "page", "total"}
    # A rerun for another widget runs nothing again.
    at.checkbox(key="retriever_run_count").check().run()
    assert len(wb.retrievers.executions("circles")) == 1


def test_a_review_queue_with_inputs_asks_for_them(populated):
    wb = populated
    saved = wb.retrievers.save("circles", "cams", WITH_INPUT)
    at = _ok(run_page("pages/3_Review.py"))
    at.selectbox(key="review_retriever").select("circles").run()
    _ok(at)  # it used to fail: "input 'class' is required by this retriever"
    assert not [b for b in at.button if b.key == "confirm"]  # nothing runs before the inputs
    form = "review_inputs_circles"
    at.text_input(key=f"{form}_class").input("square")
    at.button(key=f"{form}_submit").click().run()
    _ok(at)
    current = at.session_state["review"].current
    assert current.class_name == "square"
    at.button(key="confirm").click().run()
    (confirmed,) = wb.annotations.list(label="confirmed").items
    assert confirmed.document_id == current.detection_id
    assert confirmed.retriever_id == saved.id
    assert wb.retrievers.execution(confirmed.execution_id)["inputs"] == {"class": "square"}
    # The next item comes from the same queue, with the same inputs (no form again).
    assert at.session_state["review"].current.class_name == "square"


def test_built_in_queues_ask_for_nothing(populated):
    at = _ok(run_page("pages/3_Review.py"))
    at.selectbox(key="review_retriever").select("cams:review").run()
    assert not [f for f in at.text_input if f.key.startswith("review_inputs_")]
    assert at.button(key="confirm")
