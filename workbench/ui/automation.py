"""Widgets of the Automation page: webhooks (create, ping, deliveries, redeliver) and events."""

from __future__ import annotations

import streamlit as st

from workbench import Workbench
from workbench.ui import show_errors
from workbench.webhooks import EVENT_TYPES

STATUSES = ("pending", "delivering", "delivered", "failed")


def webhook_form(wb: Workbench) -> None:
    with st.form("webhook_new"):
        cols = st.columns([1, 2, 2])
        name = cols[0].text_input("Name", key="hook_name")
        url = cols[1].text_input("URL (http or https)", key="hook_url")
        events = cols[2].multiselect("Events (none: every event)", EVENT_TYPES[:-1],
                                     key="hook_events")
        if st.form_submit_button("Create webhook", type="primary"):
            with show_errors():
                hook, secret = wb.webhooks.create(name, url, events or ["*"])
                st.session_state["hook_secret"] = (hook.name, secret)
    shown = st.session_state.pop("hook_secret", None)
    if shown:
        st.success(f"Webhook {shown[0]!r} created. Its signing secret, shown this once: "
                   f"`{shown[1]}`")


def webhook_table(wb: Workbench) -> None:
    hooks = wb.webhooks.list()
    if not hooks:
        st.caption("No webhook yet.")
        return
    st.dataframe([{"name": h.name, "url": h.url, "events": ", ".join(h.events),
                   "active": h.active, "secret": h.secret_hint} for h in hooks],
                 width="stretch", hide_index=True)
    cols = st.columns(3)
    chosen = cols[0].selectbox("Webhook", [h.name for h in hooks], key="hook_pick")
    if cols[1].button("Send a test ping", key="hook_ping"):
        with show_errors():
            st.toast(f"ping queued as {wb.webhooks.ping(chosen)}")
    active = wb.webhooks.get(chosen).active
    if cols[2].button("Deactivate" if active else "Activate", key="hook_toggle"):
        with show_errors():
            wb.webhooks.set_active(chosen, not active)
            st.rerun()


def deliveries_log(wb: Workbench) -> None:
    hooks = ["all", *(h.name for h in wb.webhooks.list())]
    cols = st.columns(3)
    hook = cols[0].selectbox("Deliveries of", hooks, key="delivery_hook")
    status = cols[1].selectbox("Status", ["any", *STATUSES], key="delivery_status")
    rows = wb.webhooks.deliveries(None if hook == "all" else hook,
                                  None if status == "any" else status, limit=200)
    st.dataframe([{"delivery": r["id"], "event": r["event_type"], "status": r["status"],
                   "attempts": r["attempts"], "code": r["last_status_code"],
                   "error": r["last_error"], "created": r["created_at"],
                   "delivered": r["delivered_at"]} for r in rows],
                 width="stretch", hide_index=True)
    if rows:
        picked = cols[2].selectbox("Delivery", [r["id"] for r in rows], key="delivery_pick")
        attempts = wb.webhooks.attempts(picked)
        if attempts:
            st.caption("Attempts")
            st.dataframe(attempts, width="stretch", hide_index=True)
        if st.button("Redeliver", key="delivery_redeliver"):
            with show_errors():
                wb.webhooks.redeliver(picked)
                st.toast(f"{picked} queued again")


def recent_events(wb: Workbench) -> None:
    from workbench.events import recent_events as recent

    rows = recent(wb.db, limit=50)
    st.dataframe([{"time": r["created_at"], "type": r["type"], "id": r["id"],
                   "data": str(r["payload"])[:200]} for r in rows],
                 width="stretch", hide_index=True)
