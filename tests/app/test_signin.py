"""Served beyond loopback, the app asks for an API key and records the session's verdicts
under the key's name; on loopback nobody signs in."""

import pytest
from streamlit import config

from tests.app.conftest import populate, run_page
from workbench.annotations import set_author_source
from workbench.api.keys import KeyService
from workbench.ui.signin import sign_in_needed


@pytest.mark.parametrize(("address", "needed"), [("127.0.0.1", False), ("localhost", False),
                                                 ("::1", False), ("0.0.0.0", True),
                                                 ("", True), ("192.168.1.20", True)])
def test_who_must_sign_in(address, needed):
    assert sign_in_needed(address) is needed


@pytest.fixture
def beyond_loopback():
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    yield
    config.set_option("server.address", before)
    set_author_source(None)  # registered by the sign-in, for this process


def test_a_reviewer_signs_in_and_judges_under_the_keys_name(workspace, tmp_path,
                                                           beyond_loopback):
    wb = workspace
    populate(wb, tmp_path)
    keys = KeyService(wb.db)
    _, token = keys.create("alice", "reviewer")
    at = run_page("pages/3_Review.py")
    assert not at.exception, [e.message for e in at.exception]
    assert [t.value for t in at.title] == ["Sign in"]
    at.text_input(key="signin_key").input("wbk_nope.nope")
    at.button[0].click().run()
    assert "not one of this workspace's keys" in at.error[0].value
    at.text_input(key="signin_key").input(token)
    at.button[0].click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Signed in as **alice**" in c.value for c in at.sidebar.caption)
    at.selectbox(key="review_retriever").select("cams:review").run()
    at.button(key="confirm").click().run()
    (verdict,) = wb.annotations.list(label="confirmed").items
    assert verdict.author == "alice"
    assert wb.annotations.default_author != "alice"  # this thread is not the session's

    keys.revoke("alice")
    at.run()
    assert [t.value for t in at.title] == ["Sign in"] and "revoked" in at.warning[0].value
