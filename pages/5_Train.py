"""Export & Train: turn reviewed detections into a dataset and fine-tune the next version."""

import streamlit as st

from workbench.ui import jobs_panel, page_setup, pick_collection, pick_version, plain, show_errors
from workbench.ui.loop import (
    export_options_form,
    export_preview,
    export_summary,
    train_form,
    training_curves,
    zip_bytes,
)

wb = page_setup("Export & Train")
st.title("Export & Train")
collection = pick_collection(wb, "train_collection",
                             "Nothing to export yet: detect and review first.")
version = pick_version(wb, collection, "train_version", label="Model version",
                       help="Its boxes fill partly reviewed images, and fine-tuning starts "
                            "from its weights. Any registered version, not only the active one.")
counts = wb.truth.counts(collection.name)
st.caption(f"Exports the ground truth people established, whatever version they reviewed: "
           f"{counts['complete'] - counts['gold']} complete image(s) to train on "
           f"({counts['gold']} more kept for the gold set), {counts['partial']} partly "
           f"reviewed. Partly reviewed images and the model's confident boxes on others come in "
           f"with fill, as pseudo-labels of {plain(version.key)}.")
options = export_options_form()
if st.button("Build dataset", key="build_export"):
    with show_errors():
        st.session_state["export_result"] = wb.export.into_workspace(
            collection, f"preview-{collection.id}", version=version, options=options)
result = st.session_state.get("export_result")
if result is not None and result.path.exists():
    export_summary(result)
    export_preview(result)
    st.download_button("Download dataset (zip)", zip_bytes(result.path),
                       file_name=f"{collection.name}-{result.content_hash[:8]}.zip",
                       key="download_export")

st.subheader("Fine-tune")
train_form(wb, collection, options, version)
training_curves(wb)
jobs_panel(wb)
