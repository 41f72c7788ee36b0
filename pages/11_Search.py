"""Search: the detections most like a given one (or, with CLIP, images by text), filtered by
class, confidence, verdict and metadata; then one verdict for several of them, or add them to
a reference set."""

import streamlit as st

from workbench.errors import WorkbenchError
from workbench.ui import page_setup, plain
from workbench.ui.search import (
    MAX_TOP_K,
    actions_panel,
    boxes_collection,
    cached_search,
    clip_version,
    detection_id_box,
    filters_panel,
    forget_results,
    query_view,
    resolve,
    results_grid,
    show_flash,
    similar_stages,
    text_search_note,
    text_stages,
)

wb = page_setup("Search")
st.title("Search")
show_flash()
clip = clip_version(wb)
modes = ["Similar detections", "Text (CLIP)"] if clip else ["Similar detections"]
mode = st.radio("Search by", modes, horizontal=True, key="search_mode")
if clip is None:
    st.caption(text_search_note(wb))

try:
    if mode == "Similar detections":
        detection_id = detection_id_box()
        if not detection_id:
            st.info("Paste a detection id above, or press **Find similar** on a Review item.")
            st.stop()
        query = resolve(wb, detection_id)
        collection, version = query.collection, query.version
        query_view(wb, query)
        top_k = st.number_input("Neighbours to show", 1, MAX_TOP_K, 24, key="search_top_k")
        filters = filters_panel(wb, collection, version, "search")
        execution = cached_search(
            wb, collection, version, "search",
            similar_stages(version.feature_uri("detection_embedding"), filters),
            {"detection_id": query.detection.id, "top_k": int(top_k)})
    else:
        left, right = st.columns([1, 3])
        collection = boxes_collection(wb, left)
        if collection is None:
            st.stop()
        version = wb.registry.get(collection.active_key)
        text = right.text_input("Describe what you are looking for", key="search_text",
                                placeholder="a red circle at night")
        if not text.strip():
            st.info(f"Type a description: the images nearest to it in {plain(clip.key)}'s "
                    f"space are searched, and their {plain(version.key)} detections shown.")
            st.stop()
        top_k = st.number_input("Results to show", 1, MAX_TOP_K, 24, key="search_top_k")
        filters = filters_panel(wb, collection, version, "search")
        execution = cached_search(wb, collection, version, "text-search",
                                  text_stages(clip.feature_uri("image_embedding"), filters),
                                  {"text": text.strip(), "top_k": int(top_k)})
except WorkbenchError as exc:
    st.error(plain(exc), icon="⚠️")
    st.stop()

head, again = st.columns([5, 1])
head.markdown(f"**{len(execution.hits)}** result(s) · execution `{execution.id}` · "
              f"{execution.stage_ms.get('total', 0):.0f} ms")
if again.button("Search again", key="search_again"):
    forget_results()
    st.rerun()
if not execution.hits:
    st.warning("Nothing passes these filters near the query: widen them.")
    st.stop()
chosen = results_grid(wb, version, collection, execution.hits)
actions_panel(wb, collection, version, execution, chosen)
