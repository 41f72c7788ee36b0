"""A strip of the frames around a video frame, for pages that show one image at a time."""

from __future__ import annotations

import streamlit as st

from workbench import Workbench
from workbench.domain import ImageObject
from workbench.ui import plain, thumbnail


def frame_strip(wb: Workbench, obj: ImageObject, count: int = 3) -> None:
    """Thumbnails of up to ``count`` frames either side of ``obj`` in its video, in order,
    ``obj`` itself marked; nothing for an image that is not a video frame."""
    frames = wb.ingest.frame_neighbours(obj, count)
    if len(frames) < 2:
        return
    st.caption(f"Neighbouring frames in {plain(obj.metadata['video'])}")
    for cell, frame in zip(st.columns(2 * count + 1), frames, strict=False):
        with cell:
            st.image(thumbnail(wb, frame, 160), width="stretch")
            meta = frame.metadata
            stamp = meta.get("timestamp")
            when = f"{stamp:.2f} s" if isinstance(stamp, int | float) else plain(stamp)
            label = f"frame {meta['frame_index']} · {when}"
            st.caption(f"**▶ {label}**" if frame.id == obj.id else label)
