"""Automation: webhooks that send every event to other systems, and the recent events."""

import streamlit as st

from workbench.ui import page_setup
from workbench.ui.automation import deliveries_log, recent_events, webhook_form, webhook_table

wb = page_setup("Automation")
st.title("Automation")
st.subheader("Webhooks")
st.caption("Signed with HMAC-SHA256 over `<timestamp>.<body>`; retried with backoff; "
           "delivered by the background worker (see the README for the receiver's check).")
webhook_form(wb)
webhook_table(wb)
st.subheader("Deliveries")
deliveries_log(wb)
st.subheader("Recent events")
recent_events(wb)
