"""Sign-in for the app served beyond loopback: a reviewer gives an API key once per browser
session (``workbench keys create --name NAME --role reviewer``), and the session's verdicts,
leases and queues are that key's name — the same identity the HTTP API gives it. On
127.0.0.1 nobody signs in: the machine's owner judges."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from workbench.annotations import set_author_source
from workbench.errors import NotFoundError

if TYPE_CHECKING:
    from workbench import Workbench

_REVIEWER = "signin_reviewer"  # session state: (key id, name) once signed in


def sign_in_needed(address: str | None = None) -> bool:
    """Whether the app listens beyond this machine (Streamlit's ``server.address``; unset
    means every interface)."""
    from workbench.api.hosts import is_loopback

    address = address if address is not None else st.get_option("server.address")
    return not (address and is_loopback(address))


def session_reviewer() -> str | None:
    """The signed-in reviewer of the session whose script is running (callbacks included),
    or None outside a session or before sign-in: the annotations' default author."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx() is None:
        return None
    signed = st.session_state.get(_REVIEWER)
    return signed[1] if signed else None


def reviewer(wb: Workbench) -> str | None:
    """The session's signed-in reviewer, asking for a key first where one is needed (the
    page stops until a valid key is given); None on loopback. From then on the session's
    annotations, leases and queues are the reviewer's (:func:`session_reviewer`)."""
    from workbench.api.keys import KeyRejected, KeyService

    if not sign_in_needed():
        return None
    set_author_source(session_reviewer)
    keys = KeyService(wb.db)
    signed = st.session_state.get(_REVIEWER)
    if signed is not None:
        try:
            still = keys.get(signed[0]).active
        except NotFoundError:  # deleted since: sign in again
            still = False
        if still:
            with st.sidebar:
                st.caption(f"Signed in as **{signed[1]}**")
                st.button("Sign out", key="signin_out", on_click=_sign_out)
            return signed[1]
        st.session_state.pop(_REVIEWER, None)
        st.warning("Your API key was revoked; sign in with another one.")
    st.title("Sign in")
    st.write("This workbench is served beyond its machine: give your API key (ask its admin "
             "for one: `workbench keys create --name YOUR_NAME --role reviewer`). Your "
             "verdicts are recorded under the key's name.")
    with st.form("signin_form"):
        token = st.text_input("API key", type="password", key="signin_key")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        try:
            key = keys.check(token.strip())
        except KeyRejected as exc:
            st.error(str(exc), icon="⚠️")
        else:
            st.session_state[_REVIEWER] = (key.id, key.name)
            st.session_state.pop("signin_key", None)
            st.rerun()
    st.stop()


def _sign_out() -> None:
    st.session_state.pop(_REVIEWER, None)
