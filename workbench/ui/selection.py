"""Detections chosen by clicking: a grid of crops whose rows are selected with a click (the
Detect page's detections of an image, a cluster's members), and what can be done with the
selection — add it to a reference set, find detections like one of them."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import streamlit as st

from workbench import Workbench
from workbench.domain import Collection
from workbench.ui import plain, show_errors

NEW_SET = "＋ New reference set"


@st.cache_data(show_spinner=False, max_entries=20_000)
def crop_uri(path: str, xyxy: tuple) -> str:
    """A detection's crop as a data URI: what a table's image column and plotly's point
    data can carry."""
    from workbench.ui.review import crop

    return "data:image/jpeg;base64," + base64.b64encode(crop(path, xyxy)).decode()


def detection_grid(rows: Sequence[dict[str, Any]], key: str, height: int | None = None,
                   column_config: dict[str, Any] | None = None,
                   selected: Sequence[str] = ()) -> list[str]:
    """A table of detections, one row each with its crop (``crop``: a data URI) and its id
    (``detection``); clicking rows selects them (those in ``selected`` are selected when the
    table first shows). Returns the selected detections' ids."""
    chosen = set(selected)
    default = [i for i, row in enumerate(rows) if row["detection"] in chosen]
    event = st.dataframe(
        list(rows), key=key, on_select="rerun", selection_mode="multi-row", hide_index=True,
        width="stretch", row_height=56, **({"height": height} if height else {}),
        **({"selection_default": {"selection": {"rows": default, "columns": []}}}
           if default else {}),
        column_config={"crop": st.column_config.ImageColumn("crop", width="small"),
                       "confidence": st.column_config.NumberColumn("confidence",
                                                                   format="%.3f"),
                       "detection": st.column_config.TextColumn("detection"),
                       **(column_config or {})})
    return [rows[i]["detection"] for i in event.selection.rows if i < len(rows)]


def add_to_references(wb: Workbench, collection: Collection, detection_ids: Sequence[str],
                      key: str) -> None:
    """Put the selected detections into a reference set of the collection (or a new one),
    with their predicted class or the one typed."""
    sets = [r.name for r in wb.references.list(collection.name)]
    cols = st.columns([3, 3, 3, 2], vertical_alignment="bottom")
    chosen = cols[0].selectbox("Reference set", [*sets, NEW_SET], key=f"{key}_set")
    new_name = cols[1].text_input("New set's name", f"{collection.name}-references",
                                  key=f"{key}_new_name", disabled=chosen != NEW_SET)
    true_class = cols[2].text_input("True class", key=f"{key}_class",
                                    placeholder="default: each one's predicted class")
    count = len(detection_ids)
    if cols[3].button(f"Add {count} selected" if count else "Add selected", key=f"{key}_add",
                      disabled=not count, type="primary", width="stretch",
                      help="Select rows in the table (click their left edge) first."):
        with show_errors():
            name = chosen
            if chosen == NEW_SET:
                name = new_name.strip()
                wb.references.create(name, collection.name)
            done = wb.references.add(name, list(detection_ids), true_class.strip() or None)
            st.success(f"{done['added']} added to {plain(name)}, {done['already']} already "
                       f"in it (version {done['version']}).")


def find_similar(detection_ids: Sequence[str], key: str) -> None:
    """A "Find similar" button: the Search page on the neighbours of the one selected
    detection."""
    from workbench.ui.search import open_search

    one = len(detection_ids) == 1
    if st.button("Find similar", key=key, disabled=not one, icon=":material/search:",
                 help="Select exactly one detection: the Search page shows the detections "
                      "most like it."):
        open_search(detection_ids[0])
