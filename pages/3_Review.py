"""Review: finish whole images (image review, the training data), or work through the
detections the model is least sure of, from the keyboard."""

import streamlit as st

from workbench.ui import page_setup, pick_collection
from workbench.ui.image_review import (
    DISAGREEMENTS,
    IMAGE_REVIEW,
    disagreements,
    image_review,
)
from workbench.ui.review import (
    IMAGE_QUEUE,
    burn_down,
    correct_panel,
    current_view,
    image_check,
    load_queue,
    missed_panel,
    next_strip,
    progress_header,
    queue_inputs,
    verdict_buttons,
)
from workbench.ui.search import open_search

wb = page_setup("Review")
st.title("Review")

left, middle, right = st.columns(3)
collection = pick_collection(
    wb, "review_collection",
    "Nothing to review yet: run a detector on the Detect page (or load the demo).", left)
wb.retrievers.review_queue(collection.name)
wb.retrievers.spot_check(collection.name)
wb.retrievers.image_review(collection.name)
retrievers = [IMAGE_REVIEW] + [r.name for r in wb.retrievers.list(collection.name)
                               if r.name != f"{collection.name}:image-review"] + [
    IMAGE_QUEUE, DISAGREEMENTS]
retriever = middle.selectbox("Queue (retriever)", retrievers,
                             help="image review — whole images, ranked by what the model "
                                  "stands to learn: finish each one (the training data); "
                                  "<collection>:review — uncertain detections; "
                                  "<collection>:spot-check — random confident ones (finds the "
                                  "errors the model is sure of); images with no detections — "
                                  "draw what the model missed where it found nothing; "
                                  "disagreements — complete images where the version and the "
                                  "ground truth differ",
                             index=0, key="review_retriever")
versions = wb.collections.versions_run(collection) or [collection.active_key]
key = right.selectbox("Model version", versions, key="review_version",
                      index=versions.index(collection.active_key)
                      if collection.active_key in versions else 0)
version = wb.registry.get(key)
if retriever == IMAGE_QUEUE:
    image_check(wb, collection, version)
    st.stop()
if retriever == IMAGE_REVIEW:
    image_review(wb, collection, version)
    st.stop()
if retriever == DISAGREEMENTS:
    disagreements(wb, collection, version)
    st.stop()

ready, inputs = queue_inputs(wb, retriever)
if not ready:
    st.stop()
s = load_queue(wb, collection, version, retriever, inputs=inputs)
progress_header(wb, collection, s)
if s.current is None:
    st.success("The queue is empty: every item it selects has a verdict."
               + (f" ({len(s.skipped)} skipped in this session.)" if s.skipped else ""))
    if s.skipped and st.button("Bring back skipped items", key="unskip"):
        s.skipped.clear()
        load_queue(wb, collection, version, retriever, force=True, inputs=inputs)
        st.rerun()
    burn_down(wb, collection, s)
    st.stop()

hit, obj, detections = current_view(wb, collection, version, s)
if st.button("Find similar", key="find_similar", icon=":material/search:",
             help="Search the detections most like this one; give several of them one "
                  "verdict there"):
    open_search(hit.detection_id)
reasoning = st.text_input("Reasoning (optional)", key=f"reasoning_{s.canvas_round}")
if s.mode == "correct":
    correct_panel(wb, collection, version, hit, obj, detections, s, reasoning)
elif s.mode == "missed":
    missed_panel(wb, collection, version, hit, obj, detections, s, reasoning)
else:
    verdict_buttons(wb, collection, hit, s, reasoning)
st.caption("Keys: **A** confirm (accept) · **E** correct · **F** false positive · **M** missed · "
           "**S** skip · **U** undo · **Enter** save · **Esc** cancel")
next_strip(wb, s)
burn_down(wb, collection, s)
