"""Retrievers: list, create, edit and validate a collection's retrievers, run one with its
inputs, and see each execution (inputs, result ids, time per stage)."""

import streamlit as st

from workbench.ui import page_setup, pick_collection
from workbench.ui.retrievers import (
    editor,
    executions_panel,
    pick_retriever,
    retrievers_table,
    run_panel,
    show_flash,
)

wb = page_setup("Retrievers")
st.title("Retrievers")
show_flash()
collection = pick_collection(wb, "retrievers_collection",
                             "No collection yet: run a detector on the Detect page (or load "
                             "the demo); retrievers pick detections of a collection.")
retrievers = wb.retrievers.list(collection.name)
retrievers_table(retrievers)
retriever = pick_retriever(retrievers)
editor(wb, collection, retriever)
if retriever is not None:
    run_panel(wb, collection, retriever)
    executions_panel(wb, retriever)
