"""Widgets of the Ingest page: schema editor, metadata inputs, the ingest report."""

from __future__ import annotations

from typing import Any

import streamlit as st

from workbench import Workbench
from workbench.domain import Bucket
from workbench.ui import plain


def schema_editor(types: tuple[str, ...]) -> dict[str, Any]:
    """An editable table of metadata fields; returns a bucket schema."""
    rows = st.data_editor(
        [{"field": "camera_id", "type": "text", "required": False}],
        num_rows="dynamic",
        column_config={
            "field": st.column_config.TextColumn("Metadata field"),
            "type": st.column_config.SelectboxColumn("Type", options=list(types), required=True),
            "required": st.column_config.CheckboxColumn("Required"),
        },
        key="schema_rows",
        width="stretch",
    )
    properties: dict[str, Any] = {"image": {"type": "image", "required": True}}
    for row in rows:
        if row.get("field"):
            properties[row["field"].strip()] = {
                "type": row.get("type") or "text",
                "required": bool(row.get("required")),
            }
    return {"properties": properties}


def metadata_inputs(bucket: Bucket, key: str) -> dict[str, str]:
    """One input per metadata field; empty inputs are left out (validated by the service)."""
    fields = bucket.metadata_fields
    if not fields:
        return {}
    values: dict[str, str] = {}
    cols = st.columns(min(4, len(fields)))
    for index, field in enumerate(fields):
        label = f"{field.name} ({field.type}{', required' if field.required else ''})"
        value = cols[index % len(cols)].text_input(label, key=f"{key}_{field.name}")
        if value.strip():
            values[field.name] = value.strip()
    return values


def report_table(wb: Workbench, job_id: str) -> None:
    """The ingest report of one job: a summary line and a line per input."""
    report = wb.ingest.report(job_id)
    job = wb.jobs.get(job_id)
    st.subheader("Ingest report")
    text = f"{report.summary()} into **{plain(report.bucket)}** — job `{job_id}` {job.status}"
    if report.rejected:
        st.warning(text)
    else:
        st.success(text)
    st.dataframe(
        [
            {"input": i.source, "status": i.status, "reason": i.reason}
            for i in report.items
        ],
        hide_index=True,
        width="stretch",
        key=f"report_{job_id}",
    )


def video_fps_input(key: str) -> float:
    """The rate videos are sampled at, in frames per second (the service refuses ≤ 0)."""
    return st.number_input(
        "Video frames per second", min_value=0.01, max_value=120.0, value=1.0, step=0.5,
        key=key, help="Videos become one image per sampled frame; near-identical consecutive "
        "frames are skipped.",
    )
