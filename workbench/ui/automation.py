"""Widgets of the Automation page: webhooks (create, ping, deliveries, redeliver), rules
(toggle, parameters, last runs) and events."""

from __future__ import annotations

import streamlit as st

from workbench import Workbench
from workbench.errors import WorkbenchError
from workbench.ui import plain, show_errors
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
        st.success(f"Webhook {plain(shown[0])} created. Its signing secret, shown this once: "
                   f"`{shown[1]}`")


def webhook_table(wb: Workbench) -> None:
    hooks = wb.webhooks.list()
    if not hooks:
        st.caption("No webhook yet.")
        return
    st.dataframe([{"name": h.name, "url": h.url, "events": ", ".join(h.events),
                   "active": h.active, "secret": h.secret_hint} for h in hooks],
                 width="stretch", hide_index=True)
    cols = st.columns(4)
    chosen = cols[0].selectbox("Webhook", [h.name for h in hooks], key="hook_pick")
    if cols[1].button("Send a test ping", key="hook_ping"):
        with show_errors():
            st.toast(f"ping queued as {wb.webhooks.ping(chosen)}")
    active = wb.webhooks.get(chosen).active
    if cols[2].button("Disable" if active else "Enable", key="hook_toggle",
                      help="A disabled webhook gets nothing; what it missed waits for it."):
        with show_errors():
            wb.webhooks.set_active(chosen, not active)
            st.rerun()
    with cols[3].popover("Delete"):
        st.caption("Deletes the webhook and its delivery log (the events stay).")
        sure = st.checkbox("Yes, delete it", key="hook_delete_sure")
        if st.button("Delete webhook", key="hook_delete", disabled=not sure, type="primary"):
            with show_errors():
                removed = wb.webhooks.delete(chosen)
                st.session_state.pop("hook_pick", None)
                st.toast(f"deleted, with {removed['deliveries']} deliveries")
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
                   "next attempt": r["next_attempt_at"] if r["status"] == "pending" else None,
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
    rows = wb.events.recent(limit=50)
    st.dataframe([{"time": r["created_at"], "type": r["type"], "id": r["id"],
                   "data": str(r["payload"])[:200]} for r in rows],
                 width="stretch", hide_index=True)


def rules_section(wb: Workbench) -> None:
    """Each built-in rule: a toggle, its parameters in a form, its last runs."""
    from workbench.rules import RULES

    if st.button("Let the rules react to new events now", key="rules_process"):
        with show_errors():
            done = wb.rules.process_pending()
            st.toast(f"{done['events']} event(s): {done['runs']} run(s), {done['jobs']} "
                     f"job(s) queued, {done['failed']} failed")
    for rule in wb.rules.list():
        with st.container(border=True):
            _rule_card(wb, rule, RULES[rule.name])


def _rule_card(wb: Workbench, rule, spec) -> None:
    toggle = f"rule_on_{rule.name}"
    st.session_state[toggle] = rule.enabled  # the stored state, whoever changed it
    cols = st.columns([1, 4])
    cols[0].toggle(rule.name, key=toggle, on_change=_switch, args=(wb, rule.name))
    cols[1].markdown(f"{rule.description}  \n*on* {', '.join(spec.triggers)}")
    failed = st.session_state.pop(f"rule_error_{rule.name}", None)
    if failed:
        st.error(plain(failed), icon="⚠️")
    if spec.params:
        with st.form(f"rule_params_{rule.name}"):
            cols = st.columns(4)
            values = {key: _param_input(cols[i % 4], rule, key, param)
                      for i, (key, param) in enumerate(spec.params.items())}
            if st.form_submit_button("Save parameters"):
                with show_errors():
                    typed = {k: spec.params[k].parse(rule.name, k, v) if isinstance(v, str)
                             else v for k, v in values.items()}
                    wb.rules.configure(rule.name, params=typed)
                    st.toast(f"{rule.name}: parameters saved")
    runs = wb.rules.runs(rule.name, limit=5)
    if runs:
        st.dataframe([{"time": r["created_at"], "event": r["event_type"], "status": r["status"],
                       "message": r["message"], "job": r["job_id"]} for r in runs],
                     width="stretch", hide_index=True)
    else:
        st.caption("No runs yet.")


def _switch(wb: Workbench, name: str) -> None:
    try:
        wb.rules.configure(name, enabled=st.session_state[f"rule_on_{name}"])
    except WorkbenchError as exc:  # shown on the card; the toggle goes back to the stored state
        st.session_state[f"rule_error_{name}"] = str(exc)


def _param_input(where, rule, key: str, param):
    """A widget for one parameter; text for optional values (empty: the default)."""
    value = rule.params[key]
    widget = f"rule_{rule.name}_{key}"
    if param.choices:
        return where.selectbox(key, param.choices, index=param.choices.index(value),
                               key=widget, help=param.doc)
    if param.kind is bool:
        return where.checkbox(key, value=value, key=widget, help=param.doc)
    if param.optional or param.kind is str:
        return where.text_input(key, "" if value is None else str(value), key=widget,
                                help=param.doc)
    cast = int if param.kind is int else float
    low, high = (None if b is None else cast(b) for b in (param.min, param.max))
    if param.kind is int:
        return where.number_input(key, low, high, int(value), 1, key=widget, help=param.doc)
    return where.number_input(key, low, high, float(value), 0.01, format="%.3f", key=widget,
                              help=param.doc)
