"""Ingest: create buckets, add images and videos (uploads, folders, zips, URLs), browse what is
stored."""

import streamlit as st

from workbench.domain import FIELD_TYPES
from workbench.ui import (
    discard_staging,
    image_grid,
    jobs_panel,
    page_setup,
    plain,
    show_errors,
    stage_uploads,
)
from workbench.ui.ingest import (
    metadata_inputs,
    report_table,
    schema_editor,
    video_fps_input,
)

wb = page_setup("Ingest")
st.title("Ingest")

with st.expander("Create a bucket", expanded=not wb.buckets.list()):
    with st.form("create_bucket", clear_on_submit=True):
        name = st.text_input("Bucket name", key="bucket_name", placeholder="security_footage")
        schema = schema_editor(FIELD_TYPES[1:])
        description = st.text_input("Description", key="bucket_description")
        if st.form_submit_button("Create bucket"):
            with show_errors():
                wb.buckets.create(name, schema, description)
                st.session_state["bucket"] = name
                st.success(f"Created bucket {plain(name)}.")

buckets = wb.buckets.list()
if not buckets:
    st.stop()
names = [b.name for b in buckets]
if st.session_state.get("bucket") not in names:
    st.session_state["bucket"] = names[0]
bucket = wb.buckets.get(st.selectbox("Bucket", names, key="bucket"))

upload_tab, server_tab = st.tabs(["Upload files", "Server folder, zip or URLs"])
with upload_tab:
    files = st.file_uploader(
        "Images, videos or zip archives",
        accept_multiple_files=True,
        type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "zip",
              "mp4", "mov", "mkv", "avi", "webm"],
        key="uploads",
    )
    upload_fps = video_fps_input(key="upload_fps")
    upload_meta = metadata_inputs(bucket, key="upload_meta")
    if st.button("Ingest uploads", type="primary", disabled=not files, key="ingest_uploads"):
        with show_errors():
            folder, sources = stage_uploads(wb, files)
            bar = st.progress(0.0, text="ingesting…")
            try:
                report = wb.ingest.run(
                    bucket.name,
                    sources,
                    upload_meta,
                    listener=lambda job: bar.progress(job.fraction, text=job.message),
                    fps=upload_fps,
                )
            finally:
                discard_staging(folder)
            st.session_state["last_report"] = report.job_id
with server_tab:
    lines = st.text_area(
        "Paths or URLs on the server, one per line",
        key="server_sources",
        placeholder="/data/frames/\n/data/batch_02.zip\nhttps://example.com/frame_001.jpg",
    )
    include = st.text_input(
        "Include patterns (folders and zips)", ", ".join(wb.ingest.default_include()),
        key="include",
    )
    server_fps = video_fps_input(key="server_fps")
    server_meta = metadata_inputs(bucket, key="server_meta")
    if st.button("Queue ingest", key="queue_ingest", disabled=not lines.strip()):
        with show_errors():
            patterns = tuple(p.strip() for p in include.split(",") if p.strip())
            sources = [line.strip() for line in lines.splitlines() if line.strip()]
            job = wb.ingest.submit(bucket.name, sources, server_meta, patterns, fps=server_fps)
            st.session_state["last_report"] = job.id
            st.toast(f"Queued ingest job {job.id}")

if report_id := st.session_state.get("last_report"):
    report_table(wb, report_id)

jobs_panel(wb)

st.subheader(f"Images in {plain(bucket.name)}")
total = wb.buckets.count_objects(bucket)
if total == 0:
    st.caption("No images yet.")
else:
    per_page = 24
    pages = (total + per_page - 1) // per_page
    left, right = st.columns([1, 4])
    page = left.number_input("Page", 1, pages, 1, key="grid_page")
    right.caption(f"{total} images · page {page} of {pages}")
    image_grid(wb, wb.buckets.objects(bucket, (page - 1) * per_page, per_page))
