"""Widgets of the Retrievers page: list, create, edit, validate and run retrievers, and show
their executions; and the inputs form that asks for a retriever's ``{{INPUT.x}}`` values
(the Retrievers page's run, and the Review page before it runs such a retriever as a queue).

Everything goes through ``wb.retrievers``: a stage list is checked by the same code the CLI's
``workbench retrievers save`` uses, so the page shows the same one-line errors.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from workbench import Workbench
from workbench.domain import Collection
from workbench.errors import ValidationError
from workbench.retriever_stages import TEMPLATE
from workbench.retrievers import Execution, Retriever
from workbench.ui import plain, show_errors

NEW = "+ new retriever"
CHOICE_KEY = "retrievers_choice"
EXAMPLE_STAGES = [
    {"stage_name": "of_a_class", "stage_type": "filter", "config": {"filters": {"AND": [
        {"field": "class", "operator": "eq", "value": "{{INPUT.class}}"},
        {"field": "confidence", "operator": "lt", "value": "{{INPUT.max_confidence|0.7}}"},
        {"field": "annotation.label", "operator": "exists", "value": False}]}}},
    {"stage_name": "most_uncertain", "stage_type": "sort", "config": {"by": "uncertainty"}},
    {"stage_name": "page", "stage_type": "limit", "config": {"limit": "{{INPUT.limit|20}}"}},
]
EXECUTIONS_SHOWN = 20
HITS_SHOWN = 500  # rows of a run's table; the execution keeps every result id


# -- {{INPUT.x}} values ---------------------------------------------------------------------
def template_inputs(stages: Any) -> dict[str, str | None]:
    """The ``{{INPUT.x}}`` names a stage list uses, in order, each with its default as
    written (None: the input is required)."""
    found: dict[str, str | None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            for match in TEMPLATE.finditer(value):
                name, default = match.group(1), match.group(2)
                if found.get(name) is None:
                    found[name] = default
    walk(stages)
    return found


def parse_input(text: str) -> Any:
    """An input as typed: JSON when it reads as JSON (``0.5``, ``true``, ``["a", "b"]``),
    else the text itself (``circle``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def inputs_form(stages: Any, key: str, submit: str, note: str = ""
                ) -> tuple[dict[str, Any] | None, bool]:
    """A form with a field per ``{{INPUT.x}}`` of ``stages`` (defaults shown); returns the
    inputs last submitted (kept for later reruns under ``key``; None before) and whether
    they were submitted in this run. A required input left empty is refused with a
    one-line error."""
    names = template_inputs(stages)
    with st.form(f"{key}_form", border=True):
        if note:
            st.markdown(note)
        typed = {}
        for name, default in names.items():
            typed[name] = st.text_input(
                name if default is not None else f"{name} (required)",
                value=default or "", key=f"{key}_{name}",
                help="Read as JSON when it is JSON (0.5, true, [\"a\", \"b\"]), else as text."
                     + (f" Default: {default}" if default is not None else ""))
        pressed = st.form_submit_button(submit, type="primary", key=f"{key}_submit")
    if pressed:
        missing = [n for n, d in names.items() if d is None and not typed[n].strip()]
        if missing:
            st.error(f"input {missing[0]!r} is required by this retriever: fill it in, then "
                     f"press {submit}", icon="⚠️")
            st.session_state.pop(key, None)
            return None, False
        # A default left as it is stays the retriever's own (the execution logs what was
        # given, as the CLI's --input does).
        st.session_state[key] = {n: parse_input(v.strip()) for n, v in typed.items()
                                 if v.strip() and v.strip() != names[n]}
    return st.session_state.get(key), bool(pressed)


# -- the editor -----------------------------------------------------------------------------
def parse_stages(text: str) -> Any:
    """The stage list typed in the editor; not JSON is one line that says where."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"the stages are not JSON ({exc}); write a list of stages like "
                              "[{\"stage_type\": \"limit\", \"config\": {\"limit\": 20}}]"
                              ) from None


def stages_summary(stages: Any) -> str:
    return " → ".join(s.get("stage_type", "?") for s in stages if isinstance(s, dict))


def retrievers_table(retrievers: list[Retriever]) -> None:
    if not retrievers:
        st.caption("No retrievers in this collection yet: create one below.")
        return
    st.dataframe([{"name": r.name, "stages": stages_summary(r.stages),
                   "inputs": ", ".join(template_inputs(list(r.stages))),
                   "description": r.description,
                   "updated": r.updated_at.strftime("%Y-%m-%d %H:%M")} for r in retrievers],
                 hide_index=True, width="stretch")


def pick_retriever(retrievers: list[Retriever]) -> Retriever | None:
    """The retriever to edit and run (None: a new one)."""
    pending = st.session_state.pop("retrievers.pending_choice", None)
    names = [r.name for r in retrievers]
    if pending in names:
        st.session_state[CHOICE_KEY] = pending
    choice = st.selectbox("Retriever", [NEW, *names], key=CHOICE_KEY)
    return None if choice == NEW else next(r for r in retrievers if r.name == choice)


def editor(wb: Workbench, collection: Collection, retriever: Retriever | None) -> None:
    """Name, description and stages (JSON) of a new or stored retriever; Validate checks
    them as saving would, Save stores them."""
    loaded = retriever.id if retriever else NEW
    if st.session_state.get("retrievers.loaded") != loaded:
        st.session_state["retriever_name"] = retriever.name if retriever else ""
        st.session_state["retriever_description"] = retriever.description if retriever else ""
        st.session_state["retriever_stages"] = json.dumps(
            list(retriever.stages) if retriever else EXAMPLE_STAGES, indent=2)
        st.session_state["retrievers.loaded"] = loaded
    st.subheader("Edit" if retriever else "Create a retriever")
    left, right = st.columns([1, 2])
    name = left.text_input("Name", key="retriever_name",
                           help="Saving under another name makes a copy.")
    description = right.text_input("Description", key="retriever_description")
    text = st.text_area("Stages (JSON)", key="retriever_stages", height=320,
                        help="A list of stages: feature_search, filter, sort, diversity, "
                             "sample, taxonomy, limit. {{INPUT.x}} (or {{INPUT.x|default}}) "
                             "makes a value an input asked for at run time.")
    cols = st.columns([1, 1, 4])
    if cols[0].button("Validate", key="retriever_validate"):
        with show_errors():
            checked = wb.retrievers.validate(collection.name, parse_stages(text))
            inputs = template_inputs(checked)
            st.success(plain(f"Valid: {len(checked)} stage(s), {stages_summary(checked)}"
                             + (f"; inputs: {', '.join(inputs)}" if inputs else
                                "; no inputs")))
    if cols[1].button("Save", key="retriever_save", type="primary"):
        with show_errors():
            replace = retriever is not None and name.strip() == retriever.name
            saved = wb.retrievers.save(name.strip(), collection.name, parse_stages(text),
                                       description, replace=replace)
            st.session_state["retrievers.flash"] = (
                f"Saved retriever '{saved.name}' ({len(saved.stages)} stages).")
            st.session_state["retrievers.pending_choice"] = saved.name
            st.session_state.pop("retrievers.loaded", None)  # reload the stored stages
            st.rerun()


def show_flash() -> None:
    message = st.session_state.pop("retrievers.flash", None)
    if message:
        st.success(plain(message))


# -- running --------------------------------------------------------------------------------
def run_panel(wb: Workbench, collection: Collection, retriever: Retriever) -> None:
    """Run the stored retriever with its inputs over a chosen version; show the hits."""
    st.subheader("Run")
    versions = wb.collections.versions_run(collection) or [collection.active_key]
    cols = st.columns([2, 1])
    key = cols[0].selectbox("Model version", versions, key="retriever_run_version",
                            index=versions.index(collection.active_key)
                            if collection.active_key in versions else 0)
    count = cols[1].checkbox("Count every match", key="retriever_run_count",
                             help="An exact count of the candidates (a scan of them all).")
    version = wb.registry.get(key).version
    stages = list(retriever.stages)
    state_key = f"retriever_inputs_{retriever.id}"
    held = st.session_state.get("retrievers.run")
    if template_inputs(stages):
        inputs, pressed = inputs_form(stages, state_key, "Run",
                                      "**Inputs** — one field per `{{INPUT.x}}` of the stages")
    else:
        inputs = {}
        pressed = st.button("Run", key="retriever_run", type="primary")
    if pressed:
        with show_errors(), st.spinner(f"Running {retriever.name}…"):
            execution = wb.retrievers.execute(retriever.name, inputs, version, count=count)
            held = (retriever.id, inputs, version, count, execution)
            st.session_state["retrievers.run"] = held
    if held is None or held[0] != retriever.id:
        return
    _, inputs, version, count, execution = held
    show_execution_result(wb, execution)
    if execution.next_cursor and st.button("Next page", key="retriever_next_page"):
        with show_errors(), st.spinner("Running the next page…"):
            following = wb.retrievers.execute(retriever.name, inputs, version, count=count,
                                              cursor=execution.next_cursor)
            st.session_state["retrievers.run"] = (retriever.id, inputs, version, count,
                                                  following)
            st.rerun()


def show_execution_result(wb: Workbench, execution: Execution) -> None:
    matched = ("" if execution.matched is None else
               f" of {'' if execution.matched_exact else 'at least '}{execution.matched:,} "
               "matched")
    st.markdown(f"Execution `{execution.id}` on {plain(execution.extractor_key)}: "
                f"**{len(execution.hits)}** hit(s){matched} in "
                f"{execution.stage_ms.get('total', 0):.1f} ms")
    for limit in execution.limits:
        st.caption(f"Note: {plain(limit)}")
    if execution.hits:
        st.dataframe([{"detection_id": h.detection_id, "class": h.class_name,
                       "confidence": round(h.confidence, 3),
                       "score": None if h.score is None else round(h.score, 4),
                       "object_id": h.object_id} for h in execution.hits[:HITS_SHOWN]],
                     hide_index=True, width="stretch")
    st.bar_chart([{"stage": stage, "ms": ms} for stage, ms in execution.stage_ms.items()
                  if stage != "total"], x="stage", y="ms", horizontal=True, height=180)


def executions_panel(wb: Workbench, retriever: Retriever) -> None:
    """The retriever's latest executions: inputs, result ids and time per stage."""
    st.subheader("Executions")
    runs = wb.retrievers.executions(retriever.name, EXECUTIONS_SHOWN)
    if not runs:
        st.caption("Not run yet.")
        return
    st.dataframe([{"execution": r["id"], "when": r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
                   "inputs": json.dumps(r["inputs"]), "results": len(r["result_ids"]),
                   "total ms": r["stage_ms"].get("total")} for r in runs],
                 hide_index=True, width="stretch")
    chosen = st.selectbox("Execution", [r["id"] for r in runs], key="retriever_execution")
    run = next(r for r in runs if r["id"] == chosen)
    left, right = st.columns(2)
    with left:
        st.markdown("**Inputs**")
        st.json(run["inputs"])
        st.markdown(f"**Result ids** ({len(run['result_ids'])})")
        st.code("\n".join(run["result_ids"][:HITS_SHOWN]) or "(none)", language="text")
    with right:
        st.markdown("**Time per stage (ms)**")
        st.dataframe([{"stage": s, "ms": ms} for s, ms in run["stage_ms"].items()],
                     hide_index=True, width="stretch")
