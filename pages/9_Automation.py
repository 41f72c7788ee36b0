"""Automation: webhooks that send every event to other systems, built-in rules that react to
events, and the recent events."""

import streamlit as st

from workbench.ui import page_setup
from workbench.ui.automation import (
                                     deliveries_log,
                                     recent_events,
                                     rules_section,
                                     webhook_form,
                                     webhook_table,
)

wb = page_setup("Automation")
st.title("Automation")
st.subheader("Webhooks")
st.caption("Signed with HMAC-SHA256 over `<timestamp>.<body>`; retried with backoff; "
           "delivered by the background worker (see the README for the receiver's check).")
webhook_form(wb)
webhook_table(wb)
st.subheader("Deliveries")
deliveries_log(wb)
st.subheader("Rules")
st.caption("Built-in reactions to events, run by the background worker; each run is logged. "
           "A rule reacts to what happens while it is on.")
rules_section(wb)
st.subheader("Recent events")
recent_events(wb)
