"""Widgets of the Review page: the queue, the current detection, the verdict buttons.

Every verdict is written the moment its button is pressed (with the retriever and execution
it came from), so closing the tab loses nothing. Keyboard shortcuts are Streamlit's own
button shortcuts and are printed on the buttons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from workbench import Workbench
from workbench.boxes import xyxy_to_center
from workbench.domain import Collection, ExtractorVersion
from workbench.export import NO_OBJECTS
from workbench.leases import LeaseService
from workbench.retrievers import Hit, ImageHit
from workbench.ui import plain, show_errors
from workbench.ui.render import boxes_of, draw_boxes

NEW_CLASS = "new class…"
CANVAS_WIDTH = 720


@dataclass
class ReviewState:
    """What one reviewer's tab remembers between reruns."""

    key: str = ""  # collection + version + retriever the queue belongs to
    retriever_id: str = ""
    execution_id: str = ""
    hits: list[Hit] = field(default_factory=list)
    position: int = 0
    matched: int | None = None
    skipped: set[str] = field(default_factory=set)
    done: list[tuple[list[str], int]] = field(default_factory=list)  # (annotation ids, position)
    mode: str = "review"  # review | correct | missed
    reviewed_here: int = 0
    canvas_round: int = 0  # bumps to give the canvas a fresh key after each save

    @property
    def current(self) -> Hit | None:
        return self.hits[self.position] if self.position < len(self.hits) else None


def state() -> ReviewState:
    if "review" not in st.session_state:
        st.session_state["review"] = ReviewState()
    return st.session_state["review"]


def load_queue(wb: Workbench, collection: Collection, version: ExtractorVersion,
               retriever_name: str, force: bool = False,
               inputs: dict | None = None) -> ReviewState:
    """The queue's page: run the retriever (with ``inputs`` for its ``{{INPUT.x}}`` values)
    when the queue changed or its page is done, else renew the page's lease."""
    s = state()
    key = f"{collection.id}|{version.key}|{retriever_name}|{sorted((inputs or {}).items())}"
    # The page is leased to this reviewer (the author of their verdicts) so that another
    # reviewer's queue skips it; each rerun renews what is left of it.
    reviewer = wb.annotations.default_author
    if force or s.key != key or s.current is None:
        execution = wb.retrievers.execute(retriever_name, inputs, version=version.version,
                                          count=True, reviewer=reviewer)
        s.key, s.retriever_id, s.execution_id = key, execution.retriever_id, execution.id
        s.hits = [h for h in execution.hits if h.detection_id not in s.skipped]
        s.matched, s.position, s.mode = execution.matched, 0, "review"
        if s.key != key:
            s.done, s.skipped = [], set()
    else:
        LeaseService(wb.db, wb.settings.lease_ttl_s).renew(
            collection.id, reviewer, [h.detection_id for h in s.hits[s.position:]])
    return s


def queue_inputs(wb: Workbench, retriever_name: str) -> tuple[bool, dict | None]:
    """A queue whose retriever has ``{{INPUT.x}}`` values without a default asks for them
    before it runs: returns (ready, inputs). Built-in queues (every input has a default)
    run at once with none."""
    from workbench.ui.retrievers import inputs_form, template_inputs

    stages = list(wb.retrievers.get(retriever_name).stages)
    if all(default is not None for default in template_inputs(stages).values()):
        return True, None
    inputs, _ = inputs_form(stages, f"review_inputs_{retriever_name}", "Start reviewing",
                            f"**{plain(retriever_name)}** asks for inputs before it runs "
                            "as a queue")
    return inputs is not None, inputs


def _save(wb: Workbench, collection: Collection, operations: list[dict], reasoning: str,
          confidence: float | None = None) -> None:
    """Write verdicts for the current hit now, then move on."""
    s = state()
    ids = []
    for fields in operations:
        annotation = wb.annotations.create(
            collection_id=collection.id, reasoning=reasoning, confidence=confidence,
            retriever_id=s.retriever_id, execution_id=s.execution_id, **fields)
        ids.append(annotation.id)
    s.done.append((ids, s.position))
    s.reviewed_here += 1
    s.position += 1
    s.mode = "review"
    s.canvas_round += 1  # fresh canvas and reasoning box for the next item


def progress_header(wb: Workbench, collection: Collection, s: ReviewState) -> None:
    remaining = s.matched or 0
    total_reviewed = wb.annotations.list(collection_id=collection.id, limit=1).total
    cols = st.columns(3)
    cols[0].metric("Reviewed in this session", s.reviewed_here)
    cols[1].metric("Left in the queue", max(0, remaining - s.position))
    cols[2].metric("Annotations in collection", total_reviewed)


def current_view(wb: Workbench, collection: Collection, version: ExtractorVersion,
                 s: ReviewState):
    """The image with every box, the current one highlighted; returns (hit, object)."""
    hit = s.current
    obj = wb.buckets.get_object(hit.object_id)
    detections = wb.detection.detections(collection, version.key, object_ids=[obj.id])
    highlight = next((i for i, d in enumerate(detections) if d.id == hit.detection_id), None)
    st.markdown(f"**{plain(hit.class_name)}** at confidence **{hit.confidence:.2f}** — "
                f"{plain(Path(obj.source).name)} ({obj.width}×{obj.height}), item {s.position + 1} "
                f"of {len(s.hits)} on this page")
    if s.mode == "review":
        st.image(draw_boxes(str(wb.image_path(obj)), boxes_of(detections),
                            tuple(version.classes), 960, highlight), width="stretch")
    return hit, obj, detections


def next_strip(wb: Workbench, s: ReviewState) -> None:
    upcoming = s.hits[s.position + 1 : s.position + 7]
    if not upcoming:
        return
    st.caption("Next")
    cols = st.columns(6)
    for col, hit in zip(cols, upcoming, strict=False):
        obj = wb.buckets.get_object(hit.object_id)
        col.image(crop(str(wb.image_path(obj)), hit.xyxy), width="stretch",
                  caption=f"{plain(hit.class_name)} {hit.confidence:.2f}")


def crop(path: str, xyxy: tuple) -> bytes:
    """A detection with some context around it, for strips and grids (cached); a grey
    "image missing" tile when the image's file cannot be read (not cached, so that a
    restored file shows)."""
    try:
        return _crop(path, xyxy)
    except OSError:  # deleted from the blob store, a mount that moved, a truncated file
        import io

        from workbench.ui.render import placeholder

        image, _ = placeholder(None, 160)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()


@st.cache_data(show_spinner=False, max_entries=500)
def _crop(path: str, xyxy: tuple) -> bytes:
    from workbench.images import crop_jpeg, load_image

    return crop_jpeg(load_image(Path(path)), xyxy, 160, pad=0.25)


def confidence_input(s: ReviewState) -> float | None:
    """How sure the reviewer is of the verdict (0–1); left empty, the verdict has none."""
    return st.number_input("Your confidence in the verdict (optional, 0–1)", min_value=0.0,
                           max_value=1.0, value=None, step=0.05,
                           key=f"verdict_confidence_{s.canvas_round}")


def verdict_buttons(wb: Workbench, collection: Collection, hit: Hit, s: ReviewState,
                    reasoning: str) -> None:
    confidence = confidence_input(s)
    cols = st.columns(6)
    if cols[0].button("Confirm (A)", shortcut="a", key="confirm", type="primary",
                      width="stretch"):
        with show_errors():
            _save(wb, collection, [{"document_id": hit.detection_id, "label": "confirmed",
                                    "payload": {"true_class": hit.class_name}}], reasoning,
                  confidence)
            st.rerun()
    if cols[1].button("Correct (E)", shortcut="e", key="correct", width="stretch"):
        s.mode = "correct"
        st.rerun()
    if cols[2].button("False positive (F)", shortcut="f", key="false_positive",
                      width="stretch"):
        with show_errors():
            _save(wb, collection, [{"document_id": hit.detection_id,
                                    "label": "false_positive"}], reasoning, confidence)
            st.rerun()
    if cols[3].button("Missed (M)", shortcut="m", key="missed", width="stretch"):
        s.mode = "missed"
        st.rerun()
    if cols[4].button("Skip (S)", shortcut="s", key="skip", width="stretch"):
        s.skipped.add(hit.detection_id)
        s.position += 1
        s.mode = "review"
        st.rerun()
    if cols[5].button("Undo (U)", shortcut="u", key="undo", width="stretch",
                      disabled=not s.done):
        undo(wb)
        st.rerun()


def take_back(wb: Workbench, done: list[tuple[list[str], int]]) -> int:
    """Delete the annotations of the last saved item; returns the position it was at."""
    ids, position = done.pop()
    for annotation_id in ids:
        wb.annotations.delete(annotation_id)
    return position


def undo(wb: Workbench) -> None:
    s = state()
    s.position = take_back(wb, s.done)
    s.reviewed_here = max(0, s.reviewed_here - 1)
    s.mode = "review"


def class_picker(version: ExtractorVersion, key: str, default: str | None = None) -> str | None:
    options = [*version.classes, NEW_CLASS]
    index = options.index(default) if default in options else 0
    chosen = st.selectbox("Class", options, index=index, key=f"{key}_class")
    if chosen == NEW_CLASS:
        typed = st.text_input("New class name", key=f"{key}_new_class").strip()
        return typed or None
    return chosen


def _canvas_background(wb: Workbench, obj, detections, version, skip_id: str | None):
    others = [d for d in detections if d.id != skip_id]
    return draw_boxes(str(wb.image_path(obj)), boxes_of(others), tuple(version.classes),
                      max(obj.width, obj.height))


def correct_panel(wb, collection, version, hit, obj, detections, s, reasoning) -> None:
    """Pick the right class and, if needed, move or redraw the box on the canvas."""
    from streamlit_drawable_canvas import st_canvas

    st.info("Pick the right class. To fix the box, draw the right one on the image (the last "
            "box drawn counts), then press **Save correction** (Enter).")
    true_class = class_picker(version, "correct", hit.class_name)
    confidence = confidence_input(s)
    scale = CANVAS_WIDTH / obj.width
    result = st_canvas(
        background_image=_canvas_background(wb, obj, detections, version, hit.detection_id),
        drawing_mode="labeled_rect", label=true_class or "", stroke_width=2,
        stroke_color="#facc15", fill_color="rgba(250, 204, 21, 0.15)",
        width=CANVAS_WIDTH, height=round(obj.height * scale), background_image_fit="stretch",
        key=f"correct_canvas_{s.canvas_round}", font_size=14,
    )
    boxes = _image_boxes(result, scale)
    payload: dict = {"true_class": true_class} if true_class else {}
    if boxes:
        b = boxes[-1]
        payload["bbox"] = xyxy_to_center(_clip((b["left"], b["top"], b["left"] + b["width"],
                                                 b["top"] + b["height"]), obj))
    cols = st.columns([1, 1, 4])
    if cols[0].button("Save correction", shortcut="enter", type="primary", key="save_correct",
                      disabled=not payload):
        with show_errors():
            _save(wb, collection, [{"document_id": hit.detection_id, "label": "corrected",
                                    "payload": payload}], reasoning, confidence)
            st.rerun()
    if cols[1].button("Cancel", shortcut="escape", key="cancel_correct"):
        s.mode = "review"
        st.rerun()


def draw_missed(wb, version, obj, detections, canvas_key: str) -> tuple[list[dict], bool]:
    """A canvas over the image on which each missed object gets a box; returns the ``missed``
    annotations (without their document) and whether a class is chosen."""
    from streamlit_drawable_canvas import st_canvas

    true_class = class_picker(version, "missed")
    scale = CANVAS_WIDTH / obj.width
    result = st_canvas(
        background_image=_canvas_background(wb, obj, detections, version, None),
        drawing_mode="labeled_rect", label=true_class or "?", stroke_width=2,
        stroke_color="#22d3ee", fill_color="rgba(34, 211, 238, 0.15)",
        width=CANVAS_WIDTH, height=round(obj.height * scale), background_image_fit="stretch",
        key=canvas_key, font_size=14,
    )
    boxes = [b for b in _image_boxes(result, scale) if b["width"] > 1 and b["height"] > 1]
    operations = [{"label": "missed",
                   "payload": {"true_class": b["label"] if b["label"] not in ("", "?")
                               else true_class,
                               "bbox": xyxy_to_center(_clip((b["left"], b["top"],
                                                             b["left"] + b["width"],
                                                             b["top"] + b["height"]), obj))}}
                  for b in boxes]
    st.caption(f"{len(operations)} box(es) drawn")
    return operations, bool(true_class)


def missed_panel(wb, collection, version, hit, obj, detections, s, reasoning) -> None:
    """Draw every object the model missed on this image; each box gets the chosen class."""
    st.info("Draw a box around each missed object (pick its class first), then press "
            "**Save missed** (Enter).")
    operations, has_class = draw_missed(wb, version, obj, detections,
                                        f"missed_canvas_{s.canvas_round}")
    # a missed object belongs to the image, not to a box
    operations = [{"document_id": hit.document_id, **op} for op in operations]
    confidence = confidence_input(s)
    cols = st.columns([1, 1, 4])
    if cols[0].button("Save missed", shortcut="enter", type="primary", key="save_missed",
                      disabled=not operations or not has_class):
        with show_errors():
            _save(wb, collection, operations, reasoning, confidence)
            st.rerun()
    if cols[1].button("Cancel", shortcut="escape", key="cancel_missed"):
        s.mode = "review"
        st.rerun()


# -- images the model found nothing on ------------------------------------------------------
IMAGE_QUEUE = "Images with no detections"


@dataclass
class ImageCheckState:
    key: str = ""
    hits: list[ImageHit] = field(default_factory=list)
    left: int = 0
    position: int = 0
    skipped: set[str] = field(default_factory=set)
    done: list[tuple[list[str], int]] = field(default_factory=list)
    canvas_round: int = 0

    @property
    def current(self) -> ImageHit | None:
        return self.hits[self.position] if self.position < len(self.hits) else None


def _image_undo(wb: Workbench, s: ImageCheckState) -> None:
    if st.button("Undo (U)", shortcut="u", key="image_undo", disabled=not s.done):
        s.position = take_back(wb, s.done)
        s.canvas_round += 1
        st.rerun()


def image_check(wb: Workbench, collection: Collection, version: ExtractorVersion) -> None:
    """Look over the images on which the model found nothing: draw each object it missed, or
    mark the image as having none (``no_objects``). A detection queue never shows these."""
    s: ImageCheckState = st.session_state.setdefault("image_check", ImageCheckState())
    key = f"{collection.id}|{version.key}"
    if s.key != key or s.current is None:
        unseen = [h for h in wb.retrievers.images_to_check(collection.name, version.version,
                                                           limit=10_000)
                  if h.document_id not in s.skipped]
        if s.key != key:
            s.done, s.skipped = [], set()
        s.key, s.hits, s.left, s.position = key, unseen[:50], len(unseen), 0
    cols = st.columns(2)
    cols[0].metric("Images with no detections left", max(0, s.left - s.position))
    cols[1].metric("Looked over in this session", len(s.done))
    image = s.current
    if image is None:
        st.success(f"Every image on which {plain(version.key)} found nothing has been looked over.")
        _image_undo(wb, s)
        return
    obj = wb.buckets.get_object(image.object_id)
    st.markdown(f"{plain(version.key)} found **nothing** on {plain(Path(obj.source).name)} "
                f"({obj.width}×{obj.height}). Draw a box around each object it missed, or "
                "press **Nothing here** (N).")
    reasoning = st.text_input("Reasoning (optional)", key=f"image_reasoning_{s.canvas_round}")
    operations, has_class = draw_missed(wb, version, obj, [],
                                        f"image_canvas_{s.canvas_round}")
    buttons = st.columns(4)
    with buttons[3]:
        _image_undo(wb, s)
    chosen: list[dict] | None = None
    if buttons[0].button("Save missed", shortcut="enter", type="primary",
                         key="image_save_missed", disabled=not operations or not has_class):
        chosen = operations
    if buttons[1].button("Nothing here (N)", shortcut="n", key="image_no_objects"):
        chosen = [{"label": NO_OBJECTS, "payload": {}}]
    if buttons[2].button("Skip (S)", shortcut="s", key="image_skip"):
        s.skipped.add(image.document_id)
        s.position += 1
        s.canvas_round += 1
        st.rerun()
    if chosen is not None:
        with show_errors():
            ids = [wb.annotations.create(document_id=image.document_id,
                                         collection_id=collection.id, reasoning=reasoning,
                                         **op).id for op in chosen]
            s.done.append((ids, s.position))
            s.position += 1
            s.canvas_round += 1
            st.rerun()


def _image_boxes(result, scale: float) -> list[dict]:
    """Canvas boxes in image pixels (the background is stretched by ``scale`` on both axes)."""
    return [{**b, "left": b["left"] / scale, "top": b["top"] / scale,
             "width": b["width"] / scale, "height": b["height"] / scale}
            for b in result.boxes]


def _clip(xyxy, obj):
    x1, y1, x2, y2 = xyxy
    return (max(0.0, x1), max(0.0, y1), min(float(obj.width), x2), min(float(obj.height), y2))


def burn_down(wb: Workbench, collection: Collection, s: ReviewState) -> None:
    """Verdicts over time against what is left in the queue."""
    import plotly.graph_objects as go

    page = wb.annotations.list(collection_id=collection.id, limit=1000)
    if not page.items:
        return
    times = sorted(a.created_at for a in page.items)
    left_now = max(0, (s.matched or 0) - s.position)
    start = left_now + len(times)
    remaining = [start - i - 1 for i in range(len(times))]
    figure = go.Figure(go.Scatter(x=times, y=remaining, mode="lines+markers",
                                  line={"shape": "hv"}))
    figure.update_layout(height=220, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         title="Burn-down: left to review", yaxis_title="items left")
    st.plotly_chart(figure, width="stretch")
