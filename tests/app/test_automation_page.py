"""The Automation page: create a webhook (secret shown once), ping it, see and redeliver."""

from tests.app.conftest import run_page


def test_create_ping_and_redeliver(workspace):
    wb = workspace
    at = run_page("pages/9_Automation.py")
    assert not at.exception, [e.message for e in at.exception]
    at.text_input(key="hook_name").input("ci")
    at.text_input(key="hook_url").input("ftp://nowhere")
    at.button(key="FormSubmitter:webhook_new-Create webhook").click().run()
    assert any("http:// or https://" in e.value for e in at.error)
    assert wb.webhooks.list() == []
    at.text_input(key="hook_url").input("http://127.0.0.1:9/hook")
    at.button(key="FormSubmitter:webhook_new-Create webhook").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (hook,) = wb.webhooks.list()
    assert any("shown this once" in s.value for s in at.success)
    at.button(key="hook_ping").click().run()
    (delivery,) = wb.webhooks.deliveries("ci")
    assert delivery["event_type"] == "ping"
    wb.webhooks.deliver_due()  # nothing listens on port 9: a failed attempt
    at.run()
    assert at.selectbox(key="delivery_pick").value == delivery["id"]
    at.button(key="delivery_redeliver").click().run()
    assert wb.webhooks.deliveries("ci")[0]["status"] == "pending"
    assert wb.webhooks.attempts(delivery["id"])[0]["error"]
