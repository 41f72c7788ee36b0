"""Widgets of the Annotations page: the filters, one page of the table (by cursor), the
selected annotation with its image, box and history, editing and deleting it, and the
export of every filtered row as CSV or Parquet."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import streamlit as st

from workbench import Workbench
from workbench.annotations import VERDICTS, Annotation
from workbench.errors import NotFoundError
from workbench.ui import plain, show_errors
from workbench.ui.render import draw_boxes

ANY = "any"
PAGE_SIZE = 50
EXPORT_BATCH = 1000  # rows read per query while exporting
ORIGINS = {ANY: None, "human (a reviewer's)": "human",
           "carried (from the ground truth)": "carried"}


@dataclass(frozen=True)
class Filters:
    """What the table shows: the keyword arguments of ``wb.annotations.page``."""

    collection_id: str | None = None
    label: str | None = None
    class_name: str | None = None
    author: str | None = None
    extractor_key: str | None = None
    retriever_id: str | None = None
    origin: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def choose_filters(wb: Workbench) -> Filters | None:
    """The filter widgets; None (and a note) when the workspace has no annotation yet."""
    if not wb.annotations.page(limit=1).items:
        st.info("No annotations yet. Verdicts appear here as reviewers give them on the "
                "**Review** page (or load the demo on Home).")
        return None
    collections = {c.name: c.id for c in wb.collections.list()}
    top = st.columns(4)
    chosen = top[0].selectbox("Collection", [ANY, *collections], key="ann_collection")
    collection_id = collections.get(chosen)
    retrievers = {r.id: r.name for r in wb.retrievers.list()}

    def pick(where, title: str, column: str, names: dict[str, str] | None = None):
        values = wb.annotations.values(column, collection_id)
        value = where.selectbox(title, [ANY, *values], key=f"ann_{column}",
                                format_func=lambda v: (names or {}).get(v, v))
        return None if value == ANY else value

    label = pick(top[1], "Label", "label")
    class_name = pick(top[2], "Class", "class_name")
    author = pick(top[3], "Author", "author")
    bottom = st.columns(4)
    version = pick(bottom[0], "Model version", "extractor_key")
    retriever = pick(bottom[1], "Retriever", "retriever_id", retrievers)
    origin = ORIGINS[bottom[2].selectbox("Origin", list(ORIGINS), key="ann_origin")]
    days = bottom[3].date_input("Created between", value=[], key="ann_days",
                                help="one day, or a first and a last day (UTC)")
    since, until = _day_range(days)
    return Filters(collection_id, label, class_name, author, version, retriever, origin,
                   since, until)


def _day_range(days) -> tuple[datetime | None, datetime | None]:
    """The UTC instants a date-range widget's days cover (the last day included)."""
    days = [d for d in (days if isinstance(days, list | tuple) else [days]) if d]
    if not days:
        return None, None
    first, last = days[0], days[-1]

    def start(day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=UTC)

    return start(first), start(last) + timedelta(days=1)


def current_page(wb: Workbench, filters: Filters):
    """This tab's page of the table under ``filters``: the first one whenever they change."""
    paging = st.session_state.get("ann_paging")
    if paging is None or paging["filters"] != filters:
        paging = st.session_state["ann_paging"] = {"filters": filters, "cursors": [None]}
    return wb.annotations.page(**asdict(filters), cursor=paging["cursors"][-1],
                               limit=PAGE_SIZE)


def pager(page) -> None:
    """How many rows of how many, and the previous and next buttons."""
    cursors = st.session_state["ann_paging"]["cursors"]
    cols = st.columns([4, 1, 1])
    cols[0].caption(page.summary("annotations"))
    if cols[1].button("Previous", key="ann_previous", disabled=len(cursors) < 2):
        cursors.pop()
        st.rerun()
    if cols[2].button("Next", key="ann_next", disabled=page.next_cursor is None):
        cursors.append(page.next_cursor)
        st.rerun()


def class_of(annotation: Annotation) -> str | None:
    """The true class a reviewer gave, else the class the model predicted."""
    payload = annotation.payload
    return payload.get("true_class") or payload.get("predicted_class")


def table(wb: Workbench, annotations: list[Annotation]) -> None:
    """The page's rows; clicking one selects it (as the Annotation box below does)."""
    retrievers = {r.id: r.name for r in wb.retrievers.list()}
    event = st.dataframe([{"time": a.created_at.strftime("%Y-%m-%d %H:%M:%S"), "label": a.label,
                   "class": class_of(a), "author": a.author, "version": a.extractor_key,
                   "retriever": retrievers.get(a.retriever_id, a.retriever_id),
                   "origin": a.origin, "confidence": a.confidence, "revision": a.revision,
                   "id": a.id} for a in annotations],
                 hide_index=True, width="stretch", key="ann_table", on_select="rerun",
                 selection_mode="single-row")
    rows = event.selection.rows
    clicked = annotations[rows[0]].id if rows and rows[0] < len(annotations) else None
    if clicked and clicked != st.session_state.get("ann_clicked"):  # a new click only,
        st.session_state["ann_selected"] = clicked  # so the box below can still choose
    st.session_state["ann_clicked"] = clicked


def pick_row(annotations: list[Annotation]) -> Annotation:
    """The row whose image, history and edit form are shown beside the table."""
    by_id = {a.id: a for a in annotations}
    chosen = st.selectbox(
        "Annotation", list(by_id), key="ann_selected",
        format_func=lambda i: f"{by_id[i].label} · {class_of(by_id[i]) or '—'} · "
                              f"{by_id[i].author} · {by_id[i].created_at:%Y-%m-%d %H:%M} · {i}")
    return by_id[chosen]


def image_with_box(wb: Workbench, annotation: Annotation) -> None:
    """The annotated image with the annotation's box: the one it drew, else the detection's."""
    obj = wb.buckets.get_object(annotation.object_id)
    box = annotation.box_xyxy
    if box is None:
        try:
            box = wb.detection.get(annotation.document_id).xyxy
        except NotFoundError:  # an image verdict (no_objects, image_done): the whole image
            box = None
    name = class_of(annotation) or annotation.label
    boxes = ((name, annotation.confidence, tuple(box)),) if box else ()
    st.image(draw_boxes(str(wb.image_path(obj)), boxes, (name,), 640, 0 if boxes else None,
                        size=(obj.width, obj.height)), width="stretch",
             caption=plain(Path(obj.source).name))


def history(wb: Workbench, annotation: Annotation) -> None:
    """Every earlier revision, oldest first, then the current one."""
    rows = [{"revision": h["revision"], "changed": h["changed_at"].strftime("%Y-%m-%d %H:%M:%S"),
             "by": h["changed_by"], "label": h["label"], "confidence": h["confidence"],
             "class": (h["payload"] or {}).get("true_class"), "reasoning": h["reasoning"]}
            for h in wb.annotations.history(annotation.id)]
    rows.append({"revision": annotation.revision,
                 "changed": annotation.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
                 "by": annotation.author, "label": annotation.label,
                 "confidence": annotation.confidence,
                 "class": annotation.payload.get("true_class"),
                 "reasoning": annotation.reasoning})
    st.caption("History")
    st.dataframe(rows, hide_index=True, width="stretch", key="ann_history")


def edit_form(wb: Workbench, annotation: Annotation) -> None:
    """Change the verdict: label, true class, reasoning and confidence (a new revision)."""
    done = st.session_state.pop("ann_done", None)  # said after the rerun that shows it
    if done:
        st.success(done)
    if annotation.origin != "human":
        st.caption("Carried over from the ground truth: edit the annotation it came from "
                   f"({plain(annotation.payload.get('carried_from'))}).")
        return
    labels = list(VERDICTS) + ([annotation.label] if annotation.label not in VERDICTS
                               else [])
    # keys of this revision: another row's (or an older revision's) values never linger
    this = f"{annotation.id}_{annotation.revision}"
    with st.form(f"ann_edit_{this}"):
        label = st.selectbox("Label", labels, index=labels.index(annotation.label),
                             key=f"ann_edit_label_{this}")
        true_class = st.text_input("True class", annotation.payload.get("true_class") or "",
                                   key=f"ann_edit_class_{this}")
        reasoning = st.text_area("Reasoning", annotation.reasoning,
                                 key=f"ann_edit_reasoning_{this}")
        confidence = st.number_input("Confidence (0–1, empty: none)", 0.0, 1.0,
                                     annotation.confidence, 0.05,
                                     key=f"ann_edit_confidence_{this}")
        if st.form_submit_button("Save verdict", type="primary"):
            payload = {k: v for k, v in annotation.payload.items() if k != "true_class"}
            if true_class.strip():
                payload["true_class"] = true_class.strip()
            with show_errors():
                saved = wb.annotations.update(annotation.id, label=label,
                                              reasoning=reasoning, confidence=confidence,
                                              payload=payload)
                st.session_state["ann_done"] = (f"{annotation.id}: saved as revision "
                                                f"{saved.revision}")
                st.rerun()


def delete_button(wb: Workbench, annotation: Annotation) -> None:
    """Delete, once confirmed (soft: the row and its history stay in the store)."""
    if annotation.origin != "human":
        return
    if st.session_state.get("ann_deleting") != annotation.id:
        if st.button("Delete…", key="ann_delete"):
            st.session_state["ann_deleting"] = annotation.id
            st.rerun()
        return
    st.warning(f"Delete this {plain(annotation.label)} annotation? Its image's ground truth "
               "follows; the history is kept.")
    cols = st.columns(2)
    if cols[0].button("Yes, delete", key="ann_delete_confirm", type="primary"):
        with show_errors():
            wb.annotations.delete(annotation.id)
            st.session_state.pop("ann_deleting", None)
            st.session_state["ann_done"] = f"{annotation.id}: deleted"
            st.rerun()
    if cols[1].button("Cancel", key="ann_delete_cancel"):
        st.session_state.pop("ann_deleting", None)
        st.rerun()


def export_rows(wb: Workbench, filters: Filters, progress=None) -> list[dict[str, Any]]:
    """Every annotation under ``filters`` as flat rows, read a batch at a time;
    ``progress(done, total)`` is called after each batch."""
    rows, cursor = [], None
    while True:
        page = wb.annotations.page(**asdict(filters), cursor=cursor, limit=EXPORT_BATCH)
        rows += [_flat(a) for a in page.items]
        if progress is not None:
            progress(len(rows), page.total)
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


def _flat(a: Annotation) -> dict[str, Any]:
    return {"id": a.id, "created_at": a.created_at, "updated_at": a.updated_at,
            "collection_id": a.collection_id, "document_id": a.document_id,
            "object_id": a.object_id, "label": a.label, "class": class_of(a),
            "true_class": a.payload.get("true_class"),
            "predicted_class": a.payload.get("predicted_class"),
            "confidence": a.confidence, "reasoning": a.reasoning, "author": a.author,
            "version": a.extractor_key, "retriever_id": a.retriever_id,
            "execution_id": a.execution_id, "origin": a.origin, "revision": a.revision,
            "bbox": json.dumps(a.payload["bbox"]) if a.payload.get("bbox") else None}


def export_files(rows: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """The rows as CSV and as Parquet bytes."""
    import polars as pl

    frame = pl.DataFrame(rows, schema_overrides={"confidence": pl.Float64},
                         infer_schema_length=None)
    parquet = io.BytesIO()
    frame.write_parquet(parquet)
    return frame.write_csv().encode(), parquet.getvalue()


def export_section(wb: Workbench, filters: Filters) -> None:
    """Build the export of every filtered row on request, then offer both files."""
    ready = st.session_state.get("ann_export")
    if st.button("Prepare export of the filtered rows", key="ann_export_prepare"):
        bar = st.progress(0.0, text="Reading annotations…")
        rows = export_rows(wb, filters, lambda done, total: bar.progress(
            min(1.0, done / max(total, 1)), text=f"{done:,} of {total:,} annotations"))
        bar.empty()
        ready = st.session_state["ann_export"] = (filters, len(rows), *export_files(rows))
    if not ready or ready[0] != filters:
        return
    _, count, csv, parquet = ready
    st.caption(f"{count:,} annotations")
    cols = st.columns(2)
    cols[0].download_button("Download CSV", csv, "annotations.csv", "text/csv",
                            key="ann_download_csv")
    cols[1].download_button("Download Parquet", parquet, "annotations.parquet",
                            "application/vnd.apache.parquet", key="ann_download_parquet")
