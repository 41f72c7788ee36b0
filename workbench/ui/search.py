"""Search: find the detections most like a given one (a ``feature_search`` over its
embedding, run by the retriever machinery), or images by text with CLIP; filter the
neighbours, then give several of them one verdict or add them to a reference set."""

from __future__ import annotations

import streamlit as st

SEARCH_PAGE = "pages/11_Search.py"
DETECTION_KEY = "search.detection_id"


def open_search(detection_id: str) -> None:
    """Open the Search page on the neighbours of ``detection_id`` (a "find similar" button's
    action on any page)."""
    st.session_state[DETECTION_KEY] = str(detection_id)
    st.switch_page(SEARCH_PAGE)
