"""Widgets of the Detect page: registering models, collections, runs, results."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from workbench import Workbench
from workbench.detection import DetectParams, default_params
from workbench.domain import Collection, ExtractorVersion
from workbench.paging import Page
from workbench.ui import plain, setting_input, show_errors
from workbench.ui.render import MISSING_TEXT, boxes_of, draw_boxes, image_missing
from workbench.ui.selection import add_to_references, crop_uri, detection_grid, find_similar
from workbench.ui.video import frame_strip


def register_model_form(wb: Workbench) -> None:
    """Upload YOLO weights (checked before they are accepted) or a custom extractor zip."""
    weights_tab, custom_tab = st.tabs(["YOLO weights (.pt)", "Custom extractor (.zip)"])
    with weights_tab:
        upload = st.file_uploader("Weights", type=["pt"], key="weights_upload")
        notes = st.text_input("Notes", key="weights_notes")
        if st.button("Register weights", disabled=upload is None, key="register_weights"):
            with show_errors(), tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / Path(upload.name).name
                path.write_bytes(upload.getbuffer())
                with st.spinner("Loading and checking the model…"):
                    version = wb.registry.register_yolo(path, notes=notes)
                st.success(f"Registered {plain(version.key)} "
                           f"({plain(', '.join(version.classes))}).")
    with custom_tab:
        st.caption("A zip with `extractor.json` (`spec`, `entrypoint: module:Class`) and its "
                   "Python code. **It runs with your permissions**: register only code you trust.")
        archive = st.file_uploader("Extractor zip", type=["zip"], key="extractor_upload")
        if st.button("Register extractor", disabled=archive is None, key="register_custom"):
            with show_errors(), tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / Path(archive.name).name
                path.write_bytes(archive.getbuffer())
                version = wb.registry.register_custom(path)
                st.success(f"Registered {plain(version.key)}.")
    versions = wb.registry.list()
    if versions:
        st.dataframe(
            [{"version": v.key, "kind": v.kind, "classes": ", ".join(v.classes),
              "parent": v.parent_version or "", "base model": v.base_model or "",
              **{k: v.metrics[k] for k in sorted(v.metrics)}} for v in versions],
            hide_index=True, width="stretch",
        )


def collection_form(wb: Workbench) -> None:
    buckets = [b.name for b in wb.buckets.list()]
    extractors = sorted({v.name for v in wb.registry.list()})
    if not buckets or not extractors:
        st.caption("A collection needs a bucket (Ingest page) and a registered extractor.")
        return
    with st.form("create_collection", clear_on_submit=True):
        name = st.text_input("Collection name", key="collection_name")
        chosen_buckets = st.multiselect("Source buckets", buckets, key="collection_buckets")
        extractor = st.selectbox("Extractor", extractors, key="collection_extractor")
        if st.form_submit_button("Create collection"):
            with show_errors():
                wb.collections.create(name, chosen_buckets, extractor)
                st.success(f"Created collection {plain(name)}.")


def run_controls(wb: Workbench, collection: Collection, version: ExtractorVersion) -> None:
    total = wb.collections.count_objects(collection)
    done = wb.detection.count_documents(collection, version.key)
    active = [j for j in wb.jobs.active() if j.kind == "detect"
              and j.params.get("collection_id") == collection.id]
    st.progress(done / total if total else 0.0,
                text=f"{version.key}: {done} of {total} images processed")
    defaults = default_params(version)
    with st.expander("Run settings"):
        cols = st.columns(4)
        conf = setting_input(cols[0], DetectParams, "conf", "Min confidence", value=defaults.conf,
                             step=0.05, slider=True, key="run_conf")
        iou = setting_input(cols[1], DetectParams, "iou", "NMS IoU", value=defaults.iou,
                            step=0.05, slider=True, key="run_iou")
        imgsz = setting_input(cols[2], DetectParams, "imgsz", "Image size",
                              value=defaults.imgsz, step=32, key="run_imgsz")
        batch = setting_input(cols[3], DetectParams, "batch_size", "Batch size",
                              value=defaults.batch_size, key="run_batch")
    label = "Resume run" if 0 < done < total else "Run detection"
    if st.button(label, type="primary", disabled=bool(active) or done >= total, key="run"):
        params = DetectParams(conf=conf, iou=iou, imgsz=int(imgsz), batch_size=int(batch))
        job = wb.detection.submit(collection.name, version.version, params)
        st.toast(f"Started {job.id}")
        st.rerun()
    if done >= total and total:
        st.caption("Every image has been processed by this version.")


PER_PAGE = 12
CLASS_COUNT_LIMIT = 10_000  # past it a class shows "10,000+": counting on costs a scan


def results_grid(wb: Workbench, collection: Collection, version: ExtractorVersion) -> str | None:
    """Filterable grid of images with their boxes, a page at a time; returns the chosen
    image id.

    What it costs hardly grows with the version: pages are keyset pages (Previous / Next
    from the page's cursor, never an offset), classes are counted up to CLASS_COUNT_LIMIT,
    a filtered total up to ``paging.COUNT_LIMIT``, and all of these are cached until the
    version has processed another image (at 1M detections: 1.5 s first render, 0.1 warm,
    where it was 23-63 s)."""
    processed = wb.detection.count_documents(collection, version.key)
    counts, with_detections = _totals(wb, collection, version.key, processed)
    if not counts:
        st.caption("No detections yet for this version.")
        return None
    st.subheader("Results")
    classes = list(version.classes) or sorted(counts)
    cols = st.columns([3, 2])
    picked = cols[0].multiselect("Classes", sorted(counts), key="filter_classes",
                                 format_func=lambda c: f"{c} ({_count(counts[c])})")
    low, high = cols[1].slider("Confidence", 0.0, 1.0, (0.0, 1.0), 0.05, key="filter_conf")
    cursors = _cursors((collection.id, version.key, tuple(sorted(picked)), low, high))
    page = _page(wb, collection, version.key, tuple(sorted(picked)), low, high, cursors[-1],
                 processed)
    filtered = bool(picked) or low > 0.0 or high < 1.0
    if filtered:
        total = f"{page.total:,}" if page.exact else f"more than {page.total:,}"
    else:  # the documents count this one exactly, and cheaply
        total = f"{with_detections:,}"
    shown = f"{page.start + 1:,}–{page.start + len(page.items):,}" if page.items else "none"
    nav = st.columns([1, 1, 6])
    nav[0].button("← Previous", key="results_previous", disabled=len(cursors) == 1,
                  on_click=cursors.pop, width="stretch")
    nav[1].button("Next →", key="results_next", disabled=page.next_cursor is None,
                  on_click=cursors.append, args=(page.next_cursor,), width="stretch")
    nav[2].caption(f"{total} images with matching detections · showing {shown} "
                   f"(page {len(cursors):,})")
    found = wb.detection.detections(collection, version.key, picked, low, high, page.items)
    by_image: dict[str, list] = {}
    for det in found:
        by_image.setdefault(det.object_id, []).append(det)
    objects = {object_id: wb.buckets.get_object(object_id) for object_id in page.items}
    grid = st.columns(4)
    for index, (object_id, obj) in enumerate(objects.items()):
        path = wb.image_path(obj)
        boxes = by_image.get(object_id, [])
        with grid[index % 4]:
            st.image(draw_boxes(str(path), boxes_of(boxes), tuple(classes), 480,
                                size=(obj.width, obj.height)), width="stretch")
            missing = f" · **{MISSING_TEXT}**" if image_missing(path) else ""
            st.caption(f"{plain(Path(obj.source).name)} · {len(boxes)} boxes" + missing)
    if not objects:
        return None
    return st.selectbox("Inspect an image", list(objects), key="detail_image",
                        format_func=lambda i: Path(objects[i].source).name)


def _count(n: int) -> str:
    return f"{CLASS_COUNT_LIMIT:,}+" if n > CLASS_COUNT_LIMIT else f"{n:,}"


def _cursors(scope: tuple) -> list[str | None]:
    """The cursors of the pages from the first to the one shown (None: the first page),
    kept in the session; a change of collection, version or filter starts again from the
    first page."""
    state = st.session_state.get("results_cursors")
    if state is None or state["scope"] != scope:
        state = st.session_state["results_cursors"] = {"scope": scope, "cursors": [None]}
    return state["cursors"]


# Documents are only ever added, each with its detections in one transaction, so a version's
# count of documents changes whenever anything these read does: the cache's key.
@st.cache_data(show_spinner=False, max_entries=64)
def _totals_at(_wb: Workbench, _collection: Collection, home: str, collection_id: str, key: str,
               processed: int) -> tuple[dict[str, int], int]:
    return (_wb.detection.class_counts(_collection, key, at_most=CLASS_COUNT_LIMIT),
            _wb.detection.count_images_with_detections(_collection, key))


def _totals(wb: Workbench, collection: Collection, key: str, processed: int
            ) -> tuple[dict[str, int], int]:
    """The version's detections per class (up to CLASS_COUNT_LIMIT), and how many images it
    found something on."""
    return _totals_at(wb, collection, str(wb.settings.home), collection.id, key, processed)


@st.cache_data(show_spinner=False, max_entries=256)
def _page_at(_wb: Workbench, _collection: Collection, home: str, collection_id: str, key: str,
             classes: tuple[str, ...], low: float, high: float, cursor: str | None,
             processed: int) -> Page[str]:
    # Unfiltered, the page's total is the documents' exact count: no count of the pages.
    unfiltered = not classes and low <= 0.0 and high >= 1.0
    return _wb.detection.images_with_detections(_collection, key, list(classes), low, high,
                                                cursor=cursor, limit=PER_PAGE,
                                                count=not unfiltered)


def _page(wb: Workbench, collection: Collection, key: str, classes: tuple[str, ...],
          low: float, high: float, cursor: str | None, processed: int) -> Page[str]:
    """One page of the grid's image ids, with the bounded count of all that match."""
    return _page_at(wb, collection, str(wb.settings.home), collection.id, key, classes, low,
                    high, cursor, processed)


def detail_view(wb: Workbench, collection: Collection, version: ExtractorVersion,
                object_id: str) -> None:
    """One image large, every detection listed, and another version beside it if one ran."""
    obj = wb.buckets.get_object(object_id)
    classes = tuple(version.classes)
    others = [k for k in wb.collections.versions_run(collection) if k != version.key]
    compare = None
    if others:
        compare = st.selectbox("Compare with", ["(none)", *others], key="compare_version")
        compare = None if compare == "(none)" else compare
    columns = st.columns(2 if compare else 1)
    path = str(wb.image_path(obj))
    selected: list[str] = []
    pickable = False
    for column, key in zip(columns, [version.key, compare], strict=False):
        detections = wb.detection.detections(collection, key, object_ids=[object_id])
        with column:
            st.markdown(f"**{plain(key)}** — {len(detections)} detections")
            st.image(draw_boxes(path, boxes_of(detections), classes, 960,
                                size=(obj.width, obj.height)), width="stretch")
            rows = [{"#": d.index, "class": d.class_name, "confidence": round(d.confidence, 3),
                     "x1": round(d.xyxy[0], 1), "y1": round(d.xyxy[1], 1),
                     "x2": round(d.xyxy[2], 1), "y2": round(d.xyxy[3], 1)} for d in detections]
            if key != version.key:  # the other version's boxes: to look at, not to pick
                st.dataframe(rows, hide_index=True, width="stretch")
                continue
            pickable = bool(detections)
            selected = detection_grid(
                [{"crop": crop_uri(path, d.xyxy), **row, "detection": d.id}
                 for d, row in zip(detections, rows, strict=True)],
                key=f"detail_detections_{object_id}_{key}")
    if pickable:
        st.caption(f"{len(selected)} detection(s) selected: click rows' left edge to choose "
                   "them for a reference set, or one to find similar detections.")
        add_to_references(wb, collection, selected, key="detect_refs")
        find_similar(selected, key="detect_find_similar")
    st.caption(" · ".join([f"{obj.width}×{obj.height}", *(f"{plain(k)}: {plain(v)}" for k, v in
                                                         obj.metadata.items())]))
    frame_strip(wb, obj)  # a video frame: the frames around it, for context
    if image_missing(wb.image_path(obj)):
        st.warning(f"This image's file is missing from the blob store "
                   f"({plain(wb.image_path(obj))}): its boxes are drawn on a grey tile of its "
                   "size. Ingesting the same file again writes it back.", icon="🖼️")
