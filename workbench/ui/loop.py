"""Widgets of the Export & Train and Models pages."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from workbench import Workbench
from workbench.detection import DetectParams
from workbench.domain import Collection, ExtractorVersion
from workbench.evaluation import Gate
from workbench.export import ExportOptions, ExportResult
from workbench.training import TrainParams
from workbench.ui import choice_input, plain, setting_input, show_errors
from workbench.ui.render import draw_boxes

SMALL_EVALUATION = 20  # below this many held-out images a comparison is mostly noise


def export_options_form(key: str = "export") -> ExportOptions:
    cols = st.columns(6)
    policy = choice_input(cols[0], ExportOptions, "unreviewed", "Partly reviewed images",
                          key=f"{key}_policy", radio=True,
                          help="skip: only complete images (marked done in image review). "
                               "fill: partly reviewed ones too, completed with the model's "
                               "boxes above the threshold (pseudo-labels, counted apart).")
    threshold = setting_input(cols[1], ExportOptions, "fill_threshold", "Fill threshold",
                              step=0.05, slider=True, key=f"{key}_threshold",
                              disabled=policy == "skip")
    val = setting_input(cols[2], ExportOptions, "val_fraction", "Validation share", step=0.05,
                        slider=True, key=f"{key}_val")
    holdout = setting_input(cols[3], ExportOptions, "holdout_fraction",
                            "Holdout share (never trained on)", step=0.05, slider=True,
                            key=f"{key}_holdout")
    seed = cols[4].text_input("Split seed", ExportOptions.seed, key=f"{key}_seed")
    pseudo = cols[5].checkbox("Add unreviewed images (model's confident boxes)",
                              value=ExportOptions.pseudo_label,
                              key=f"{key}_pseudo", disabled=policy == "skip",
                              help="Keeps a fine-tune on a few hard images from forgetting "
                                   "the easy ones. Only images on which the model is sure of "
                                   "every box (none under the fill threshold) are added; "
                                   "images it found nothing on are left out.")
    return ExportOptions(unreviewed=policy, fill_threshold=threshold, val_fraction=val,
                         holdout_fraction=holdout, seed=seed,
                         pseudo_label=pseudo and policy == "fill")


def export_summary(result: ExportResult) -> None:
    cols = st.columns(4)
    cols[0].metric("Images", sum(result.images.values()))
    cols[1].metric("Objects", sum(result.objects.values()))
    cols[2].metric("Background images", result.background_images)
    cols[3].metric("Skipped (not complete)", result.skipped_images)
    st.caption(f"Splits: {plain(result.images)} · classes: {plain(', '.join(result.names))} · "
               f"boxes by origin: {plain(result.boxes_by_origin)} · content hash "
               f"`{result.content_hash[:16]}…`")
    if result.class_counts:
        counts = [{"class": c, "objects": result.class_counts.get(c, 0)} for c in result.names]
        st.plotly_chart(px.bar(counts, x="class", y="objects", title="Objects per class")
                        .update_layout(height=280), width="stretch")
    if result.rejected_boxes:
        st.warning(f"{len(result.rejected_boxes)} box(es) refused")
        st.dataframe(result.rejected_boxes, hide_index=True, width="stretch")


def export_preview(result: ExportResult, limit: int = 8) -> None:
    """A few exported images with their label files drawn back on them."""
    labels = sorted(result.path.glob("labels/*/*.txt"))[:limit]
    cols = st.columns(4)
    for index, label in enumerate(labels):
        image = next((result.path / "images" / label.parent.name).glob(label.stem + ".*"))
        from PIL import Image

        with Image.open(image) as probe:
            width, height = probe.size
        boxes = []
        for line in label.read_text().splitlines():
            cls, cx, cy, w, h = line.split()
            cx, cy, w, h = (float(cx) * width, float(cy) * height, float(w) * width,
                            float(h) * height)
            boxes.append((result.names[int(cls)], None,
                          (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
        with cols[index % 4]:
            st.image(draw_boxes(str(image), tuple(boxes), result.names, 480), width="stretch",
                     caption=plain(f"{label.parent.name}/{label.stem}"))


def zip_bytes(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder))
    return buffer.getvalue()


def train_form(wb: Workbench, collection: Collection, options: ExportOptions,
               parent: ExtractorVersion | None = None) -> None:
    """Fine-tune ``parent`` (default: the active version) on the collection's ground truth."""
    parent = parent or wb.registry.get(collection.extractor_name, collection.active_version)
    cols = st.columns(4)
    epochs = setting_input(cols[0], TrainParams, "epochs", "Epochs", key="train_epochs")
    imgsz = setting_input(cols[1], TrainParams, "imgsz", "Image size", step=32,
                          value=int(parent.lineage.get("imgsz", DetectParams.imgsz)),
                          key="train_imgsz")
    batch = setting_input(cols[2], TrainParams, "batch", "Batch", key="train_batch")
    patience = setting_input(cols[3], TrainParams, "patience", "Patience",
                             key="train_patience")
    running = [j for j in wb.jobs.active() if j.kind == "train"]
    if st.button(f"Fine-tune {plain(parent.key)}", type="primary", disabled=bool(running),
                 key="start_training"):
        with show_errors():
            job = wb.training.submit(collection.name, parent.version, options, TrainParams(
                epochs=int(epochs), imgsz=int(imgsz), batch=int(batch),
                patience=int(patience)))
            st.session_state["training_job"] = job.id
            st.rerun()


def training_curves(wb: Workbench) -> None:
    """Losses and mAP per epoch of the latest training job, refreshed while it runs."""

    @st.fragment(run_every=2.0)
    def curves() -> None:
        jobs = [j for j in wb.jobs.list(limit=50) if j.kind == "train"]
        if not jobs:
            return
        job = jobs[0]
        epochs = (job.result or {}).get("epochs", [])
        st.markdown(f"**Training** `{job.id}` — {job.status}: {plain(job.message)}")
        if job.status == "running" and job.progress_total:
            st.progress(min(1.0, job.fraction))
        if job.status == "failed" and job.error:
            st.code(job.error[-1500:], language="text")
        if not epochs:
            return
        left, right = st.columns(2)
        losses = go.Figure()
        for name in ("box_loss", "cls_loss", "dfl_loss"):
            losses.add_scatter(x=[e["epoch"] for e in epochs], y=[e.get(name) for e in epochs],
                               name=name, mode="lines+markers")
        left.plotly_chart(losses.update_layout(title="Training losses", height=300,
                                               xaxis_title="epoch"), width="stretch")
        quality = go.Figure()
        for name in ("mAP50(B)", "mAP50-95(B)"):
            quality.add_scatter(x=[e["epoch"] for e in epochs], y=[e.get(name) for e in epochs],
                                name=name, mode="lines+markers")
        right.plotly_chart(quality.update_layout(title="Validation mAP", height=300,
                                                 xaxis_title="epoch"), width="stretch")

    curves()


def registry_table(wb: Workbench, collection: Collection) -> None:
    rows = []
    for v in wb.registry.list(collection.extractor_name):
        rows.append({
            "version": v.key + (" (active)" if v.version == collection.active_version else ""),
            "parent": v.parent_version or "", "classes": len(v.classes),
            "annotations": v.lineage.get("annotation_count"),
            "export": (v.lineage.get("export_hash") or "")[:12],
            **{k: round(val, 4) for k, val in v.metrics.items() if isinstance(val, float)},
            "notes": v.notes, "created": v.created_at.strftime("%Y-%m-%d %H:%M")})
    st.dataframe(rows, hide_index=True, width="stretch")


def gate_form() -> Gate:
    cols = st.columns(2)
    gain = setting_input(cols[0], Gate, "min_map50_95_gain",
                         "Promote when mAP50-95 rises by at least", step=0.005,
                         format="%.3f", key="gate_gain")
    drop = setting_input(cols[1], Gate, "max_class_drop", "…and no class drops by more than",
                         step=0.01, format="%.3f", key="gate_drop")
    return Gate(min_map50_95_gain=gain, max_class_drop=drop)


def comparison_view(wb: Workbench, collection: Collection, record: dict) -> None:
    base, cand = record["base"], record["candidate"]
    n = len(record["images"]["ids"])
    st.markdown(f"**{plain(record['base_key'])}** vs **{plain(record['candidate_key'])}** on "
                f"{n} images — {record['images']['chosen_by']}")
    warning = record["images"].get("warning")
    if warning:
        st.warning(plain(warning))
    elif n < SMALL_EVALUATION:
        st.warning(f"Only {n} evaluation image(s): too few to judge a model.")
    interval = record["comparison"].get("interval")
    if interval and interval.get("delta"):
        low, high = interval["delta"]
        st.caption(f"mAP50-95 gain, {interval['level']:.0%} bootstrap interval over the "
                   f"images ({interval['resamples']} resamples): [{low:+.3f}, {high:+.3f}]; "
                   "the gate decides on its lower bound")
    cols = st.columns(2)
    for col, name in zip(cols, ("map50", "map50_95"), strict=True):
        before, after = base[name], cand[name]
        col.metric(name.replace("map", "mAP").replace("_", "-"),
                   "n/a" if after is None else f"{after:.3f}",
                   None if before is None or after is None else f"{after - before:+.3f}")
    per_class = [{"class": row["class"], "version": key, "AP50-95": row["ap50_95"]}
                 for key, result in ((record["base_key"], base), (record["candidate_key"], cand))
                 for row in result["per_class"] if row["support"]]
    if per_class:
        st.plotly_chart(px.bar(per_class, x="class", y="AP50-95", color="version",
                               barmode="group", title="AP50-95 per class")
                        .update_layout(height=320), width="stretch")
    matrix = cand["confusion"]
    st.plotly_chart(px.imshow(matrix["matrix"], x=matrix["labels"], y=matrix["labels"],
                              text_auto=True, color_continuous_scale="Blues",
                              labels={"x": "predicted", "y": "truth"},
                              title=f"Confusion matrix of {record['candidate_key']}")
                    .update_layout(height=420), width="stretch")
    decision = record["decision"]
    (st.success if decision["promote"] else st.warning)(
        ("Passes the gate: " if decision["promote"] else "Does not pass the gate: ")
        + plain("; ".join(decision["reasons"])))


def regression_gallery(wb: Workbench, collection: Collection, record: dict,
                       limit: int = 6) -> None:
    """Images the base got right and the candidate does not: both sets of boxes."""
    regressions = record["comparison"]["regressions"][:limit]
    st.subheader(f"Regressions ({len(record['comparison']['regressions'])})")
    if not regressions:
        st.caption("None: the candidate matches every image the base matched.")
    classes = tuple(wb.registry.get(record["candidate_key"]).classes)
    for object_id in regressions:
        obj = wb.buckets.get_object(object_id)
        cols = st.columns(2)
        for col, key in zip(cols, (record["base_key"], record["candidate_key"]), strict=True):
            dets = wb.detection.detections(collection, key, object_ids=[object_id])
            boxes = tuple((d.class_name, round(d.confidence, 2), d.xyxy) for d in dets)
            col.image(draw_boxes(str(wb.image_path(obj)), boxes, classes, 640),
                      caption=plain(f"{key} · {Path(obj.source).name}"), width="stretch")
