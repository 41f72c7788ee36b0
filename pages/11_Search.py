"""Search: the detections most like a given one (or, with CLIP, images by text), filtered by
class, confidence, verdict and metadata; then one verdict for several of them, or add them to
a reference set."""

import streamlit as st

from workbench.errors import WorkbenchError
from workbench.ui import page_setup, plain
from workbench.ui.search import (
    SIMILAR,
    TEXT,
    actions_panel,
    clip_version,
    result_header,
    results_grid,
    search_from_widgets,
    show_flash,
    text_search_note,
)

wb = page_setup("Search")
st.title("Search")
show_flash()
clip = clip_version(wb)
mode = st.radio("Search by", [SIMILAR, TEXT] if clip else [SIMILAR], horizontal=True,
                key="search_mode")
if clip is None:
    st.caption(text_search_note(wb))
try:
    collection, version, execution = search_from_widgets(wb, mode, clip)
except WorkbenchError as exc:
    st.error(plain(exc), icon="⚠️")
    st.stop()
result_header(execution)
if not execution.hits:
    st.warning("Nothing passes these filters near the query: widen them.")
    st.stop()
chosen = results_grid(wb, version, collection, execution.hits)
actions_panel(wb, collection, version, execution, chosen)
