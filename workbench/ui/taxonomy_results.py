"""The Taxonomy page's results per detection: the class each detection of a version was given,
its score and its crop, filtered by class and score range, a page at a time (by cursor, so a
deep page costs what the first does); selected rows go into a reference set."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from workbench import Workbench
from workbench.domain import Collection
from workbench.paging import Page
from workbench.ui import pick_version, plain
from workbench.ui.selection import add_to_references, crop_uri, detection_grid

PER_PAGE = 12  # each row's crop costs the first render of its page
ANY_CLASS = "(any class)"


def results(wb: Workbench, collection: Collection, name: str) -> None:
    """One taxonomy's stored assignments on one version's detections, with their crops."""
    st.subheader("Results per detection")
    taxonomy = wb.taxonomies.get(name)
    version = pick_version(wb, collection, "tax_results_version", label="Detections of")
    counts = wb.taxonomies.label_counts(name, version.version)
    if not counts:
        st.caption(f"No detection of {plain(version.key)} has been classified by "
                   f"{plain(name)} yet: apply it retroactively above (or attach it in "
                   "materialize mode and run detection).")
        return
    cols = st.columns([2, 3])
    label = cols[0].selectbox(
        "Class", [ANY_CLASS, *sorted(counts)], key="tax_results_class",
        format_func=lambda c: c if c == ANY_CLASS else f"{c} ({counts[c]:,})")
    low, high = cols[1].slider("Score", 0.0, 1.0, (0.0, 1.0), 0.05, key="tax_results_score",
                               help="Cosine similarity to the nearest references; the ends "
                                    "of the range are open (0 takes lower scores too, 1 "
                                    "higher).")
    cursors = _cursors((taxonomy.id, version.key, label, low, high))
    # Without a score range the label counts above are the total: no count of the pages.
    known = None
    if low <= 0.0 and high >= 1.0:
        known = sum(counts.values()) if label == ANY_CLASS else counts[label]
    page = wb.taxonomies.assignments_page(
        name, None if label == ANY_CLASS else label, cursor=cursors[-1], limit=PER_PAGE,
        min_score=low if low > 0.0 else None, max_score=high if high < 1.0 else None,
        extractor_key=version.key, count=known is None)
    if known is not None:
        page = replace(page, total=known, exact=True)
    _navigation(page, cursors)
    if not page.items:
        st.caption("No detection matches these filters.")
        return
    selected = detection_grid(_rows(wb, page.items), key="tax_results_table", column_config={
        "score": st.column_config.NumberColumn("score", format="%.3f"),
        "confidence": st.column_config.NumberColumn("detector confidence", format="%.3f")})
    # A wrong result is the reference a taxonomy lacks: select it, give its true class.
    st.caption(f"{len(selected)} selected · click rows' left edge to add detections to a "
               "reference set")
    add_to_references(wb, collection, selected, key="tax_results_refs")


def _rows(wb: Workbench, assignments: list[dict]) -> list[dict]:
    paths: dict[str, str] = {}
    rows = []
    for item in assignments:
        detection = wb.detection.get(item["detection_id"])
        if detection.object_id not in paths:
            paths[detection.object_id] = str(wb.image_path(
                wb.buckets.get_object(detection.object_id)))
        rows.append({"crop": crop_uri(paths[detection.object_id], detection.xyxy),
                     "class": item["label"], "score": round(item["score"], 4),
                     "path": " › ".join(item["path"]) or item["label"],
                     "detector class": detection.class_name,
                     "confidence": round(detection.confidence, 4),
                     "detection": item["detection_id"]})
    return rows


def _navigation(page: Page, cursors: list[str | None]) -> None:
    nav = st.columns([1, 1, 6])
    nav[0].button("← Previous", key="tax_results_previous", disabled=len(cursors) == 1,
                  on_click=cursors.pop, width="stretch")
    nav[1].button("Next →", key="tax_results_next", disabled=page.next_cursor is None,
                  on_click=cursors.append, args=(page.next_cursor,), width="stretch")
    nav[2].caption(f"{page.summary('classified detections')} (page {len(cursors):,})")


def _cursors(scope: tuple) -> list[str | None]:
    """The cursors from the first page to the one shown, kept in the session; other
    filters start again from the first page."""
    state = st.session_state.get("tax_results_cursors")
    if state is None or state["scope"] != scope:
        state = st.session_state["tax_results_cursors"] = {"scope": scope, "cursors": [None]}
    return state["cursors"]
