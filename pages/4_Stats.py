"""Stats: how good the model is, as reviewers' verdicts tell it."""

import streamlit as st

from workbench.ui import page_setup, show_errors
from workbench.ui.stats import choose_filters, load_report, render_report

wb = page_setup("Stats")
st.title("Stats")

filters = choose_filters(wb)
if filters is None:
    st.info("Statistics come from reviewers' annotations on a collection's detections. "
            "Create a collection on the **Detect** page (or load the demo on Home) first.")
    st.stop()

with show_errors():
    render_report(wb, filters, load_report(wb, filters))
