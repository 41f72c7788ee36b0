"""The error shape, validation messages, API keys and roles."""

from __future__ import annotations

import pytest

from tests.api.conftest import client_for
from workbench.api.app import ApiOptions, is_loopback
from workbench.api.keys import KeyService

SHAPE = {"error", "message", "details"}


def test_errors_share_one_shape_and_their_status(api):
    missing = api.get("/v1/buckets/nope")
    assert missing.status_code == 404 and set(missing.json()) == SHAPE
    assert missing.json()["error"] == "not_found" and "no bucket named 'nope'" in \
        missing.json()["message"]
    taken = api.post("/v1/buckets", json={"name": "x"})  # review_wb has bucket x
    assert taken.status_code == 409 and taken.json()["error"] == "already_exists"
    no_route = api.get("/v1/nothing")
    assert no_route.status_code == 404 and set(no_route.json()) == SHAPE
    wrong_method = api.delete("/v1/buckets")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == \
        "method_not_allowed"


def test_a_misspelled_key_is_named_with_the_right_one(api):
    answer = api.post("/v1/buckets", json={"name": "cams", "bucket_shema": {}})
    assert answer.status_code == 422 and answer.json()["error"] == "validation_error"
    assert "unknown field 'bucket_shema' — did you mean 'bucket_schema'?" in \
        answer.json()["message"]
    nested = api.post("/v1/collections", json={"name": "c", "source": {"bucket_id": ["x"]}})
    assert "source: unknown field 'bucket_id' — did you mean 'bucket_ids'?" in \
        nested.json()["message"]
    # bodies the services validate keep the services' own messages
    annotation = api.post("/v1/annotations", json={"document_id": "obj_a_0",
                                                   "collection_id": "col_x", "lable": "x"})
    assert annotation.status_code == 422 and "unknown field 'lable'" in \
        annotation.json()["message"]
    schema = api.post("/v1/buckets", json={"name": "c", "bucket_schema": {"properties": {
        "image": {"type": "image"}, "cam": {"type": "txt"}}}})
    assert schema.status_code == 422 and "field 'cam' has type 'txt'" in \
        schema.json()["message"]


def test_a_missing_field_and_bad_json_are_422s(api):
    assert api.post("/v1/buckets", json={}).json()["message"] == "name is required"
    bad = api.post("/v1/buckets", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["message"]


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False),
                                            ("192.168.1.5", False), ("example.org", False)])
def test_keys_are_required_beyond_loopback(host, loopback):
    assert is_loopback(host) is loopback
    assert ApiOptions(host=host).keys_required is not loopback
    assert ApiOptions(host=host, require_key=True).keys_required


def test_an_open_loopback_server_needs_no_key_but_checks_one_given(api):
    assert api.get("/v1/buckets").status_code == 200
    wrong = api.get("/v1/buckets", headers={"X-API-Key": "wbk_key_nope.secret"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"


def test_a_server_beyond_loopback_refuses_requests_without_a_key(review_wb):
    client = client_for(review_wb, host="0.0.0.0")
    answer = client.get("/v1/buckets")
    assert answer.status_code == 401 and "needs an API key" in answer.json()["message"]
    assert answer.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("headers, why", [
    ({}, "needs an API key"),
    ({"X-API-Key": "not-a-key"}, "looks like wbk_<id>.<secret>"),
    ({"Authorization": "Basic abc"}, "should read 'Bearer <key>'"),
    ({"Authorization": "Bearer wbk_key_nope.secret"}, "not one of this workspace's keys"),
])
def test_missing_and_wrong_keys_are_401(keyed, headers, why):
    client, _ = keyed
    answer = client.get("/v1/buckets", headers=headers)
    assert answer.status_code == 401 and why in answer.json()["message"]


def test_a_right_secret_for_another_key_id_is_refused(keyed, review_wb):
    client, tokens = keyed
    good = tokens["admin"]["Authorization"].removeprefix("Bearer ")
    other, _ = KeyService(review_wb.db).create("bob", "admin")
    forged = f"wbk_{other.id}.{good.partition('.')[2]}"
    assert client.get("/v1/buckets", headers={"X-API-Key": forged}).status_code == 401


def test_a_revoked_key_is_refused_at_once(keyed, review_wb):
    client, tokens = keyed
    assert client.get("/v1/buckets", headers=tokens["reviewer"]).status_code == 200
    KeyService(review_wb.db).revoke("alice")
    answer = client.get("/v1/buckets", headers=tokens["reviewer"])
    assert answer.status_code == 401 and "was revoked" in answer.json()["message"]


def test_a_reviewer_reads_and_annotates_but_does_not_administer(keyed):
    client, tokens = keyed
    assert client.get("/v1/collections", headers=tokens["reviewer"]).status_code == 200
    made = client.post("/v1/annotations", headers=tokens["reviewer"], json={
        "document_id": "obj_a_0", "collection_id": "col_x", "label": "confirmed"})
    assert made.status_code == 201
    denied = client.post("/v1/buckets", json={"name": "new"}, headers=tokens["reviewer"])
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden"
    assert client.post("/v1/buckets", json={"name": "new"},
                       headers=tokens["admin"]).status_code == 201


def test_keys_are_stored_hashed_and_validated(review_wb):
    import sqlalchemy as sa

    from workbench.errors import ValidationError
    from workbench.store import tables as t

    keys = KeyService(review_wb.db)
    key, token = keys.create("ci", "reviewer")
    with review_wb.db.read() as conn:
        row = conn.execute(sa.select(t.api_keys)).one()
    secret = token.partition(".")[2]
    assert secret.encode() not in row.key_hash and secret not in repr(tuple(row))
    assert keys.check(token).name == "ci"
    with pytest.raises(ValidationError, match="role 'owner'"):
        keys.create("x", "owner")


def test_the_docs_and_the_schema_list_every_route(api):
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/v1/buckets", "/v1/buckets/{bucket}/objects", "/v1/buckets/{bucket}/batches/trigger",
            "/v1/batches/{batch_id}", "/v1/collections", "/v1/jobs", "/v1/events",
            "/v1/retrievers/{retriever}/execute", "/v1/annotations", "/v1/annotations/bulk",
            "/v1/annotations/{annotation_id}", "/v1/annotations/stats"} <= set(paths)
    upload = paths["/v1/buckets/{bucket}/objects"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
