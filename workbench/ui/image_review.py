"""The Review page's image review: one whole image at a time, the model's boxes pre-drawn.

The reviewer accepts, corrects or deletes each box, draws what the model missed, and marks
the image done — accepting or rejecting the boxes left, whichever is quicker. Every action
is an annotation saved the moment it is given (with the queue's execution as provenance), so
closing the tab loses nothing; Undo takes the last one back. Boxes the ground truth already
settles (carried from another version's review) are drawn grey and need nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from workbench import Workbench
from workbench.domain import Collection, ExtractorVersion
from workbench.image_review import RankedImage
from workbench.leases import LeaseService
from workbench.ui import plain, show_errors
from workbench.ui.render import draw_boxes
from workbench.ui.review import class_picker, draw_missed, take_back
from workbench.ui.video import frame_strip

IMAGE_REVIEW = "Image review (whole images)"
STATUS_COLOURS = {"open": "#facc15", "accepted": "#16a34a", "deleted": "#dc2626",
                  "known": "#9ca3af", "drawn": "#0891b2"}


@dataclass
class ImageReviewState:
    key: str = ""
    execution_id: str = ""
    images: list[RankedImage] = field(default_factory=list)
    remaining: int = 0
    ranked_from: int = 0  # how many of the remaining images the queue ranked
    sampled: int = 0
    position: int = 0
    skipped: set[str] = field(default_factory=set)
    done: list[tuple[list[str], int]] = field(default_factory=list)  # (annotation ids, image)
    finished_here: int = 0
    canvas_round: int = 0

    @property
    def current(self) -> RankedImage | None:
        return self.images[self.position] if self.position < len(self.images) else None


def _state() -> ImageReviewState:
    return st.session_state.setdefault("image_review", ImageReviewState())


def _load(wb: Workbench, collection: Collection, version: ExtractorVersion,
          force: bool = False) -> ImageReviewState:
    s = _state()
    key = f"{collection.id}|{version.key}"
    if force or s.key != key or s.current is None:
        if s.key != key:
            s.done, s.skipped, s.finished_here = [], set(), 0
        queue = wb.image_review.queue(collection.name, version.version, limit=10,
                                      exclude=sorted(s.skipped),
                                      reviewer=wb.annotations.default_author)
        s.key, s.execution_id = key, queue.execution_id
        s.images, s.remaining, s.position = queue.images, queue.remaining, 0
        s.ranked_from, s.sampled = queue.ranked_from, queue.sampled
    else:  # the images are leased to this reviewer: each rerun renews what is left
        LeaseService(wb.db, wb.settings.lease_ttl_s).renew(
            collection.id, wb.annotations.default_author,
            [image.document_id for image in s.images[s.position:]])
    return s


def _write(wb: Workbench, collection: Collection, operations: list[dict], reasoning: str
           ) -> None:
    """Save annotations of the current image now (one undo step)."""
    s = _state()
    retriever = wb.retrievers.image_review(collection.name)
    ids = [wb.annotations.create(collection_id=collection.id, reasoning=reasoning,
                                 retriever_id=retriever.id, execution_id=s.execution_id,
                                 **op).id for op in operations]
    s.done.append((ids, s.position))
    s.canvas_round += 1


def image_review(wb: Workbench, collection: Collection, version: ExtractorVersion) -> None:
    """The whole image review mode of the Review page."""
    s = _load(wb, collection, version)
    cols = st.columns(3)
    cols[0].metric("Images not complete", s.remaining)
    cols[1].metric("Finished in this session", s.finished_here)
    cols[2].metric("Complete in the collection", wb.truth.counts(collection.name)["complete"])
    if s.ranked_from < s.remaining:
        st.caption(f"Ranked the {s.ranked_from - s.sampled:,} most uncertain of "
                   f"{s.remaining:,} open images plus a sample of {s.sampled:,}.")
    image = s.current
    if image is None:
        st.success(f"Every image {plain(version.key)} processed is complete."
                   + (f" ({len(s.skipped)} skipped in this session.)" if s.skipped else ""))
        if s.skipped and st.button("Bring back skipped images", key="ir_unskip"):
            s.skipped.clear()
            _load(wb, collection, version, force=True)
            st.rerun()
        return
    obj = wb.buckets.get_object(image.object_id)
    detections = wb.detection.detections(collection, version.key, object_ids=[obj.id])
    latest = wb.annotations.latest_by_document(collection.id, [d.id for d in detections])
    st.markdown(f"**{plain(Path(obj.source).name)}** ({obj.width}×{obj.height}) — "
                f"{image.state}; score {image.score:.2f} (uncertainty {image.uncertainty:.2f}, "
                f"disagreement {image.disagreement:.2f}, novelty {image.novelty:.2f})")
    truth = wb.truth.image(collection.name, obj.id)
    picture, boxes = st.columns([3, 2])
    picture.image(_picture(wb, obj, detections, latest, truth), width="stretch")
    picture.caption("Yellow: to judge · green: accepted · red: deleted · grey: settled by "
                    "the ground truth · cyan: drawn by a person")
    with picture:
        frame_strip(wb, obj)  # a video frame: the frames around it, for context
    reasoning = st.text_input("Reasoning (optional)", key=f"ir_reasoning_{s.canvas_round}")
    open_boxes = [d for d in detections if d.id not in latest]
    with boxes:
        if not open_boxes:
            st.caption("No box left to judge: draw what is missing, then Done.")
        for index, det in enumerate(open_boxes):
            _box_row(wb, collection, version, det, index, reasoning)
    with st.expander("Draw what the model missed", expanded=not open_boxes):
        operations, has_class = draw_missed(wb, version, obj, detections,
                                            f"ir_canvas_{s.canvas_round}")
        if st.button("Save drawn boxes", key="ir_save_drawn",
                     disabled=not operations or not has_class):
            with show_errors():
                _write(wb, collection, [{"document_id": image.document_id, **op}
                                        for op in operations], reasoning)
                st.rerun()
    buttons = st.columns(5)
    done_label = "Done: reject the rest (D)" if open_boxes else "Done (D)"
    if buttons[0].button(done_label, shortcut="d", type="primary", key="ir_done"):
        _finish(wb, collection, image, reasoning, "reject")
    if buttons[1].button("Done: accept the rest", key="ir_done_accept",
                         disabled=not open_boxes):
        _finish(wb, collection, image, reasoning, "accept")
    if buttons[2].button("Skip (S)", shortcut="s", key="ir_skip"):
        s.skipped.add(image.object_id)
        s.position += 1
        s.canvas_round += 1
        st.rerun()
    if buttons[3].button("Undo (U)", shortcut="u", key="ir_undo", disabled=not s.done):
        s.position = take_back(wb, s.done)
        s.canvas_round += 1
        st.rerun()
    st.caption("Keys: **D** done · **S** skip · **U** undo. Boxes you leave open are false "
               "positives when you press Done (or all accepted with the other button).")


def _box_row(wb, collection, version, det, index: int, reasoning: str) -> None:
    x1, y1, x2, y2 = det.xyxy
    st.markdown(f"**{plain(det.class_name)}** {det.confidence:.2f} at "
                f"({x1:.0f}, {y1:.0f})–({x2:.0f}, {y2:.0f})")
    cols = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
    if cols[0].button("Accept", key=f"ir_accept_{det.id}"):
        with show_errors():
            _write(wb, collection, [{"document_id": det.id, "label": "confirmed",
                                     "payload": {"true_class": det.class_name}}], reasoning)
            st.rerun()
    if cols[1].button("Delete", key=f"ir_delete_{det.id}"):
        with show_errors():
            _write(wb, collection, [{"document_id": det.id, "label": "false_positive"}],
                   reasoning)
            st.rerun()
    with cols[2]:
        chosen = class_picker(version, f"ir_{det.id}", det.class_name)
    if cols[3].button("Set class", key=f"ir_correct_{det.id}",
                      disabled=not chosen or chosen == det.class_name):
        with show_errors():
            _write(wb, collection, [{"document_id": det.id, "label": "corrected",
                                     "payload": {"true_class": chosen}}], reasoning)
            st.rerun()


def _finish(wb, collection, image: RankedImage, reasoning: str, rest: str) -> None:
    s = _state()
    with show_errors():
        ids = wb.image_review.finish(collection.name, image.document_id, [], s.execution_id,
                                     reasoning, rest=rest)
        s.done.append((ids, s.position))
        s.position += 1
        s.finished_here += 1
        s.canvas_round += 1
        st.rerun()


def _picture(wb, obj, detections, latest, truth) -> bytes:
    """The image with every box coloured by where it stands."""
    boxes, colours = [], []
    for det in detections:
        verdict = latest.get(det.id)
        if verdict is None:
            status = "open"
        elif verdict.origin == "carried":
            status = "known"
        else:
            status = "deleted" if verdict.label == "false_positive" else "accepted"
        name = (verdict.payload.get("true_class") if verdict is not None and
                verdict.label != "false_positive" else None) or det.class_name
        boxes.append((name, round(det.confidence, 2), tuple(round(v, 1) for v in det.xyxy)))
        colours.append(STATUS_COLOURS[status])
    for box in truth.objects:
        if box.detection_id is None:  # drawn by a person
            boxes.append((box.cls, None, tuple(round(v, 1) for v in box.xyxy)))
            colours.append(STATUS_COLOURS["drawn"])
    return draw_boxes(str(wb.image_path(obj)), tuple(boxes), (), 960, colours=tuple(colours))


DISAGREEMENTS = "Disagreements with the ground truth"


def disagreements(wb: Workbench, collection: Collection, version: ExtractorVersion) -> None:
    """Complete images on which a version disagrees with what people established: its boxes
    (red: false positive, orange: wrong class, green: right) over the ground truth (cyan)."""
    rows = wb.image_review.disagreements(collection.name, version.version, limit=50)
    if not rows:
        st.success(f"{plain(version.key)} agrees with the ground truth on every complete image "
                   "it has run on.")
        return
    st.dataframe([{k: r[k] for k in ("object_id", "false_positives", "wrong_class", "missed",
                                     "total")} for r in rows], hide_index=True, width="stretch",
                 key="disagreement_table")
    picked = st.selectbox("Image", [r["object_id"] for r in rows], key="disagreement_pick")
    obj = wb.buckets.get_object(picked)
    detections = wb.detection.detections(collection, version.key, object_ids=[picked])
    latest = wb.annotations.latest_by_document(collection.id, [d.id for d in detections])
    truth = wb.truth.image(collection.name, picked)
    boxes, colours = [], []
    for box in truth.objects:
        boxes.append((f"truth {box.cls}", None, tuple(round(v, 1) for v in box.xyxy)))
        colours.append(STATUS_COLOURS["drawn"])
    for det in detections:
        verdict = latest.get(det.id)
        label = verdict.label if verdict else "confirmed"
        colours.append({"false_positive": "#dc2626", "corrected": "#ea580c"}.get(
            label, "#16a34a"))
        boxes.append((det.class_name, round(det.confidence, 2),
                      tuple(round(v, 1) for v in det.xyxy)))
    st.image(draw_boxes(str(wb.image_path(obj)), tuple(boxes), (), 960,
                        colours=tuple(colours)), width="stretch")
    st.caption("Cyan: the ground truth · green: a box that matches it · orange: the right "
               "place, the wrong class · red: a false positive")
