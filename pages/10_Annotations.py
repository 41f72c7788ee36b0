"""Annotations: browse and filter reviewers' verdicts, look at one with its image and
history, change or delete it, and export the filtered table."""

import streamlit as st

from workbench.ui import page_setup
from workbench.ui.annotations import (
    choose_filters,
    current_page,
    delete_button,
    edit_form,
    export_section,
    history,
    image_with_box,
    pager,
    pick_row,
    table,
)

wb = page_setup("Annotations")
st.title("Annotations")

filters = choose_filters(wb)
if filters is None:
    st.stop()
page = current_page(wb, filters)
if not page.items:
    st.info("No annotation matches these filters.")
    st.stop()
left, right = st.columns([3, 2])
with left:
    table(wb, page.items)
    pager(page)
    annotation = pick_row(page.items)
with right:
    image_with_box(wb, annotation)
    history(wb, annotation)
    edit_form(wb, annotation)
    delete_button(wb, annotation)
st.subheader("Export")
export_section(wb, filters)
