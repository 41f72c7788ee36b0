"""Annotations over HTTP: the key's name is the author, bulk requests, filtered pages with a
cursor, updates that emit annotation.updated, deletes, stats."""

from __future__ import annotations

from workbench.annotations import MAX_BULK

CONFIRM = {"document_id": "obj_a_0", "collection_id": "col_x", "label": "confirmed"}


def test_create_get_update_delete(api, review_wb):
    made = api.post("/v1/annotations", json={**CONFIRM, "reasoning": "a circle",
                                             "author": "me"})
    assert made.status_code == 201, made.json()
    body = made.json()
    assert body["author"] == "me" and body["payload"]["predicted_class"] == "circle"
    assert made.headers["Location"] == f"/v1/annotations/{body['id']}"
    got = api.get(f"/v1/annotations/{body['id']}").json()
    assert got["label"] == "confirmed" and got["history"] == []
    changed = api.patch(f"/v1/annotations/{body['id']}", json={
        "label": "corrected", "payload": {"true_class": "square"}})
    assert changed.status_code == 200 and changed.json()["revision"] == 2
    assert api.get(f"/v1/annotations/{body['id']}").json()["history"][0]["label"] == \
        "confirmed"
    events = api.get("/v1/events", params={"type": "annotation.updated"}).json()["items"]
    assert [e["payload"]["annotation_id"] for e in events] == [body["id"]]
    assert events[0]["payload"]["label"] == "corrected"
    bad = api.patch(f"/v1/annotations/{body['id']}", json={"labl": "x"})
    assert bad.status_code == 422 and "cannot update ['labl']" in bad.json()["message"]
    assert api.delete(f"/v1/annotations/{body['id']}").status_code == 204
    assert api.get(f"/v1/annotations/{body['id']}").status_code == 404
    assert api.delete(f"/v1/annotations/{body['id']}").status_code == 404


def test_the_keys_name_is_the_author(keyed, review_wb):
    client, tokens = keyed
    made = client.post("/v1/annotations", json=CONFIRM, headers=tokens["reviewer"]).json()
    assert made["author"] == "alice"
    impostor = client.post("/v1/annotations", json={**CONFIRM, "author": "bob"},
                           headers=tokens["reviewer"])
    assert impostor.status_code == 422 and "API key's name ('alice')" in \
        impostor.json()["message"]
    changed = client.patch(f"/v1/annotations/{made['id']}", json={"label": "false_positive"},
                           headers=tokens["admin"]).json()
    assert changed["author"] == "ops"
    bulk = client.post("/v1/annotations/bulk", headers=tokens["reviewer"], json={
        "operations": [{**CONFIRM, "document_id": "obj_b_0"}]}).json()
    assert review_wb.annotations.get(bulk["results"][0]["annotation_id"]).author == "alice"
    event = client.get("/v1/events", params={"type": "annotation.created"},
                       headers=tokens["reviewer"]).json()["items"][0]
    assert event["payload"]["author"] == "alice"


def test_bulk_answers_each_operation_and_holds_at_most_a_thousand(api):
    answer = api.post("/v1/annotations/bulk", json={"operations": [
        CONFIRM, {**CONFIRM, "document_id": "nope"}, "not an object"]})
    assert answer.status_code == 200
    body = answer.json()
    assert [r["ok"] for r in body["results"]] == [True, False, False]
    assert body["succeeded"] == 1 and body["failed"] == 2
    assert "no detection or image document 'nope'" in body["results"][1]["error"]
    too_many = api.post("/v1/annotations/bulk", json={"operations": [CONFIRM] *
                                                      (MAX_BULK + 1)})
    assert too_many.status_code == 422 and "at most 1000" in too_many.json()["message"]


def test_list_filters_and_pages_with_a_cursor(api):
    detections = ["obj_a_0", "obj_a_1", "obj_b_0", "obj_b_1", "obj_c_0"]
    for det in detections:
        api.post("/v1/annotations", json={**CONFIRM, "document_id": det})
    api.post("/v1/annotations", json={**CONFIRM, "label": "false_positive"})
    first = api.get("/v1/annotations", params={"label": "confirmed", "limit": 2}).json()
    assert first["total"] == 5 and len(first["items"]) == 2 and first["next_cursor"]
    seen, cursor = [a["document_id"] for a in first["items"]], first["next_cursor"]
    while cursor:
        page = api.get("/v1/annotations", params={"label": "confirmed", "limit": 2,
                                                  "cursor": cursor}).json()
        seen += [a["document_id"] for a in page["items"]]
        cursor = page["next_cursor"]
    assert sorted(seen) == detections
    other_filters = api.get("/v1/annotations", params={"label": "false_positive",
                                                       "cursor": first["next_cursor"]})
    assert other_filters.status_code == 422 and "other filters" in \
        other_filters.json()["message"]
    assert api.get("/v1/annotations", params={"cursor": "%%%"}).status_code == 422
    by_collection = api.get("/v1/annotations", params={"collection_id": "x"}).json()
    assert by_collection["total"] == 6
    assert api.get("/v1/annotations", params={"collection_id": "nope"}).status_code == 404


def test_events_page_with_a_cursor(api):
    for det in ("obj_a_0", "obj_a_1", "obj_b_0"):
        api.post("/v1/annotations", json={**CONFIRM, "document_id": det})
    first = api.get("/v1/events", params={"limit": 2}).json()
    assert first["total"] == 3 and first["next_cursor"]
    rest = api.get("/v1/events", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    ids = [e["id"] for e in first["items"] + rest["items"]]
    assert len(set(ids)) == 3


def test_stats(api):
    api.post("/v1/annotations", json=CONFIRM)
    api.post("/v1/annotations", json={**CONFIRM, "document_id": "obj_b_0",
                                      "label": "false_positive"})
    stats = api.get("/v1/annotations/stats", params={"collection_id": "x"})
    assert stats.status_code == 200, stats.json()
    body = stats.json()
    assert body["total"] == 2
    assert {r["label"]: r["count"] for r in body["labels"]} == {"confirmed": 1,
                                                               "false_positive": 1}
    assert api.get("/v1/annotations/stats", params={"window": "1y"}).status_code == 422


def test_labels_outside_the_vocabulary_until_the_collection_allows_them(keyed, review_wb):
    client, tokens = keyed
    odd = {**CONFIRM, "label": "Confirmed"}
    refused = client.post("/v1/annotations", json=odd, headers=tokens["reviewer"])
    assert refused.status_code == 422 and refused.json()["error"] == "validation_error"
    assert "did you mean 'confirmed'?" in refused.json()["message"]
    assert 'PATCH /v1/collections/x {"allow_custom_labels": true}' in \
        refused.json()["message"]
    shown = client.get("/v1/collections/x", headers=tokens["reviewer"]).json()
    assert shown["allow_custom_labels"] is False and "missed" in shown["labels"]
    setting = {"allow_custom_labels": True}
    assert client.patch("/v1/collections/x", json=setting,
                        headers=tokens["reviewer"]).status_code == 403
    typo = client.patch("/v1/collections/x", json={"allow_custom_label": True},
                        headers=tokens["admin"])
    assert typo.status_code == 422 and "did you mean 'allow_custom_labels'" in \
        typo.json()["message"]
    changed = client.patch("/v1/collections/x", json=setting, headers=tokens["admin"])
    assert changed.status_code == 200 and changed.json()["allow_custom_labels"] is True
    made = client.post("/v1/annotations", json=odd, headers=tokens["reviewer"])
    assert made.status_code == 201 and made.json()["label"] == "Confirmed"
