"""Search: find the detections most like a given one (a ``feature_search`` over its
embedding, run by the retriever machinery), or images by text with CLIP; filter the
neighbours, then give several of them one verdict or add them to a reference set.

A search is a retriever like any other: the page writes the stages it needs (the feature
search, then the filters chosen on the page) to the collection's ``<collection>:search``
retriever (``<collection>:text-search`` for text) and runs it with ``execute``, so every
search is logged as an execution and the Retrievers page shows it. The query itself (the
detection id, the text) and ``top_k`` are ``{{INPUT.*}}`` values: the stored stages change
only when the filters do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from workbench import Workbench
from workbench.annotations import VERDICTS
from workbench.domain import Collection, Detection, ExtractorVersion
from workbench.errors import NotFoundError, ValidationError
from workbench.retrievers import Execution, Hit
from workbench.store import tables as t
from workbench.ui import plain, show_errors
from workbench.ui.render import draw_boxes

SEARCH_PAGE = "pages/11_Search.py"
DETECTION_KEY = "search.detection_id"
INPUT_KEY = "search_detection_input"  # the id box's widget
UNREVIEWED = "unreviewed"
MAX_TOP_K = 200  # tiles a page draws at most: the page stays fast on any workspace
COLUMNS = 4
NEW_SET = "new reference set…"


def open_search(detection_id: str) -> None:
    """Open the Search page on the neighbours of ``detection_id`` (a "find similar" button's
    action on any page)."""
    st.session_state[DETECTION_KEY] = str(detection_id)
    st.switch_page(SEARCH_PAGE)


# -- what is searched ---------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """The detection a search starts from, with where it lives."""

    detection: Detection
    collection: Collection
    version: ExtractorVersion


def resolve(wb: Workbench, detection_id: str) -> Query:
    """The detection of that id with its collection and extractor version."""
    detection_id = detection_id.strip()
    try:
        detection = wb.detection.get(detection_id)
    except NotFoundError:
        raise NotFoundError(f"no detection {detection_id!r}: paste a detection id (like "
                            "doc_…_0) from the Detect, Review or Annotations page") from None
    document = wb.db.find(t.documents, detection.document_id)
    collection = wb.collections.get(document.collection_id)
    return Query(detection, collection, wb.registry.get(detection.extractor_key))


def detection_id_box() -> str:
    """The detection id to search from: typed or pasted here, or handed over by another
    page's "find similar" button (``open_search``)."""
    handed = st.session_state.get(DETECTION_KEY)
    if handed is not None and st.session_state.get(INPUT_KEY) != handed:
        st.session_state[INPUT_KEY] = handed

    def typed() -> None:
        st.session_state[DETECTION_KEY] = st.session_state[INPUT_KEY].strip()

    return st.text_input("Detection id", key=INPUT_KEY, on_change=typed,
                         placeholder="doc_…_0 — or press Find similar on the Review page",
                         help="The neighbours of this detection's embedding are searched."
                         ).strip()


# -- filters ------------------------------------------------------------------------------
def filters_panel(wb: Workbench, collection: Collection, version: ExtractorVersion,
                  key: str) -> dict[str, Any] | None:
    """Widgets for the filters (class, confidence range, verdict, image metadata); returns
    the filter tree of the retriever's filter stage, or None when nothing is narrowed."""
    cols = st.columns(4)
    classes = cols[0].multiselect("Classes", list(version.classes), key=f"{key}_classes",
                                  placeholder="any class")
    low, high = cols[1].slider("Confidence", 0.0, 1.0, (0.0, 1.0), 0.01,
                               key=f"{key}_confidence")
    verdicts = cols[2].multiselect("Verdict", [UNREVIEWED, *VERDICTS],
                                   key=f"{key}_verdicts", placeholder="any verdict or none")
    fields = sorted({f.name for bucket_id in collection.bucket_ids
                     for f in wb.buckets.get(bucket_id).metadata_fields})
    metadata = None
    with cols[3]:
        if fields:
            name = st.selectbox("Image metadata", ["(any)", *fields], key=f"{key}_meta_field")
            if name != "(any)":
                operator = st.radio("Match", ["eq", "ne", "contains"], horizontal=True,
                                    key=f"{key}_meta_op")
                value = st.text_input(f"{name} value", key=f"{key}_meta_value")
                if value:
                    metadata = {"field": f"metadata.{name}", "operator": operator,
                                "value": value}
        else:
            st.caption("The collection's buckets have no metadata fields to filter on.")
    return filter_tree(classes, (low, high), verdicts, metadata)


def filter_tree(classes: list[str], confidence: tuple[float, float], verdicts: list[str],
                metadata: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The filter stage's tree for the page's choices (None when none narrows anything)."""
    conditions: list[dict[str, Any]] = []
    if classes:
        conditions.append({"field": "class", "operator": "in", "value": list(classes)})
    low, high = confidence
    if low > 0:
        conditions.append({"field": "confidence", "operator": "gte", "value": round(low, 4)})
    if high < 1:
        conditions.append({"field": "confidence", "operator": "lte", "value": round(high, 4)})
    if verdicts:
        either = []
        labels = [v for v in verdicts if v != UNREVIEWED]
        if labels:
            either.append({"field": "annotation.label", "operator": "in", "value": labels})
        if UNREVIEWED in verdicts:
            either.append({"field": "annotation.label", "operator": "exists", "value": False})
        conditions.append(either[0] if len(either) == 1 else {"OR": either})
    if metadata:
        conditions.append(metadata)
    return {"AND": conditions} if conditions else None


# -- running ------------------------------------------------------------------------------
def similar_stages(feature_uri: str, filters: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Nearest neighbours of ``{{INPUT.detection_id}}`` (itself left out) that pass
    ``filters``."""
    conditions = [{"field": "detection_id", "operator": "ne",
                   "value": "{{INPUT.detection_id}}"}]
    if filters:
        conditions.append(filters)
    return [
        {"stage_name": "similar", "stage_type": "feature_search",
         "config": {"feature_uri": feature_uri, "query": "{{INPUT.detection_id}}",
                    "top_k": "{{INPUT.top_k|24}}"}},
        {"stage_name": "filters", "stage_type": "filter",
         "config": {"filters": {"AND": conditions}}},
    ]


def text_stages(feature_uri: str, filters: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Detections on the images nearest to ``{{INPUT.text}}`` in CLIP's space."""
    stages: list[dict[str, Any]] = [
        {"stage_name": "text", "stage_type": "feature_search",
         "config": {"feature_uri": feature_uri, "query": "{{INPUT.text}}",
                    "query_type": "text", "top_k": "{{INPUT.top_k|24}}"}}]
    if filters:
        stages.append({"stage_name": "filters", "stage_type": "filter",
                       "config": {"filters": filters}})
    return stages


def run_search(wb: Workbench, collection: Collection, version: ExtractorVersion, suffix: str,
               stages: list[dict[str, Any]], inputs: dict[str, Any]) -> Execution:
    """Store ``stages`` as the retriever ``<collection>:<suffix>`` (when they changed) and
    run it with ``inputs`` over ``version``; the run is logged as its execution."""
    name = f"{collection.name}:{suffix}"
    try:
        stored = list(wb.retrievers.get(name).stages)
    except NotFoundError:
        stored = None
    if stored != stages:
        wb.retrievers.save(name, collection.name, stages,
                           "The Search page's last search (its stages follow the filters "
                           "chosen there)", replace=stored is not None)
    return wb.retrievers.execute(name, inputs, version=version.version)


def cached_search(wb: Workbench, collection: Collection, version: ExtractorVersion,
                  suffix: str, stages: list[dict[str, Any]], inputs: dict[str, Any]
                  ) -> Execution:
    """The search's execution, run again only when what is asked changes (or ``Search
    again`` is pressed): a rerun for a checkbox must not log a new execution."""
    signature = repr((collection.id, version.key, suffix, stages, sorted(inputs.items())))
    held = st.session_state.get("search.result")
    if held is None or held[0] != signature:
        with st.spinner("Searching…"):
            execution = run_search(wb, collection, version, suffix, stages, inputs)
        st.session_state["search.result"] = (signature, execution)
        return execution
    return held[1]


def forget_results() -> None:
    """Drop the held result so that the next run searches again."""
    st.session_state.pop("search.result", None)


SIMILAR, TEXT = "Similar detections", "Text (CLIP)"


def search_from_widgets(wb: Workbench, mode: str, clip: ExtractorVersion | None
                        ) -> tuple[Collection, ExtractorVersion, Execution]:
    """Read the query and the filters from the page and run the search (a note and a stop
    while there is nothing to search; a WorkbenchError when what was typed is wrong)."""
    if mode == SIMILAR:
        detection_id = detection_id_box()
        if not detection_id:
            st.info("Paste a detection id above, or press **Find similar** on a Review item.")
            st.stop()
        query = resolve(wb, detection_id)
        collection, version = query.collection, query.version
        query_view(wb, query)
        top_k = st.number_input("Neighbours to show", 1, MAX_TOP_K, 24, key="search_top_k")
        filters = filters_panel(wb, collection, version, "search")
        return collection, version, cached_search(
            wb, collection, version, "search",
            similar_stages(version.feature_uri("detection_embedding"), filters),
            {"detection_id": query.detection.id, "top_k": int(top_k)})
    left, right = st.columns([1, 3])
    collection = boxes_collection(wb, left)
    if collection is None or clip is None:
        st.stop()
    version = wb.registry.get(collection.active_key)
    text = right.text_input("Describe what you are looking for", key="search_text",
                            placeholder="a red circle at night").strip()
    if not text:
        st.info(f"Type a description: the images nearest to it in {plain(clip.key)}'s space "
                f"are searched, and their {plain(version.key)} detections shown.")
        st.stop()
    top_k = st.number_input("Results to show", 1, MAX_TOP_K, 24, key="search_top_k")
    filters = filters_panel(wb, collection, version, "search")
    return collection, version, cached_search(
        wb, collection, version, "text-search",
        text_stages(clip.feature_uri("image_embedding"), filters),
        {"text": text, "top_k": int(top_k)})


def result_header(execution: Execution) -> None:
    """How many results, the execution that found them, and a button to search again."""
    head, again = st.columns([5, 1])
    head.markdown(f"**{len(execution.hits)}** result(s) · execution `{execution.id}` · "
                  f"{execution.stage_ms.get('total', 0):.0f} ms")
    if again.button("Search again", key="search_again"):
        forget_results()
        st.rerun()


# -- showing ------------------------------------------------------------------------------
def query_view(wb: Workbench, query: Query) -> None:
    """The detection searched from, on its image."""
    d = query.detection
    obj = wb.buckets.get_object(d.object_id)
    left, right = st.columns([1, 2])
    left.image(draw_boxes(str(wb.image_path(obj)), ((d.class_name, round(d.confidence, 3),
                                                     d.xyxy),),
                          tuple(query.version.classes), 480, 0, size=(obj.width, obj.height)),
               width="stretch")
    right.markdown(f"Searching from **{plain(d.class_name)}** at confidence "
                   f"**{d.confidence:.2f}** on {plain(Path(obj.source).name)} "
                   f"({obj.width}×{obj.height}) — collection **{plain(query.collection.name)}**, "
                   f"version **{plain(query.version.key)}**")
    right.caption(f"Detection `{d.id}`")


def pick_key(detection_id: str) -> str:
    return f"search_pick_{detection_id}"


def results_grid(wb: Workbench, version: ExtractorVersion, collection: Collection,
                 hits: list[Hit]) -> list[Hit]:
    """The hits as image tiles with their box, score and verdict, each with a checkbox;
    returns the checked ones."""
    verdicts = wb.annotations.latest_by_document(collection.id,
                                                 [h.detection_id for h in hits])
    for detection_id in st.session_state.pop("search.unpick", []):
        st.session_state[pick_key(detection_id)] = False
    tools = st.columns([1, 1, 4])
    if tools[0].button("Select all", key="search_select_all"):
        for hit in hits:
            st.session_state[pick_key(hit.detection_id)] = True
    if tools[1].button("Clear selection", key="search_select_none"):
        for hit in hits:
            st.session_state[pick_key(hit.detection_id)] = False
    for start in range(0, len(hits), COLUMNS):
        cells = st.columns(COLUMNS)
        for cell, hit in zip(cells, hits[start:start + COLUMNS], strict=False):
            obj = wb.buckets.get_object(hit.object_id)
            with cell:
                st.image(draw_boxes(str(wb.image_path(obj)), ((
                    hit.class_name, round(hit.confidence, 3), hit.xyxy),),
                    tuple(version.classes), 360, size=(obj.width, obj.height)),
                    width="stretch")
                score = "" if hit.score is None else f" · score **{hit.score:.3f}**"
                verdict = verdicts.get(hit.detection_id)
                st.markdown(f"{plain(hit.class_name)} {hit.confidence:.2f}{score} · "
                            f"{plain(verdict.label) if verdict else UNREVIEWED}")
                st.checkbox("select", key=pick_key(hit.detection_id),
                            help=f"{hit.detection_id} on {Path(obj.source).name}")
    return [h for h in hits if st.session_state.get(pick_key(h.detection_id))]


def flash(message: str, kind: str = "success") -> None:
    """A message shown once after the rerun that follows an action (user strings in it are
    escaped when shown)."""
    st.session_state["search.flash"] = (kind, message)


def show_flash() -> None:
    held = st.session_state.pop("search.flash", None)
    if held:
        getattr(st, held[0])(plain(held[1]))


# -- acting on a selection ----------------------------------------------------------------
def bulk_verdict(wb: Workbench, collection: Collection, execution: Execution,
                 hits: list[Hit], label: str, true_class: str | None = None,
                 reasoning: str = "") -> tuple[int, list[str]]:
    """One verdict for every hit, in one bulk request by the app's reviewer, with the
    search's retriever and execution; returns (stored, errors)."""
    if label == "corrected" and not true_class:
        raise ValidationError("a correction needs the right class: pick it, then apply")
    operations = []
    for hit in hits:
        payload = {"true_class": true_class if label == "corrected" else hit.class_name} \
            if label in ("confirmed", "corrected") else {}
        operations.append({"op": "create", "document_id": hit.detection_id,
                           "collection_id": collection.id, "label": label,
                           "payload": payload, "reasoning": reasoning,
                           "author": wb.annotations.default_author,
                           "retriever_id": execution.retriever_id,
                           "execution_id": execution.id})
    results = wb.annotations.bulk(operations)
    errors = [f"{hits[r.index].detection_id}: {r.error}" for r in results if not r.ok]
    return len(results) - len(errors), errors


def actions_panel(wb: Workbench, collection: Collection, version: ExtractorVersion,
                  execution: Execution, chosen: list[Hit]) -> None:
    """Give the selected hits one verdict, or add them to a reference set."""
    st.subheader(f"{len(chosen)} selected")
    verdict_col, refs_col = st.columns(2)
    with verdict_col.form("search_bulk_verdict", border=True):
        st.markdown("**One verdict for all of them**")
        label = st.radio("Verdict", list(VERDICTS[:3]), horizontal=True,
                         key="search_bulk_label",
                         help="confirmed — the box and class are right; corrected — the "
                              "class is wrong (pick the right one); false_positive — there "
                              "is no such object")
        true_class = st.selectbox("Right class (for corrected)", list(version.classes),
                                  key="search_bulk_class")
        reasoning = st.text_input("Reasoning (optional)", key="search_bulk_reasoning")
        apply = st.form_submit_button("Apply verdict", type="primary", disabled=not chosen,
                                      key="search_apply_verdict")
    if apply:
        with show_errors():
            stored, errors = bulk_verdict(wb, collection, execution, chosen, label,
                                          true_class, reasoning)
            message = f"{stored} verdict(s) '{label}' stored by {wb.annotations.default_author}"
            if errors:
                flash(f"{message}; {len(errors)} refused — {errors[0]}", "warning")
            else:
                flash(message + ".")
            # Unticked on the next run (a widget's value cannot change after it is drawn).
            st.session_state["search.unpick"] = [h.detection_id for h in chosen]
            st.rerun()
    sets = [s.name for s in wb.references.list(collection.name)]
    with refs_col.form("search_add_references", border=True):
        st.markdown("**Add them to a reference set**")
        target = st.selectbox("Reference set", [*sets, NEW_SET], key="search_refs_set")
        new_name = st.text_input("New set's name (for a new set)", key="search_refs_new")
        add = st.form_submit_button("Add to reference set", disabled=not chosen,
                                    key="search_add_references_submit")
    if add:
        with show_errors():
            name = new_name.strip() if target == NEW_SET else target
            if not name:
                raise ValidationError("name the new reference set, then add")
            with st.spinner(f"Adding {len(chosen)} detection(s) to {name}…"):
                if target == NEW_SET:
                    wb.references.create(name, collection.name,
                                         version.feature_uri("detection_embedding"))
                outcome = wb.references.add(name, [h.detection_id for h in chosen])
            flash(f"Added {outcome['added']} to reference set '{name}' (version "
                  f"{outcome['version']}; {outcome['already']} were in it already).")
            st.rerun()


# -- text search --------------------------------------------------------------------------
def clip_version(wb: Workbench) -> ExtractorVersion | None:
    """The newest registered CLIP version, whose text encoder a text search uses."""
    versions = [v for v in wb.registry.list() if v.kind == "clip"]
    return versions[-1] if versions else None


def boxes_collection(wb: Workbench, where) -> Collection | None:
    """The collection whose boxes a text search shows (collections of CLIP itself have
    none); None, with a note, when there is none."""
    from workbench.extractors.clip import NAME

    names = [c.name for c in wb.collections.list() if c.extractor_name != NAME]
    if not names:
        st.info("Nothing to search yet: run a detector on the Detect page (or load the demo).")
        return None
    return wb.collections.get(where.selectbox("Collection", names, key="search_text_collection"))


def text_search_note(wb: Workbench) -> str:
    """Why there is no text box, and what to do about it."""
    if wb.settings.clip_weights or wb.settings.clip_pretrained:
        return ("Text search: CLIP weights are configured but no CLIP version is registered "
                "yet; register it (`wb.registry.register_clip()`) and embed the images with "
                "a collection bound to clip_embedder.")
    return ("Text search needs CLIP, and none is configured: set WORKBENCH_CLIP_WEIGHTS to a "
            "local open_clip checkpoint (or WORKBENCH_CLIP_PRETRAINED to a cached tag), "
            "register it, and embed the images.")
