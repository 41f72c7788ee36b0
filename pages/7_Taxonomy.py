"""Taxonomy: curate reference sets, build taxonomies, classify every detection against them."""

import streamlit as st

from workbench.ui import jobs_panel, page_setup, pick_collection
from workbench.ui.taxonomy import reference_sets, taxonomy_form, taxonomy_view
from workbench.ui.taxonomy_results import results

wb = page_setup("Taxonomy")
st.title("Taxonomy")
collection = pick_collection(
    wb, "taxonomy_collection",
    "No collection yet: run a detector on the Detect page (or load the demo).")
st.subheader("Reference sets")
chosen = reference_sets(wb, collection)
if chosen is None:
    st.info("Create a reference set, then promote reviewed detections into it.")
    st.stop()
st.subheader("Taxonomies")
taxonomy_form(wb, chosen)
names = [t.name for t in wb.taxonomies.list()]
if names:
    taxonomy = st.selectbox("Taxonomy", names, key="tax_pick")
    taxonomy_view(wb, collection, taxonomy)
    results(wb, collection, taxonomy)
jobs_panel(wb)
