"""Home: what the workspace holds, running jobs, and the demo for an empty workspace."""

import streamlit as st

from workbench.ui import jobs_panel, page_setup, show_errors

wb = page_setup("Home")
st.title("Flywheel Workbench")
st.caption("Detect → review → fine-tune → redeploy → compound, on your own machine.")

summary = wb.summary()
cols = st.columns(4)
cols[0].metric("Buckets", summary["buckets"])
cols[1].metric("Images", summary["images"])
cols[2].metric("Active jobs", summary["jobs_active"])
cols[3].metric("Failed jobs", summary["jobs_failed"])

demo_pending = any(job.kind == "demo" for job in wb.jobs.active())
if summary["images"] == 0 and not demo_pending:
    st.info(
        "This workspace is empty. Load the demo — generated ShapeWorld scenes with day, "
        "night, clutter and an unseen class — or add your own images on the **Ingest** page."
    )
    if st.button("Load demo workspace", type="primary", key="load_demo"):
        with show_errors():
            wb.jobs.submit("demo", {"scale": 1.0})
            st.rerun()

buckets = wb.buckets.list()
if buckets:
    st.subheader("Buckets")
    st.dataframe(
        [
            {
                "bucket": b.name,
                "images": wb.buckets.count_objects(b),
                "fields": ", ".join(f.name for f in b.metadata_fields),
                "created": b.created_at.strftime("%Y-%m-%d %H:%M"),
            }
            for b in buckets
        ],
        hide_index=True,
        width="stretch",
    )
jobs_panel(wb)

