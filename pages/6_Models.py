"""Models: the registry with lineage, v1 against v2 on the gold set, promote or roll back."""

import streamlit as st

from workbench.ui import jobs_panel, page_setup, pick_collection, plain, show_errors
from workbench.ui.fiftyone import open_in_fiftyone
from workbench.ui.loop import (
    comparison_view,
    gate_form,
    registry_table,
    regression_gallery,
)

wb = page_setup("Models")
st.title("Models")
collection = pick_collection(
    wb, "models_collection",
    "No collection yet: register a model and create a collection on the Detect page.")
registry_table(wb, collection)
open_in_fiftyone(wb, collection, key="models_fiftyone")
versions = [v.version for v in wb.registry.list(collection.extractor_name)]
if len(versions) < 2:
    st.info("Fine-tune a second version on the Export & Train page to compare it with this one.")
    jobs_panel(wb)
    st.stop()

st.subheader("Compare")
left, right = st.columns(2)
base = left.selectbox("Base", versions, index=versions.index(collection.active_version),
                      key="compare_base")
candidate = right.selectbox("Candidate", versions, index=len(versions) - 1,
                            key="compare_candidate")
gate = gate_form()
run_cols = st.columns(3)
if run_cols[0].button("Evaluate on the gold set", type="primary", key="evaluate"):
    with show_errors():
        st.session_state["evaluation"] = wb.evaluation.compare_versions(
            collection.name, base, candidate, gate)
if run_cols[1].button(f"Run {plain(collection.extractor_name)}@{plain(candidate)} over the collection",
                      key="redeploy"):
    with show_errors():
        wb.detection.submit(collection.name, candidate)
        st.toast("Detection queued; evaluate when it has finished.")
if run_cols[2].button("…on the gold set only", key="redeploy_heldout"):
    with show_errors():
        ids, _ = wb.evaluation.held_out_images(collection)
        wb.detection.submit(collection.name, candidate, object_ids=ids)
        st.toast(f"Detection queued on the {len(ids)} gold images.")
record = st.session_state.get("evaluation") or wb.evaluation.latest(collection.name)
if record:
    comparison_view(wb, collection, record)
    diffs = wb.detection.diff(collection, record["base_key"], record["candidate_key"],
                              record["images"]["ids"])
    st.caption("Per-detection changes on these images: "
               f"{sum(len(d.added) for d in diffs)} added, "
               f"{sum(len(d.removed) for d in diffs)} removed, "
               f"{sum(len(d.class_changed) for d in diffs)} class changed, "
               f"{sum(len(d.moved) for d in diffs)} moved")
    regression_gallery(wb, collection, record)

st.subheader("Promote or roll back")
target = st.selectbox("Make active", versions, index=len(versions) - 1, key="promote_version")
reason = st.text_input("Reason (needed when the version has not passed the gate)",
                       key="promote_reason")
if st.button(f"Make {plain(target)} active", key="promote"):
    with show_errors():
        done = wb.evaluation.promote(collection.name, target, reason or None)
        st.success(plain(f"{done['from_version']} → {done['to_version']}"))
jobs_panel(wb)
