"""The Automation page: create a webhook (secret shown once), ping it, see and redeliver."""

from tests.app.conftest import run_page, shown


def test_create_ping_and_redeliver(workspace):
    wb = workspace
    at = run_page("pages/9_Automation.py")
    assert not at.exception, [e.message for e in at.exception]
    at.text_input(key="hook_name").input("ci")
    at.text_input(key="hook_url").input("ftp://nowhere")
    at.button(key="FormSubmitter:webhook_new-Create webhook").click().run()
    assert any("http:// or https://" in shown(e) for e in at.error)
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


def test_rules_toggle_parameters_and_last_runs(review_wb, monkeypatch):
    wb = review_wb
    monkeypatch.setenv("WORKBENCH_HOME", str(wb.home))
    at = run_page("pages/9_Automation.py")
    assert not at.exception, [e.message for e in at.exception]
    assert at.toggle(key="rule_on_hard_negative").value
    assert not at.toggle(key="rule_on_reference_on_verdict").value
    # Switching a rule on without the parameter it needs: refused, and it stays off.
    at.toggle(key="rule_on_reference_on_verdict").set_value(True).run()
    assert any("needs reference_set" in shown(e) for e in at.error)
    assert not at.toggle(key="rule_on_reference_on_verdict").value
    assert not wb.rules.get("reference_on_verdict").enabled
    at.text_input(key="rule_reference_on_verdict_reference_set").input("page-refs")
    at.button(key="FormSubmitter:rule_params_reference_on_verdict-Save parameters").click().run()
    at.toggle(key="rule_on_reference_on_verdict").set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    rule = wb.rules.get("reference_on_verdict")
    assert rule.enabled and rule.params["reference_set"] == "page-refs"
    # Parameters are typed by their widgets; a bad value is explained and nothing changes.
    at.number_input(key="rule_retrain_on_corrections_threshold").set_value(12)
    at.text_input(key="rule_retrain_on_corrections_imgsz").input("big")
    at.button(key="FormSubmitter:rule_params_retrain_on_corrections-Save parameters").click()
    at.run()
    assert any("imgsz must be an integer, got 'big'" in e.value for e in at.error)
    assert wb.rules.get("retrain_on_corrections").params["threshold"] == 50
    at.text_input(key="rule_retrain_on_corrections_imgsz").input("64")
    at.button(key="FormSubmitter:rule_params_retrain_on_corrections-Save parameters").click()
    at.run()
    params = wb.rules.get("retrain_on_corrections").params
    assert (params["threshold"], params["imgsz"]) == (12, 64)
    # A verdict, the rules run from the page: each card shows its last runs.
    wb.annotations.create(document_id="obj_a_0", collection_id="col_x", label="confirmed")
    wb.annotations.create(document_id="obj_a_1", collection_id="col_x", label="false_positive")
    at.button(key="rules_process").click().run()
    assert not at.exception, [e.message for e in at.exception]
    messages = [m for frame in at.dataframe if "message" in frame.value.columns
                for m in frame.value["message"]]
    assert any("added to 'page-refs'" in m for m in messages)
    assert any("joins the hard-negative list" in m for m in messages)
    # Switched off from the page.
    at.toggle(key="rule_on_hard_negative").set_value(False).run()
    assert not wb.rules.get("hard_negative").enabled


def test_disable_enable_and_delete_a_webhook(workspace):
    wb = workspace
    wb.webhooks.create("ci", "http://127.0.0.1:9/hook")
    at = run_page("pages/9_Automation.py")
    at.button(key="hook_toggle").click().run()
    assert not wb.webhooks.get("ci").active
    assert at.button(key="hook_toggle").label == "Enable"
    at.button(key="hook_toggle").click().run()
    assert wb.webhooks.get("ci").active
    assert at.button(key="hook_delete").disabled  # not before the box is ticked
    at.checkbox(key="hook_delete_sure").check().run()
    at.button(key="hook_delete").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert wb.webhooks.list() == []
