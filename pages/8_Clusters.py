"""Clusters: find groups nobody has labelled yet, name them, promote them, relabel them."""

import streamlit as st

from workbench.ui import jobs_panel, page_setup, pick_collection, show_errors
from workbench.ui.clusters import (
    actions,
    cluster_table,
    member_grid,
    run_form,
    scatter,
    selection_actions,
)

wb = page_setup("Clusters")
st.title("Clusters")
collection = pick_collection(
    wb, "clusters_collection",
    "No collection yet: run a detector on the Detect page (or load the demo).")
run_form(wb, collection)
jobs_panel(wb)
runs = wb.clusters.list(collection.name)
if not runs:
    st.info("No cluster run yet: choose the detections and an algorithm above.")
    st.stop()
run = wb.clusters.get(st.selectbox(
    "Run", [r.id for r in runs], key="cluster_pick",
    format_func=lambda i: next(f"{r.created_at:%Y-%m-%d %H:%M} · {r.algorithm} · "
                               f"{r.n_members} detections · {len(r.clusters)} clusters"
                               for r in runs if r.id == i)))
if st.button("Label clusters" + (" (built-in + LLM)" if wb.settings.llm_url else ""),
             key="cluster_label"):
    with show_errors():
        run = wb.clusters.label(run.id)
scatter(wb, run)
cluster_table(run)
if run.clusters:
    chosen = st.selectbox("Cluster", sorted(int(k) for k in run.clusters), key="cluster_one",
                          format_func=lambda c: f"{c}: {run.name_of(c)}")
    selected = member_grid(wb, run, chosen)
    selection_actions(wb, run, selected)
    actions(wb, run, chosen, selected)
