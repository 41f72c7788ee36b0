"""The "Open in FiftyOne" button of the Detect and Models pages.

A click syncs the collection (only what changed, with a progress bar) and serves the FiftyOne
App on 127.0.0.1 from this process, once: its server runs in the background until the app
stops, and later clicks re-sync and point it at the dataset again. FiftyOne is imported only
when the button is clicked.
"""

from __future__ import annotations

import streamlit as st

from workbench import Workbench
from workbench.domain import Collection
from workbench.fiftyone_sync import DEFAULT_PORT
from workbench.ui import show_errors


def open_in_fiftyone(wb: Workbench, collection: Collection, key: str,
                     port: int = DEFAULT_PORT, where=None) -> None:
    """A button that syncs ``collection`` into FiftyOne and opens its App; the App's URL
    stays on the page as a link for the rest of the session."""
    place = where or st
    urls: dict[str, str] = st.session_state.setdefault("fiftyone_urls", {})
    if place.button("Open in FiftyOne", key=key,
                    help="Sync this collection into a FiftyOne dataset (only what changed) "
                         "and serve the FiftyOne App on 127.0.0.1"):
        with show_errors():
            bar = place.progress(0.0, text="Syncing to FiftyOne…")

            def step(done: int, total: int, message: str) -> None:
                bar.progress(min(1.0, done / total) if total else 0.0,
                             text=f"Syncing to FiftyOne: {message}")

            report = wb.fiftyone.sync(collection.name, progress=step)
            bar.progress(1.0, text=report.summary())
            with st.spinner("Starting the FiftyOne App…"):
                urls[collection.name] = wb.fiftyone.open_app(collection.name, port)
    if collection.name in urls:
        place.markdown(f"FiftyOne App: [{urls[collection.name]}]({urls[collection.name]})")
