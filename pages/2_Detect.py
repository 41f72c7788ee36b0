"""Detect: run an extractor version over a collection and look at what it found."""

import streamlit as st

from workbench.ui import jobs_panel, page_setup, pick_version, show_errors
from workbench.ui.detect import (
    collection_form,
    detail_view,
    register_model_form,
    results_grid,
    run_controls,
)
from workbench.ui.fiftyone import open_in_fiftyone

wb = page_setup("Detect")
st.title("Detect")

with st.expander("Register a model or a custom extractor", expanded=not wb.registry.list()):
    register_model_form(wb)

collections = wb.collections.list()
with st.expander("Create a collection", expanded=not collections):
    collection_form(wb)
if not collections:
    st.info("Create a collection to run a detector over a bucket (or load the demo on Home).")
    st.stop()

left, right = st.columns(2)
names = [c.name for c in collections]
collection = wb.collections.get(left.selectbox("Collection", names, key="collection"))
chosen = pick_version(wb, collection, "version", where=right)

with show_errors():
    run_controls(wb, collection, chosen)
open_in_fiftyone(wb, collection, key="detect_fiftyone")
jobs_panel(wb)

selected = results_grid(wb, collection, chosen)
if selected:
    detail_view(wb, collection, chosen, selected)
